"""Tab 4 · Fine-tune: pick a base model and data, full fine-tuning or LoRA, Start / Stop; follow the job like the
Train tab does; then the base and the fine-tuned model side by side (metrics, and replies to the same prompts).

The engine does all the work (core/finetune.py, core/sft_data.py, core/evaluate.py): the page's choices become
`prepare_finetune(...)` in finetune_setup.py, the run starts through the job manager (the same
`python -m core train --out RUN --resume` process as any run), and this tab reads the run directory. The followed
run id lives in its own browser storage, so a page refresh re-attaches to it.

The pure pieces first (choices, results), then the handlers (module-level: they take the AppContext first), then
the layout (`create_tab`), which wires them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core import runs
from core.engine import SamplingParams
from core.errors import NewleafError
from core.evaluate import read_eval, split_prompt
from core.finetune import compare, is_finetune_run
from core.sft_data import read_conversations
from playground.charts_train import loss_figure
from playground.context import AppContext, friendly, notify
from playground.fields import NumberField, SliderField
from playground.finetune_setup import (
    BASE_KIND_VALUES,
    BOUNDS,
    DEFAULT_SOURCE,
    HUB_MODELS,
    SCRATCH_PRESETS,
    UPLOAD,
    base_choice,
    create_finetune_run,
    data_facts,
    finetune_config,
    load_data,
    params_markdown,
    recipe_defaults,
    render_data_report,
    settings_bounds,
    source_choices,
)
from playground.i18n import STRINGS, say, t
from playground.job_view import TICK_SECONDS, JobView, samples_text, status_markdown
from playground.jobs import owner_id
from playground.run_picker import readable_runs, refreshed_choices

STORAGE_KEY = "newleaf-finetune-run"  # browser storage of the followed run's id
MAX_COMPARE = 8  # prompts compared at once
COMPARE_TOKENS = 64
METRICS = [
    ("val_loss", 4),
    ("perplexity", 2),
    ("exact_match", 1),
    ("bleu", 1),
    ("rouge_l", 3),
    ("distinct_1", 3),
    ("distinct_2", 3),
]  # (key in eval.json, decimals shown)


def base_kind_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t(f"ft.kind.{k}", lang), k) for k in BASE_KIND_VALUES]


def method_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t("ft.method.full", lang), "full"), (t("ft.method.lora", lang), "lora")]


def too_long_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t("ft.too_long.truncate", lang), "truncate"), (t("ft.too_long.drop", lang), "drop")]


# -- following a run and its results -----------------------------------------------------------------------------


def _percent(x: float) -> str:
    return f"{x:.0%}"


def results_markdown(evals: dict, lang="en", val_is_train: bool = False) -> str:
    """The headline: the demo's exact match before -> after (else validation loss). val_is_train: the data was too
    small to hold any examples out (config["data"]["val_is_train"]), so the questions are training questions."""
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    if "exact_match" in before or "exact_match" in after:
        n = after.get("items") or before.get("items") or 0
        which = "_train" if val_is_train else ""
        if "exact_match" in after and "exact_match" in before:
            return "### " + t(
                f"ft.result.em{which}",
                lang,
                n=n,
                before=_percent(before["exact_match"]),
                after=_percent(after["exact_match"]),
            )
        if "exact_match" in before:
            return "### " + t(f"ft.result.em_base{which}", lang, n=n, before=_percent(before["exact_match"]))
    if "val_loss" in before and "val_loss" in after:
        return "### " + t("ft.result.loss", lang, before=f"{before['val_loss']:.3f}", after=f"{after['val_loss']:.3f}")
    if "val_loss" in before:
        return "### " + t("ft.result.loss_base", lang, before=f"{before['val_loss']:.3f}")
    return t("ft.results.waiting", lang)


def _rounded(d: dict, key: str, decimals: int):
    v = d.get(key)
    if not isinstance(v, (int, float)):
        return None
    return round(100 * v if key == "exact_match" else v, decimals)


def results_table(evals: dict, lang="en") -> pd.DataFrame:
    """metric | base | fine-tuned, numbers rounded for reading (exact match in percent)."""
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    columns = [t("ft.col.metric", lang), t("ft.col.base", lang), t("ft.col.finetuned", lang)]
    rows = [
        [t(f"ft.metric.{key}", lang), _rounded(before, key, dec), _rounded(after, key, dec)]
        for key, dec in METRICS
        if key in before or key in after
    ]
    return pd.DataFrame(rows, columns=columns)


def held_out_prompts(path: Path, config: dict, n: int = 5) -> str:
    """The first held-out user messages of a chat run, one per line, for the compare box."""
    if "chat_template" not in config:
        return ""
    try:
        conversations = read_conversations(path / "data" / "val.jsonl")[:n]
    except (OSError, KeyError, json.JSONDecodeError, NewleafError):
        return ""
    prompts = [split_prompt(c)[0] for c in conversations]
    return "\n".join(" ".join(p[-1]["content"].split()) for p in prompts if p)


def _val_is_train(config: dict) -> bool:
    """Whether validation reuses the training examples (too few examples to hold any out)."""
    return bool((config.get("data") or {}).get("val_is_train"))


def compare_table(rows: list[dict], lang="en") -> pd.DataFrame:
    """Prompt | base | fine-tuned; an empty reply says "(empty)", not a blank cell that looks like a missing one."""
    columns = [t("ft.col.prompt", lang), t("ft.col.base", lang), t("ft.col.finetuned", lang)]
    empty = t("ft.compare.empty", lang)
    return pd.DataFrame([[r["prompt"], r["base"] or empty, r["finetuned"] or empty] for r in rows], columns=columns)


def _unshown(cell) -> str:
    """A compare-table cell as the reply it shows ("" for the "(empty)" of any language)."""
    return "" if cell in {STRINGS[code]["ft.compare.empty"] for code in STRINGS} else str(cell)


def _results_texts(path: Path, lang: str) -> list:
    """The samples, the headline and the results table of a run, read from its directory."""
    config = runs.read_config(path)
    evals = read_eval(path)
    return [
        samples_text(path, lang=lang),
        results_markdown(evals, lang, _val_is_train(config)),
        results_table(evals, lang),
    ]


# status, progress, loss chart, samples, headline, results table, timer, metrics offset, records (see JobView)
VIEW = JobView(
    charts=lambda recs, lang: [loss_figure(recs, 0.6, False, lang)],
    n_charts=1,
    texts=_results_texts,
    n_texts=3,
    idle_texts=lambda lang: [gr.skip(), t("ft.results.waiting", lang), results_table({}, lang)],
    no_job_key="ft.no_job",
    watch_process=True,
    show_refusal=True,
)


def follow(ctx: AppContext, owner, run_id, lang) -> list:
    """Show a run from the start of its metrics (after Start, or a page refresh), and prefill the compare
    box with its held-out prompts."""
    path = ctx.jobs.check_read(owner, run_id)
    return [*VIEW.show(ctx.jobs, path, run_id, lang), held_out_prompts(path, runs.read_config(path))]


# -- handlers ----------------------------------------------------------------------------------------------------


@friendly
def show_base_kind(kind):
    return [gr.update(visible=kind == k) for k in BASE_KIND_VALUES]


@friendly
def relabel_runs(ctx: AppContext, owner, lang):
    """After a language switch: the run list's labels (their states) in the new language; the choice stays."""
    return gr.update(choices=readable_runs(ctx, owner, lang))


