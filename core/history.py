"""A run's history: copies of the weights kept while it trains, so that the app can show the model as it was at
step 0, at a few steps in between, and at the end, and what it did with one prompt at each.

    RUN/history/step-0000000.safetensors    the weights at that step; no optimizer state (a snapshot is for
    RUN/history/step-0000250.safetensors    looking at, not for resuming: that is what checkpoints are for)

Which steps: every `stride` steps, where the stride starts at the evaluation interval and doubles whenever more
than `keep` snapshots would exist (every other one is then deleted). So the snapshots stay evenly spaced from
step 0 to the latest, whatever the run's length, and there are never more than `keep` of them. `keep` is the
run's TrainConfig.history_snapshots, lowered to what fits in its history_mb of disk. The stride depends on the
step alone, so a resumed run ends with the same snapshots as one that was never interrupted. The end of training
is the run's `last` checkpoint: `snapshots()` lists it after the history.

The trainer writes snapshots (`reset`, `save`); the app lists them and looks at each (`snapshots`, `views`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from core import runs
from core.engine import SamplingParams, attention_maps, generate, prompt_logits
from core.errors import CheckpointError, NewleafError
from core.files import atomic_write, read_jsonl
from core.tokenizer import load_tokenizer
from core.train_config import TrainConfig
from core.units import MB

HISTORY_DIR = "history"
_NAME = re.compile(r"^step-(\d{7,})\.safetensors$")


def snapshot_name(step: int) -> str:
    return f"step-{step:07d}.safetensors"


def snapshot_step(name: str) -> int | None:
    """The step of a snapshot file's name, or None for any other name."""
    m = _NAME.fullmatch(name)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------------------------------------
# Which steps are kept


def snapshot_bytes(model: torch.nn.Module) -> int:
    """What one snapshot of this model takes on disk (its weights; the tied output head is stored once)."""
    return sum(v.numel() * v.element_size() for k, v in model.state_dict().items() if k != "lm_head.weight")


def capacity(cfg: TrainConfig, one_snapshot_bytes: int) -> int:
    """How many snapshots a run keeps: history_snapshots, fewer when they would not fit in history_mb; 0 when
    fewer than two fit (one snapshot shows no change)."""
    fit = int(cfg.history_mb * MB // max(1, one_snapshot_bytes))
    n = min(cfg.history_snapshots, fit)
    return n if n >= 2 else 0


def stride_at(step: int, base: int, keep: int) -> int:
    """The spacing of the snapshots once training has reached `step`: `base` doubled until at most `keep`
    multiples of it lie in [0, step]."""
    stride = max(1, base)
    while step // stride + 1 > keep:
        stride *= 2
    return stride


def due(step: int, base: int, keep: int) -> bool:
    """Whether a snapshot is taken at `step`."""
    return keep >= 2 and step % stride_at(step, base, keep) == 0


def room(run_dir, one_snapshot_bytes: int) -> bool:
    """Whether the disk holds a snapshot and still the next checkpoint: its weights and optimizer state (about
    three snapshots' worth) are written before the previous checkpoint is removed. History is for looking back;
    it must never cost the run a checkpoint, so on a nearly full disk the snapshots stop first."""
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return False
    return free >= 4 * one_snapshot_bytes


# ----------------------------------------------------------------------------------------------------------
# Writing (the trainer's main process)


def _files(run_dir) -> dict[int, Path]:
    folder = Path(run_dir) / HISTORY_DIR
    if not folder.is_dir():
        return {}
    found = {}
    for f in folder.iterdir():
        step = snapshot_step(f.name)
        if step is not None and f.is_file():
            found[step] = f
    return found


def reset(run_dir, step: int | None) -> None:
    """When training starts: a fresh start (step None) drops the whole history; a resume drops the snapshots
    taken after its checkpoint (they will be taken again, identically). Leftover temporary files go too."""
    folder = Path(run_dir) / HISTORY_DIR
    if not folder.is_dir():
        return
    for f in folder.iterdir():
        s = snapshot_step(f.name)
        if f.is_file() and (s is None or step is None or s > step):
            f.unlink(missing_ok=True)


def save(run_dir, step: int, weights: dict[str, torch.Tensor], base: int, keep: int) -> Path:
    """Write the snapshot of `step` (the weights as a name -> tensor dict), then delete those that the stride
    at this step no longer keeps."""
    folder = Path(run_dir) / HISTORY_DIR
    path = folder / snapshot_name(step)
    try:
        folder.mkdir(exist_ok=True)
        atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata={"format": "pt", "step": str(step)}))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"Could not save the history snapshot of step {step} ({e}).") from None
    stride = stride_at(step, base, keep)
    for s, f in _files(run_dir).items():
        if s % stride or s > step:
            f.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Snapshot:
    step: int
    path: Path  # a .safetensors file of plain GPT weights
    kind: str  # "history" (a snapshot) or "last" (the run's last checkpoint: the end so far)


