"""A small cache of loaded models, so that switching tabs or sending another request does not load the
weights again. Keyed by run directory and checkpoint directory name: when training writes a new best
checkpoint, its name changes and the next request loads the new weights. Thread-safe; least recently used
models leave first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from core import runs
from core.errors import CheckpointError

MAX_MODELS = 3


class ModelCache:
    def __init__(self, max_models: int = MAX_MODELS):
        self.max_models = max(1, max_models)
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], tuple] = OrderedDict()  # key -> (model, tokenizer)
        self._loading: dict[tuple[str, str], threading.Lock] = {}  # one loader per key at a time

    @staticmethod
    def key(run_dir, which: str = "best") -> tuple[str, str]:
        """(run directory, checkpoint directory name) of the checkpoint `which` (else `last`)."""
        ck = runs.checkpoint_dir(run_dir, which) or runs.checkpoint_dir(run_dir, "last")
        if ck is None:
            raise CheckpointError(f"Run {Path(run_dir).name} has no checkpoint yet: train it first.")
        return str(Path(run_dir).resolve()), ck.name

    def get(self, run_dir, which: str = "best"):
        """(model, tokenizer) of a run's `which` checkpoint (falling back to `last`), loading it once."""
        for attempt in range(2):
            key = self.key(run_dir, which)
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
                loader = self._loading.setdefault(key, threading.Lock())
            with loader:  # a second request for the same model waits for the first load instead of repeating it
                with self._lock:
                    if key in self._models:
                        self._models.move_to_end(key)
                        return self._models[key]
                try:
                    model, tokenizer = runs.load_model(run_dir, which)
                except CheckpointError:
                    # training may have replaced (and removed) the checkpoint between naming and loading it
                    if attempt == 0 and self.key(run_dir, which) != key:
                        continue
                    raise
                finally:
                    with self._lock:
                        self._loading.pop(key, None)
                with self._lock:
                    # older checkpoints of the same run are no longer wanted
                    for old in [k for k in self._models if k[0] == key[0]]:
                        del self._models[old]
                    self._models[key] = (model, tokenizer)
                    while len(self._models) > self.max_models:
                        self._models.popitem(last=False)
                return model, tokenizer
        raise CheckpointError(f"Run {Path(run_dir).name} changed its checkpoint while loading; try again.")

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)


CACHE = ModelCache()


def get_model(run_dir, which: str = "best"):
    """(model, tokenizer) from the app-wide cache."""
    return CACHE.get(run_dir, which)