@friendly
def show_method(method_value, source_value):
    lr_value, steps_value = recipe_defaults(method_value, source_value)
    return (gr.update(visible=method_value == "full"), gr.update(visible=method_value == "lora"), lr_value, steps_value)


@friendly
def preview_params(
    ctx: AppContext,
    owner,
    kind,
    run_id,
    hub_value,
    folder_value,
    preset_value,
    method_value,
    freeze_value,
    rank_value,
    alpha_value,
    dropout_value,
    layers_value,
    source_value,
    lang,
):
    """Live: trainable vs total parameters for these choices. Problems show here, quietly."""
    try:
        base = base_choice(ctx, owner, kind, run_id, hub_value, folder_value, preset_value, lang)
        ft = finetune_config(
            method_value, freeze_value, rank_value, alpha_value, dropout_value, layers_value, lang=lang
        )
        return params_markdown(base, ft, lang, source_value)
    except NewleafError as e:
        return f"ℹ️ {say(e, lang)}"


@friendly
def on_check(
    ctx: AppContext,
    owner,
    base_kind,
    base_run,
    hub_model,
    folder,
    preset,
    source,
    files,
    prompt_column,
    response_column,
    too_long,
    lang=None,
    csv_column=None,
):
    lang = lang or "en"
    owner_id(owner)
    base = base_choice(ctx, owner, base_kind, base_run, hub_model, folder, preset, lang)
    data = load_data(ctx.settings, source, files, prompt_column, response_column, csv_column, lang)
    facts = data_facts(data, base, too_long or "truncate")
    return render_data_report(facts, lang), facts


