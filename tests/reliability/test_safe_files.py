"""Safe files: weights load only through safetensors, tokenizers and configs only from JSON or text. A malicious
pickle put wherever weights could be read is refused with an explanation and never executed. An uploaded run
(zip) is checked through: expected names only, bounded sizes, shapes consistent with its config."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import cli, files, hf, runs
from core.data import read_text_file
from core.engine import SamplingParams, generate
from core.errors import CheckpointError, NewleafError
from core.finetune import load_base
from core.run_archive import ArchiveLimits, checkpoint_zip, import_run_zip
from core.tokenizer import load_tokenizer
from playground import upload_checks
from playground.jobs import SHARED_OWNER
from tests.reliability.helpers import fuzz, own, trained_run

PICKLE_NAMES = ("model.pt", "pytorch_model.bin", "trainer.pt", "model.pkl", "model.ckpt", "model.pth")


class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker), protocol=2)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return own(
        trained_run(tmp_path_factory.mktemp("safe") / "good", max_steps=3, eval_every=3), "uploader-a", "Good run"
    )


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture
def unpickling_forbidden(monkeypatch):
    """Belt and braces: every way to unpickle fails loudly during the test (the marker file is the proof)."""
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args[:1])
        raise AssertionError("something tried to unpickle")

    import torch

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, forbidden)
    return calls


def test_the_payload_is_live(tmp_path):
    """The pickle used below really runs code when unpickled (so its absence of effect means something)."""
    control = tmp_path / "control"
    pickle.loads(malicious_pickle(control))
    assert control.exists()


def test_a_malicious_pickle_is_never_executed_by_any_loading_path(good_run, tmp_path, marker, unpickling_forbidden):
    payload = malicious_pickle(marker)
    refusals = []

    def refused(fn, *args, match="pickle|safetensors|corrupt|not a|missing|unsafe", **kwargs):
        with pytest.raises(NewleafError, match=match) as e:
            fn(*args, **kwargs)
        refusals.append(str(e.value))

    # 1. a run: pickle files beside, or instead of, the safetensors
    run = shutil.copytree(good_run, tmp_path / "run")
    ck = runs.checkpoint_dir(run, "last")
    for name in PICKLE_NAMES:
        (ck / name).write_bytes(payload)
        refused(runs.load_tensors, ck / name, match="pickle-based files .* can run arbitrary code")
    (ck / "model.safetensors").unlink()
    refused(runs.load_model, run, "last", match="only model.pt.*pickle-based.*only from .safetensors|only model")
    refused(load_base, str(run))
    refused(cli_sample, run)
    (ck / "model.safetensors").write_bytes(payload)  # a pickle renamed to .safetensors
    refused(runs.load_model, run, "last", match="corrupt or not a safetensors file")
    refused(load_base, str(run))
    (ck / "trainer.safetensors").write_bytes(payload)
    from core.train import Trainer

    refused(Trainer(run).fit)
    (run / "tokenizer.json").write_bytes(payload)
    refused(load_tokenizer, run, match="corrupt")
    refused(read_text_file, ck / "model.pt", match="binary")  # as an uploaded corpus

    # 2. a Hugging Face folder whose weights are pickles
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {"model_type": "gpt2", "n_layer": 1, "n_head": 1, "n_embd": 8, "n_positions": 8, "vocab_size": 50257}
        )
    )
    (folder / "pytorch_model.bin").write_bytes(payload)
    refused(hf.load_hf_model, folder, match="pickle-based PyTorch file: loading pickle can run arbitrary code")
    refused(hf.import_hf_as_run, folder, tmp_path / "imported", match="pickle")
    refused(load_base, str(folder), match="pickle")
    refused(load_base, f"hf:{folder}", match="pickle")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "pytorch_model.bin"}}))
    refused(hf.load_hf_model, folder, match="unsafe shard 'pytorch_model.bin'")
    (folder / "model.safetensors").write_bytes(payload)
    refused(hf.load_hf_model, folder, match="corrupt or not a safetensors file")

    # 3. an uploaded run (zip) carrying pickles, under every name
    for name in PICKLE_NAMES:
        z = tmp_path / f"with-{name}.zip"
        shutil.copy(checkpoint_zip(good_run, tmp_path, "last"), z)
        with zipfile.ZipFile(z, "a") as zf:
            top = zf.namelist()[0].split("/")[0]
            zf.writestr(f"{top}/checkpoints/{name}", payload)
        refused(import_run_zip, z, tmp_path / f"dest-{name}", match="pickle-based files .* can run arbitrary code")

    assert not marker.exists(), "the pickle was executed"
    assert not unpickling_forbidden
    assert len(refusals) >= 20 and all(r.strip() for r in refusals)


def cli_sample(run):
    """`python -m core sample` on the run: its one line on stderr becomes the error checked above."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["sample", "--run", str(run), "--checkpoint", "last", "--max-new-tokens", "3"])
    if code:
        assert err.getvalue().startswith("newleaf: error: ") and err.getvalue().count("\n") == 1
        raise CheckpointError(err.getvalue())


