"""Train tab: training settings, Start / Stop / Resume, and live curves of the job this page follows.

Training runs in its own process (playground/jobs.py). This tab only reads the run directory: a timer
tick reads what is new in metrics.jsonl (from a byte offset kept in the session) and redraws the charts
only when something arrived; a finished run stops its timer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from core import files, runs
from core.errors import NewleafError
from core.recipes import DEFAULT_CPU_RECIPE, NO_STEP_LIMIT, RECIPES
from core.prepare import prepare_run
from core.train_config import TrainConfig
from playground import tab_data, tab_model
from playground.charts_train import loss_figure, rate_figure
from playground.context import AppContext, friendly
from playground.i18n import EN, t
from playground.jobs import ACTIVE_STATES, owner_id

TICK_SECONDS = 1.0
RECIPE = RECIPES[DEFAULT_CPU_RECIPE]  # the tab's defaults: the best model in 3 minutes on a CPU


@dataclass
class TrainEvents:
    reattach: tuple  # (fn, inputs, outputs) to run after the page loads
    batch_size: gr.components.Component


# -- starting a run ------------------------------------------------------------------------------------------


def create_run(ctx: AppContext, owner: str, corpus_choice: dict | None, title: str, model_values: dict,
               train_values: dict, lang: str = "en") -> tuple[str, str]:
    """Make a run directory owned by this session from the tabs' choices; returns (run id, note)."""
    s = ctx.settings
    train_values = dict(train_values)
    # 0 means no time limit, but never more than this app allows a run
    max_time = min(float(train_values.pop("max_time") or 0) or s.max_run_seconds, s.max_run_seconds)
    steps = int(train_values.pop("max_steps"))
    if steps > s.max_steps:
        raise NewleafError(t("train.too_many_steps", lang, max=f"{s.max_steps:,}", steps=f"{steps:,}"))
    # the tuned recipe's optimizer and schedule; the tab's own fields override the rest
    recipe = dict(RECIPE["train"])
    recipe["warmup_steps"] = min(recipe.get("warmup_steps", 100), max(1, steps // 10))
    train_cfg = TrainConfig(**{**recipe, "max_steps": steps, "max_time": max_time, "threads": s.train_threads,
                               "device": "auto", **train_values})
    # check the shape and memory before reading the corpus
    tab_model.check_fits(tab_model.model_config(model_values, corpus_choice), train_cfg.batch_size, s, lang)
    corpus, note = tab_data.load_choice(corpus_choice, s, lang)
    tokenizer = tab_data.tokenizer_for(corpus_choice, corpus.text)
    model_cfg = tab_model.model_config(model_values, {"vocab_size": tokenizer.vocab_size})
    tab_model.check_fits(model_cfg, train_cfg.batch_size, s, lang)
    title = (title or "").strip()[:80] or f"{corpus.name} · {model_values.get('preset') or 'custom'}"
    run_id, path = ctx.jobs.new_run_dir(title)
    prepare_run(path, corpus.text, tokenizer, model_cfg, train_cfg, data_name=corpus.name,
                extra={"owner": owner_id(owner), "title": title, "preset": model_values.get("preset")})
    return run_id, note


# -- following a run -----------------------------------------------------------------------------------------


def state_name(state: str, lang: str = "en") -> str:
    key = f"train.state.{state}"
    return t(key, lang) if key in EN else str(state)


def status_markdown(state: dict, lang: str = "en") -> str:
    s = state.get("state", "unknown")
    icon = {"queued": "⏳", "running": "🏃", "completed": "✅", "stopped": "⏸️", "failed": "❌",
            "created": "🆕"}.get(s, "•")
    if s == "queued" and state.get("queue_position"):
        return f"{icon} **{state_name(s, lang)}** — {t('train.queued', lang, position=state['queue_position'])}"
    # the message is written by the job (English)
    return f"{icon} **{state_name(s, lang)}** — {state.get('message', '')}"


def progress_html(state: dict, records: list[dict], lang: str = "en") -> str:
    """A progress bar with ETA, by steps or by the time budget, whichever is further along."""
    step = records[-1]["step"] if records else state.get("step", 0)
    max_steps = state.get("max_steps") or 1
    elapsed = records[-1].get("elapsed_s", 0.0) if records else 0.0
    frac = step / max_steps
    max_time = state.get("max_time")
    if max_time:
        frac = max(frac, elapsed / max_time)
    frac = min(1.0, frac)
    if state.get("state") == "completed":
        frac = 1.0
    eta = ""
    if state.get("state") == "running" and 0 < frac < 1 and elapsed > 0:
        eta = " · " + t("train.progress.eta", lang, eta=f"{max(0, elapsed / frac - elapsed):,.0f}")
    of = t("train.progress.step_of", lang, step=f"{step:,}", max_steps=f"{max_steps:,}") if max_steps < NO_STEP_LIMIT \
        else t("train.progress.step", lang, step=f"{step:,}")
    if max_time:
        of += " · " + t("train.progress.time", lang, elapsed=f"{elapsed:,.0f}", max_time=f"{max_time:,.0f}")
    return (f'<div class="nl-progress"><div class="nl-progress-bar" style="width:{frac * 100:.1f}%"></div></div>'
            f'<div class="nl-progress-label">{of} ({frac * 100:.0f}%){eta}</div>')


def samples_text(run_dir, limit: int = 3, lang: str = "en") -> str:
    samples, _ = files.read_jsonl(run_dir / runs.SAMPLES)
    return "\n\n".join(f"{t('train.sample_header', lang, step=s['step'])}\n{s['text']}"
                       for s in reversed(samples[-limit:]))


def create_tab(ctx: AppContext) -> TrainEvents:
    tr, s = ctx.tr, ctx.settings
    tr(gr.Markdown, value="train.explainer")
    with gr.Row():
        title = tr(gr.Textbox, label="train.title", placeholder="train.title.placeholder", scale=2)
        lr = tr(gr.Number, value=RECIPE["train"]["lr"], label="train.lr", minimum=1e-6, maximum=1.0)
        batch = tr(gr.Slider, minimum=1, maximum=128, step=1, value=RECIPE["train"]["batch_size"],
                   label="train.batch_size")
    with gr.Row():
        steps = tr(gr.Number, value=min(100_000, s.max_steps), precision=0, minimum=1, maximum=s.max_steps, label="train.max_steps",
                   elem_id="train-steps")
        max_time = tr(gr.Number, value=min(180, s.max_run_seconds), minimum=0, maximum=s.max_run_seconds,
                      label="train.max_time")
        eval_every = tr(gr.Number, value=100, precision=0, minimum=1, label="train.eval_every", elem_id="train-eval")
        seed = tr(gr.Number, value=1337, precision=0, label="train.seed")
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

    def render(run_id, state, recs, offset_value, log, smooth, lang):
        path = ctx.jobs.run_dir(run_id)
        active = state.get("state") in ACTIVE_STATES
        return (status_markdown(state, lang), progress_html(state, recs, lang), loss_figure(recs, smooth, log, lang),
                rate_figure(recs, lang), samples_text(path, lang=lang), gr.Timer(active=active), offset_value, recs)

    def follow(owner, run_id, log, smooth, lang):
        """Show a run from the start of its metrics (after Start / Resume, or a page refresh)."""
        path = ctx.jobs.check_read(owner, run_id)
        recs, new_offset = files.read_jsonl(path / runs.METRICS)
        return render(run_id, ctx.jobs.state(run_id), recs, new_offset, log, smooth, lang)

    @friendly
    def on_start(owner, corpus, changed, title_v, lr_v, batch_v, steps_v, max_time_v, eval_v, seed_v, lang,
                 *model_vals):
        model_values = dict(zip([*tab_model.KNOBS, "preset"], model_vals))
        train_values = dict(lr=float(lr_v), batch_size=int(batch_v), max_steps=int(steps_v),
                            max_time=max_time_v, eval_every=int(eval_v), seed=int(seed_v))
        run_id, note = create_run(ctx, owner, corpus, title_v, model_values, train_values, lang)
        ctx.jobs.start(owner, run_id)
        gr.Info(note)
        return (run_id, changed + 1, *follow(owner, run_id, False, 0.6, lang))

    @friendly
    def on_stop(owner, run_id, lang):
        if not run_id:
            raise NewleafError(t("train.no_stop", lang))
        state = ctx.jobs.stop(owner, run_id)
        return status_markdown(state, lang)

    @friendly
    def on_resume(owner, run_id, log, smooth, lang):
        if not run_id:
            raise NewleafError(t("train.no_resume", lang))
        # ownership first: another session's run gets the same answer as a run that does not exist
        ctx.jobs.check_write(owner, run_id)
        state = ctx.jobs.state(run_id)
        if state.get("state") in ACTIVE_STATES:
            raise NewleafError(t("train.already", lang))
        if state.get("state") == "completed":
            raise NewleafError(t("train.finished", lang))
        ctx.jobs.start(owner, run_id)
        return follow(owner, run_id, log, smooth, lang)

    @friendly
    def on_tick(owner, run_id, offset_value, recs, log, smooth, lang):
        """Cheap: reads only new metrics lines; sends nothing when nothing changed."""
        if not run_id:
            return [gr.skip()] * 5 + [gr.Timer(active=False), offset_value, recs]
        try:
            path = ctx.jobs.check_read(owner, run_id)
        except NewleafError:
            return [gr.skip()] * 5 + [gr.Timer(active=False), offset_value, recs]
        new, new_offset = files.read_jsonl(path / runs.METRICS, offset_value)
        state = ctx.jobs.state(run_id)
        if not new and state.get("state") in ACTIVE_STATES:
            return [status_markdown(state, lang), progress_html(state, recs, lang)] + [gr.skip()] * 4 + \
                [offset_value, recs]
        return render(run_id, state, recs + new, new_offset, log, smooth, lang)

    @friendly
    def redraw(recs, log, smooth, lang):
        return loss_figure(recs, smooth, log, lang)

    model_inputs = [ctx.model_inputs[k] for k in (*tab_model.KNOBS, "preset")]
    start.click(on_start, [ctx.owner, ctx.corpus, ctx.runs_changed, title, lr, batch, steps, max_time, eval_every,
                           seed, ctx.lang, *model_inputs], [ctx.current_run, ctx.runs_changed, *view],
                api_name="start_training", concurrency_limit=4)
    stop.click(on_stop, [ctx.owner, ctx.current_run, ctx.lang], status, api_name="stop_training")
    resume.click(on_resume, [ctx.owner, ctx.current_run, log_scale, smoothing, ctx.lang], view,
                 api_name="resume_training")
    timer.tick(on_tick, [ctx.owner, ctx.current_run, offset, records, log_scale, smoothing, ctx.lang], view,
               concurrency_limit=None, api_name="poll_training", show_progress="hidden")
    for control in (log_scale, smoothing):
        control.change(redraw, [records, log_scale, smoothing, ctx.lang], loss_plot, queue=False,
                       api_visibility="private")

    @friendly
    def relabel(owner, run_id, recs, log, smooth, lang):
        """After a language switch: the status, progress, charts and samples again, in the new language."""
        try:
            path = ctx.jobs.check_read(owner, run_id) if owner and run_id else None
        except NewleafError:
            path = None
        if path is None:
            return [t("train.no_job", lang)] + [gr.skip()] * 4
        state = ctx.jobs.state(run_id)
        # no records yet (e.g. a page load still re-attaching): leave progress and charts to it, or to the timer
        drawn = [progress_html(state, recs, lang), loss_figure(recs, smooth, log, lang), rate_figure(recs, lang)] \
            if recs else [gr.skip()] * 3
        return [status_markdown(state, lang), *drawn, samples_text(path, lang=lang)]

    tr.on_switch(relabel, [ctx.owner, ctx.current_run, records, log_scale, smoothing, ctx.lang],
                 [status, progress, loss_plot, rate_plot, samples])

    @friendly
    def reattach(owner, run_id, lang):
        """After a page load: follow the run this browser was following, if it still exists."""
        if not owner or not run_id:
            return [gr.skip()] * len(view)
        try:
            return follow(owner, run_id, False, 0.6, lang)
        except NewleafError:
            return [gr.skip()] * len(view)

    return TrainEvents(reattach=(reattach, [ctx.owner, ctx.current_run, ctx.lang], view), batch_size=batch)