@friendly
def on_start(
    ctx: AppContext,
    owner,
    changed,
    title,
    base_kind,
    base_run,
    hub_model,
    folder,
    preset,
    source,
    files,
    prompt_column,
    response_column,
    too_long,
    method,
    freeze_layers,
    lora_rank,
    lora_alpha,
    lora_dropout,
    lora_layers,
    lr,
    steps,
    max_time,
    seed,
    lang=None,
    csv_column=None,
):
    lang = lang or "en"
    run_id, note = create_finetune_run(
        ctx,
        owner,
        title,
        (base_kind, base_run, hub_model, folder, preset),
        (source, files, prompt_column, response_column, too_long),
        (method, freeze_layers, lora_rank, lora_alpha, lora_dropout, lora_layers),
        (lr, steps, max_time, seed),
        lang,
        csv_column,
    )
    ctx.jobs.start(owner, run_id)
    notify(note)
    return (run_id, (changed or 0) + 1, *follow(ctx, owner, run_id, lang))


@friendly
def on_stop(ctx: AppContext, owner, run_id, lang):
    if not run_id:
        raise NewleafError(t("ft.no_run", lang))
    return status_markdown(ctx.jobs.stop(owner, run_id), lang)


@friendly
def on_tick(ctx: AppContext, owner, run_id, offset_value, recs, lang):
    """Cheap: reads only new metrics lines; sends nothing but the status when nothing changed."""
    return VIEW.tick(ctx.jobs, owner, run_id, offset_value, recs, lang)


@friendly
def on_compare(ctx: AppContext, owner, run_id, prompts, lang):
    if not run_id:
        raise NewleafError(t("ft.compare.no_run", lang))
    path = ctx.jobs.check_read(owner, run_id)
    if not is_finetune_run(path):
        raise NewleafError(t("ft.compare.not_finetune", lang))
    if runs.checkpoint_dir(path, "last") is None:
        raise NewleafError(t("ft.compare.no_checkpoint", lang))
    lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()][:MAX_COMPARE]
    if not lines:
        raise NewleafError(t("ft.compare.none", lang))
    params = SamplingParams(max_new_tokens=min(COMPARE_TOKENS, ctx.settings.max_new_tokens), temperature=0.0)
    return compare_table(compare(path, lines, params), lang)


@friendly
def relabel(ctx: AppContext, owner, run_id, recs, lang):
    """After a language switch: the followed run's status, progress, chart, samples and results again, in the
    new language."""
    return VIEW.relabel(ctx.jobs, owner, run_id, recs, lang)


@friendly
def relabel_compared(shown, lang):
    """After a language switch: the compare table's headers in the new language, the replies kept."""
    rows = shown.values.tolist() if isinstance(shown, pd.DataFrame) else []
    rows = [r for r in rows if any(str(x).strip() for x in r)]  # an empty table comes back as one blank row
    return compare_table([dict(zip(("prompt", "base", "finetuned"), map(_unshown, r))) for r in rows], lang)


