"""The run picker of the Generate and Attention tabs: a dropdown of the runs this browser session may read
that have a checkpoint to load. It fills itself when the page loads, on its refresh button, when a run is
created or deleted (ctx.runs_changed), and follows "load into Generate" from the Runs tab (ctx.selected_run).
"""

from __future__ import annotations

import gradio as gr

from core import runs
from core.errors import NewleafError
from playground.context import AppContext, friendly
from playground.i18n import t
from playground.job_view import state_name


def readable_runs(ctx: AppContext, owner: str | None, lang: str = "en") -> list[tuple[str, str]]:
    """(label, run id) of the runs this session can read that have a checkpoint; label = title · state."""
    if not owner:
        return []
    out = []
    for r in ctx.jobs.list_runs(owner):
        try:
            if runs.checkpoint_dir(ctx.jobs.run_dir(r["id"])) is None:
                continue
        except NewleafError:
            continue  # a corrupt pointer: the run cannot be loaded, so it is not offered
        shared = f" · {t('gen.shared_example', lang)}" if r.get("shared") else ""
        out.append((f"{r['title']} · {state_name(r.get('state', 'unknown'), lang)}{shared}", r["id"]))
    return out


def require_run(ctx: AppContext, owner: str | None, run_id: str | None, lang: str = "en"):
    """The directory of `run_id` if this session may read it; a clear error otherwise."""
    if not run_id:
        raise NewleafError(t("gen.no_run", lang))
    return ctx.jobs.check_read(owner, run_id)


def _selected_id(selected) -> str | None:
    if isinstance(selected, dict):
        selected = selected.get("id") or selected.get("run_id")
    return selected if isinstance(selected, str) and selected else None


def is_demo_task(ctx: AppContext, run_id: str) -> bool:
    """Whether a run was fine-tuned on a built-in demo task (the arithmetic sums): it answers sums and little
    else, so it is not what a fresh page should offer first."""
    try:
        return bool((runs.read_config(ctx.jobs.run_dir(run_id)).get("finetune") or {}).get("task"))
    except NewleafError:
        return False


def default_run(ctx: AppContext, ids: list[str]) -> str | None:
    """The run a fresh picker shows: the newest that is not a demo-task model, else the newest."""
    return next((i for i in ids if not is_demo_task(ctx, i)), ids[0] if ids else None)


@friendly
def refreshed_choices(ctx: AppContext, owner, current=None, lang: str = "en"):
    """A run dropdown's update: this session's readable runs, keeping `current` if it is still one of them."""
    choices = readable_runs(ctx, owner, lang)
    ids = [v for _, v in choices]
    value = current if current in ids else default_run(ctx, ids)
    return gr.update(choices=choices, value=value)


@friendly
def follow_selected(ctx: AppContext, owner, selected, current, lang="en"):
    """Show the run loaded in the Runs tab (ctx.selected_run), if this session may read it and it has weights."""
    run_id = _selected_id(selected)
    if run_id is None:
        return gr.update()
    ctx.jobs.check_read(owner, run_id)  # never show a run of another session
    choices = readable_runs(ctx, owner, lang)
    if run_id not in [v for _, v in choices]:
        raise NewleafError(t("gen.no_checkpoint_yet", lang, run_id=run_id))
    return gr.update(choices=choices, value=run_id)


def create_picker(ctx: AppContext, elem_id: str | None = None) -> gr.Dropdown:
    """Build the picker row (dropdown + refresh button) and wire its refresh events; returns the dropdown,
    whose value is a run id."""
    with gr.Row():
        # allow_custom_value: API callers name any run id; every handler checks access with check_read anyway
        picker = ctx.tr(
            gr.Dropdown,
            label="gen.run",
            choices=[],
            value=None,
            scale=8,
            interactive=True,
            allow_custom_value=True,
            elem_id=elem_id,
        )
        # a button's height, level with the dropdown's box (assets/newleaf.css), not stretched to the row's
        refresh = gr.Button("↻", scale=1, min_width=60, size="sm", elem_classes="nl-refresh")

    refresh_choices = ctx.handler(refreshed_choices)
    # triggers=None: on page load and whenever the owner token changes (a first visit gets one on load); not
    # on a language change (it would lose the selection): the switch relabels the list below
    gr.on(triggers=None, fn=refresh_choices, inputs=[ctx.owner], outputs=picker, queue=False, api_visibility="private")
    gr.on(
        [refresh.click, ctx.runs_changed.change],
        refresh_choices,
        inputs=[ctx.owner, picker, ctx.lang],
        outputs=picker,
        queue=False,
        api_visibility="private",
    )
    ctx.selected_run.change(  # queued: a refusal is a message beside the picker (context.friendly)
        ctx.handler(follow_selected),
        inputs=[ctx.owner, ctx.selected_run, picker, ctx.lang],
        outputs=picker,
        api_visibility="private",
    )
    ctx.tr.on_switch(refresh_choices, [ctx.owner, picker, ctx.lang], picker)
    return picker


def run_summary(ctx: AppContext, owner: str | None, run_id: str | None, lang: str = "en") -> str:
    """One line about the picked run: tokenizer, shape, checkpoint step and loss. Reads files only."""
    if not run_id:
        return ""
    path = ctx.jobs.check_read(owner, run_id)
    config = runs.read_config(path)
    m, tok = config.get("model", {}), config.get("tokenizer", {})
    parts = [
        t("gen.summary.tokenizer", lang, kind=tok.get("kind", "?"), vocab=tok.get("vocab_size", "?")),
        t(
            "gen.summary.shape",
            lang,
            layers=m.get("n_layer", "?"),
            heads=m.get("n_head", "?"),
            width=m.get("n_embd", "?"),
        ),
        t("gen.summary.context", lang, block=m.get("block_size", "?")),
    ]
    meta = None
    try:
        meta = runs.checkpoint_meta(path, "best") or runs.checkpoint_meta(path, "last")
    except NewleafError:
        pass
    if meta:
        loss = meta.get("val_loss")
        parts.append(
            t("gen.summary.step", lang, step=meta.get("step", "?"))
            + (t("gen.summary.val_loss", lang, loss=f"{loss:.3f}") if isinstance(loss, float) else "")
        )
    return " · ".join(parts)
