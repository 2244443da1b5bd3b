"""A run as a Hugging Face Space of its own: the app, the engine and the run as its read-only example.

    build_space(run, out)            a folder that is a ready Space (upload it as it is):
        README.md                    front matter (sdk, sdk_version, app_file, python_version, suggested hardware),
                                     then what a visitor can do there, on each kind of hardware
        requirements.txt             the app's requirements plus `spaces` (ZeroGPU's decorator)
        app.py, core/, playground/, assets/
        runs/example-NAME/           the run (config, tokenizer, logs, its best checkpoint) as a shared example:
                                     every visitor generates from it, looks inside it and fine-tunes a copy of it
    push_space(run, repo, token)     the same folder uploaded as a Gradio Space (created if needed)

The run goes in through the same zip, checks and unpacking as a run uploaded in the app (core/run_archive.py).
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from core import runs
from core.errors import PublishError
from core.files import atomic_folder, check_free_folder
from core.publish import check_repo_name, full_repo_id, push_folder, resolve_token
from core.run_archive import checkpoint_zip, file_stem, import_run_zip

REPO = Path(__file__).resolve().parents[1]  # the checkout (or Space) this code runs from
APP_FILES = ("app.py", "requirements.txt")
APP_DIRS = ("core", "playground", "assets")
SUGGESTED_HARDWARE = "zero-a10g"  # ZeroGPU: free GPU time in slices; the app keeps working on cpu-basic
PYTHON_VERSION = "3.11"
SPACE_EXTRAS = ("spaces>=0.30  # ZeroGPU: the GPU exists only inside functions decorated with spaces.GPU",)


def build_space(run_dir, out_dir, which: str = "best", repo_id: str | None = None) -> Path:
    """Write the Space folder `out_dir` (which must not exist, or be empty); it appears complete or not at all."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = runs.read_config(run_dir)
    if runs.checkpoint_dir(run_dir, "last") is None:
        raise PublishError(f"{runs.title(run_dir)} has no checkpoint yet: train it first, then make a Space of it.")
    check_free_folder(out_dir, "a Space")
    title = runs.title(run_dir)
    example_id = f"example-{file_stem(title, 40).lower()}"

    def write(tmp: Path):
        _copy_app(tmp)
        with tempfile.TemporaryDirectory(prefix="newleaf-space-") as zdir:
            archive = checkpoint_zip(run_dir, Path(zdir), which, title=title)
            (tmp / "runs").mkdir()
            import_run_zip(
                archive,
                tmp / "runs" / example_id,
                config_update={"owner": runs.SHARED_OWNER, "title": title, "created": config.get("created", 0)},
            )
        (tmp / "README.md").write_text(space_readme(title, config, repo_id), encoding="utf-8")

    atomic_folder(out_dir, write, "a Space")
    return out_dir


def push_space(
    run_dir, repo: str, token: str | None = None, private: bool = False, which: str = "best", out_dir=None
) -> str:
    """Build the Space of a run (into `out_dir` when given, else a temporary folder) and upload it as the Gradio
    Space `repo`; returns the Space's URL. The name and the token are checked before anything is built."""
    name = check_repo_name(repo)
    runs.read_config(run_dir)
    if out_dir:
        check_free_folder(Path(out_dir), "a Space")
    token = resolve_token(token)
    repo_id = full_repo_id(name, token)
    with tempfile.TemporaryDirectory(prefix="newleaf-space-") as tmp:
        folder = build_space(run_dir, Path(out_dir) if out_dir else Path(tmp) / "space", which, repo_id)
        return push_folder(
            folder,
            repo_id,
            token,
            private=private,
            repo_type="space",
            space_sdk="gradio",
            message=f"A Newleaf Space for {runs.title(run_dir)}",
        )


def _copy_app(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in APP_DIRS:
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    shutil.copy2(REPO / "app.py", dest / "app.py")
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").rstrip().splitlines()
    (dest / "requirements.txt").write_text("\n".join([*lines, *SPACE_EXTRAS]) + "\n", encoding="utf-8")


def _gradio_version() -> str:
    """The Gradio this app runs on here (read from the installed package's metadata: the engine never imports it)."""
    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError:
        return "6.0.0"


def space_readme(title: str, config: dict, repo_id: str | None = None) -> str:
    data = (config.get("data") or {}).get("name", "its training text")
    short = f"Play with {title}, a small GPT trained with Newleaf"[:60]
    front = [
        "---",
        f"title: {_yaml_str(title[:60])}",
        "emoji: 🌱",
        "colorFrom: green",
        "colorTo: blue",
        "sdk: gradio",
        f"sdk_version: {_gradio_version()}",
        "app_file: app.py",
        f'python_version: "{PYTHON_VERSION}"',
        f"suggested_hardware: {SUGGESTED_HARDWARE}",
        f"short_description: {_yaml_str(short)}",
        "tags: [newleaf, gpt2, text-generation]",
        "---",
    ]
    body = [
        "",
        f"# {title}",
        "",
        f"A small GPT trained on {data} with Newleaf, shown in its playground. The run is this Space's example "
        "(marked *(example)*): open **Generate** to write with it, **Look inside** to see how it works (attention "
        "maps, the logit lens, the next-token view), and **Fine-tune** to train a copy of it on your own data. The "
        "example itself is read-only; what you make belongs to your browser session.",
        "",
        "## What you can do on each kind of hardware",
        "",
        "| hardware | what runs where |",
        "|---|---|",
        "| ZeroGPU (`zero-a10g`, suggested) | generation and chat, the next-token view and attention maps run on a "
        "GPU lent for each request (functions decorated with `spaces.GPU`, 60 s for a generation, 15 s for a look "
        "inside); training and fine-tuning run on a GPU too, in slices: each job 45 s at a time, every slice a "
        "`spaces.GPU` call that resumes from the last checkpoint (the waits between slices do not count in its time "
        "budget), within the Space's limits (15 minutes a job) |",
        "| CPU (`cpu-basic`, free) | everything on the CPU: generation and attention at once, training and "
        "fine-tuning of small models within the Space's limits (15 minutes a job) |",
        "| a dedicated GPU (`t4-small`, ...) | everything runs on the GPU, with bf16 and fused AdamW for training |",
        "",
    ]
    if repo_id:
        body += [
            f"Duplicate it, or run it locally: `git clone https://huggingface.co/spaces/{repo_id}`, then "
            "`pip install -r requirements.txt` and `python app.py`.",
            "",
        ]
    return "\n".join(front + body)


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
