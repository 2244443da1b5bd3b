"""Coverage-guided fuzzing of the upload parsers with atheris (see fuzz_atheris.py), for a bounded number of
inputs with a fixed seed. Skipped where atheris is not installed (it ships wheels for Linux and macOS)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).with_name("fuzz_atheris.py")


def test_coverage_guided_fuzzing_of_the_upload_parsers(tmp_path, offline_caches):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=3000", "-seed=1", "-max_len=4096", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    crashes = list(tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, proc.stderr[-3000:]