# ----------------------------------------------------------------------------------------------------------
# An uploaded run (zip)


def download(run: Path, tmp: Path, which="last") -> Path:
    return checkpoint_zip(run, tmp, which)


def rezip(src: Path, dest: Path, edit) -> Path:
    """Copy a zip entry by entry through edit(name, data) -> [(name, data, ZipInfo-or-None)]."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            for name, data, zinfo in edit(info.filename, zin.read(info)):
                if zinfo is not None:
                    zout.writestr(zinfo, data)
                else:
                    zout.writestr(name, data)
    return dest


def nothing_left(dest: Path) -> bool:
    return not dest.exists() and not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]


@pytest.mark.parametrize("which", ["best", "last"])
def test_the_runs_tabs_own_download_imports_and_generates(good_run, tmp_path, which):
    z = download(good_run, tmp_path, which)
    dest = import_run_zip(z, tmp_path / "runs" / "imported", config_update={"owner": "new-owner-hash"})
    config = runs.read_config(dest)
    assert config["owner"] == "new-owner-hash" and config["source"]["upload"] == z.name
    assert runs.read_status(dest)["state"] == "completed"
    assert runs.checkpoint_dir(dest, "last") is not None  # the app follows `last`; a `best`-only zip gets one
    model, tok = runs.load_model(dest, which)
    assert generate(model, tok, "ROMEO:", SamplingParams(max_new_tokens=4, temperature=0.0))[0].text


def test_a_zip_without_its_top_folder_imports(good_run, tmp_path):
    flat = rezip(
        download(good_run, tmp_path), tmp_path / "flat.zip", lambda name, data: [(name.split("/", 1)[1], data, None)]
    )
    runs.load_model(import_run_zip(flat, tmp_path / "flat"), "last")


def test_the_zip_cannot_claim_an_owner(good_run, tmp_path):
    z = rezip(
        download(good_run, tmp_path),
        tmp_path / "claims.zip",
        lambda name, data: [
            (
                name,
                json.dumps({**json.loads(data), "owner": SHARED_OWNER}).encode()
                if name.endswith("/config.json")
                else data,
                None,
            )
        ],
    )
    dest = import_run_zip(z, tmp_path / "claimed", config_update={"owner": "uploader"})
    assert runs.read_config(dest)["owner"] == "uploader"


def test_an_upload_obeys_the_apps_context_and_memory_limits(good_run, tmp_path):
    import dataclasses

    from core.errors import ConfigError
    from playground.settings import Settings

    z = download(good_run, tmp_path)
    block = runs.read_config(good_run)["model"]["block_size"]
    strict = dataclasses.replace(Settings.from_env(), max_context=block - 1)
    with pytest.raises(ConfigError, match=f"context is {block} tokens, more than the {block - 1} allowed"):
        import_run_zip(z, tmp_path / "long", check_model=lambda cfg: upload_checks.check_upload_fits(cfg, strict))
    tiny = dataclasses.replace(Settings.from_env(), max_model_mb=0.01)
    with pytest.raises(ConfigError, match="needs about .* to sample, more than the"):
        import_run_zip(z, tmp_path / "big", check_model=lambda cfg: upload_checks.check_upload_fits(cfg, tiny))
    assert nothing_left(tmp_path / "long") and nothing_left(tmp_path / "big")
    ok = import_run_zip(
        z, tmp_path / "ok", check_model=lambda cfg: upload_checks.check_upload_fits(cfg, Settings.from_env())
    )
    assert runs.checkpoint_dir(ok, "last") is not None


def test_a_zip_whose_tokenizer_pattern_newleaf_did_not_write_is_refused(good_run, tmp_path):
    bpe = tmp_path / "bpe"
    from core.tokenizer import BPETokenizer

    BPETokenizer.train("the cat sat on the mat. " * 400, 300).save(bpe)
    config = json.loads((bpe / "tokenizer.json").read_text())
    config["pattern"] = r"((a|aa)+)\2(?=b)|\S|\s"  # makes the regex engine panic on "aaaa...c"

    def edit(name, data):
        if name.endswith("/tokenizer.json"):
            return [(name, json.dumps(config).encode(), None)]
        if name.endswith("/tokenizer.bpe"):
            return []
        return [(name, data, None)]

    z = rezip(download(good_run, tmp_path), tmp_path / "pattern.zip", edit)
    top = zipfile.ZipFile(z).namelist()[0].split("/")[0]
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr(f"{top}/tokenizer.bpe", (bpe / "tokenizer.bpe").read_bytes())
    with pytest.raises(NewleafError, match="known split patterns"):
        import_run_zip(z, tmp_path / "pattern")
    assert nothing_left(tmp_path / "pattern")


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


BAD_ENTRIES = {
    "absolute path": ("/etc/cron.d/evil", b"x", "unsafe path"),
    "parent directory": ("../../evil.sh", b"x", "climbs out"),
    "parent inside": ("run/checkpoints/../../../evil", b"x", "climbs out"),
    "backslash": ("run\\..\\evil", b"x", "unsafe path"),
    "drive letter": ("C:/evil", b"x", "unsafe path"),
    "unexpected file": ("run/notes.txt", b"hello", "not part of a Newleaf run"),
    "token data": ("run/data/train.bin", b"\0\0", "not part of a Newleaf run"),
    "hidden checkpoint": ("run/checkpoints/.tmp-x/model.safetensors", b"x", "not part of a Newleaf run"),
    "script": ("run/checkpoints/step-1-ab/run.py", b"import os", "not part of a Newleaf run"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_unexpected_or_unsafe_names_are_refused(good_run, tmp_path, case):
    name, data, message = BAD_ENTRIES[case]
    base = download(good_run, tmp_path)
    z = rezip(base, tmp_path / "bad.zip", lambda n, d: [(n, d, None)])
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr(name, data)
    dest = tmp_path / "runs" / "x"
    dest.parent.mkdir()
    with pytest.raises(CheckpointError, match=message):
        import_run_zip(z, dest)
    assert nothing_left(dest)
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path / "runs" / "evil").exists()


def test_a_symbolic_link_is_refused(good_run, tmp_path):
    z = rezip(
        download(good_run, tmp_path),
        tmp_path / "link.zip",
        lambda n, d: [(n, b"/etc/passwd", symlink_info(n)) if n.endswith("/metrics.jsonl") else (n, d, None)],
    )
    with pytest.raises(CheckpointError, match="symbolic link"):
        import_run_zip(z, tmp_path / "x")
    assert nothing_left(tmp_path / "x")


def test_sizes_are_bounded_before_unpacking(good_run, tmp_path):
    # a zip bomb: 200 MB of zeros in a few hundred KB, declared honestly
    bomb = tmp_path / "bomb.zip"
    shutil.copy(download(good_run, tmp_path), bomb)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(zf.namelist()[0].split("/")[0] + "/feedback.jsonl", "w") as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(200):
                f.write(chunk)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    limits = ArchiveLimits(max_total_bytes=50 * 1024 * 1024, max_text_bytes=10 * 1024 * 1024)
    with pytest.raises(CheckpointError, match="unpacks to .*more than the 10 MB allowed"):
        import_run_zip(bomb, tmp_path / "x", limits)
    with pytest.raises(CheckpointError, match="unpacks to more than the 50 MB allowed"):
        no_text_limit = dict(max_text_bytes=10**9, max_all_text_bytes=10**9, max_log_lines=10**9)
        import_run_zip(bomb, tmp_path / "x", ArchiveLimits(max_total_bytes=50 * 1024 * 1024, **no_text_limit))
    with pytest.raises(CheckpointError, match="more than the .* allowed for an uploaded run"):
        import_run_zip(bomb, tmp_path / "x", ArchiveLimits(max_total_bytes=1000))
    with pytest.raises(CheckpointError, match="entries; a run has at most 3"):
        import_run_zip(bomb, tmp_path / "x", ArchiveLimits(max_entries=3))
    assert nothing_left(tmp_path / "x")


def lie_about_size(src: Path, dest: Path, member_suffix: str, declared: int) -> Path:
    """Patch a member's uncompressed size, in its local header and the central directory, to `declared`."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    struct.pack_into("<I", data, info.header_offset + 22, declared)  # local file header: uncompressed size
    pos = data.find(b"PK\x01\x02")
    while pos != -1:  # central directory entries
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len].decode() == info.filename:
            struct.pack_into("<I", data, pos + 24, declared)
        pos = data.find(b"PK\x01\x02", pos + 4)
    dest.write_bytes(bytes(data))
    return dest


