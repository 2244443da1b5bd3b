"""ZeroGPU: on a Hugging Face Space with ZeroGPU hardware, a GPU exists only inside functions decorated with
`spaces.GPU`, lent for the duration each one asks for. The app's GPU work goes through `gpu(seconds)`:

    on a Space (SPACE_ID set) with the `spaces` package    the function is decorated with spaces.GPU(duration=...):
                                                           on ZeroGPU it runs with a GPU lent for that long; on any
                                                           other Space hardware the decorator is a no-op
    off a Space                                            nothing changes, and `spaces` is never imported (the
                                                           app's requirements leave it out; a Space's include it)

Inside such a function `on_device(model)` moves the model to the GPU when there is one (on ZeroGPU the move
happens in the worker that holds the GPU; the cached CPU copy stays as it was).

Durations fit the work: a generation streams at most NEWLEAF_MAX_NEW_TOKENS tokens of a small model
(GENERATE_SECONDS), one forward pass for the attention maps or the next-token view is well under a second
(LOOK_SECONDS). The shorter the duration, the sooner ZeroGPU schedules the call and the less of a visitor's daily
quota it holds.
"""

from __future__ import annotations

import os

import torch

GENERATE_SECONDS = 60  # completions and chat replies: streamed, up to the Space's max_new_tokens
LOOK_SECONDS = 15  # one forward pass: attention maps, next-token probabilities

ON_SPACE = bool(os.environ.get("SPACE_ID"))
if ON_SPACE:  # only a Space's requirements.txt has `spaces`; anywhere else it is neither needed nor imported
    try:
        import spaces
    except ImportError:
        spaces = None
else:
    spaces = None


# every function the app runs under spaces.GPU, by name, with the seconds it asks for (README; the tests check it)
GPU_FUNCTIONS: dict[str, int] = {}


def on_zero_gpu() -> bool:
    """Whether this process runs on ZeroGPU hardware (the Space sets SPACES_ZERO_GPU)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu(seconds: int):
    """A decorator: spaces.GPU(duration=seconds) on a Space that has the `spaces` package, else nothing. Works for
    plain functions and generators (streaming)."""

    def decorate(fn):
        GPU_FUNCTIONS[f"{fn.__module__}.{fn.__qualname__}"] = seconds
        if spaces is None:
            return fn
        return spaces.GPU(duration=seconds)(fn)

    return decorate


def on_device(model):
    """The model on the GPU when one is here (inside a spaces.GPU function on ZeroGPU, or a GPU Space), else as
    it is."""
    if torch.cuda.is_available() and model.transformer.wte.weight.device.type != "cuda":
        return model.to("cuda")
    return model