@friendly
def reattach(ctx: AppContext, owner, run_id, lang):
    """After a page load: follow the fine-tuning run this browser was following, if it still exists."""
    if not owner or not run_id:
        return VIEW.skipped() + [gr.skip()]
    try:
        return follow(ctx, owner, run_id, lang)
    except NewleafError:
        return VIEW.skipped() + [gr.skip()]


# -- the tab -----------------------------------------------------------------------------------------------------


@dataclass
class FinetuneEvents:
    reattach: tuple  # (fn, inputs, outputs) to run after the page loads


def _base_section(tr) -> SimpleNamespace:
    tr(gr.Markdown, value="ft.base.title")
    kind = tr(gr.Radio, choices=base_kind_choices, value="scratch", label="ft.base.kind", elem_id="ft-base-kind")
    preset = tr(
        gr.Dropdown, choices=list(SCRATCH_PRESETS), value="nano", label="ft.base.preset", info="ft.base.preset.info"
    )
    with gr.Row(visible=False) as run_row:
        # allow_custom_value: API callers name any run id; every handler checks access anyway
        run = tr(
            gr.Dropdown,
            choices=[],
            value=None,
            label="ft.base.run",
            scale=8,
            allow_custom_value=True,
            elem_id="ft-base-run",
        )
        refresh = gr.Button("↻", scale=1, min_width=60, size="sm", elem_classes="nl-refresh")
    hub = tr(
        gr.Dropdown,
        choices=list(HUB_MODELS),
        value=HUB_MODELS[0],
        label="ft.base.hub",
        info="ft.base.hub.info",
        allow_custom_value=True,
        visible=False,
    )
    folder = tr(gr.Textbox, label="ft.base.folder", placeholder="ft.base.folder.placeholder", visible=False)
    return SimpleNamespace(kind=kind, preset=preset, run_row=run_row, run=run, refresh=refresh, hub=hub, folder=folder)


def _data_section(tr) -> SimpleNamespace:
    tr(gr.Markdown, value="ft.data.title")
    source = tr(gr.Radio, choices=source_choices, value=DEFAULT_SOURCE, label="ft.data.source", elem_id="ft-source")
    files = tr(
        gr.File,
        label="ft.data.upload",
        file_count="multiple",
        type="filepath",
        file_types=[".jsonl", ".json", ".csv", ".txt", ".md"],
    )
    with gr.Row():
        prompt_column = tr(gr.Textbox, label="ft.data.prompt_column", info="ft.data.column.info", placeholder="prompt")
        response_column = tr(
            gr.Textbox, label="ft.data.response_column", info="ft.data.column.info", placeholder="response"
        )
        csv_column = tr(
            gr.Textbox,
            label="ft.data.csv_column",
            info="ft.data.csv_column.info",
            placeholder="text",
            elem_id="ft-csv-column",
        )
    too_long = tr(gr.Radio, choices=too_long_choices, value="truncate", label="ft.data.too_long", elem_id="ft-too-long")
    check = tr(gr.Button, value="ft.data.check", elem_id="ft-check")
    # live content: redrawn after a language switch from `checked`, not relabelled
    info = gr.Markdown(t("ft.data.none"), elem_id="ft-data-info")
    checked = gr.State(None)  # data_facts(...) of the last check, to say it again in another language
    return SimpleNamespace(
        source=source,
        files=files,
        prompt_column=prompt_column,
        response_column=response_column,
        csv_column=csv_column,
        too_long=too_long,
        check=check,
        info=info,
        checked=checked,
    )