def test_a_zip_that_lies_about_its_sizes_is_refused(good_run, tmp_path):
    z = lie_about_size(download(good_run, tmp_path), tmp_path / "liar.zip", "/metrics.jsonl", 10)
    with pytest.raises(CheckpointError, match="not a readable zip|more than the size it declares"):
        import_run_zip(z, tmp_path / "x")
    assert nothing_left(tmp_path / "x")


def edit_config(**model):
    def edit(name, data):
        if name.endswith("/config.json"):
            config = json.loads(data)
            config["model"].update(model)
            data = json.dumps(config).encode()
        return [(name, data, None)]

    return edit


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(n_embd=64, n_head=2), "holds .* weights, but the model in config.json needs"),
        (dict(n_layer=1), "does not match the model in config.json"),
        (dict(block_size=16), "has shape"),
        (dict(vocab_size=7), "tokenizer in the zip has .* tokens but the model expects 7"),
        (dict(n_embd=10**9), "impossible model .*n_embd must be a whole number from 1 to 65,536"),  # never built
        (dict(n_embd=10**400), "impossible model .*got a number of 401 digits"),  # once an OverflowError
        (dict(n_head=3), "impossible model"),
        (dict(colour="red"), "impossible model"),
    ],
)
def test_shapes_must_fit_the_config(good_run, tmp_path, change, message):
    z = rezip(download(good_run, tmp_path), tmp_path / "shape.zip", edit_config(**change))
    with pytest.raises(CheckpointError, match=message):
        import_run_zip(z, tmp_path / "x")
    assert nothing_left(tmp_path / "x")


