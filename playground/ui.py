"""Builds the app: the shared states, one tab per module, the language switch, and re-attaching a
refreshed page to its running job. The only module that imports the tabs: whatever ties one tab to another
(the Train tab's Start reading the Model tab's knobs, the Model tab's estimate following the Train tab's batch
size, a run loaded in the Runs tab opening the Generate tab, the page load re-attaching to jobs) is wired here.
The tabs also share the session-wide states in AppContext (the chosen corpus, the run loaded for Generate)."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from core.recipes import DEFAULT_BUDGET_S
from core.units import MB
from playground import (
    fonts,
    slices,
    tab_attention,
    tab_data,
    tab_finetune,
    tab_generate,
    tab_history,
    tab_lens,
    tab_model,
    tab_runs,
    tab_train,
)
from playground.context import AppContext, friendly
from playground.i18n import GRADIO_LOCALES, LANGUAGES, Translator, t
from playground.jobs import Jobs, new_owner_token
from playground.run_picker import create_picker
from playground.settings import Settings
from playground.zerogpu import on_zero_gpu

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CSS_PATH = ASSETS / "newleaf.css"

# Gradio's frontend has words of its own (an upload box's "Drop File Here - or - Click to Upload"), in the locale
# it picked from the browser. The language switch sets that locale too, with the changeLocale of Gradio's core
# module (found among the modules the page loaded), and waits until the words are loaded. Components already on
# the page drew their words when they appeared: see remount_uploads.
LOCALE_JS = """async (choice) => {
  const locale = LOCALES[choice] || "en";
  const core = performance.getEntriesByType("resource").map((e) => e.name)
    .find((name) => /\\/assets\\/core-[^/]*\\.js$/.test(name));
  try {
    const module = core ? await import(core) : null;
    if (module && module.changeLocale && document.documentElement.lang !== locale) {
      module.changeLocale(locale);
      for (let i = 0; i < 40 && document.documentElement.lang !== locale; i++) {
        await new Promise((done) => setTimeout(done, 50));
      }
    }
  } catch (e) {
    console.warn("newleaf: could not set Gradio's locale", e);
  }
  return choice;
}""".replace("LOCALES", json.dumps({label: GRADIO_LOCALES[code] for label, code in LANGUAGES.items()}))


@friendly
def switch_language(ctx: AppContext, choice):
    lang = LANGUAGES.get(choice, "en")
    return [lang, *ctx.tr.updates(lang)]


@friendly
def on_load(owner, lang):
    # a first visit gets a fresh secret owner token, kept in this browser's storage
    owner = owner or new_owner_token()
    lang = lang if lang in LANGUAGES.values() else "en"
    choice = next(k for k, v in LANGUAGES.items() if v == lang)
    return owner, choice


def look_inside(ctx: AppContext) -> None:
    """The Look inside tab: one run and one prompt, seen three ways (attention, the logit lens, and over the run's
    training), each view a tab module of its own that shares the run picker and the prompt made here."""
    tr = ctx.tr
    tr(gr.Markdown, value="inside.intro")
    picker = create_picker(ctx, elem_id="attn-run")
    prompt = tr(gr.Textbox, label="attn.prompt", placeholder="attn.prompt.placeholder", lines=2, elem_id="attn-prompt")
    with gr.Tabs():
        with tr.bind(gr.Tab(t("inside.tab.attention"), id="inside-attention"), label="inside.tab.attention"):
            tab_attention.create_tab(ctx, picker, prompt)
        with tr.bind(gr.Tab(t("inside.tab.lens"), id="inside-lens"), label="inside.tab.lens"):
            tab_lens.create_tab(ctx, picker, prompt)
        with tr.bind(gr.Tab(t("inside.tab.history"), id="inside-history"), label="inside.tab.history"):
            tab_history.create_tab(ctx, picker, prompt)


def toast_titles_css() -> str:
    """Gradio titles a message beside the page by its kind, in English ("Warning"), whatever title it is given; in
    another language the title is the page's word for it. The page's lang attribute follows Gradio's locale, which
    the language switch sets (LOCALE_JS)."""
    rules = []
    for code, locale in GRADIO_LOCALES.items():
        if code == "en":
            continue
        for level in ("info", "warning", "error"):
            title, word = (
                f'html[lang="{locale}"] .toast-title.{level}',
                json.dumps(t(f"app.toast.{level}", code), ensure_ascii=False),
            )
            rules.append(f"{title} {{ font-size: 0; }}")
            rules.append(f"{title}::before {{ content: {word}; font-size: var(--text-md); }}")
            rules.append(f"{title} .toast-count {{ font-size: var(--text-sm); }}")
    return "\n".join(rules)


def remount_uploads(demo: gr.Blocks, switched) -> None:
    """After a language switch, hide and show again every upload box (an interactive gr.File), so that it draws
    Gradio's own words in the new locale (see LOCALE_JS); the files it holds stay. Upload boxes are always
    visible on this page, so showing them again changes nothing else."""
    uploads = [b for b in demo.blocks.values() if isinstance(b, gr.File) and b.interactive is not False]
    hidden = switched.then(lambda: [gr.update(visible=False)] * len(uploads), None, uploads, queue=False)
    hidden.then(lambda: [gr.update(visible=True)] * len(uploads), None, uploads, queue=False)


def wire_estimate(ctx: AppContext, model: tab_model.ModelTab, batch_size: gr.components.Component) -> tuple:
    """Refresh the Model tab's estimate whenever a knob, the corpus, the Train tab's batch size or the language
    changes; returns (fn, inputs) for the page load."""
    update = ctx.handler(tab_model.show_estimate)
    inputs = [ctx.corpus, batch_size, ctx.lang, ctx.time_limit, *model.knobs]
    for trigger in (*model.knobs, ctx.corpus, batch_size, ctx.time_limit):
        trigger.change(update, inputs, model.estimate, api_visibility="private", queue=False)
    ctx.tr.on_switch(update, inputs, model.estimate)
    return update, inputs


def _seconds(value) -> float:
    """A time limit as typed (a number, or nothing while the field is being edited) as seconds; 0: none."""
    return float(value) if isinstance(value, (int, float)) and value > 0 else 0.0


def wire_scaled(ctx: AppContext, model: tab_model.ModelTab, train: tab_train.TrainEvents) -> tuple:
    """While the Model tab's box is ticked, its knobs and the Train tab's batch and learning rate follow the scaled
    recipe for the Train tab's time limit and the corpus's tokenizer; a batch or learning rate typed by hand
    unticks it, as a knob does. Returns (fn, inputs, outputs) for the page load."""
    # the time limit, kept for the tabs drawn before the Train tab (the Data tab's pick, the Model tab's estimate)
    train.max_time.change(_seconds, train.max_time, ctx.time_limit, queue=False, api_visibility="private")
    update = ctx.handler(tab_model.show_scaled)
    inputs = [model.scaled, train.max_time, ctx.corpus, ctx.lang]
    outputs = [*model.knobs, train.lr, train.batch_size, model.why]
    # the time limit as a person types it (.input): a run's own form, put back after a page refresh, stays as it was
    for trigger, event in ((model.scaled, "change"), (train.max_time, "input"), (ctx.corpus, "change")):
        getattr(trigger, event)(update, inputs, outputs, api_visibility="private", queue=False)
    ctx.tr.on_switch(update, inputs, outputs)
    for control in (train.lr, train.batch_size):
        control.input(lambda: False, None, model.scaled, queue=False, api_visibility="private")
    return update, inputs, outputs


def build_app(settings: Settings | None = None, jobs: Jobs | None = None) -> tuple[gr.Blocks, AppContext]:
    settings = settings or Settings.from_env()
    jobs = jobs or Jobs(
        settings.runs_dir,
        settings.max_concurrent_jobs,
        settings.train_threads,
        max_session_bytes=int(settings.max_session_mb * MB),
        downloads_dir=Path(gr.utils.get_upload_folder()) / "newleaf-downloads",  # served without a second copy
        cpu_only=on_zero_gpu(),  # were a job ever to train in a process there, it would have no GPU
        slice_seconds=slices.slice_length(settings.train_slice_seconds),  # on ZeroGPU: always
    )
    tr = Translator()
    # delete_cache: downloads copied into Gradio's cache are removed after an hour
    with gr.Blocks(title="Newleaf", delete_cache=(3600, 3600)) as demo:
        ctx = AppContext(
            settings=settings,
            jobs=jobs,
            tr=tr,
            owner=gr.BrowserState(None, storage_key="newleaf-owner"),
            lang=gr.BrowserState("en", storage_key="newleaf-lang"),
            current_run=gr.BrowserState(None, storage_key="newleaf-current-run"),
            corpus=gr.State(None),
            time_limit=gr.State(min(DEFAULT_BUDGET_S, settings.max_run_seconds)),  # the Train tab's field's default
            selected_run=gr.State(None),
            runs_changed=gr.State(0),
        )
        with gr.Row(elem_id="header"):
            with gr.Column(scale=5):
                tr(gr.Markdown, value="app.title", elem_id="title")
                tr(gr.Markdown, value="app.intro")
            language = gr.Radio(list(LANGUAGES), value="English", label="Language / 语言", scale=1, elem_id="language")
        # the Fine-tune tab's followed run; out here because a BrowserState in a hidden tab does not load
        finetune_run = gr.BrowserState(None, storage_key=tab_finetune.STORAGE_KEY)
        with gr.Tabs() as tabs:
            with tr.bind(gr.Tab(t("tab.data"), id="data"), label="tab.data"):
                tab_data.create_tab(ctx)
            with tr.bind(gr.Tab(t("tab.model"), id="model"), label="tab.model"):
                model = tab_model.create_tab(ctx)
            with tr.bind(gr.Tab(t("tab.train"), id="train"), label="tab.train"):
                train_events = tab_train.create_tab(ctx, model.inputs)
            with tr.bind(gr.Tab(t("tab.finetune"), id="finetune"), label="tab.finetune"):
                finetune_events = tab_finetune.create_tab(ctx, finetune_run)
            with tr.bind(gr.Tab(t("tab.generate"), id="generate"), label="tab.generate"):
                tab_generate.create_tab(ctx)
            with tr.bind(gr.Tab(t("tab.attention"), id="attention"), label="tab.attention"):
                look_inside(ctx)
            with tr.bind(gr.Tab(t("tab.runs"), id="runs"), label="tab.runs"):
                runs_events = tab_runs.create_tab(ctx)
        # a run loaded in the Runs tab opens Generate (a refused load leaves ctx.selected_run, and the tab, as is)
        ctx.selected_run.change(lambda: gr.Tabs(selected="generate"), None, tabs, api_visibility="private")
        estimate_fn, estimate_inputs = wire_estimate(ctx, model, train_events.batch_size)
        scaled_fn, scaled_inputs, scaled_outputs = wire_scaled(ctx, model, train_events)

        # a page load with a saved language other than English switches too (on_load sets `language`); then
        # the live boxes that the relabel leaves alone (status, statistics, estimate…) are drawn again
        switched = language.change(
            ctx.handler(switch_language),
            language,
            [ctx.lang, *tr.components],
            api_visibility="private",
            queue=False,
            js=LOCALE_JS,
        )
        for fn, inputs, outputs in tr.hooks:
            switched.then(fn, inputs, outputs, api_visibility="private", queue=False)
        remount_uploads(demo, switched)

        # the scaled recipe's pick first, then a followed run's own form over it (a refresh shows the run as started)
        demo.load(on_load, [ctx.owner, ctx.lang], [ctx.owner, language], api_visibility="private", queue=False).then(
            scaled_fn, scaled_inputs, scaled_outputs, api_visibility="private"
        ).then(*train_events.reattach, api_visibility="private").then(
            *finetune_events.reattach, api_visibility="private"
        ).then(*runs_events.refresh, api_visibility="private").then(
            estimate_fn, estimate_inputs, model.estimate, api_visibility="private"
        )
    return demo, ctx


def queue_kwargs(settings: Settings) -> dict:
    """demo.queue(...): generation requests share `generate_concurrency` slots, and past `max_queue` waiting
    requests a client is refused at once (Gradio: "Queue is full! Please try again.") instead of waiting."""
    return dict(default_concurrency_limit=settings.generate_concurrency, max_size=settings.max_queue)


SANS = ("ui-sans-serif", "system-ui", "sans-serif")


def theme() -> gr.themes.Base:
    """Gradio's Soft theme in green, with the symbols font (playground/fonts.py) first in its font lists."""
    return gr.themes.Soft(
        primary_hue="green",
        secondary_hue="emerald",
        font=(fonts.FAMILY, gr.themes.LocalFont("Montserrat", weights=(400, 700)), *SANS),
        font_mono=(fonts.FAMILY, gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "Consolas", "monospace"),
    )


def launch_kwargs(settings: Settings) -> dict:
    return dict(
        theme=theme(),
        css=fonts.font_face_css() + "\n" + toast_titles_css(),
        css_paths=[CSS_PATH] if CSS_PATH.exists() else None,
        max_file_size=f"{settings.max_upload_mb:g}mb",
    )
