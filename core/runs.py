"""Run directories: the one record of a training job, shared by the CLI, the app and the tests.

    RUN/
      config.json           model, tokenizer, data and training settings
      status.json           state (created / running / stopped / completed / failed), message, step, pid (and
                            for a job an app trains itself, in slices: "worker": "app", "pid_started")
      tokenizer.json        (+ tokenizer.bpe for a BPE trained on the corpus)
      data/train.bin        token ids, uint16 or uint32
      data/val.bin
      metrics.jsonl         one JSON object per logged step
      samples.jsonl         text the model wrote during training
      feedback.jsonl        👍/👎 people gave its generations
      checkpoints/
        last.json           pointer to the newest complete checkpoint directory
        best.json           pointer to the one with the lowest validation loss
        step-0000500-1a2b/  model.safetensors, trainer.safetensors (optimizer + RNG), meta.json
      history/
        step-0000000.safetensors   weights only, a few evenly spaced steps (core/history.py)

Every file is written atomically (core/files.py: a temporary file, then a rename); a checkpoint directory is
complete before a pointer names it, so a crash at any moment leaves the previous checkpoint loadable. No pickle:
tensors go to safetensors, everything else to JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.device import pick_device
from core.errors import CheckpointError, NewleafError
from core.files import atomic_folder, atomic_write_json, is_temp, read_json, read_jsonl, remove_tree, write_jsonl
from core.messages import Text
from core.model import GPT, GPTConfig, param_count
from core.tokenizer import load_tokenizer

CONFIG, STATUS, METRICS, SAMPLES = "config.json", "status.json", "metrics.jsonl", "samples.jsonl"
FEEDBACK = "feedback.jsonl"  # 👍/👎 on generations: {"rating": 1 | -1, "prompt", "text", ...} per line
CKPT_DIR = "checkpoints"
SHARED_OWNER = "shared-example"  # config.json's owner of a run every app session may read (and none may change)
STOP_FILE = "STOP"  # its presence asks a running trainer to stop at the next step
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")  # refused: unpickling can run code


def runs_root() -> Path:
    """Where runs live by default: $NEWLEAF_RUNS, else ./runs."""
    return Path(os.environ.get("NEWLEAF_RUNS") or "runs")


# ----------------------------------------------------------------------------------------------------------
# Logs


def truncate_jsonl(path, max_step: int) -> None:
    """Keep only records with step <= max_step (on resume, drop what was logged after the checkpoint)."""
    records, _ = read_jsonl(path)
    write_jsonl(path, [r for r in records if r.get("step", 0) <= max_step])


# What a run list shows of a run's logs, kept per log file and brought up to date by reading only what the file
# gained since: a list refreshed every few seconds must not parse every line of every run each time (an uploaded
# run's logs are bounded too, see core/run_archive.py).
_log_state: dict[str, dict] = {}
_log_lock = threading.Lock()
_LOG_STATE_MAX = 4096  # log files remembered; the oldest are forgotten first


def _fold_log(path: Path, empty: dict, fold) -> dict:
    """fold(summary, record) over the records of an append-only JSONL file, remembered between calls: only new
    lines are read; a file replaced or cut short (a resumed run rewrites its log) is read again from the start."""
    key = str(path)
    try:
        st = path.stat()
    except OSError:
        return dict(empty)
    with _log_lock:
        state = _log_state.get(key)
    if state is None or state["inode"] != st.st_ino or st.st_size < state["offset"]:
        state = {"inode": st.st_ino, "offset": 0, "summary": dict(empty)}
    if st.st_size > state["offset"]:
        records, offset = read_jsonl(path, state["offset"])
        summary = dict(state["summary"])
        for r in records:
            if isinstance(r, dict):
                fold(summary, r)
        state = {"inode": st.st_ino, "offset": offset, "summary": summary}
    with _log_lock:
        _log_state.pop(key, None)
        _log_state[key] = state
        while len(_log_state) > _LOG_STATE_MAX:
            _log_state.pop(next(iter(_log_state)))
    return dict(state["summary"])


def _fold_feedback(summary: dict, r: dict) -> None:
    if r.get("rating") in (1, -1):
        summary["up" if r["rating"] == 1 else "down"] += 1


def _fold_best(summary: dict, r: dict) -> None:
    v = r.get("val_loss")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        if summary["best"] is None or v < summary["best"]["val_loss"]:
            summary["best"] = {k: r[k] for k in ("step", "val_loss", "val_bpc") if k in r}


def feedback_counts(run_dir) -> tuple[int, int]:
    """Thumbs up and down given to the run's generations (0, 0 when nobody rated it yet)."""
    counts = _fold_log(Path(run_dir) / FEEDBACK, {"up": 0, "down": 0}, _fold_feedback)
    return counts["up"], counts["down"]