def _method_section(tr) -> SimpleNamespace:
    tr(gr.Markdown, value="ft.method.title")
    method = tr(gr.Radio, choices=method_choices, value="full", label="ft.method", elem_id="ft-method")
    with gr.Row() as full_row:
        freeze = tr(
            NumberField, value=0, precision=0, **BOUNDS["freeze"].limits, label="ft.freeze", info="ft.freeze.info"
        )
    with gr.Row(visible=False) as lora_row:
        rank = tr(NumberField, value=8, precision=0, **BOUNDS["rank"].limits, label="ft.lora_rank")
        alpha = tr(NumberField, value=16, **BOUNDS["alpha"].limits, label="ft.lora_alpha")
        dropout = tr(SliderField, value=0.0, **BOUNDS["dropout"].limits, label="ft.lora_dropout")
        layers = tr(gr.Textbox, label="ft.lora_layers", info="ft.lora_layers.info", placeholder="0,1")
    params_info = gr.Markdown(elem_id="ft-params")
    return SimpleNamespace(
        method=method,
        full_row=full_row,
        freeze=freeze,
        lora_row=lora_row,
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        layers=layers,
        params_info=params_info,
    )


def _training_section(tr, s) -> SimpleNamespace:
    tr(gr.Markdown, value="ft.train.title")
    lr0, steps0 = recipe_defaults("full", DEFAULT_SOURCE)
    limits = settings_bounds(s)
    with gr.Row():
        lr = tr(NumberField, value=lr0, **BOUNDS["lr"].limits, label="train.lr", info="ft.lr.info", elem_id="ft-lr")
        steps = tr(NumberField, value=steps0, precision=0, **limits["steps"].limits, label="train.max_steps")
    with gr.Row():
        max_time = tr(
            NumberField, value=min(600, s.max_run_seconds), **limits["max_time"].limits, label="train.max_time"
        )
        seed = tr(NumberField, value=1337, precision=0, **BOUNDS["seed"].limits, label="train.seed")
    with gr.Row():
        start = tr(gr.Button, value="train.start", variant="primary", elem_id="ft-start")
        stop = tr(gr.Button, value="train.stop", variant="stop", elem_id="ft-stop")
    return SimpleNamespace(lr=lr, steps=steps, max_time=max_time, seed=seed, start=start, stop=stop)


def _results_section(tr) -> SimpleNamespace:
    # the status, progress, chart, samples and headline follow the run: not relabelled by the language switch,
    # but redrawn after it (see `relabel`)
    status = gr.Markdown(t("ft.no_job"), elem_id="ft-status")
    progress = gr.HTML(elem_id="ft-progress")
    loss_plot = gr.Plot(elem_id="ft-loss-plot", show_label=False)
    samples = tr(gr.Textbox, label="train.samples", lines=6, interactive=False, elem_id="ft-samples")

    tr(gr.Markdown, value="ft.results.title")
    headline = gr.Markdown(t("ft.results.waiting"), elem_id="ft-headline")
    table = tr(
        gr.Dataframe,
        label="ft.results.table",
        value=results_table({}),
        interactive=False,
        datatype=["str", "number", "number"],
        elem_id="ft-results",
    )
    tr(gr.Markdown, value="ft.compare.title")
    prompts = tr(
        gr.Textbox, label="ft.compare.prompts", placeholder="ft.compare.placeholder", lines=4, elem_id="ft-prompts"
    )
    compare_btn = tr(gr.Button, value="ft.compare.run", elem_id="ft-compare")
    compared = tr(
        gr.Dataframe,
        label="ft.compare.table",
        value=compare_table([]),
        interactive=False,
        wrap=True,
        elem_id="ft-compared",
    )
    return SimpleNamespace(
        status=status,
        progress=progress,
        loss_plot=loss_plot,
        samples=samples,
        headline=headline,
        table=table,
        prompts=prompts,
        compare_btn=compare_btn,
        compared=compared,
    )


