"""Following a training job from a tab (Train, Fine-tune): its status line, progress bar and samples, and the timer
tick that reads only what is new in the run's metrics.jsonl (from a byte offset the page keeps) and redraws only
when something arrived; a job that has ended stops its timer.

Training runs in its own process (playground/jobs.py); all of this only reads the run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from core import files, runs
from core.errors import NewleafError
from core.recipes import NO_STEP_LIMIT
from playground.i18n import EN, say, t
from playground.jobs import ACTIVE_STATES, Jobs

TICK_SECONDS = 1.0


# -- what one job looks like -----------------------------------------------------------------------------------


def state_name(state: str, lang: str = "en") -> str:
    key = f"train.state.{state}"
    return t(key, lang) if key in EN else str(state)


def status_markdown(state: dict, lang: str = "en") -> str:
    s = state.get("state", "unknown")
    icon = {"queued": "⏳", "running": "🏃", "completed": "✅", "stopped": "⏸️", "failed": "❌", "created": "🆕"}.get(
        s, "•"
    )
    if s == "queued" and state.get("queue_position"):
        return f"{icon} **{state_name(s, lang)}** — {t('train.queued', lang, position=state['queue_position'])}"
    # the message is written by the job: its key and fields (status.json's "text") say it in `lang`
    return f"{icon} **{state_name(s, lang)}** — {say(runs.status_text(state), lang)}"


def with_budget(path: Path, state: dict) -> dict:
    """The status with the run's step and time budget: a job waiting in the queue or still starting has not
    written them yet (its status would read "step 0 of 1"), so they come from its config.json."""
    if state.get("max_steps"):
        return state
    try:
        train = runs.read_config(path).get("train") or {}
    except NewleafError:
        return state
    return {**state, "max_steps": train.get("max_steps"), "max_time": train.get("max_time")}


def progress_html(state: dict, records: list[dict], lang: str = "en") -> str:
    """A progress bar with ETA, by steps or by the time budget, whichever is further along (see with_budget)."""
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
    of = (
        t("train.progress.step_of", lang, step=f"{step:,}", max_steps=f"{max_steps:,}")
        if max_steps < NO_STEP_LIMIT
        else t("train.progress.step", lang, step=f"{step:,}")
    )
    if max_time:
        of += " · " + t("train.progress.time", lang, elapsed=f"{elapsed:,.0f}", max_time=f"{max_time:,.0f}")
    return (
        f'<div class="nl-progress"><div class="nl-progress-bar" style="width:{frac * 100:.1f}%"></div></div>'
        f'<div class="nl-progress-label">{of} ({frac * 100:.0f}%){eta}</div>'
    )


def samples_text(run_dir, limit: int = 3, lang: str = "en") -> str:
    samples, _ = files.read_jsonl(run_dir / runs.SAMPLES)
    return "\n\n".join(
        f"{t('train.sample_header', lang, step=s['step'])}\n{s['text']}" for s in reversed(samples[-limit:])
    )


# -- following it ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    """What a tab shows of the job it follows, as the outputs of its events, in this order:

        status, progress, *charts, *texts, timer, metrics offset, records

    `charts(records, lang, *options)` draws the figures (only once there are records); `texts(run dir, lang)`
    reads what the run directory says besides its metrics (samples, results); `idle_texts(lang)` is what the
    texts show when no run is followed. `*options` are the tab's own chart settings (e.g. log scale)."""

    charts: Callable[..., list]
    n_charts: int
    texts: Callable[[Path, str], list]
    n_texts: int
    idle_texts: Callable[[str], list]
    no_job_key: str  # the status line when no run is followed
    watch_process: bool  # keep polling while the job's process lives, whatever status.json says
    show_refusal: bool  # a tick for a run this session may not read says why (else it leaves the status)

    @property
    def size(self) -> int:
        return 5 + self.n_charts + self.n_texts

    def skipped(self) -> list:
        return [gr.skip()] * self.size

    def snapshot(self, jobs: Jobs, path: Path, run_id: str, offset: int):
        """(new metrics, their end offset, status, whether to keep polling). With watch_process, liveness is
        sampled *before* the files are read: a process that had ended by then had written everything, so a poll
        that stops the timer never shows results older than the last ones."""
        alive = jobs.has_process(run_id) if self.watch_process else False
        new, new_offset = files.read_jsonl(path / runs.METRICS, offset)
        state = with_budget(path, jobs.state(run_id))
        return new, new_offset, state, alive or state.get("state") in ACTIVE_STATES

    def render(self, path: Path, state: dict, active: bool, records: list, offset: int, lang: str, *options) -> list:
        return [
            status_markdown(state, lang),
            progress_html(state, records, lang),
            *self.charts(records, lang, *options),
            *self.texts(path, lang),
            gr.Timer(active=active),
            offset,
            records,
        ]

    def show(self, jobs: Jobs, path: Path, run_id: str, lang: str, *options) -> list:
        """A run from the start of its metrics (after Start / Resume, or a page refresh)."""
        records, offset, state, active = self.snapshot(jobs, path, run_id, 0)
        return self.render(path, state, active, records, offset, lang, *options)

    def tick(self, jobs: Jobs, owner, run_id, offset: int, records: list, lang: str, *options) -> list:
        """Cheap: reads only new metrics lines; sends nothing but the status and progress when nothing changed."""
        quiet = [gr.skip()] * (1 + self.n_charts + self.n_texts) + [gr.Timer(active=False), offset, records]
        if not run_id:
            return [gr.skip()] + quiet
        try:
            path = jobs.check_read(owner, run_id)
        except NewleafError as e:
            return [f"❌ {say(e, lang)}" if self.show_refusal else gr.skip()] + quiet
        new, new_offset, state, active = self.snapshot(jobs, path, run_id, offset)
        if not new and active:
            return (
                [status_markdown(state, lang), progress_html(state, records, lang)]
                + [gr.skip()] * (self.n_charts + self.n_texts + 1)
                + [offset, records]
            )
        return self.render(path, state, active, records + new, new_offset, lang, *options)

    def relabel(self, jobs: Jobs, owner, run_id, records: list, lang: str, *options) -> list:
        """After a language switch: the status, progress, charts and texts again, in the new language (no timer,
        offset or records)."""
        try:
            path = jobs.check_read(owner, run_id) if owner and run_id else None
        except NewleafError:
            path = None
        if path is None:
            return [t(self.no_job_key, lang)] + [gr.skip()] * (1 + self.n_charts) + self.idle_texts(lang)
        state = with_budget(path, jobs.state(run_id))
        # no records yet (e.g. a page load still re-attaching): leave progress and charts to it, or to the timer
        drawn = (
            [progress_html(state, records, lang), *self.charts(records, lang, *options)]
            if records
            else [gr.skip()] * (1 + self.n_charts)
        )
        return [status_markdown(state, lang), *drawn, *self.texts(path, lang)]
