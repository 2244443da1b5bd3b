"""Train tab: training settings, Start / Stop / Resume, and live curves of the job this page follows.

Training runs in its own process (playground/jobs.py). This tab only reads the run directory: a timer
tick reads what is new in metrics.jsonl (from a byte offset kept in the session) and redraws the charts
only when something arrived; a finished run stops its timer (playground/job_view.py).

The pure pieces first, then the handlers (module-level: they take the AppContext first), then the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core import runs
from core.device import MAX_SEED
from core.errors import NewleafError
from core.prepare import prepare_run
from core.recipes import (
    DEFAULT_BUDGET_S,
    DEFAULT_CPU_RECIPE,
    RECIPES,
    SCALED,
    SCALED_SCHEDULE,
    tokenizer_words,
)
from core.train_config import TrainConfig
from playground.charts_train import loss_figure, rate_figure
from playground.context import AppContext, friendly, notify
from playground.corpus_choice import left_to_recipe, load_choice, tokenizer_for, tokenizer_spec_for
from playground.fields import NumberField, SliderField
from playground.form_values import BATCH_BOUNDS, KNOB_BOUNDS, Bounds, check_fields
from playground.i18n import say, t
from playground.job_view import TICK_SECONDS, JobView, samples_text, status_markdown
from playground.jobs import ACTIVE_STATES, owner_id
from playground.model_choices import KNOBS, check_fits, model_config
from playground.settings import Settings

RECIPE = RECIPES[DEFAULT_CPU_RECIPE]  # the tab's defaults: the best model in 3 minutes on a CPU


@dataclass
class TrainEvents:
    reattach: tuple  # (fn, inputs, outputs) to run after the page loads
    batch_size: gr.components.Component
    lr: gr.components.Component
    max_time: gr.components.Component  # the time limit the Model tab's scaled recipe is picked for


FORM = ("title", "lr", "batch_size", "max_steps", "max_time", "eval_every", "seed")  # the form, in its order


def train_bounds(s: Settings) -> dict[str, Bounds]:
    """The Train tab's numbers: the fields' ranges, and what Start accepts (a message names the field)."""
    return {
        "lr": Bounds("train.lr", 1e-6, 1.0),
        "batch_size": BATCH_BOUNDS,
        "max_steps": Bounds("train.max_steps", 1, s.max_steps, whole=True),
        "max_time": Bounds("ft.name.max_time", 0, s.max_run_seconds),
        "eval_every": Bounds("train.eval_every", 1, None, whole=True),
        "seed": Bounds("train.seed", 0, MAX_SEED, whole=True),
    }


def form_of(path, s: Settings) -> list:
    """The Train form as a run was started (FORM order), from its config.json; a time budget that is this app's
    own limit shows as 0 (no limit), as it was typed."""
    config = runs.read_config(path)
    train = config.get("train") or {}
    max_time = train.get("max_time")
    values = {**train, "title": config.get("title"), "max_time": 0 if max_time == s.max_run_seconds else max_time}
    return [values.get(k) if values.get(k) is not None else gr.skip() for k in FORM]


# -- starting a run ------------------------------------------------------------------------------------------


def create_run(
    ctx: AppContext,
    owner: str,
    corpus_choice: dict | None,
    title: str,
    model_values: dict,
    train_values: dict,
    lang: str = "en",
) -> tuple[str, str]:
    """Make a run directory owned by this session from the tabs' choices; returns (run id, note)."""
    s = ctx.settings
    train_values = dict(train_values)
    # 0 means no time limit, but never more than this app allows a run
    asked_time = float(train_values.pop("max_time") or 0)
    max_time = min(asked_time or s.max_run_seconds, s.max_run_seconds)
    steps = int(train_values.pop("max_steps"))
    if steps > s.max_steps:
        raise NewleafError(t("train.too_many_steps", lang, max=f"{s.max_steps:,}", steps=f"{steps:,}"))
    # the tuned recipe's optimizer and schedule (the scaled one's, with its weight decay, when its box set the
    # knobs); the tab's own fields override the rest
    recipe = dict(SCALED_SCHEDULE if model_values.get("preset") == SCALED else RECIPE["train"])
    recipe["warmup_steps"] = min(recipe.get("warmup_steps", 100), max(1, steps // 10))
    train_cfg = TrainConfig(
        **{
            **recipe,
            "max_steps": steps,
            "max_time": max_time,
            "threads": s.train_threads,
            "device": "auto",
            **train_values,
        }
    )
    # check the shape and memory before reading the corpus
    check_fits(model_config(model_values, corpus_choice), train_cfg.batch_size, s, lang)
    corpus, note = load_choice(corpus_choice, s, lang)
    # a tokenizer left to the recipe is picked for this time limit, as the Model tab's box shows it
    spec = tokenizer_spec_for(corpus_choice, corpus.text, asked_time, s)
    if left_to_recipe(corpus_choice):
        note += " " + t("train.auto_tokenizer", lang, tokenizer=say(tokenizer_words(spec), lang))
    tokenizer = tokenizer_for(spec, corpus.text)
    model_cfg = model_config(model_values, {"vocab_size": tokenizer.vocab_size})
    check_fits(model_cfg, train_cfg.batch_size, s, lang)
    title = (title or "").strip()[:80] or f"{corpus.name} · {model_values.get('preset') or 'custom'}"
    run_id, path = ctx.jobs.new_run_dir(owner, title)
    prepare_run(
        path,
        corpus.text,
        tokenizer,
        model_cfg,
        train_cfg,
        data_name=corpus.name,
        extra={"owner": owner_id(owner), "title": title, "preset": model_values.get("preset")},
    )
    return run_id, note


# -- following a run -----------------------------------------------------------------------------------------

# status, progress, loss chart, rate chart, samples, timer, metrics offset, records (see JobView)
VIEW = JobView(
    charts=lambda recs, lang, log, smooth: [loss_figure(recs, smooth, log, lang), rate_figure(recs, lang)],
    n_charts=2,
    texts=lambda path, lang: [samples_text(path, lang=lang)],
    n_texts=1,
    idle_texts=lambda lang: [gr.skip()],
    no_job_key="train.no_job",
    watch_process=False,
    show_refusal=False,
)


def follow(ctx: AppContext, owner, run_id, log, smooth, lang) -> list:
    """Show a run from the start of its metrics (after Start / Resume, or a page refresh)."""
    return VIEW.show(ctx.jobs, ctx.jobs.check_read(owner, run_id), run_id, lang, log, smooth)


# -- handlers ------------------------------------------------------------------------------------------------


@friendly
def on_start(
    ctx: AppContext,
    owner,
    corpus,
    changed,
    title_v,
    lr_v,
    batch_v,
    steps_v,
    max_time_v,
    eval_v,
    seed_v,
    lang,
    *model_vals,
):
    model_values = check_fields(dict(zip([*KNOBS, "preset"], model_vals)), KNOB_BOUNDS, lang)
    if len(model_vals) > len(KNOBS) + 1 and model_vals[len(KNOBS) + 1]:  # the knobs are the scaled recipe's
        model_values["preset"] = SCALED
    train_values = dict(
        lr=lr_v, batch_size=batch_v, max_steps=steps_v, max_time=max_time_v, eval_every=eval_v, seed=seed_v
    )
    train_values = check_fields(train_values, train_bounds(ctx.settings), lang)
    run_id, note = create_run(ctx, owner, corpus, title_v, model_values, train_values, lang)
    ctx.jobs.start(owner, run_id)
    notify(note)
    return (run_id, changed + 1, *follow(ctx, owner, run_id, False, 0.6, lang))


@friendly
def on_stop(ctx: AppContext, owner, run_id, lang):
    if not run_id:
        raise NewleafError(t("train.no_stop", lang))
    state = ctx.jobs.stop(owner, run_id)
    return status_markdown(state, lang)


@friendly
def on_resume(ctx: AppContext, owner, run_id, log, smooth, lang):
    if not run_id:
        raise NewleafError(t("train.no_resume", lang))
    # ownership first: another session's run gets the same answer as a run that does not exist
    ctx.jobs.check_write(owner, run_id)
    state = ctx.jobs.state(run_id)
    if state.get("state") in ACTIVE_STATES:
        raise NewleafError(t("train.already", lang))
    if state.get("state") == "completed":
        raise NewleafError(finished_message(state, lang))
    ctx.jobs.start(owner, run_id)
    return follow(ctx, owner, run_id, log, smooth, lang)


def finished_message(state: dict, lang: str = "en") -> str:
    """Why a completed run cannot resume: it used all its steps, or its time budget first."""
    step, max_steps, max_time = state.get("step") or 0, state.get("max_steps"), state.get("max_time")
    if max_time and max_steps and step < max_steps:
        return t("train.finished_time", lang, step=f"{step:,}", seconds=f"{max_time:,.0f}")
    return t("train.finished", lang)


@friendly
def on_tick(ctx: AppContext, owner, run_id, offset_value, recs, log, smooth, lang):
    """Cheap: reads only new metrics lines; sends nothing when nothing changed."""
    return VIEW.tick(ctx.jobs, owner, run_id, offset_value, recs, lang, log, smooth)


@friendly
def redraw(recs, log, smooth, lang):
    return loss_figure(recs, smooth, log, lang)


@friendly
def relabel(ctx: AppContext, owner, run_id, recs, log, smooth, lang):
    """After a language switch: the status, progress, charts and samples again, in the new language."""
    return VIEW.relabel(ctx.jobs, owner, run_id, recs, lang, log, smooth)


@friendly
def reattach(ctx: AppContext, owner, run_id, lang):
    """After a page load: follow the run this browser was following, if it still exists, and show its settings
    in the form."""
    if not owner or not run_id:
        return VIEW.skipped() + [gr.skip()] * len(FORM)
    try:
        return follow(ctx, owner, run_id, False, 0.6, lang) + form_of(ctx.jobs.check_read(owner, run_id), ctx.settings)
    except NewleafError:
        return VIEW.skipped() + [gr.skip()] * len(FORM)


# -- the tab -------------------------------------------------------------------------------------------------


def create_tab(ctx: AppContext, model_inputs: list) -> TrainEvents:
    """`model_inputs`: the Model tab's knobs, preset name and scaled box (in KNOBS order, then the preset, then the
    box), read by Start."""
    tr, s = ctx.tr, ctx.settings
    b = train_bounds(s)  # the fields show these bounds; Start checks them and names the field it refuses
    tr(gr.Markdown, value="train.explainer")
    with gr.Row():
        title = tr(gr.Textbox, label="train.title", placeholder="train.title.placeholder", scale=2)
        lr = tr(NumberField, value=RECIPE["train"]["lr"], label="train.lr", **b["lr"].limits, elem_id="train-lr")
        batch = tr(SliderField, value=RECIPE["train"]["batch_size"], label="train.batch_size", **b["batch_size"].limits)
    with gr.Row():
        steps = tr(
            NumberField,
            value=min(100_000, s.max_steps),
            precision=0,
            label="train.max_steps",
            **b["max_steps"].limits,
            elem_id="train-steps",
        )
        max_time = tr(
            NumberField,
            value=min(DEFAULT_BUDGET_S, s.max_run_seconds),  # the budget the scaled recipe picks for by default
            label="train.max_time",
            **b["max_time"].limits,
            elem_id="train-max-time",
        )
        eval_every = tr(
            NumberField,
            value=100,
            precision=0,
            label="train.eval_every",
            **b["eval_every"].limits,
            elem_id="train-eval",
        )
        seed = tr(NumberField, value=1337, precision=0, label="train.seed", **b["seed"].limits)
    with gr.Row():
        start = tr(gr.Button, value="train.start", variant="primary", elem_id="train-start")
        stop = tr(gr.Button, value="train.stop", variant="stop", elem_id="train-stop")
        resume = tr(gr.Button, value="train.resume", elem_id="train-resume")
    # not bound to the language switch: it shows the live state of a job, which a relabel would wipe; redrawn
    # after a switch instead (relabel below)
    status = gr.Markdown(t("train.no_job"), elem_id="train-status")
    progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        log_scale = tr(gr.Checkbox, value=False, label="train.log_scale")
        smoothing = tr(gr.Slider, minimum=0.0, maximum=0.99, step=0.01, value=0.6, label="train.smoothing")
    loss_plot = gr.Plot(elem_id="loss-plot", show_label=False)
    rate_plot = gr.Plot(elem_id="rate-plot", show_label=False)
    samples = tr(gr.Textbox, label="train.samples", lines=8, interactive=False, elem_id="train-samples")
    timer = gr.Timer(TICK_SECONDS, active=False)
    # what this session has read of the followed run: byte offset in metrics.jsonl and the records so far
    offset = gr.State(0)
    records = gr.State([])

    view = [status, progress, loss_plot, rate_plot, samples, timer, offset, records]

    start.click(
        ctx.handler(on_start),
        [
            ctx.owner,
            ctx.corpus,
            ctx.runs_changed,
            title,
            lr,
            batch,
            steps,
            max_time,
            eval_every,
            seed,
            ctx.lang,
            *model_inputs,
        ],
        [ctx.current_run, ctx.runs_changed, *view],
        api_name="start_training",
        concurrency_limit=4,
    )
    stop.click(ctx.handler(on_stop), [ctx.owner, ctx.current_run, ctx.lang], status, api_name="stop_training")
    resume.click(
        ctx.handler(on_resume),
        [ctx.owner, ctx.current_run, log_scale, smoothing, ctx.lang],
        view,
        api_name="resume_training",
    )
    timer.tick(
        ctx.handler(on_tick),
        [ctx.owner, ctx.current_run, offset, records, log_scale, smoothing, ctx.lang],
        view,
        concurrency_limit=None,
        api_name="poll_training",
        show_progress="hidden",
    )
    for control in (log_scale, smoothing):
        control.change(
            redraw, [records, log_scale, smoothing, ctx.lang], loss_plot, queue=False, api_visibility="private"
        )
    tr.on_switch(
        ctx.handler(relabel),
        [ctx.owner, ctx.current_run, records, log_scale, smoothing, ctx.lang],
        [status, progress, loss_plot, rate_plot, samples],
    )
    form = [title, lr, batch, steps, max_time, eval_every, seed]  # FORM order
    reattach_event = (ctx.handler(reattach), [ctx.owner, ctx.current_run, ctx.lang], [*view, *form])
    return TrainEvents(reattach=reattach_event, batch_size=batch, lr=lr, max_time=max_time)
