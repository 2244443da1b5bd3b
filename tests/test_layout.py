"""The layout is kept by tools, not by review: the import contracts in pyproject.toml (run by `make lint` and
CI) fail on a wrong-way import, and the UI's functions stay short enough to read."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_UI_FUNCTION_LINES = 120


def _copy_of_the_code(tmp_path: Path) -> Path:
    tree = tmp_path / "repo"
    tree.mkdir()
    for name in ("core", "playground"):
        shutil.copytree(REPO / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
    )


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    tree = _copy_of_the_code(tmp_path_factory.mktemp("layout"))
    result = _lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr  # the code as it is keeps every contract
    return tree


@pytest.mark.parametrize(
    "file, line, contract",
    [
        ("core/units.py", "import playground  # noqa", "The engine never imports the UI"),
        ("core/model.py", "import gradio  # noqa", "The engine never imports the UI"),
        ("core/model.py", "from core import train  # noqa", "The engine's floors"),
        ("core/engine.py", "from core import runs  # noqa", "The engine's floors"),
        ("playground/tab_generate.py", "from playground import tab_data  # noqa", "Tabs stand alone"),
        ("playground/job_view.py", "from playground import tab_train  # noqa", "The UI's floors"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(pristine, tmp_path, file, line, contract):
    tree = tmp_path / "repo"
    shutil.copytree(pristine, tree)
    _append(tree / file, line)
    result = _lint_imports(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_no_function_in_the_ui_is_too_long_to_read():
    too_long = []
    for path in sorted((REPO / "playground").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_UI_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, too_long


def test_reliability_md_names_only_tests_that_exist():
    """Every `file::name` (or `::name`, of the file named before it on the line) in RELIABILITY.md is a test of
    that file: a promise whose test was renamed or removed would otherwise go on pointing at nothing."""
    tests: dict[str, set[str]] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                tests.setdefault(node.name, set()).add(path.name)
    named, missing = 0, []
    for line in (REPO / "RELIABILITY.md").read_text(encoding="utf-8").splitlines():
        file = None
        for ref in re.finditer(r"`(?:tests/)?(?:reliability/)?(\w+\.py)?::(\w+)`", line):
            file = ref.group(1) or file
            named += 1
            if file not in tests.get(ref.group(2), set()):
                missing.append(f"{file}::{ref.group(2)}")
    assert named > 50 and not missing, missing
