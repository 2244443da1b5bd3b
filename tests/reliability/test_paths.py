"""Run names and file names cannot escape the runs directory: path traversal, absolute paths and symbolic links
are refused wherever a name comes from a user (the app's endpoints are driven in test_app_reliability.py)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from core import runs
from core.errors import CheckpointError, NewleafError
from core.run_archive import checkpoint_zip
from playground.jobs import Jobs
from tests.reliability.helpers import own, trained_run

TOKEN = "token-of-a"
BAD_IDS = [
    "../x",
    "..",
    ".",
    "/etc",
    "/etc/passwd",
    "a/../../b",
    "a/b",
    "x\x00y",
    "",
    " ",
    "-rf",
    ".hidden",
    "a" * 200,
    "..\\x",
    "~root",
    "C:\\x",
    "run\n",
    "%2e%2e%2fetc",
    None,
    5,
    ["x"],
    {"id": "x"},
]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    runs_dir = root / "runs"
    runs_dir.mkdir()
    own(trained_run(runs_dir / "mine", max_steps=3, eval_every=3), TOKEN, "Mine")
    # a valid run outside the runs directory, and links to it (and to a run inside) from within
    own(trained_run(root / "outside", max_steps=3, eval_every=3), TOKEN, "Outside")
    os.symlink(root / "outside", runs_dir / "evil")
    os.symlink(runs_dir / "mine", runs_dir / "alias")
    j = Jobs(runs_dir, poll_seconds=60)
    yield j
    j.shutdown()


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_run_ids_are_refused_everywhere(jobs, bad):
    for call in (
        jobs.run_dir,
        lambda r: jobs.check_read(TOKEN, r),
        lambda r: jobs.check_write(TOKEN, r),
        lambda r: jobs.start(TOKEN, r),
        lambda r: jobs.stop(TOKEN, r),
        lambda r: jobs.delete(TOKEN, r),
        jobs.state,
    ):
        with pytest.raises(NewleafError, match="not a valid run name|does not exist"):
            call(bad)
    assert (jobs.root / "mine" / runs.CONFIG).exists()


@pytest.mark.parametrize("link", ["evil", "alias"])
def test_symbolic_links_in_the_runs_directory_are_not_followed(jobs, link):
    with pytest.raises(NewleafError, match="not a valid run name"):
        jobs.check_read(TOKEN, link)
    with pytest.raises(NewleafError, match="not a valid run name"):
        jobs.delete(TOKEN, link)
    assert link not in {r["id"] for r in jobs.list_runs(TOKEN)}
    assert (jobs.root.parent / "outside" / runs.CONFIG).exists()  # nothing outside was touched


def test_a_run_id_made_from_any_title_stays_inside(jobs):
    for title in ["../../etc/passwd", "/abs/path", "a\x00b", "..", "名字", "", "x" * 500, "C:\\Windows", "~"]:
        run_id, path = jobs.new_run_dir("owner", title)
        assert path.parent == jobs.root and jobs.run_dir(run_id) == path
        assert "/" not in run_id and ".." not in run_id


@pytest.mark.parametrize(
    "pointer",
    [
        {"dir": "../../../etc"},
        {"dir": ".."},
        {"dir": "/etc"},
        {"dir": ".tmp-x"},
        {"dir": "a/b"},
        {"dir": "a\\b"},
        {"dir": 5},
        {},
        [],
        "x",
    ],
)
def test_checkpoint_pointers_cannot_leave_the_checkpoints_folder(tmp_path, pointer):
    (tmp_path / runs.CKPT_DIR).mkdir()
    (tmp_path / runs.CKPT_DIR / "last.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="corrupt|missing"):
        runs.checkpoint_dir(tmp_path, "last")


def test_download_names_come_from_the_title_but_stay_in_their_folder(jobs, tmp_path):
    run = jobs.root / "mine"
    for title in ["../../evil", "/etc/cron.d/x", "..", "a/../../b", "名字/../x"]:
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        path = checkpoint_zip(run, out, "last", title=title)
        assert path.parent == out
        with zipfile.ZipFile(path) as zf:
            assert all(".." not in Path(n).parts and not n.startswith("/") for n in zf.namelist())
    assert not (tmp_path / "evil").exists()
