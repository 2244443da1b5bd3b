"""Runs as zip files: packed for download, and checked through before any of an uploaded one is used.

    checkpoint_zip(run, out)   one folder: config.json, the tokenizer, the logs and one checkpoint; it unzips to a
                               run that `python -m core sample --run FOLDER` loads
    hf_zip(run, out)           the run exported for Hugging Face transformers (core/hf.py), zipped
    import_run_zip(zip, dest)  such a zip, uploaded: checked, then unpacked as a run

A checkpoint zip is what an upload accepts, with or without its top folder. Checks, cheapest first:

  1. the archive   a real zip, no bigger than the limits, with few entries, none encrypted; the sizes its
                   entries declare are within the limits before anything is unpacked
  2. every name    relative, no `..`, no backslash, not a link or a device; and one of the files a run holds
                   (a pickle-based .pt / .bin is refused with the reason)
  3. unpacking     into a hidden folder beside the destination, reading no more than each entry declared
  4. the contents  config.json and the pointers are JSON objects; each checkpoint is named by `last` or `best`;
                   the weights (and any history snapshots, history/step-N.safetensors) are safetensors whose
                   shapes fit config.json's model (the model is built and loaded, as the app will); the
                   tokenizer loads and fits the model's vocabulary
  5. a rename      makes the run appear complete, or not at all

Nothing in an archive is ever unpickled or executed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from core import history, runs
from core.errors import CheckpointError, NewleafError
from core.files import atomic_write, atomic_write_json, fsync_dir, read_json, remove_tree, write_error
from core.hf import export_hf
from core.messages import Text
from core.model import GPTConfig, param_count
from core.tokenizer import load_tokenizer
from core.train_config import TrainConfig
from core.units import MB, format_bytes

TOP_FILES = {
    runs.CONFIG,
    runs.STATUS,
    runs.METRICS,
    runs.SAMPLES,
    "tokenizer.json",
    "tokenizer.bpe",
    runs.FEEDBACK,
    "eval.json",
    "README.txt",
}
POINTERS = ("last", "best")
CHECKPOINT_FILES = {"model.safetensors", "trainer.safetensors", "meta.json"}
PICKLE_SUFFIXES = runs.PICKLE_SUFFIXES + (".joblib", ".npy", ".npz")  # numpy/joblib files can hold pickles too
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # a checkpoint directory (no dots: no `..`)
_EXPECTED = (
    "config.json, status.json, tokenizer.json, tokenizer.bpe, metrics.jsonl, samples.jsonl, "
    "feedback.jsonl, eval.json, and checkpoints/last.json, checkpoints/best.json, "
    "checkpoints/DIR/{model.safetensors, trainer.safetensors, meta.json}, history/step-NNNNNNN.safetensors"
)


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int = 2048 * MB  # everything unpacked together (and the zip itself)
    max_text_bytes: int = 16 * MB  # each JSON / JSONL / tokenizer file
    max_all_text_bytes: int = 32 * MB  # all of them together
    max_log_lines: int = 100_000  # each JSONL log (a long run logs a line every few steps)
    max_entries: int = 64


# What a checkpoint's weights may take beside the model's own fp32 weights: model.safetensors holds them once;
# trainer.safetensors the optimizer's state (AdamW: two moments per weight) plus LoRA adapters and RNG states.
# Anything bigger does not belong to this model (a zip bomb of zeros, for one) and is refused before unpacking.
WEIGHTS_SLACK = 1 * MB  # safetensors headers, RNG states, a small model's LoRA adapters
TRAINER_STATE_FACTOR = 3


# ----------------------------------------------------------------------------------------------------------
# Packing a run for download


def file_stem(title: str, limit: int = 48) -> str:
    """A readable, safe file name part from a run title (letters of any script are kept)."""
    s = re.sub(r"[^\w.-]+", "-", title, flags=re.UNICODE).strip("-._")
    return s[:limit].strip("-._") or "run"


def _zip_add(zf: zipfile.ZipFile, path: Path, arcname: str) -> None:
    # safetensors hardly compress; storing them is much faster than deflating
    compress = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
    zf.write(path, arcname, compress_type=compress)


def _write_zip(dest: Path, entries: list[tuple[Path, str]], extra: dict[str, str] | None = None) -> Path:
    def write(tmp: Path):
        with zipfile.ZipFile(tmp, "w") as zf:
            for path, arcname in entries:
                _zip_add(zf, path, arcname)
            for arcname, text in (extra or {}).items():
                zf.writestr(arcname, text, compress_type=zipfile.ZIP_DEFLATED)

    atomic_write(dest, write)
    return dest


def checkpoint_zip(run_dir, out_dir, which: str = "best", title: str | None = None) -> Path:
    """A zip of one folder: config.json, the tokenizer, metrics / samples / feedback logs, and the `best` (or
    `last`) checkpoint with its pointer file, so the unzipped folder loads as a run
    (`python -m core sample --run FOLDER`). Token data (data/*.bin) is left out; nothing pickled goes in."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if which not in ("best", "last"):
        raise NewleafError(Text("archive.which", which=which))
    title = title or runs.title(run_dir)
    used = which if runs.checkpoint_dir(run_dir, which) is not None else "last"
    ck = runs.checkpoint_dir(run_dir, used)
    if ck is None:
        raise CheckpointError(Text("archive.untrained", title=title))
    step = read_json(ck / "meta.json").get("step", 0)
    base = f"{file_stem(title)}-checkpoint-{used}-step-{step}"
    entries = [(run_dir / runs.CONFIG, f"{base}/{runs.CONFIG}")]
    for f in sorted(run_dir.glob("tokenizer.*")):
        entries.append((f, f"{base}/{f.name}"))
    for name in (runs.METRICS, runs.SAMPLES, runs.FEEDBACK):
        if (run_dir / name).is_file():
            entries.append((run_dir / name, f"{base}/{name}"))
    pointer = run_dir / runs.CKPT_DIR / f"{used}.json"
    entries.append((pointer, f"{base}/{runs.CKPT_DIR}/{used}.json"))
    for f in sorted(ck.iterdir()):
        if f.is_file() and f.suffix in (".safetensors", ".json"):
            entries.append((f, f"{base}/{runs.CKPT_DIR}/{ck.name}/{f.name}"))
    readme = (
        f"{title}\n\nA Newleaf run: its settings, tokenizer, training logs and the {used} checkpoint "
        f'(step {step}).\nSample from it:  python -m core sample --run {base} --prompt "..."\n'
        f"Weights are in safetensors; no file here is pickled.\n"
    )
    return _write_zip(out_dir / f"{base}.zip", entries, {f"{base}/README.txt": readme})


def hf_zip(run_dir, out_dir, which: str = "best", title: str | None = None) -> Path:
    """The run exported for Hugging Face transformers (core.hf.export_hf), zipped as one folder."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    title = title or runs.title(run_dir)
    if runs.checkpoint_dir(run_dir, "last") is None:
        raise CheckpointError(Text("archive.untrained", title=title))
    used = which if runs.checkpoint_dir(run_dir, which) is not None else "last"
    base = f"{file_stem(title)}-huggingface-{used}"
    folder = export_hf(run_dir, out_dir / "export" / base, which=which)
    try:
        entries = [(f, f"{base}/{f.relative_to(folder).as_posix()}") for f in sorted(folder.rglob("*")) if f.is_file()]
        return _write_zip(out_dir / f"{base}.zip", entries)
    finally:
        remove_tree(out_dir / "export")


# ----------------------------------------------------------------------------------------------------------
# Names


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's path, or a CheckpointError when it could leave the folder it is unpacked into."""
    name = info.filename
    if "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise CheckpointError(Text("archive.absolute", name=name))
    path = PurePosixPath(name)
    if any(part in ("..", ".") for part in path.parts) or not path.parts:
        raise CheckpointError(Text("archive.climbs", name=name))
    mode = info.external_attr >> 16  # Unix mode; its type bits are 0 when the zip did not record one
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        what = Text("archive.symlink") if stat.S_ISLNK(mode) else Text("archive.not_regular")
        raise CheckpointError(Text("archive.odd_file", name=name, what=what))
    return path


def _strip_top_folder(paths: list[PurePosixPath]) -> int:
    """How many leading folders to drop: 1 when everything sits in one top folder (as in a downloaded zip)."""
    files = [p for p in paths if p.parts]
    if not files or any(len(p.parts) < 2 for p in files):
        return 0
    return 1 if len({p.parts[0] for p in files}) == 1 else 0


def _pickled(name: str) -> bool:
    """A name that says pickle (data/*.bin are a run's token files, which are not uploaded, but not pickles)."""
    path = PurePosixPath(name.lower())
    return path.suffix in PICKLE_SUFFIXES and not (path.suffix == ".bin" and path.parent.name == "data")


def _check_name(rel: PurePosixPath, original: str) -> str:
    """The kind of an expected file ("text", "weights", "pointer"), or a CheckpointError saying what is wrong."""
    parts = rel.parts
    if _pickled(original):
        raise CheckpointError(Text("archive.pickle", name=original))
    if len(parts) == 1 and parts[0] in TOP_FILES:
        return "text"
    if len(parts) == 2 and parts[0] == runs.CKPT_DIR and parts[1] in {f"{w}.json" for w in POINTERS}:
        return "pointer"
    if len(parts) == 2 and parts[0] == history.HISTORY_DIR and history.snapshot_step(parts[1]) is not None:
        return "weights"
    in_checkpoint = len(parts) == 3 and parts[0] == runs.CKPT_DIR and _SAFE_NAME.fullmatch(parts[1])
    if in_checkpoint and parts[2] in CHECKPOINT_FILES:
        return "weights" if parts[2].endswith(".safetensors") else "text"
    raise CheckpointError(Text("archive.unexpected", name=original, expected=_EXPECTED))


# ----------------------------------------------------------------------------------------------------------
# Unpacking


def _read_entries(zf: zipfile.ZipFile, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath, str]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise CheckpointError(Text("archive.entries", n=len(infos), max=limits.max_entries))
    paths = [_member_path(i) for i in infos]
    pickled = [i.filename for i in infos if _pickled(i.filename)]
    if pickled:  # the most important reason first, whatever else is wrong
        _check_name(PurePosixPath(pickled[0]), pickled[0])
    drop = _strip_top_folder([p for p, i in zip(paths, infos) if not i.is_dir()])
    entries, seen, total, text_total = [], set(), 0, 0
    for info, path in zip(infos, paths):
        if info.is_dir():
            continue
        rel = PurePosixPath(*path.parts[drop:])
        kind = _check_name(rel, info.filename)
        if rel in seen:
            raise CheckpointError(Text("archive.twice", name=str(rel)))
        seen.add(rel)
        if info.flag_bits & 0x1:
            raise CheckpointError(Text("archive.encrypted", name=info.filename))
        if kind != "weights" and info.file_size > limits.max_text_bytes:
            raise CheckpointError(
                Text(
                    "archive.file_too_big",
                    name=info.filename,
                    size=format_bytes(info.file_size),
                    max=format_bytes(limits.max_text_bytes),
                )
            )
        if kind != "weights":
            text_total += info.file_size
            if text_total > limits.max_all_text_bytes:
                raise CheckpointError(Text("archive.text_too_big", max=format_bytes(limits.max_all_text_bytes)))
        total += info.file_size
        if total > limits.max_total_bytes:
            raise CheckpointError(Text("archive.unpacks_too_big", max=format_bytes(limits.max_total_bytes)))
        entries.append((info, rel, kind))
    if PurePosixPath(runs.CONFIG) not in seen:
        raise CheckpointError(Text("archive.no_config", file=runs.CONFIG))
    return entries


def _check_weight_sizes(zf: zipfile.ZipFile, entries, limits: ArchiveLimits, check_model=None) -> None:
    """Read config.json first, and refuse weights files larger than that model's: model.safetensors holds the
    weights once, trainer.safetensors at most TRAINER_STATE_FACTOR times (the optimizer's moments). The sizes
    are the ones the entries declare, which unpacking then enforces: nothing too big is ever written."""
    config_entry = next(info for info, rel, _ in entries if rel == PurePosixPath(runs.CONFIG))
    try:
        config = json.loads(zf.read(config_entry).decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise CheckpointError(Text("archive.bad_config_json", file=runs.CONFIG, reason=str(e))) from None
    cfg = _model_config(config)
    if check_model is not None:
        check_model(cfg)  # the app's context and memory limits, before anything is unpacked
    weights = 4 * param_count(cfg)
    allowed = {"model.safetensors": weights + WEIGHTS_SLACK,
               "trainer.safetensors": TRAINER_STATE_FACTOR * weights + WEIGHTS_SLACK}  # fmt: skip
    for info, rel, kind in entries:
        # a history snapshot holds the weights once, as model.safetensors does
        name = rel.name if rel.name in allowed else "model.safetensors"
        if kind == "weights" and info.file_size > allowed[name]:
            raise CheckpointError(Text("archive.weights_too_big", name=info.filename, size=format_bytes(info.file_size),
                                       kind=name, max=format_bytes(allowed[name]), file=runs.CONFIG))  # fmt: skip


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, limits: ArchiveLimits) -> None:
    """Copy one entry, reading at most what it declared (a zip bomb may lie about its sizes); a JSONL log may
    hold at most limits.max_log_lines lines."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    left = info.file_size
    lines = 0
    count_lines = dest.suffix == ".jsonl"
    with zf.open(info) as src, open(dest, "wb") as out:
        while True:
            chunk = src.read(min(1 << 20, left + 1))
            if not chunk:
                break
            left -= len(chunk)
            if left < 0:
                raise CheckpointError(Text("archive.lies", name=info.filename))
            if count_lines:
                lines += chunk.count(b"\n")
                if lines > limits.max_log_lines:
                    raise CheckpointError(
                        Text("archive.log_lines", name=info.filename, most=f"{limits.max_log_lines:,}")
                    )
            out.write(chunk)


# ----------------------------------------------------------------------------------------------------------
# Contents


def _check_contents(folder: Path, check_model=None) -> dict:
    """The config of an unpacked run once everything in it has been checked (see the top of this file);
    check_model(GPTConfig) may refuse the model's shape (e.g. the app's context and memory limits)."""
    config = read_json(folder / runs.CONFIG)
    cfg = _model_config(config)
    if check_model is not None:
        check_model(cfg)  # before any weights are read
    _check_sections(config, folder)
    tokenizer = load_tokenizer(folder)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise CheckpointError(Text("archive.vocab", have=tokenizer.vocab_size, need=cfg.vocab_size))

    ckdir = folder / runs.CKPT_DIR
    named = {}
    for which in POINTERS:
        d = runs.checkpoint_dir(folder, which)  # refuses a pointer naming a missing or odd directory
        if d is not None:
            named[which] = d
    if not named:
        raise CheckpointError(Text("archive.no_checkpoint"))
    present = {d.name for d in ckdir.iterdir() if d.is_dir()} if ckdir.is_dir() else set()
    extra = present - {d.name for d in named.values()}
    if extra:
        raise CheckpointError(Text("archive.unnamed", name=sorted(extra)[0]))
    for which, d in named.items():
        meta = read_json(d / "meta.json")
        if not isinstance(meta, dict) or isinstance(meta.get("step"), bool) or not isinstance(meta.get("step"), int):
            raise CheckpointError(Text("archive.no_step", name=d.name))
        if (d / "trainer.safetensors").exists():
            runs.load_tensors(d / "trainer.safetensors")
        runs.load_model(folder, which=which)  # safetensors only; shapes checked against config.json's model
    history.check(folder)  # each snapshot loads into the model, as the app will load it
    if "last" not in named:  # the app and the trainer follow `last`
        atomic_write_json(ckdir / "last.json", read_json(ckdir / "best.json"))
    config["tokenizer"] = tokenizer.summary()  # what the tokenizer really is, whatever the zip claimed
    return config


def _model_config(config) -> GPTConfig:
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(Text("archive.no_model", file=runs.CONFIG))
    try:
        return GPTConfig.from_dict(config["model"])
    except NewleafError as e:
        raise CheckpointError(Text("archive.impossible", file=runs.CONFIG, reason=e.text or str(e))) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(Text("archive.impossible", file=runs.CONFIG, reason=str(e))) from None


# config.json's data section: what each field may hold (the app shows them, and bits per character use them)
DATA_NUMBERS = ("val_fraction", "train_tokens", "val_tokens", "train_chars", "val_chars", "val_bytes",
                "train_examples", "val_examples")  # fmt: skip


def _check_sections(config: dict, folder: Path) -> None:
    """The other sections of config.json have the types the app reads them with: a wrong-typed section must be
    refused here, not break the run list of whoever uploaded it."""

    def refuse(what: Text):
        raise CheckpointError(Text("archive.bad_section", file=runs.CONFIG, what=what))

    for section in ("tokenizer", "train", "data", "finetune", "chat_template", "source"):
        if section in config and not isinstance(config[section], dict):
            refuse(Text("archive.not_object", section=section, kind=type(config[section]).__name__))
    data = config.get("data") or {}
    for key in DATA_NUMBERS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or value != value or value > 1e15):  # fmt: skip
            refuse(Text("archive.not_count", field=f"data.{key}", value=repr(value)))
    if "name" in data and not isinstance(data["name"], str):
        refuse(Text("archive.not_text", field="data.name"))
    if "train" in config:
        try:
            TrainConfig.from_dict(config["train"])
        except NewleafError as e:
            refuse(Text("archive.bad_train", reason=e.text or str(e)))
        except (TypeError, ValueError, OverflowError) as e:
            refuse(Text("archive.bad_train", reason=str(e)))
    for key in ("title", "preset"):
        if config.get(key) is not None and not isinstance(config[key], str):
            refuse(Text("archive.not_text", field=key))
    if "created" in config and (isinstance(config["created"], bool) or not isinstance(config["created"], (int, float))):
        refuse(Text("archive.not_time", field="created"))
    evals = folder / "eval.json"
    if evals.exists():
        doc = read_json(evals)
        if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
            raise CheckpointError(Text("archive.bad_eval"))


# ----------------------------------------------------------------------------------------------------------
# The whole import


def import_run_zip(
    zip_path,
    dest_dir,
    limits: ArchiveLimits = ArchiveLimits(),
    config_update: dict | None = None,
    source_name: str | None = None,
    check_model=None,
) -> Path:
    """Unpack and check a run's zip into `dest_dir` (which must not exist yet); returns it. `config_update` is
    merged into its config.json (the app sets the owner and title this way: whatever the zip claims about
    them is overwritten). The run is marked completed: it has weights to use, but no training data."""
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    source_name = source_name or zip_path.name
    if dest_dir.exists():
        raise CheckpointError(Text("archive.dest_exists", path=str(dest_dir)))
    try:
        size = zip_path.stat().st_size
    except OSError as e:
        raise CheckpointError(Text("archive.unreadable", reason=str(e.strerror or e))) from None
    if size > limits.max_total_bytes:
        raise CheckpointError(
            Text("archive.too_big", name=source_name, size=format_bytes(size), max=format_bytes(limits.max_total_bytes))
        )
    tmp = dest_dir.parent / f".{dest_dir.name}.upload-{uuid.uuid4().hex[:8]}"
    try:
        try:
            tmp.mkdir(parents=True)
        except OSError as e:
            raise write_error(e, dest_dir) from None
        try:
            with zipfile.ZipFile(zip_path) as zf:
                entries = _read_entries(zf, limits)
                _check_weight_sizes(zf, entries, limits, check_model)
                for info, rel, _ in entries:
                    _unpack(zf, info, tmp.joinpath(*rel.parts), limits)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
            raise CheckpointError(Text("archive.not_zip", name=source_name, reason=str(e))) from None
        except OSError as e:
            raise write_error(e, dest_dir) from None
        try:
            config = _check_contents(tmp, check_model)
        except NewleafError as e:  # name the upload, not the hidden folder it was unpacked into
            raise type(e)(
                e.text.replace(str(tmp), source_name) if e.text else str(e).replace(str(tmp), source_name)
            ) from None
        step = runs.checkpoint_step(tmp, "last")
        config.update(config_update or {})
        config["title"] = str(config.get("title") or Path(source_name).stem)[:80]
        config["source"] = {"upload": source_name, "original_source": config.get("source"), "uploaded": time.time()}
        atomic_write_json(tmp / runs.CONFIG, config)
        runs.write_status(tmp, "completed", Text("status.uploaded", name=source_name, step=step), step=step)
        try:
            os.rename(tmp, dest_dir)
        except OSError as e:
            raise write_error(e, dest_dir) from None
    finally:
        remove_tree(tmp)
    fsync_dir(dest_dir.parent)
    return dest_dir