def best_logged(run_dir) -> dict | None:
    """The logged record with the lowest finite validation loss ({"step", "val_loss", "val_bpc"}), or None."""
    return _fold_log(Path(run_dir) / METRICS, {"best": None}, _fold_best)["best"]


def bpc_scale(data: dict, split: str = "val") -> float | None:
    """The factor that turns a loss in nats per token into bits per character of a split's text ("train" or
    "val"), from config.json's data section: what lets runs with different tokenizers compare. None when the
    run does not record that split's sizes."""
    if not isinstance(data, dict):
        return None
    tokens, chars = data.get(f"{split}_tokens"), data.get(f"{split}_chars")
    if not (isinstance(tokens, (int, float)) and isinstance(chars, (int, float)) and tokens > 0 and chars > 0):
        return None
    return tokens / chars / math.log(2)


# ----------------------------------------------------------------------------------------------------------
# Status


def write_status(run_dir, state: str, message: str | Text = "", **extra) -> None:
    """status.json: the state, its message in English, and (for a Text message) the message's key and fields
    under "text", so that a page can say it in another language (see status_text)."""
    status = {"state": state, "message": str(message), "updated": time.time(), "pid": os.getpid(), **extra}
    if isinstance(message, Text):
        status["text"] = message.to_json()
    atomic_write_json(Path(run_dir) / STATUS, status)


def status_text(status: dict) -> Text | str:
    """A status's message as a Text when status.json kept one, else its English words."""
    return Text.from_json(status.get("text")) or str(status.get("message", ""))


def read_status(run_dir) -> dict:
    try:
        return read_json(Path(run_dir) / STATUS)
    except CheckpointError:
        return {"state": "unknown", "message": str(UNREADABLE), "text": UNREADABLE.to_json()}


def process_alive(pid) -> bool:
    """Whether a process with this pid exists (another user's counts: it may not be signalled, but it is there)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def worker_alive(pid, run_dir) -> bool:
    """The process is alive and (where /proc tells) is the training process of this run, not a later process
    that reused its pid."""
    if pid == os.getpid() or not process_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return True  # no /proc (macOS) or not readable: trust the pid
    target = Path(run_dir).resolve()
    return any(a and (cwd / a).resolve() == target for a in args)  # as typed, relative to its own folder


def process_started(pid) -> int | None:
    """When a process started (clock ticks after boot, from /proc), which tells it apart from a later process that
    reuses its pid; None where that is not known (no /proc, as on macOS)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text(encoding="utf-8", errors="replace")
        return int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22; the name before ")" may hold spaces
    except (OSError, ValueError, IndexError, TypeError, OverflowError):
        return None


IN_APP = "app"  # status.json's "worker" for a job the app runs in its own process (in slices, core/slices.py)


def in_app_worker() -> dict:
    """The fields that name this process in status.json as the worker of a job it runs itself (a thread, training
    in slices) rather than in a training process of the job's own: its pid and when it started."""
    return {"worker": IN_APP, "pid": os.getpid(), "pid_started": process_started(os.getpid())}


def status_alive(status: dict, run_dir) -> bool:
    """Whether the worker a status names is alive: the run's training process (worker_alive), or, for a job an app
    runs itself (in_app_worker), that app: the same process, by its pid and when it started. An app knows its own
    jobs better than this (playground/jobs.py follows their threads), so here a job of this very process is not."""
    pid = status.get("pid")
    if status.get("worker") == IN_APP:
        return pid != os.getpid() and process_alive(pid) and process_started(pid) == status.get("pid_started")
    return worker_alive(pid, run_dir)


GONE = Text("status.gone")
UNREADABLE = Text("status.unreadable")


def live_status(run_dir) -> dict:
    """status.json as the processes have it: a run that says it is running but whose training process (or app, for
    a job trained in slices) is gone ended without being able to say so; it reads as failed (and can be resumed)."""
    status = read_status(run_dir)
    if status.get("state") == "running" and not status_alive(status, run_dir):
        status = {**status, "state": "failed", "message": str(GONE), "text": GONE.to_json()}
    return status