@pytest.mark.parametrize(
    "drop, message",
    [
        ("/config.json", "has no config.json"),
        ("/tokenizer.json", "No tokenizer"),
        ("/meta.json", "meta.json is missing"),
        ("/model.safetensors", "model.safetensors is missing"),
        (".json", "has no config.json"),  # every JSON file
    ],
)
def test_missing_pieces_are_named(good_run, tmp_path, drop, message):
    z = rezip(
        download(good_run, tmp_path), tmp_path / "partial.zip", lambda n, d: [] if n.endswith(drop) else [(n, d, None)]
    )
    with pytest.raises(NewleafError, match=message) as e:
        import_run_zip(z, tmp_path / "x")
    assert ".upload-" not in str(e.value)  # never the hidden folder it was unpacked into
    assert "partial.zip" in str(e.value) or "config.json" in str(e.value)


def edit_file(suffix: str, change):
    """A rezip edit that replaces the content of the entry ending with `suffix` by change(content)."""
    return lambda name, data: [(name, change(data) if name.endswith(suffix) else data, None)]


def edit_section(**sections):
    return edit_file("/config.json", lambda data: json.dumps({**json.loads(data), **sections}).encode())


@pytest.mark.parametrize(
    "sections, message",
    [
        (dict(tokenizer="y"), "its 'tokenizer' section is str, not an object"),
        (dict(data=["x"]), "its 'data' section is list, not an object"),
        (dict(train=7), "its 'train' section is int, not an object"),
        (dict(data={"name": "x", "train_tokens": "lots"}), "data.train_tokens is 'lots', not a count"),
        (dict(train={"batch_size": -1}), "its training settings are impossible"),
        (dict(title=["a"]), "its 'title' is not text"),
        (dict(created="yesterday"), "'created' is not a time"),
    ],
)
def test_wrong_typed_sections_of_config_json_are_refused(good_run, tmp_path, sections, message):
    """Once accepted, and then the uploader's run list failed on every refresh (AttributeError)."""
    z = rezip(download(good_run, tmp_path), tmp_path / "typed.zip", edit_section(**sections))
    with pytest.raises(CheckpointError, match=message):
        import_run_zip(z, tmp_path / "x")
    assert nothing_left(tmp_path / "x")


