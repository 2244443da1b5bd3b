"""A run's history (core/history.py): which steps the trainer keeps, that a resumed run keeps the same snapshots
with the same weights, the disk cap, clean-up, and that what the app shows at a step is what that step's weights
do when loaded directly."""

import errno
import os
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import save

from core import files, history, runs
from core.engine import SamplingParams, attention_maps, generate, prompt_logits
from core.errors import CheckpointError
from core.run_archive import checkpoint_zip, import_run_zip
from core.train import Trainer
from core.train_config import TrainConfig
from tests.test_train import make_run


def kept(run) -> list[int]:
    return [s.step for s in history.snapshots(run) if s.kind == "history"]


# ----------------------------------------------------------------------------------------------------------
# The policy


def test_the_stride_doubles_and_the_snapshots_stay_evenly_spaced():
    base, keep = 10, 4
    assert [history.stride_at(s, base, keep) for s in (0, 30, 40, 70, 80, 160)] == [10, 10, 20, 20, 40, 80]
    for end in range(0, 1000, 10):
        taken = [s for s in range(0, end + 1, base) if history.due(s, base, keep)]
        stride = history.stride_at(end, base, keep)
        still = [s for s in taken if s % stride == 0]  # what thinning leaves at `end`
        assert still == list(range(0, end + 1, stride)) and 1 <= len(still) <= keep
    assert not history.due(0, 10, 0) and not history.due(0, 10, 1)


def test_the_disk_cap_lowers_the_count():
    cfg = TrainConfig(history_snapshots=12, history_mb=1.0)
    assert history.capacity(cfg, 100_000) == 10  # 1 MB holds 10 snapshots of 100 kB
    assert history.capacity(cfg, 10_000) == 12
    assert history.capacity(cfg, 600_000) == 0  # one would fit: a single snapshot shows no change
    assert history.capacity(TrainConfig(history_snapshots=0), 10) == 0


# ----------------------------------------------------------------------------------------------------------
# Training keeps them


def test_training_keeps_evenly_spaced_snapshots_and_the_last_checkpoint_ends_the_list(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=85, eval_every=10, history_snapshots=4)
    Trainer(run).fit()
    assert kept(run) == [0, 40, 80]
    listed = history.snapshots(run)
    assert listed[-1].kind == "last" and listed[-1].step == 85
    # weights only: far smaller than a checkpoint, and they load as the run's model
    snap = run / history.HISTORY_DIR / history.snapshot_name(40)
    assert snap.stat().st_size < (runs.checkpoint_dir(run) / "trainer.safetensors").stat().st_size
    model, _ = runs.load_weights_file(run, snap)
    assert model.config.n_layer == runs.model_config(run).n_layer
    # checkpoints are cleaned up as before; the history stays
    assert {d.name for d in (run / runs.CKPT_DIR).iterdir() if d.is_dir()} <= {
        runs.checkpoint_dir(run, "last").name,
        runs.checkpoint_dir(run, "best").name,
    }
    assert kept(run) == [0, 40, 80]


def test_step_zero_is_the_untrained_model(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=10, eval_every=10)
    Trainer(run).fit()
    torch.manual_seed(TrainConfig().seed)
    fresh = runs.model_tensors(Trainer(run).model.build())
    snap = runs.load_tensors(run / history.HISTORY_DIR / history.snapshot_name(0))
    assert all(torch.equal(fresh[k], snap[k]) for k in fresh)


