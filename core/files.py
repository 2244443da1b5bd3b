"""Files that appear complete or not at all, and the JSON / JSONL files runs are made of.

Every write goes to a hidden temporary file (or folder) beside its destination, is flushed to disk, then
renamed over it: a reader, or a program restarted after a crash, sees the old file or the new one, never half
of one. What a killed writer leaves behind is a hidden `.NAME.….tmp` that the next writer (or a clean-up)
removes. A disk problem (full, read-only, no permission) becomes one CheckpointError sentence naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from core.errors import CheckpointError, ConfigError
from core.messages import Text

# ----------------------------------------------------------------------------------------------------------
# Atomic files and folders


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort: not every file system lets a folder be synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(e: OSError, what) -> CheckpointError:
    """A disk problem (full, read-only, no permission...) as one sentence naming what could not be written."""
    reason = e.strerror or str(e) or type(e).__name__
    err = CheckpointError(Text("files.write", what=str(what), reason=reason))
    err.reason = reason
    return err


def temp_path(path: Path) -> Path:
    """A hidden, unique temporary name beside `path`: `.NAME.1a2b3c4d.tmp`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def is_temp(path: Path) -> bool:
    """Whether `path` is what temp_path / atomic_folder names (left behind by a killed writer)."""
    return path.name.startswith(".") and (path.name.endswith(".tmp") or ".tmp-" in path.name)


def atomic_write(path, write: Callable[[Path], None]) -> None:
    """write(tmp) fills a temporary file beside `path`, which then replaces `path`. On any failure the
    temporary file is removed and `path` is untouched; an OSError becomes a CheckpointError naming `path`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(e, path) from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def check_free_folder(path: Path, what: str) -> None:
    """Refuse a destination that exists and is not an empty folder: Newleaf never overwrites one."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(
            f"{path} already exists and is not empty; choose a new folder for {what} (Newleaf never overwrites one)."
        )


def atomic_folder(dest, write: Callable[[Path], None], what: str = "a folder") -> Path:
    """write(tmp) fills a temporary folder beside `dest`, which is then renamed to `dest`: a crash leaves only
    a hidden `.NAME.tmp-…` folder, never a half-written `dest` that looks complete. `dest` must not exist, or
    be an empty folder."""
    dest = Path(dest)
    check_free_folder(dest, what)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise write_error(e, dest) from None
    try:
        write(tmp)
        for f in tmp.rglob("*"):  # on disk before the rename makes the folder visible
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        check_free_folder(dest, what)
        if dest.exists():
            dest.rmdir()  # empty (checked above): a rename can't replace a folder on every OS
        os.rename(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        raise
    fsync_dir(parent)
    return dest


def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it, as far as possible (best effort: used to clean up)."""
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# JSON


def read_json(path):
    """A JSON file's content, or a CheckpointError saying in one sentence why it cannot be read."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(Text("files.missing", path=str(path))) from None
    except OSError as e:  # a folder in its place, no permission...
        raise CheckpointError(Text("files.unreadable", path=str(path), reason=str(e.strerror or e))) from None
    except RecursionError:
        raise CheckpointError(Text("files.json_deep", path=str(path))) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of thousands of digits
        raise CheckpointError(Text("files.json_bad", path=str(path), reason=str(e))) from None


# ----------------------------------------------------------------------------------------------------------
# JSONL logs: appended line by line; a line cut short by a crash is ignored by readers


def append_jsonl(path, record: dict) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as e:  # a line cut short by a full disk is skipped by readers
        raise write_error(e, path) from None


def read_jsonl(path, offset: int = 0) -> tuple[list, int]:
    """Records from byte `offset` on, and the offset just past the last complete line: a poller passes it
    back next time and reads only what is new."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # an unterminated last line is still being written (or was cut by a crash)
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return records, offset + end


def write_jsonl(path, records: list) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
