"""Limits and places of the app, from the environment; stricter on a Hugging Face Space (SPACE_ID is set)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# Folders a base model may be read from, separated by os.pathsep (":"); unset, the Fine-tune tab reads no folder
# of the server at all: a path typed into the page must never reach another instance's runs or a secret.
LOCAL_DIRS_ENV = "NEWLEAF_LOCAL_MODEL_DIRS"


@dataclass(frozen=True)
class Settings:
    runs_dir: Path
    on_space: bool
    max_upload_mb: float  # per uploaded file (also given to launch(max_file_size=...))
    max_corpus_mb: float  # all files of a corpus together
    max_model_mb: float  # training memory estimate a job may need
    max_run_seconds: float  # time budget of one training job
    max_steps: int
    max_new_tokens: int  # per generation request
    max_prompt_chars: int  # a prompt or chat conversation (only its last context window is used)
    max_context: int  # context length (block_size) of a model trained here
    max_queue: int  # requests waiting in Gradio's queue; more are refused as "busy"
    max_concurrent_jobs: int  # training processes at once; more wait in a queue
    max_session_mb: float  # disk one session's runs and downloads may take (0: no limit)
    train_threads: int  # torch threads of a training process (it runs at nice 10: the UI goes first)
    generate_concurrency: int  # generation requests served at once
    local_model_dirs: tuple[Path, ...] = ()  # folders the Fine-tune tab may read a base model from (opt-in)
    # train jobs in the app's own process, in slices of so many seconds (playground/slices.py); None: in training
    # processes, except on ZeroGPU, where jobs always train in slices (the only place a GPU is lent)
    train_slice_seconds: float | None = None

    @classmethod
    def from_env(cls) -> Settings:
        on_space = bool(os.environ.get("SPACE_ID"))
        cores = os.cpu_count() or 2
        return cls(
            runs_dir=Path(os.environ.get("NEWLEAF_RUNS") or "runs"),
            on_space=on_space,
            max_upload_mb=_env_float("NEWLEAF_MAX_UPLOAD_MB", 20 if on_space else 200),
            max_corpus_mb=_env_float("NEWLEAF_MAX_CORPUS_MB", 20 if on_space else 200),
            max_model_mb=_env_float("NEWLEAF_MAX_MODEL_MB", 1024 if on_space else 8192),
            max_run_seconds=_env_float("NEWLEAF_MAX_RUN_SECONDS", 900 if on_space else 24 * 3600),
            max_steps=int(_env_float("NEWLEAF_MAX_STEPS", 20_000 if on_space else 1_000_000)),
            max_new_tokens=int(_env_float("NEWLEAF_MAX_NEW_TOKENS", 500 if on_space else 2000)),
            max_prompt_chars=int(_env_float("NEWLEAF_MAX_PROMPT_CHARS", 20_000 if on_space else 200_000)),
            max_context=int(_env_float("NEWLEAF_MAX_CONTEXT", 256 if on_space else 1024)),
            max_queue=int(_env_float("NEWLEAF_MAX_QUEUE", 32 if on_space else 64)),
            max_concurrent_jobs=int(_env_float("NEWLEAF_MAX_JOBS", 1)),
            max_session_mb=_env_float("NEWLEAF_MAX_SESSION_MB", 2048 if on_space else 0),
            local_model_dirs=tuple(
                Path(p).expanduser().resolve()
                for p in os.environ.get(LOCAL_DIRS_ENV, "").split(os.pathsep)
                if p.strip()
            ),
            # every core: at nice 10 the UI still goes first (measured: generation during training 1.19x idle
            # with 2 threads on 2 cores, vs 0.91x with 1), and training runs ~1.8x faster than on cores - 1
            train_threads=int(_env_float("NEWLEAF_TRAIN_THREADS", cores)),
            generate_concurrency=int(_env_float("NEWLEAF_GENERATE_CONCURRENCY", 2)),
            train_slice_seconds=max(0.0, _env_float("NEWLEAF_TRAIN_SLICE_SECONDS", 0)) or None,
        )