def snapshots(run_dir) -> list[Snapshot]:
    """The run's history by step, then its last checkpoint when that is later than every snapshot."""
    out = [Snapshot(s, f, "history") for s, f in sorted(_files(run_dir).items())]
    ck = runs.checkpoint_dir(run_dir, "last")
    if ck is not None:
        step = runs.checkpoint_meta(run_dir, "last").get("step")
        if isinstance(step, int) and (not out or step > out[-1].step):
            out.append(Snapshot(step, ck / "model.safetensors", "last"))
    return out


def check(folder) -> int:
    """Load every history snapshot of a run folder into its model (the shapes must fit config.json's model);
    returns how many there are. Used on an uploaded run before anything of it is used."""
    found = _files(folder)
    for path in found.values():
        runs.load_weights_file(folder, path)
    return len(found)


@dataclass
class StepView:
    """What the model did with one prompt at one step of its training."""

    step: int
    kind: str  # as Snapshot.kind
    val_loss: float | None  # the validation loss logged at that step, if any
    ids: list[int]  # the prompt's tokens that were looked at (its last max_tokens)
    attention: list[torch.Tensor]  # per layer, (n_head, T, T)
    logits: torch.Tensor  # (V,) the next token's logits after the prompt
    sample: str  # a continuation drawn with the same seed at every step


SAMPLE = dict(temperature=0.8, top_k=50, seed=1234)  # the same draw at each step: only the weights differ


def view_at(model, tokenizer, ids: list[int], sample_tokens: int = 60) -> tuple[list[torch.Tensor], torch.Tensor, str]:
    """Attention maps, next-token logits and a seeded sample of one model for the prompt's tokens."""
    params = SamplingParams(max_new_tokens=sample_tokens, **SAMPLE)
    return attention_maps(model, ids), prompt_logits(model, ids), generate(model, tokenizer, ids, params)[0].text


def _val_losses(run_dir) -> dict[int, float]:
    records, _ = read_jsonl(Path(run_dir) / runs.METRICS)
    return {
        r["step"]: r["val_loss"]
        for r in records
        if isinstance(r, dict) and isinstance(r.get("step"), int) and isinstance(r.get("val_loss"), (int, float))
    }


def views(run_dir, prompt: str, max_tokens: int, sample_tokens: int = 60) -> Iterator[StepView]:
    """The prompt (its last max_tokens tokens that fit the context) seen by every snapshot, from step 0 to the
    last checkpoint. The model is built once and each snapshot's weights are loaded into it. While the run still
    trains, a snapshot thinned away (or a checkpoint replaced) after the listing is passed over."""
    listed = snapshots(run_dir)
    if not listed:
        raise CheckpointError(f"{Path(run_dir).name} has no checkpoint yet: train it first.")
    tokenizer = load_tokenizer(run_dir)
    ids = tokenizer.encode(prompt)
    if not ids:
        raise NewleafError("The prompt is empty after tokenization; type at least one character.")
    model, losses = None, _val_losses(run_dir)
    for snap in listed:
        if not snap.path.exists():
            continue
        if model is None:
            model, _ = runs.load_weights_file(run_dir, snap.path)
            ids = ids[-min(max_tokens, model.config.block_size) :]
        else:
            runs.load_model_weights(model, runs.load_tensors(snap.path), str(snap.path))
        attention, logits, sample = view_at(model, tokenizer, ids, sample_tokens)
        yield StepView(snap.step, snap.kind, losses.get(snap.step), ids, attention, logits, sample)
    if model is None:
        raise CheckpointError(f"{Path(run_dir).name} changed its checkpoints while they were read; try again.")