def create_tab(ctx: AppContext, followed: gr.BrowserState | None = None) -> FinetuneEvents:
    """`followed`: the BrowserState (storage key STORAGE_KEY) holding the id of the run this page follows. Make
    it outside the tabs: a BrowserState inside a tab that is not shown is not loaded when the page loads."""
    tr, s = ctx.tr, ctx.settings
    followed = followed if followed is not None else gr.BrowserState(None, storage_key=STORAGE_KEY)
    tr(gr.Markdown, value="ft.explainer")
    title = tr(gr.Textbox, label="train.title", placeholder="ft.title.placeholder")
    with gr.Row():
        with gr.Column():
            base = _base_section(tr)
            data = _data_section(tr)
        with gr.Column():
            method = _method_section(tr)
            train = _training_section(tr, s)
    out = _results_section(tr)
    timer = gr.Timer(TICK_SECONDS, active=False)
    # what this session has read of the followed run: byte offset in metrics.jsonl and the records so far
    offset = gr.State(0)
    records = gr.State([])

    view = [out.status, out.progress, out.loss_plot, out.samples, out.headline, out.table, timer, offset, records]
    base_inputs = [base.kind, base.run, base.hub, base.folder, base.preset]
    data_inputs = [data.source, data.files, data.prompt_column, data.response_column, data.too_long]
    method_inputs = [method.method, method.freeze, method.rank, method.alpha, method.dropout, method.layers]
    train_inputs = [train.lr, train.steps, train.max_time, train.seed]

    quick = dict(queue=False, api_visibility="private")
    tr.on_switch(
        ctx.handler(relabel),
        [ctx.owner, followed, records, ctx.lang],
        [out.status, out.progress, out.loss_plot, out.samples, out.headline, out.table],
    )
    tr.on_switch(friendly(render_data_report), [data.checked, ctx.lang], data.info)
    tr.on_switch(ctx.handler(relabel_runs), [ctx.owner, ctx.lang], base.run)
    tr.on_switch(relabel_compared, [out.compared, ctx.lang], out.compared)
    base.kind.change(show_base_kind, base.kind, [base.preset, base.run_row, base.hub, base.folder], **quick)
    # triggers=None: on page load and whenever the owner token changes (a first visit gets one on load)
    refresh_runs = ctx.handler(refreshed_choices)
    gr.on(triggers=None, fn=refresh_runs, inputs=[ctx.owner], outputs=base.run, **quick)
    gr.on(
        [base.refresh.click, ctx.runs_changed.change], refresh_runs, [ctx.owner, base.run, ctx.lang], base.run, **quick
    )
    gr.on(
        [method.method.change, data.source.change],
        show_method,
        [method.method, data.source],
        [method.full_row, method.lora_row, train.lr, train.steps],
        **quick,
    )
    data.files.upload(lambda f: UPLOAD, data.files, data.source, **quick)
    # triggers=None: whenever one of the inputs changes, the language included
    gr.on(
        triggers=None,
        fn=ctx.handler(preview_params),
        inputs=[ctx.owner, *base_inputs, *method_inputs, data.source, ctx.lang],
        outputs=method.params_info,
        trigger_mode="always_last",
        **quick,
    )

    # csv_column last, after lang (default None): API calls made before it existed keep working
    data.check.click(
        ctx.handler(on_check),
        [ctx.owner, *base_inputs, *data_inputs, ctx.lang, data.csv_column],
        [data.info, data.checked],
        api_name="check_finetune_data",
        concurrency_limit=2,
    )
    train.start.click(
        ctx.handler(on_start),
        [
            ctx.owner,
            ctx.runs_changed,
            title,
            *base_inputs,
            *data_inputs,
            *method_inputs,
            *train_inputs,
            ctx.lang,
            data.csv_column,
        ],
        [followed, ctx.runs_changed, *view, out.prompts],
        api_name="start_finetune",
        concurrency_limit=4,
    )
    train.stop.click(ctx.handler(on_stop), [ctx.owner, followed, ctx.lang], out.status, api_name="stop_finetune")
    timer.tick(
        ctx.handler(on_tick),
        [ctx.owner, followed, offset, records, ctx.lang],
        view,
        concurrency_limit=None,
        api_name="poll_finetune",
        show_progress="hidden",
    )
    out.compare_btn.click(
        ctx.handler(on_compare),
        [ctx.owner, followed, out.prompts, ctx.lang],
        out.compared,
        api_name="compare_finetune",
        concurrency_limit=s.generate_concurrency,
        concurrency_id="newleaf-inference",
    )

    return FinetuneEvents(reattach=(ctx.handler(reattach), [ctx.owner, followed, ctx.lang], [*view, out.prompts]))