def test_a_resumed_run_keeps_the_same_snapshots_with_the_same_weights(tmp_path, shakespeare_text):
    text = shakespeare_text[:40_000]
    settings = dict(max_steps=60, eval_every=10, history_snapshots=3)
    whole = make_run(tmp_path / "whole", text, **settings)
    Trainer(whole).fit()

    parts = make_run(tmp_path / "parts", text, **settings)
    trainer = Trainer(parts)

    def stop_at_25(event, data):
        if event in ("step", "eval") and data["step"] == 25:
            trainer.request_stop()

    assert trainer.fit(callbacks=[stop_at_25]).step == 25
    # pretend the process got further than its checkpoint and wrote a snapshot the resume must not keep
    files.atomic_write_bytes(parts / history.HISTORY_DIR / history.snapshot_name(30), b"half")
    assert Trainer(parts).fit().step == 60

    assert kept(parts) == kept(whole) == [0, 20, 40]
    for step in kept(whole):
        a = runs.load_tensors(parts / history.HISTORY_DIR / history.snapshot_name(step))
        b = runs.load_tensors(whole / history.HISTORY_DIR / history.snapshot_name(step))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_disk_cap_and_turning_history_off(tmp_path, shakespeare_text):
    text = shakespeare_text[:30_000]
    run = make_run(tmp_path / "capped", text, max_steps=40, eval_every=10)
    size = history.snapshot_bytes(Trainer(run).model.build())
    config = runs.read_config(run)
    config["train"]["history_mb"] = 2.5 * size / 2**20  # room for two snapshots
    files.atomic_write_json(run / runs.CONFIG, config)
    Trainer(run).fit()
    assert kept(run) == [0, 40]

    off = make_run(tmp_path / "off", text, max_steps=20, history_snapshots=0)
    Trainer(off).fit()
    assert not (off / history.HISTORY_DIR).exists()
    assert [s.kind for s in history.snapshots(off)] == ["last"]


def test_a_fresh_start_drops_the_old_history(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=20, eval_every=10)
    Trainer(run).fit()
    files.atomic_write_bytes(run / history.HISTORY_DIR / history.snapshot_name(990), b"stale")
    Trainer(run).fit(resume=False)
    assert kept(run) == [0, 10, 20]


# ----------------------------------------------------------------------------------------------------------
# Looking back


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shakespeare_text):
    run = make_run(tmp_path_factory.mktemp("h") / "r", shakespeare_text[:30_000], max_steps=35, eval_every=10)
    Trainer(run).fit()
    return run


def test_each_view_equals_loading_that_snapshot_directly(trained):
    prompt = "ROMEO: what"
    views = list(history.views(trained, prompt, max_tokens=64, sample_tokens=12))
    listed = history.snapshots(trained)
    assert [v.step for v in views] == [s.step for s in listed] == [0, 10, 20, 30, 35]
    assert [v.kind for v in views] == ["history"] * 4 + ["last"]
    losses = {r["step"]: r.get("val_loss") for r in files.read_jsonl(trained / runs.METRICS)[0]}
    for view, snap in zip(views, listed):
        model, tok = runs.load_weights_file(trained, snap.path)
        ids = tok.encode(prompt)
        assert view.ids == ids
        assert torch.allclose(view.logits, prompt_logits(model, ids), atol=1e-5)
        for mine, theirs in zip(view.attention, attention_maps(model, ids)):
            assert torch.allclose(mine, theirs, atol=1e-6)
        params = SamplingParams(max_new_tokens=12, **history.SAMPLE)
        assert view.sample == generate(model, tok, ids, params)[0].text
        assert view.val_loss == losses.get(view.step)
    # the end is the run's last checkpoint, the same weights the app loads for Generate
    last, tok = runs.load_model(trained, "last")
    assert torch.allclose(views[-1].logits, prompt_logits(last, tok.encode(prompt)), atol=1e-5)
    # the model learns: the untrained one is far less sure of the next token than the last
    assert torch.softmax(views[0].logits, -1).max() < torch.softmax(views[-1].logits, -1).max()


def test_views_cut_long_prompts_to_the_tokens_asked_for(trained):
    (view, *_) = history.views(trained, "To be, or not to be", max_tokens=6, sample_tokens=2)
    assert view.attention[0].shape[-1] == 6 and len(view.ids) == 6


# ----------------------------------------------------------------------------------------------------------
# Run zips