def test_a_broken_run_on_disk_never_breaks_the_run_list(good_run, tmp_path):
    from playground import tab_runs
    from playground.jobs import Jobs, owner_id

    root = tmp_path / "runs"
    for name, sections in (("ok", {}), ("bad-tokenizer", {"tokenizer": "y"}), ("bad-data", {"data": ["x"]}),
                           ("bad-everything", {"train": 3, "title": 5, "created": "x", "model": []})):  # fmt: skip
        shutil.copytree(good_run, root / name)
        config = runs.read_config(root / name)
        files.atomic_write_json(root / name / runs.CONFIG, {**config, "owner": owner_id("me"), **sections})
    (root / "not-an-object").mkdir()
    (root / "not-an-object" / runs.CONFIG).write_text("[1, 2]")
    jobs = Jobs(root)
    try:
        listed = {r["id"] for r in jobs.list_runs("me")}
        assert "ok" in listed and "not-an-object" not in listed
        table = tab_runs.runs_table(jobs, "me")
        assert len(table) == len(listed) >= 1
    finally:
        jobs.shutdown()


def test_a_weights_file_bigger_than_its_model_is_refused_before_unpacking(good_run, tmp_path):
    """A 1 MB zip whose trainer.safetensors declared 1 GB of zeros was accepted (and then copied on every
    download): every weights file is now held to the size its model can need."""
    z = download(good_run, tmp_path)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z) as zin, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if not info.filename.endswith("/trainer.safetensors"):
                zout.writestr(info, zin.read(info))
                continue
            header = json.dumps({"zeros": {"dtype": "F32", "shape": [5 * 2**20], "data_offsets": [0, 20 * 2**20]}})
            with zout.open(info.filename, "w", force_zip64=True) as f:
                f.write(struct.pack("<Q", len(header)) + header.encode())
                for _ in range(20):
                    f.write(b"\0" * 2**20)
    assert bomb.stat().st_size < 1024 * 1024
    with pytest.raises(CheckpointError, match="trainer.safetensors in the zip unpacks to 20 MB, more than a "
                                              "trainer.safetensors of this model can hold"):  # fmt: skip
        import_run_zip(bomb, tmp_path / "x")
    assert nothing_left(tmp_path / "x")