def title(run_dir) -> str:
    """What a run is called: config.json's title, else its folder's name."""
    try:
        return read_config(run_dir).get("title") or Path(run_dir).name
    except (NewleafError, AttributeError):  # no config, or one that is not a JSON object
        return Path(run_dir).name


def read_config(run_dir) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(Text("runs.no_dir", path=str(run_dir)))
    if not (run_dir / CONFIG).exists():
        raise CheckpointError(Text("runs.not_a_run", path=str(run_dir), file=CONFIG))
    return read_json(run_dir / CONFIG)


# ----------------------------------------------------------------------------------------------------------
# Tensor bundles: a flat name -> tensor dict in safetensors, anything else in JSON next to it


def state_to_tensors(state: dict, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a nested state (e.g. an optimizer's state_dict) into flat tensors and a JSON skeleton."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj, key):
        if isinstance(obj, torch.Tensor):
            name = f"{prefix}{key}"
            tensors[name] = obj.detach().to("cpu").contiguous()
            return {"__tensor__": name}
        if isinstance(obj, dict):
            return {"__dict__": [[k, walk(v, f"{key}.{k}")] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")

    return tensors, walk(state, "")


def tensors_to_state(skeleton, tensors: dict[str, torch.Tensor]):
    def walk(obj):
        if isinstance(obj, dict) and "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if isinstance(obj, dict) and "__dict__" in obj:
            return {k: walk(v) for k, v in obj["__dict__"]}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    return walk(skeleton)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights for saving; the tied LM head is the token embedding, so it is stored once."""
    sd = model.state_dict()
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items() if k != "lm_head.weight"}


def save_checkpoint(run_dir, model, trainer_tensors: dict[str, torch.Tensor], meta: dict, best: bool = False) -> str:
    """Write a complete checkpoint directory, then point `last` (and `best`) at it; returns its name.
    `model` is a module, or its weights already as a name -> tensor dict (fine-tuning passes LoRA merged in)."""
    ckdir = Path(run_dir) / CKPT_DIR
    name = f"step-{meta['step']:07d}-{uuid.uuid4().hex[:4]}"
    weights = model if isinstance(model, dict) else model_tensors(model)

    def write(tmp: Path):
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        save_file(trainer_tensors, str(tmp / "trainer.safetensors"), metadata={"format": "pt"})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    try:
        ckdir.mkdir(parents=True, exist_ok=True)
        atomic_folder(ckdir / name, write, "a checkpoint")
    except (OSError, SafetensorError, NewleafError) as e:  # a full disk, say: the previous checkpoint stays as it was
        raise _checkpoint_write_error(e, run_dir, meta["step"]) from None
    pointer = {"dir": name, **{k: meta[k] for k in ("step", "val_loss", "train_loss", "elapsed_s") if k in meta}}
    try:
        atomic_write_json(ckdir / "last.json", pointer)
    except CheckpointError as e:  # `last` still names the previous checkpoint: drop the new one
        remove_tree(ckdir / name)
        raise _checkpoint_write_error(e, run_dir, meta["step"]) from None
    if best:
        atomic_write_json(ckdir / "best.json", pointer)
    clean_checkpoints(run_dir)
    return name


def _checkpoint_write_error(e: Exception, run_dir, step: int) -> CheckpointError:
    reason = getattr(e, "reason", None) or (e.strerror if isinstance(e, OSError) else None) or str(e)
    os_error = re.search(r"os error (\d+)", reason)  # safetensors: "... I/O error: ... (os error 28)"
    if os_error:
        reason = os.strerror(int(os_error.group(1)))
    try:
        previous = checkpoint_meta(run_dir, "last")
    except CheckpointError:
        previous = None
    kept = Text("runs.previous_intact", step=previous["step"]) if previous else Text("runs.no_earlier")
    return CheckpointError(Text("runs.save_failed", step=step, reason=reason, kept=kept))


def clean_checkpoints(run_dir) -> None:
    """Remove checkpoint directories no pointer names, and what a killed writer left half-done (hidden
    temporary folders and files). Only the trainer writes here, and only it calls this: after each checkpoint,
    and when it starts (a kill during the last checkpoint's pointer write leaves a temporary file behind)."""
    ckdir = Path(run_dir) / CKPT_DIR
    if not ckdir.is_dir():
        return
    keep = set()
    for which in ("last", "best"):
        try:
            keep.add(read_json(ckdir / f"{which}.json")["dir"])
        except (CheckpointError, KeyError, TypeError):
            pass
    for d in ckdir.iterdir():
        if d.is_dir() and d.name not in keep:
            remove_tree(d)
        elif is_temp(d):
            d.unlink(missing_ok=True)


def checkpoint_dir(run_dir, which: str = "last") -> Path | None:
    """The directory of the `last` or `best` checkpoint, or None if the run has none yet."""
    ckdir = Path(run_dir) / CKPT_DIR
    pointer = ckdir / f"{which}.json"
    if not pointer.exists():
        return None
    info = read_json(pointer)
    name = info.get("dir") if isinstance(info, dict) else None
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise CheckpointError(Text("runs.pointer_bad", path=str(pointer)))
    d = ckdir / name
    if not d.is_dir():
        raise CheckpointError(Text("runs.pointer_missing", path=str(pointer), name=name))
    return d


def checkpoint_meta(run_dir, which: str = "last") -> dict | None:
    d = checkpoint_dir(run_dir, which)
    return None if d is None else read_json(d / "meta.json")


def checkpoint_step(run_dir, which: str = "last") -> int:
    """The step of the run's last (or best) checkpoint; 0 before the first: where a resume goes on from."""
    return (checkpoint_meta(run_dir, which) or {}).get("step", 0)


def load_tensors(path) -> dict[str, torch.Tensor]:
    """safetensors only: a weights file can never run code when loaded."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(Text("runs.pickle", name=path.name, suffix=path.suffix))
    if not path.exists():
        pickled = [p.name for p in (path.with_suffix(s) for s in PICKLE_SUFFIXES) if p.exists()]
        if pickled:  # e.g. a model.pt put where model.safetensors belongs
            raise CheckpointError(Text("runs.only_pickle", path=str(path), pickled=pickled[0]))
        raise CheckpointError(Text("files.missing", path=str(path)))
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(Text("runs.not_safetensors", path=str(path), reason=str(e))) from None


def load_model_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy saved weights into a model, with a clear message when they do not fit its config."""
    expected = model_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            Text("runs.weights_mismatch", source=source, missing=str(missing[:3]), unexpected=str(unexpected[:3]))
        )
    for k, v in expected.items():
        if tensors[k].shape != v.shape:
            raise CheckpointError(
                Text(
                    "runs.weight_shape",
                    source=source,
                    name=k,
                    shape=str(tuple(tensors[k].shape)),
                    need=str(tuple(v.shape)),
                )
            )
    model.load_state_dict(tensors, strict=False)  # lm_head.weight is tied to transformer.wte.weight


def check_size(cfg, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Refuse a config that describes a bigger model than the weights hold, before building it: a corrupt or
    hostile config.json must not make the app allocate a model of any size it names."""
    need, have = param_count(cfg), sum(t.numel() for t in tensors.values())
    if need > have:
        raise CheckpointError(Text("runs.too_few_weights", source=source, have=have, need=need))


def load_model(run_dir, which: str = "best", device: str = "cpu"):
    """The trained model of a run (its `best` checkpoint, else `last`) and its tokenizer, ready to sample."""
    cfg = model_config(run_dir)
    ck = checkpoint_dir(run_dir, which) or checkpoint_dir(run_dir, "last")
    if ck is None:
        raise CheckpointError(Text("runs.untrained", path=str(run_dir)))
    return load_weights_file(run_dir, ck / "model.safetensors", device, cfg)


def model_config(run_dir) -> GPTConfig:
    """The model section of a run's config.json."""
    try:
        return GPTConfig.from_dict(read_config(run_dir)["model"])
    except (KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(Text("runs.no_model_section", path=str(Path(run_dir) / CONFIG), reason=str(e))) from None


def load_weights_file(run_dir, path, device: str = "cpu", cfg: GPTConfig | None = None):
    """The run's model with the weights of one file (a checkpoint's, or a history snapshot's), and its tokenizer."""
    cfg = cfg or model_config(run_dir)
    tensors = load_tensors(path)
    check_size(cfg, tensors, str(path))
    model = GPT(cfg)
    load_model_weights(model, tensors, str(path))
    model.to(pick_device(device)).eval()
    return model, load_tokenizer(run_dir)