def _add_history(z, run):
    with zipfile.ZipFile(z, "a") as zf:
        top = zf.namelist()[0].split("/")[0]
        for f in sorted((run / history.HISTORY_DIR).iterdir()):
            zf.write(f, f"{top}/{history.HISTORY_DIR}/{f.name}")


def test_an_uploaded_run_may_hold_its_history(trained, tmp_path):
    z = checkpoint_zip(trained, tmp_path)
    with zipfile.ZipFile(z) as zf:
        assert not any(f"/{history.HISTORY_DIR}/" in n for n in zf.namelist())  # a download holds one checkpoint
    _add_history(z, trained)
    dest = import_run_zip(z, tmp_path / "imported")
    assert kept(dest) == kept(trained)


def test_an_uploaded_snapshot_must_fit_the_model(trained, tmp_path):
    z = checkpoint_zip(trained, tmp_path)
    with zipfile.ZipFile(z, "a") as zf:
        top = zf.namelist()[0].split("/")[0]
        zf.writestr(f"{top}/{history.HISTORY_DIR}/{history.snapshot_name(5)}", save({"x": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match="step-0000005.safetensors holds 3 weights.*do not belong together"):
        import_run_zip(z, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    (tmp_path / "other").mkdir()
    z = checkpoint_zip(trained, tmp_path / "other")
    with zipfile.ZipFile(z, "a") as zf:
        top = zf.namelist()[0].split("/")[0]
        zf.writestr(f"{top}/{history.HISTORY_DIR}/notes.txt", b"hi")
    with pytest.raises(CheckpointError, match="not part of a Newleaf run"):
        import_run_zip(z, tmp_path / "bad2")


def test_a_snapshot_thinned_away_while_a_view_is_made_is_passed_over(trained, monkeypatch):
    listed = history.snapshots(trained)
    gone = history.Snapshot(15, trained / history.HISTORY_DIR / history.snapshot_name(15), "history")
    monkeypatch.setattr(history, "snapshots", lambda run_dir: [gone, *listed])  # listed, then deleted by training
    assert [v.step for v in history.views(trained, "ROMEO", max_tokens=8, sample_tokens=2)] == [s.step for s in listed]
    monkeypatch.setattr(history, "snapshots", lambda run_dir: [gone])
    with pytest.raises(CheckpointError, match="changed its checkpoints while they were read"):
        list(history.views(trained, "ROMEO", max_tokens=8, sample_tokens=2))


def test_history_gives_way_to_checkpoints_on_a_nearly_full_disk(tmp_path, shakespeare_text, monkeypatch):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=20, eval_every=10)
    size = history.snapshot_bytes(Trainer(run).model.build())
    real = shutil.disk_usage
    monkeypatch.setattr(history.shutil, "disk_usage", lambda p: real(p)._replace(free=3 * size))
    result = Trainer(run).fit()
    assert result.state == "completed" and kept(run) == [] and runs.checkpoint_meta(run)["step"] == 20


def test_a_snapshot_that_cannot_be_written_is_left_out(tmp_path, shakespeare_text, monkeypatch):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=20, eval_every=10)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(history, "save_file", full)
    result = Trainer(run).fit()
    assert result.state == "completed" and runs.checkpoint_meta(run)["step"] == 20
    assert list((run / history.HISTORY_DIR).iterdir()) == []  # nothing half-written either


def test_an_uploaded_snapshot_larger_than_the_model_is_refused_before_unpacking(trained, tmp_path):
    z = checkpoint_zip(trained, tmp_path)
    size = (trained / history.HISTORY_DIR / history.snapshot_name(0)).stat().st_size
    with zipfile.ZipFile(z, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        top = zf.namelist()[0].split("/")[0]
        zf.writestr(f"{top}/{history.HISTORY_DIR}/{history.snapshot_name(5)}", b"\0" * (10 * size + 2**20))
    with pytest.raises(CheckpointError, match="more than a model.safetensors of this model can hold"):
        import_run_zip(z, tmp_path / "big")
    assert not (tmp_path / "big").exists()