def test_logs_are_bounded_in_lines(good_run, tmp_path):
    """64 MB of "{}" lines zip to ~300 KB; every run list used to parse them all."""
    many = b"{}\n" * 100_001
    z = rezip(download(good_run, tmp_path), tmp_path / "logs.zip", edit_file("/metrics.jsonl", lambda d: many))
    with pytest.raises(CheckpointError, match="metrics.jsonl in the zip has more than 100,000 lines"):
        import_run_zip(z, tmp_path / "x")
    with pytest.raises(CheckpointError, match="logs unpack to more than the 1,000 bytes allowed together"):
        import_run_zip(download(good_run, tmp_path), tmp_path / "x", ArchiveLimits(max_all_text_bytes=1000))
    assert nothing_left(tmp_path / "x")


def test_other_corruptions(good_run, tmp_path):
    z = download(good_run, tmp_path)
    not_zip = tmp_path / "photo.zip"
    not_zip.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    with pytest.raises(CheckpointError, match="not a readable zip"):
        import_run_zip(not_zip, tmp_path / "x")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable zip"):
        import_run_zip(truncated, tmp_path / "x")
    twice = rezip(z, tmp_path / "twice.zip", lambda n, d: [(n, d, None)] * (2 if n.endswith("config.json") else 1))
    with pytest.raises(CheckpointError, match="twice"):
        import_run_zip(twice, tmp_path / "x")
    orphan = rezip(
        z,
        tmp_path / "orphan.zip",
        lambda n, d: (
            [(n, d, None)]
            + ([(n.replace("checkpoints/step-", "checkpoints/other-"), d, None)] if n.endswith("meta.json") else [])
        ),
    )
    with pytest.raises(CheckpointError, match="named by neither last.json nor best.json"):
        import_run_zip(orphan, tmp_path / "x")
    pointer = rezip(
        z,
        tmp_path / "pointer.zip",
        lambda n, d: [(n, json.dumps({"dir": "../../../etc"}).encode() if n.endswith("last.json") else d, None)],
    )
    with pytest.raises(CheckpointError, match="corrupt"):
        import_run_zip(pointer, tmp_path / "x")
    (tmp_path / "exists").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        import_run_zip(z, tmp_path / "exists")
    assert nothing_left(tmp_path / "x")


@fuzz(40)
@given(ops=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 50), st.binary(max_size=64)), max_size=4))
def test_fuzzed_zips(good_run, tmp_path_factory, ops):
    """Entries dropped, truncated, replaced or added at random: imported and loadable, or refused by name."""
    tmp = tmp_path_factory.mktemp("zipfuzz")
    base = download(good_run, tmp)
    with zipfile.ZipFile(base) as zf:
        entries = [(i.filename, zf.read(i)) for i in zf.infolist()]
    for op, index, data in ops:
        i = index % len(entries) if entries else 0
        if op == 0 and entries:
            entries.pop(i)
        elif op == 1 and entries:
            entries[i] = (entries[i][0], entries[i][1][: len(data)])
        elif op == 2 and entries:
            entries[i] = (entries[i][0], data)
        elif op == 3:
            entries.append((f"{entries[0][0].split('/')[0] if entries else 'x'}/{data[:8].hex() or 'e'}", data))
    z = tmp / "fuzzed.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries:
            zf.writestr(name, content)
    raw = buf.getvalue()
    if any(op == 4 for op, _, _ in ops):
        raw = raw[: len(raw) * 3 // 4]
    z.write_bytes(raw)
    try:
        dest = import_run_zip(z, tmp / "dest", ArchiveLimits(max_total_bytes=10 * 1024 * 1024))
    except NewleafError as e:
        assert str(e).strip()
        assert nothing_left(tmp / "dest")
    else:
        runs.load_model(dest, "last")
