"""Tab 7 · Runs: every run this browser session owns plus the shared examples, in one table; their loss
curves overlaid; and a run's checkpoint to load into Generate / Attention, download (as a zip, or exported
for Hugging Face transformers), or delete after a confirmation.

Nothing here trains or samples: it reads run directories (core/runs.py) and asks the job manager
(playground/jobs.py) who may read or change which run. Public endpoints, for gradio_client and the tests
(the owner token and the language come from browser storage in the app, and are plain parameters there):

    list_runs(owner, lang)                                  -> the table
    compare_runs(owner, run_ids, log_scale, bpc, lang)      -> the overlaid curves (a plotly figure)
    load_run(owner, run_id, lang)                           -> a message (and sets ctx.selected_run)
    download_checkpoint(owner, run_id, which, lang)         -> a .zip of the run and its checkpoint
    download_hf(owner, run_id, which, lang)                 -> a .zip of the transformers export
    ask_delete(owner, run_id, lang)                         -> shows "Really delete ...?"
    delete_run(owner, run_id, lang)                         -> deletes, only after ask_delete in the same session
    upload_run(owner, zip_file, lang)                       -> imports a run's zip (checked by core/run_archive.py)
                                                               as a new run of this session

The Share section (publishing the picked run on the Hugging Face Hub) is laid out and handled in
playground/share_section.py.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from core import files, runs
from core.errors import CheckpointError, NewleafError
from core.model import GPTConfig, param_count
from core.run_archive import ArchiveLimits, checkpoint_zip, hf_zip, import_run_zip
from core.units import format_count
from playground import share_section
from playground.charts_runs import RunCurves, loss_overlay
from playground.context import AppContext, friendly
from playground.corpus_choice import corpus_title
from playground.i18n import t
from playground.jobs import owner_id
from playground.upload_checks import check_upload_fits, check_upload_sizes

MAX_COMPARE = 10
COLUMNS = (
    "title",
    "state",
    "steps",
    "best_val",
    "best_bpc",
    "model",
    "tokenizer",
    "data",
    "created",
    "up",
    "down",
    "id",
)
STATES = ("created", "queued", "running", "stopped", "completed", "failed", "unknown")  # of status.json


# ----------------------------------------------------------------------------------------------------------
# Reading runs (no Gradio here: plain functions, tested directly)


def metrics_of(run_dir) -> list[dict]:
    records, _ = files.read_jsonl(Path(run_dir) / runs.METRICS)
    return [r for r in records if isinstance(r, dict)]


def model_summary(config: dict, lang: str = "en") -> str:
    try:
        cfg = GPTConfig.from_dict(config["model"])
    except (KeyError, TypeError, NewleafError):
        return "—"
    return t("runs.model_size", lang, layers=cfg.n_layer, width=cfg.n_embd, params=format_count(param_count(cfg)))


def _fmt(x, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "—"


def _section(config: dict, name: str) -> dict:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def run_row(summary: dict, run_dir: Path, lang: str = "en") -> dict:
    """One table row (column key -> text) of a run summary from Jobs.list_runs."""
    config = summary.get("config") or {}
    title = summary.get("title") or summary["id"]
    if summary.get("shared"):
        title = f"{title} {t('runs.example', lang)}"
    state = summary.get("state") or "unknown"
    state_text = t(f"runs.state.{state}", lang) if state in STATES else str(state)
    if state == "queued" and summary.get("queue_position"):
        state_text += f" ({summary['queue_position']})"
    max_steps = _section(config, "train").get("max_steps")
    best = runs.best_logged(run_dir)  # read incrementally: a refresh parses only what the log gained
    tok = _section(config, "tokenizer")
    vocab = tok.get("vocab_size")
    up, down = runs.feedback_counts(run_dir)
    created = summary.get("created")
    step = summary.get("step") if isinstance(summary.get("step"), int) else 0
    return {
        "title": title,
        "state": state_text,
        "steps": f"{step} / {max_steps}" if isinstance(max_steps, int) else str(step),
        "best_val": _fmt(best and best.get("val_loss")),
        "best_bpc": _fmt(best and best.get("val_bpc")),
        "model": model_summary(config, lang),
        "tokenizer": f"{tok.get('kind', '?')} ({vocab:,})" if isinstance(vocab, int) else str(tok.get("kind", "—")),
        "data": corpus_title(str(_section(config, "data").get("name", "—")), lang),  # built-ins in the page's words
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "—",
        "up": up,
        "down": down,
        "id": summary["id"],
    }


def runs_table(jobs, token: str | None, lang: str = "en") -> pd.DataFrame:
    """The runs this session may see (its own, then shared examples) as a DataFrame with translated headers."""
    rows = []
    for summary in jobs.list_runs(token):
        try:
            rows.append(run_row(summary, jobs.run_dir(summary["id"]), lang))
        except (NewleafError, OSError, AttributeError, TypeError, ValueError):
            continue  # a run deleted or broken while the table was being read: the others still show
    headers = [t(f"runs.col.{c}", lang) for c in COLUMNS]
    return pd.DataFrame([[r[c] for c in COLUMNS] for r in rows], columns=headers)


def run_choices(jobs, token: str | None, lang: str = "en") -> list[tuple[str, str]]:
    """(label, run id) for the pickers: the title, and the creation time to tell equal titles apart."""
    out = []
    for s in jobs.list_runs(token):
        when = time.strftime("%m-%d %H:%M", time.localtime(s["created"])) if s.get("created") else ""
        label = f"{s['title']} {t('runs.example', lang)}" if s.get("shared") else s["title"]
        out.append((f"{label} · {when}" if when else label, s["id"]))
    return out


def load_curves(jobs, token: str, run_ids: list[str]) -> list[RunCurves]:
    """The metrics of each run (checked readable by this session), ready for the overlay figure."""
    out = []
    for run_id in run_ids:
        path = jobs.check_read(token, run_id)
        config = runs.read_config(path)
        scale = runs.bpc_scale(config.get("data") or {}, "train")  # training loss in bits per character
        out.append(RunCurves(name=config.get("title") or run_id, records=metrics_of(path), train_bpc_scale=scale))
    return out


# ----------------------------------------------------------------------------------------------------------
# Downloads: built once per checkpoint in the session's download folder (in Gradio's cache, which serves them as
# they are), reused by the next download of the same checkpoint, and counted in the session's disk allowance


def download_zip(ctx: AppContext, owner, run_id: str, which: str, kind: str) -> str:
    path = ctx.jobs.check_read(owner, run_id)
    used = which if runs.checkpoint_dir(path, which) is not None else "last"
    ck = runs.checkpoint_dir(path, used)
    if ck is None:
        raise CheckpointError(f"{runs.title(path)} has no checkpoint yet: train it first, then download it.")
    folder = ctx.jobs.download_folder(owner, run_id, f"{ck.name}-{used}-{kind}")
    built = sorted(folder.glob("*.zip"))
    if built:
        return str(built[0])
    ctx.jobs.check_room(owner, need=sum(f.stat().st_size for f in ck.iterdir() if f.is_file()))
    make = checkpoint_zip if kind == "checkpoint" else hf_zip
    return str(make(path, folder, used))


# ----------------------------------------------------------------------------------------------------------
# Handlers (module-level: those that need the AppContext take it first)


def need_pick(run_id, lang):
    if not run_id or not isinstance(run_id, str):
        raise NewleafError(t("runs.no_pick", lang))
    return run_id


@friendly
def list_runs(ctx: AppContext, owner, lang):
    return runs_table(ctx.jobs, owner, lang)


@friendly
def update_pickers(ctx: AppContext, owner, picked, compared, lang):
    choices = run_choices(ctx.jobs, owner, lang)
    ids = {v for _, v in choices}
    compared = [r for r in (compared or []) if r in ids]
    return (
        gr.update(choices=choices, value=picked if picked in ids else None),
        gr.update(choices=choices, value=compared),
    )


@friendly
def compare_runs(ctx: AppContext, owner, run_ids, log_scale, bpc, lang):
    run_ids = [r for r in (run_ids or []) if r]
    if len(run_ids) > MAX_COMPARE:
        raise NewleafError(t("runs.too_many", lang, n=MAX_COMPARE))
    text = {
        k: t(f"runs.{key}", lang)
        for k, key in (
            ("step", "axis.step"),
            ("loss", "axis.loss"),
            ("bpc", "axis.bpc"),
            ("train", "trace.train"),
            ("val", "trace.val"),
            ("empty", "plot.empty"),
            ("no_metrics", "plot.no_metrics"),
        )
    }
    return loss_overlay(load_curves(ctx.jobs, owner, run_ids), log_scale=bool(log_scale), bpc=bool(bpc), text=text)


@friendly
def pick_row(evt: gr.SelectData):
    row = evt.row_value or []
    return row[-1] if row else gr.skip()


@friendly
def load_run(ctx: AppContext, owner, run_id, lang):
    path = ctx.jobs.check_read(owner, need_pick(run_id, lang))
    if runs.checkpoint_dir(path, "last") is None:  # Generate and Attention need weights to load
        raise NewleafError(t("runs.no_checkpoint", lang, title=runs.title(path)))
    # a new value on every load (ctx.selected_run.change follows it, even for the same run twice)
    return {"id": run_id, "load": uuid.uuid4().hex[:8]}, t("runs.loaded", lang, title=runs.title(path))


@friendly
def download_checkpoint(ctx: AppContext, owner, run_id, which, lang):
    return download_zip(ctx, owner, need_pick(run_id, lang), which or "best", "checkpoint")


@friendly
def download_hf(ctx: AppContext, owner, run_id, which, lang):
    return download_zip(ctx, owner, need_pick(run_id, lang), which or "best", "huggingface")


@friendly
def ask_delete(ctx: AppContext, owner, run_id, lang):
    path = ctx.jobs.check_write(owner, need_pick(run_id, lang))  # says why, before asking to confirm
    return gr.update(visible=True), t("runs.confirm_delete", lang, title=runs.title(path)), run_id


@friendly
def delete_run(ctx: AppContext, owner, run_id, asked, changed, lang):
    run_id = need_pick(run_id, lang)
    if asked != run_id:
        raise NewleafError(t("runs.confirm_first", lang))
    title = runs.title(ctx.jobs.run_dir(run_id))
    ctx.jobs.delete(owner, run_id)  # refuses another session's run, a shared example, and a running job
    return t("runs.deleted", lang, title=title), gr.update(visible=False), None, (changed or 0) + 1


@friendly
def upload_run(ctx: AppContext, owner, file, changed, lang):
    if not file:
        raise NewleafError(t("runs.upload_none", lang))
    path, s = Path(file), ctx.settings
    check_upload_sizes([path], s, lang, too_big="runs.upload_too_big")  # again: a client may bypass the browser
    owner_hash = owner_id(owner)
    # the run's name is ours; the uploaded file's name only lends a slug to it
    run_id, dest = ctx.jobs.new_run_dir(owner, path.stem, need=path.stat().st_size)
    limits = ArchiveLimits(max_total_bytes=int(s.max_model_mb * 1024 * 1024))
    import_run_zip(
        path,
        dest,
        limits,
        source_name=path.name,
        config_update={"owner": owner_hash, "created": time.time()},
        check_model=lambda cfg: check_upload_fits(cfg, s, lang),
    )
    return t("runs.uploaded", lang, title=runs.title(dest)), (changed or 0) + 1


@friendly
def hide_confirm():
    return gr.update(visible=False), None


# ----------------------------------------------------------------------------------------------------------
# The tab


@dataclass
class RunsEvents:
    """What ui.py may chain on: `loaded` is the load event (a refused load also completes it, leaving its outputs
    as they were: follow ctx.selected_run.change to act on a load that happened); `refresh` is (fn, inputs,
    outputs) to refresh the table from any event."""

    loaded: object
    refresh: tuple


def create_tab(ctx: AppContext) -> RunsEvents:
    tr = ctx.tr
    pending = gr.State(None)  # the run id a "Really delete?" is showing for, in this session

    tr(gr.Markdown, value="runs.explainer")
    table = tr(
        gr.Dataframe,
        label="runs.table",
        value=pd.DataFrame(columns=[t(f"runs.col.{c}") for c in COLUMNS]),
        interactive=False,
        wrap=True,
        max_height=420,
    )
    refresh = tr(gr.Button, value="runs.refresh", size="sm")

    with gr.Accordion(t("runs.compare"), open=True) as compare_box:
        tr.bind(compare_box, label="runs.compare")
        with gr.Row():
            compare = tr(
                gr.Dropdown,
                label="runs.compare_pick",
                choices=[],
                value=[],
                multiselect=True,
                allow_custom_value=True,
                max_choices=MAX_COMPARE,
                scale=4,
            )
            with gr.Column(scale=1, min_width=180):
                log_scale = tr(gr.Checkbox, label="runs.log_scale", value=False)
                bpc = tr(gr.Checkbox, label="runs.bpc", value=False)
        plot = tr(gr.Plot, label="runs.plot", value=loss_overlay([]))

    with gr.Accordion(t("runs.actions"), open=True) as actions_box:
        tr.bind(actions_box, label="runs.actions")
        with gr.Row():
            picker = tr(
                gr.Dropdown,
                label="runs.pick",
                info="runs.pick_info",
                choices=[],
                value=None,
                allow_custom_value=True,
                scale=3,
            )
            which = tr(
                gr.Radio, label="runs.which", info="runs.which_info", choices=["best", "last"], value="best", scale=2
            )
        with gr.Row():
            load = tr(gr.Button, value="runs.load", variant="primary")
            dl_ckpt = tr(gr.Button, value="runs.download_ckpt")
            dl_hf = tr(gr.Button, value="runs.download_hf")
            delete = tr(gr.Button, value="runs.delete", variant="stop")
        with gr.Group(visible=False) as confirm_box:
            confirm_text = gr.Markdown()
            with gr.Row():
                confirm = tr(gr.Button, value="runs.confirm_yes", variant="stop")
                cancel = tr(gr.Button, value="runs.cancel")
        message = gr.Markdown()
        download = tr(gr.File, label="runs.file", interactive=False)
        upload = tr(gr.File, label="runs.upload", file_types=[".zip"], type="filepath", file_count="single")

    share_section.create_section(ctx, picker, which)

    triggers = [refresh.click, ctx.runs_changed.change, ctx.owner.change]
    tab = gr.context.Context.block
    if isinstance(tab, gr.Tab):  # opening the tab shows the runs as they are now
        triggers.append(tab.select)
    refresh_args = (ctx.handler(list_runs), [ctx.owner, ctx.lang], [table])
    gr.on(triggers, *refresh_args, api_name="list_runs").then(
        ctx.handler(update_pickers), [ctx.owner, picker, compare, ctx.lang], [picker, compare], api_visibility="private"
    )

    gr.on(
        [compare.change, log_scale.change, bpc.change],
        ctx.handler(compare_runs),
        [ctx.owner, compare, log_scale, bpc, ctx.lang],
        [plot],
        api_name="compare_runs",
        trigger_mode="always_last",
    )

    table.select(pick_row, None, [picker], api_visibility="private", queue=False)
    picker.change(hide_confirm, None, [confirm_box, pending], api_visibility="private", queue=False)

    loaded = load.click(
        ctx.handler(load_run), [ctx.owner, picker, ctx.lang], [ctx.selected_run, message], api_name="load_run"
    )
    dl_ckpt.click(
        ctx.handler(download_checkpoint),
        [ctx.owner, picker, which, ctx.lang],
        [download],
        api_name="download_checkpoint",
    )
    dl_hf.click(ctx.handler(download_hf), [ctx.owner, picker, which, ctx.lang], [download], api_name="download_hf")

    delete.click(
        ctx.handler(ask_delete),
        [ctx.owner, picker, ctx.lang],
        [confirm_box, confirm_text, pending],
        api_name="ask_delete",
    )
    confirm.click(
        ctx.handler(delete_run),
        [ctx.owner, picker, pending, ctx.runs_changed, ctx.lang],
        [message, confirm_box, pending, ctx.runs_changed],
        api_name="delete_run",
    )
    cancel.click(hide_confirm, None, [confirm_box, pending], api_visibility="private", queue=False)
    upload.upload(
        ctx.handler(upload_run),
        [ctx.owner, upload, ctx.runs_changed, ctx.lang],
        [message, ctx.runs_changed],
        api_name="upload_run",
    )

    return RunsEvents(loaded=loaded, refresh=refresh_args)
