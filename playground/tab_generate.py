"""Tab 5 · Generate: complete a text or chat with a trained run, with every sampling knob; see how likely each
generated token was and what else the model considered; watch the next-token distribution react to
temperature / top-k / top-p / min-p without running the model again; rate samples with thumbs up / down.

The pure helpers first, then the handlers (module-level: those that need the AppContext take it first), then the
layout (`create_tab`), which wires them.
"""

import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import torch

from core import files, runs
from core.chat import normalize_history, stream_reply, template_for
from core.engine import SamplingParams, next_token_distribution, prompt_logits, stream_completions
from core.errors import ConfigError, NewleafError
from playground import charts_inspect as charts
from playground.context import AppContext, friendly, notify
from playground.fields import NumberField, SliderField
from playground.form_values import check_prompt_length, parse_number, parse_stop
from playground.i18n import t
from playground.model_cache import get_model
from playground.model_choices import MAX_SAMPLES  # sample slots on the page (the engine allows more)
from playground.run_picker import create_picker, require_run, run_summary
from playground.zerogpu import GENERATE_SECONDS, LOOK_SECONDS, gpu, on_device

NEXT_TOP = 15  # bars in the next-token chart
STREAM_EVERY = 0.08  # seconds between streamed updates

# Presets set only these knobs; the penalties, seed and stop strings stay as the user left them.
PRESETS = {
    "precise": dict(temperature=0.3, top_k=20, top_p=0.9, min_p=0.0, repetition_penalty=1.1),
    "balanced": dict(temperature=0.8, top_k=50, top_p=0.95, min_p=0.05, repetition_penalty=1.0),
    "creative": dict(temperature=1.2, top_k=0, top_p=1.0, min_p=0.02, repetition_penalty=1.0),
}
PRESET_KNOBS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")

# Token probability bins of the coloured token view (labels are language-neutral).
PROB_BINS = [
    (0.5, "≥ 50%", "#7bc96f"),
    (0.2, "20–50%", "#c6e48b"),
    (0.05, "5–20%", "#f6d365"),
    (0.0, "< 5%", "#f4a582"),
]
COLOR_MAP = {label: color for _, label, color in PROB_BINS}

_feedback_lock = threading.Lock()


# ----------------------------------------------------------------------------------------------------------
# Pure helpers: settings, feedback, token records, next-token bars


def make_params(
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    min_p,
    repetition_penalty,
    presence_penalty,
    frequency_penalty,
    seed,
    stop,
    num_samples=1,
    limit: int | None = None,
    lang: str = "en",
) -> SamplingParams:
    """SamplingParams from the UI's values: top-k 0, top-p 1 and min-p 0 mean off; a blank seed or -1 means
    random. Raises ConfigError with a clear message for a bad value (in `lang`; the engine's own checks, in
    SamplingParams.validate, speak English)."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        seed = None
    else:
        seed = parse_number(seed, "gen.seed", int, lang)
        if seed == -1:
            seed = None
        elif not 0 <= seed < 2**63:
            raise ConfigError(t("gen.err.seed", lang, seed=seed))
    top_k = parse_number(top_k, "gen.top_k", int, lang)
    top_p = parse_number(top_p, "gen.top_p", float, lang)
    min_p = parse_number(min_p, "gen.min_p", float, lang)
    params = SamplingParams(
        max_new_tokens=parse_number(max_new_tokens, "gen.max_new_tokens", int, lang),
        temperature=parse_number(temperature, "gen.temperature", float, lang),
        top_k=top_k if top_k > 0 else None,
        top_p=top_p if top_p < 1 else None,
        min_p=min_p if min_p > 0 else None,
        repetition_penalty=parse_number(repetition_penalty, "gen.repetition_penalty", float, lang),
        presence_penalty=parse_number(presence_penalty, "gen.presence_penalty", float, lang),
        frequency_penalty=parse_number(frequency_penalty, "gen.frequency_penalty", float, lang),
        seed=seed,
        stop=parse_stop(stop, lang),
        num_samples=parse_number(num_samples, "gen.num_samples", int, lang),
    )
    if top_k < 0:
        raise ConfigError(t("gen.err.top_k", lang, top_k=top_k))
    params.validate(limit)
    return params


def save_feedback(run_dir, prompt: str, text: str, rating: int, params: dict, lang: str = "en") -> None:
    """Append one rating to the run's feedback.jsonl (the only file the app writes into a run it reads)."""
    if rating not in (1, -1):
        raise NewleafError(t("gen.err.rating", lang))
    record = {"time": time.time(), "prompt": prompt, "text": text, "rating": rating, "params": params}
    with _feedback_lock:
        files.append_jsonl(Path(run_dir) / runs.FEEDBACK, record)


def prob_label(p: float) -> str:
    return next(label for low, label, _ in PROB_BINS if p >= low)


def token_view(sample: dict | None) -> list[tuple[str, str]] | None:
    """(visible token text, probability bin) per generated token, for gr.HighlightedText."""
    if not sample:
        return None
    return [(charts.visible(tok, spaces=False), prob_label(p)) for tok, p in zip(sample["tokens"], sample["probs"])]


def alternatives_plot(state: dict | None, sample_index: int, token_index: int, lang: str = "en"):
    """The alternatives chart of one generated token, from the saved per-token data (no model)."""
    if not state or not 0 <= sample_index < len(state["samples"]):
        return None
    sample = state["samples"][sample_index]
    if not 0 <= token_index < len(sample["tokens"]):
        return None
    tok, p = sample["tokens"][token_index], sample["probs"][token_index]
    title = t("gen.alt_title", lang, n=token_index + 1, token=charts.visible(tok), p=f"{p:.1%}")
    return charts.alternatives_figure([tuple(a) for a in sample["alts"][token_index]], chosen=tok, title=title)


def next_token_data(model, tokenizer, prompt: str, lang: str = "en") -> dict:
    """Run the model once on the prompt; keep the raw logits and the labels of the most likely tokens."""
    if not prompt:
        raise NewleafError(t("gen.no_prompt", lang))
    ids = tokenizer.encode(prompt)
    if not ids:
        raise NewleafError(t("gen.prompt_empty", lang))
    logits = prompt_logits(model, ids)  # (V,)
    # temperature and the cut-offs never reorder tokens, so the top bars are always among these
    top = torch.topk(logits, min(NEXT_TOP, logits.numel())).indices.tolist()
    return {
        "logits": logits.tolist(),
        "ids": top,
        "labels": [tokenizer.decode([i]) for i in top],
        "prompt_tokens": len(ids),
        "block_size": model.config.block_size,
    }


def next_token_bars(data: dict | None, temperature, top_k, top_p, min_p, lang: str = "en"):
    """(figure, summary) of the next-token distribution after temperature / top-k / top-p / min-p, computed
    from the saved logits only: cheap enough for every slider move."""
    if not data:
        return None, ""
    try:
        temperature = max(0.0, float(temperature))
        top_k = int(top_k) if top_k and int(top_k) > 0 else None
        top_p = float(top_p) if top_p is not None and 0 < float(top_p) < 1 else None
        min_p = float(min_p) if min_p and float(min_p) > 0 else None
    except (TypeError, ValueError):
        raise ConfigError(t("gen.err.shaping", lang)) from None
    logits = torch.tensor(data["logits"], dtype=torch.float32)
    raw = torch.softmax(logits, dim=-1)
    probs = next_token_distribution(logits, temperature, top_k, top_p, min_p)
    ids = data["ids"]
    fig = charts.next_token_figure(
        data["labels"],
        raw[ids].tolist(),
        probs[ids].tolist(),
        raw_name=t("gen.next.raw", lang),
        name=t("gen.next.after", lang),
    )
    top = charts.visible(data["labels"][0])
    if temperature == 0:
        summary = t("gen.next.greedy", lang, top=top)
    else:
        summary = t(
            "gen.next.summary",
            lang,
            tokens=data["prompt_tokens"],
            kept=int((probs > 0).sum()),
            vocab=logits.numel(),
            top=top,
            p=f"{float(probs[ids[0]]):.1%}",
        )
    return fig, summary


def _slot_texts(texts: list[str]) -> list[str]:
    return [texts[i] if i < len(texts) else "" for i in range(MAX_SAMPLES)]


# ----------------------------------------------------------------------------------------------------------
# The model's work: on the GPU where there is one (a ZeroGPU Space lends one for each call; playground/zerogpu.py)


@gpu(GENERATE_SECONDS)
def completions_on_gpu(model, tokenizer, prompt: str, params: SamplingParams):
    yield from stream_completions(on_device(model), tokenizer, prompt, params)


@gpu(GENERATE_SECONDS)
def reply_on_gpu(model, tokenizer, config: dict, messages: list[dict], params: SamplingParams):
    yield from stream_reply(on_device(model), tokenizer, config, messages, params)


@gpu(LOOK_SECONDS)
def next_token_on_gpu(model, tokenizer, prompt: str, lang: str = "en") -> dict:
    return next_token_data(on_device(model), tokenizer, prompt, lang)


# ----------------------------------------------------------------------------------------------------------
# Handlers


def load(ctx: AppContext, owner, run_id, lang="en"):
    path = require_run(ctx, owner, run_id, lang)
    model, tokenizer = get_model(path)
    return path, model, tokenizer


@friendly
def show_run(ctx: AppContext, owner, run_id, lang="en"):
    """A line about the picked run; the next-token chart of another run's logits is cleared."""
    return run_summary(ctx, owner, run_id, lang), None, None, ""


@friendly
def describe_run(ctx: AppContext, owner, run_id, lang="en"):
    """After a language switch: the line about the picked run again, in the new language."""
    return run_summary(ctx, owner, run_id, lang)


def apply_preset(name):
    return [PRESETS[name][k] for k in PRESET_KNOBS]


@friendly
def show_slots(n):
    n = int(n or 1)
    return [gr.update(visible=i < n) for i in range(MAX_SAMPLES)]


@friendly
def run_generate(
    ctx: AppContext,
    owner,
    run_id,
    prompt,
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    min_p,
    repetition_penalty,
    presence_penalty,
    frequency_penalty,
    seed,
    stop,
    num_samples,
    lang=None,
):
    """Stream num_samples completions of the prompt; yields the sample texts (in slot order), the seed
    used, the coloured tokens of sample 1, the sample chooser, the alternatives chart and the state.
    lang last, default None (English): optional for API callers, whose calls made without it keep working."""
    lang = lang or "en"
    params = make_params(
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        seed,
        stop,
        num_samples,
        ctx.settings.max_new_tokens,
        lang,
    )
    prompt = prompt or ""
    check_prompt_length(prompt, ctx.settings, lang)
    path, model, tokenizer = load(ctx, owner, run_id, lang)
    tokenizer.encode(prompt)  # an unknown character fails here, before anything is shown
    n = params.num_samples
    if params.seed is None:  # chosen here, not where it runs (a ZeroGPU worker), so the page can show it
        params.seed = int.from_bytes(os.urandom(4), "little")
    completions, last = [], 0.0
    for completions in completions_on_gpu(model, tokenizer, prompt, params):
        now = time.monotonic()
        if now - last >= STREAM_EVERY:
            last = now
            yield [*_slot_texts([c.text for c in completions]), params.seed, None, gr.update(visible=False), None, None]
    decode = tokenizer.decode
    samples = [
        {
            "text": c.text,
            "tokens": [decode([j]) for j in c.token_ids],
            "probs": c.token_probs,
            "alts": [[(decode([a]), p) for a, p in alts] for alts in c.alternatives],
        }
        for c in completions
    ]
    texts = [c.text for c in completions]
    state = {"run_id": run_id, "prompt": prompt, "params": asdict(params), "samples": samples}
    choices = [str(i + 1) for i in range(n)]
    yield [
        *_slot_texts(texts),
        params.seed,
        token_view(samples[0]),
        gr.update(choices=choices, value="1", visible=n > 1),
        None,
        state,
    ]


@friendly
def pick_sample(state, which):
    if not state:
        return None, None
    i = int(which or 1) - 1
    return token_view(state["samples"][i] if 0 <= i < len(state["samples"]) else None), None


@friendly
def select_token(state, which, lang, evt: gr.SelectData):
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return alternatives_plot(state, int(which or 1) - 1, int(index), lang)


@friendly
def rate_sample(ctx: AppContext, slot: int, rating: int, owner, state, lang):
    """A thumb (rating 1 or -1) for the sample in `slot` of the last completion."""
    if not state or slot >= len(state["samples"]):
        raise NewleafError(t("gen.rate_first", lang))
    path = ctx.jobs.check_read(owner, state["run_id"])
    save_feedback(path, state["prompt"], state["samples"][slot]["text"], rating, state["params"], lang)
    notify(t("gen.feedback.saved", lang, rating="👍" if rating > 0 else "👎"))


def _next_token(ctx: AppContext, owner, run_id, prompt, temperature, top_k, top_p, min_p, lang):
    check_prompt_length(prompt or "", ctx.settings, lang)
    path, model, tokenizer = load(ctx, owner, run_id, lang)
    data = next_token_on_gpu(model, tokenizer, prompt or "", lang)
    fig, summary = next_token_bars(data, temperature, top_k, top_p, min_p, lang)
    return data, fig, summary


@friendly
def run_next_token(ctx: AppContext, owner, run_id, prompt, temperature, top_k, top_p, min_p, lang=None):
    """Run the model once on the prompt; return the next-token chart and a one-line summary."""
    return _next_token(ctx, owner, run_id, prompt, temperature, top_k, top_p, min_p, lang or "en")


@friendly
def follow_prompt(ctx: AppContext, owner, run_id, prompt, temperature, top_k, top_p, min_p, lang="en"):
    """The next-token bars again, after an edit of the prompt or another run: no run or no prompt clears them,
    and a prompt the model cannot read says why in the summary line rather than interrupting the typing."""
    if not run_id or not prompt:
        return None, None, ""
    try:
        return _next_token(ctx, owner, run_id, prompt, temperature, top_k, top_p, min_p, lang)
    except NewleafError as e:
        return None, None, f"⚠️ {e}"


@friendly
def redraw_next(data, temperature, top_k, top_p, min_p, lang):
    if not data:
        return gr.skip(), gr.skip()
    return next_token_bars(data, temperature, top_k, top_p, min_p, lang)


@friendly
def run_chat(
    ctx: AppContext,
    owner,
    run_id,
    message,
    history,
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    min_p,
    repetition_penalty,
    presence_penalty,
    frequency_penalty,
    seed,
    stop,
    lang=None,
):
    """Stream the assistant's reply to `message`; yields the conversation and an emptied message box.
    lang last, default None (English): optional for API callers, whose calls made without it keep working."""
    lang = lang or "en"
    if not message or not message.strip():
        raise NewleafError(t("gen.chat.empty", lang))
    params = make_params(
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        seed,
        stop,
        1,
        ctx.settings.max_new_tokens,
        lang,
    )
    messages = normalize_history(history) + [{"role": "user", "content": message}]
    check_prompt_length("".join(str(m.get("content", "")) for m in messages), ctx.settings, lang)
    path, model, tokenizer = load(ctx, owner, run_id, lang)
    config = runs.read_config(path)
    template_for(config).encode(tokenizer, messages)  # unknown characters fail before anything shows
    reply, last = "", 0.0
    yield messages + [{"role": "assistant", "content": ""}], ""
    for piece in reply_on_gpu(model, tokenizer, config, messages, params):
        reply += piece
        now = time.monotonic()
        if now - last >= STREAM_EVERY:
            last = now
            yield messages + [{"role": "assistant", "content": reply}], ""
    yield messages + [{"role": "assistant", "content": reply}], ""


@friendly
def rate_chat(ctx: AppContext, owner, run_id, history, lang, data: gr.LikeData):
    if data.liked not in (True, False):
        return  # a thumb taken back: nothing to record
    index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
    messages = normalize_history(history)
    if not isinstance(index, int) or not 0 <= index < len(messages):
        return
    path = require_run(ctx, owner, run_id, lang)
    prompt = next((m["content"] for m in reversed(messages[:index]) if m["role"] == "user"), "")
    save_feedback(path, prompt, messages[index]["content"], 1 if data.liked else -1, {"mode": "chat"}, lang)
    notify(t("gen.feedback.saved", lang, rating="👍" if data.liked else "👎"))


# ----------------------------------------------------------------------------------------------------------
# Layout


# The sampling sliders, in the order they are laid out: (name, minimum, maximum, default, step, help key)
# fmt: off
SLIDERS = (
    ("temperature",        0,    2,   0.8,  0.05, "gen.temperature.info"),
    ("top_k",              0,    200, 50,   1,    "gen.top_k.info"),
    ("top_p",              0.01, 1,   0.95, 0.01, "gen.top_p.info"),
    ("min_p",              0,    1,   0.05, 0.01, "gen.min_p.info"),
    ("repetition_penalty", 0.5,  2,   1.0,  0.05, "gen.repetition_penalty.info"),
    ("presence_penalty",   -2,   2,   0,    0.1,  "gen.penalty.info"),
    ("frequency_penalty",  -2,   2,   0,    0.1,  "gen.penalty.info"),
)
# fmt: on


def _slider(tr, name, minimum, maximum, value, step, info):
    return tr(SliderField, minimum=minimum, maximum=maximum, value=value, step=step, label=f"gen.{name}", info=info)


def _sampling_knobs(ctx: AppContext) -> SimpleNamespace:
    """The knobs that shape the next token on the left, the next-token bars they move on the right (side by side,
    so the bars can be watched while a slider is dragged), and the other settings below."""
    tr = ctx.tr
    with gr.Row(elem_id="gen-shaping"):
        with gr.Column(scale=2, min_width=320):
            with gr.Row(equal_height=True):
                tr(gr.Markdown, value="gen.presets", min_width=80)
                preset_buttons = {
                    name: tr(gr.Button, value=f"gen.preset.{name}", size="sm", min_width=80) for name in PRESETS
                }
            k = {spec[0]: _slider(tr, *spec) for spec in SLIDERS[:4]}
        with gr.Column(scale=3, min_width=360):
            tr(gr.Markdown, value="gen.next.explainer")
            next_plot = tr(gr.Plot, label="gen.next.plot", elem_id="gen-next-plot")
            with gr.Row(equal_height=True):
                next_summary = gr.Markdown(elem_id="gen-next-summary")
                next_btn = tr(gr.Button, value="gen.next.compute", size="sm", scale=0, min_width=160)
    with tr(gr.Accordion, label="gen.sampling", open=False):  # closed: the prompt stays on the same screen
        with gr.Row():
            cap = max(1, ctx.settings.max_new_tokens)
            max_new_tokens = tr(SliderField, minimum=1, maximum=cap, value=min(200, cap), step=1,
                                label="gen.max_new_tokens")  # fmt: skip
            k.update({spec[0]: _slider(tr, *spec) for spec in SLIDERS[4:]})
            seed = tr(NumberField, value=-1, precision=0, label="gen.seed", info="gen.seed.info")
            stop = tr(gr.Textbox, label="gen.stop", info="gen.stop.info", placeholder="gen.stop.placeholder", lines=1,
                      max_lines=4)  # fmt: skip
    return SimpleNamespace(
        preset_buttons=preset_buttons,
        all=[max_new_tokens, *k.values(), seed, stop],  # in make_params' order
        preset=[k[name] for name in PRESET_KNOBS],  # what a preset sets
        shaping=[k["temperature"], k["top_k"], k["top_p"], k["min_p"]],  # the knobs the next-token chart follows
        next_btn=next_btn,
        next_summary=next_summary,
        next_plot=next_plot,
        next_state=gr.State(None),  # the raw logits of the last prediction, reused by every slider move
    )


def _completion_tab(tr) -> SimpleNamespace:
    prompt = tr(gr.Textbox, label="gen.prompt", placeholder="gen.prompt.placeholder", lines=3, elem_id="gen-prompt")
    with gr.Row():
        num_samples = tr(SliderField, minimum=1, maximum=MAX_SAMPLES, value=1, step=1, label="gen.num_samples", scale=3)
        seed_used = tr(gr.Number, label="gen.seed_used", precision=0, interactive=False, scale=1)
        generate_btn = tr(gr.Button, value="gen.generate", variant="primary", scale=1, elem_id="gen-generate")
        stop_btn = tr(gr.Button, value="gen.stop_button", variant="stop", scale=1)
    tr(gr.Markdown, value="gen.feedback.hint")
    slots, slot_boxes, thumbs = [], [], []
    for i in range(MAX_SAMPLES):
        with gr.Column(visible=i == 0) as slot:
            box = gr.Textbox(
                label=f"#{i + 1}",
                lines=4,
                max_lines=20,
                interactive=False,
                buttons=["copy"],
                elem_id=f"gen-sample-{i + 1}",
            )
            with gr.Row():
                up = gr.Button("👍", size="sm", min_width=60)
                down = gr.Button("👎", size="sm", min_width=60)
        slots.append(slot)
        slot_boxes.append(box)
        thumbs.append((up, down))
    gen_state = gr.State(None)  # the last completion's per-token data (see run_generate)
    inspect = tr(gr.Radio, choices=["1"], value="1", label="gen.inspect", visible=False)
    tokens = tr(
        gr.HighlightedText,
        label="gen.tokens",
        color_map=COLOR_MAP,
        show_legend=True,
        combine_adjacent=False,
        interactive=False,
    )
    alternatives = tr(gr.Plot, label="gen.alternatives")
    return SimpleNamespace(
        prompt=prompt,
        num_samples=num_samples,
        seed_used=seed_used,
        generate_btn=generate_btn,
        stop_btn=stop_btn,
        slots=slots,
        slot_boxes=slot_boxes,
        thumbs=thumbs,
        state=gen_state,
        inspect=inspect,
        tokens=tokens,
        alternatives=alternatives,
    )


def _chat_tab(tr) -> SimpleNamespace:
    tr(gr.Markdown, value="gen.chat.note")
    chatbot = tr(gr.Chatbot, label="gen.chatbot", height=420)
    with gr.Row():
        message = tr(gr.Textbox, label="gen.chat.message", placeholder="gen.chat.placeholder", scale=6)
        send_btn = tr(gr.Button, value="gen.chat.send", variant="primary", scale=1)
        stop_btn = tr(gr.Button, value="gen.stop_button", variant="stop", scale=1)
        clear_btn = tr(gr.Button, value="gen.chat.clear", scale=1)
    return SimpleNamespace(chatbot=chatbot, message=message, send_btn=send_btn, stop_btn=stop_btn, clear_btn=clear_btn)


def create_tab(ctx: AppContext) -> None:
    tr = ctx.tr
    tr(gr.Markdown, value="gen.explainer")
    picker = create_picker(ctx, elem_id="gen-run")
    run_info = gr.Markdown(elem_id="gen-run-info")
    knobs = _sampling_knobs(ctx)
    with gr.Tabs():
        with tr.bind(gr.Tab(t("gen.tab.completion")), label="gen.tab.completion"):
            c = _completion_tab(tr)
        with tr.bind(gr.Tab(t("gen.tab.chat")), label="gen.tab.chat"):
            chat = _chat_tab(tr)

    quick = dict(queue=False, api_visibility="private")
    model_events = dict(concurrency_limit=ctx.settings.generate_concurrency, concurrency_id="newleaf-inference")
    next_out = [knobs.next_state, knobs.next_plot, knobs.next_summary]
    next_in = [ctx.owner, picker, c.prompt, *knobs.shaping, ctx.lang]
    # queued (not quick): a run id this session may not read is refused with a message
    picker.change(
        ctx.handler(show_run), [ctx.owner, picker, ctx.lang], [run_info, *next_out], api_visibility="private"
    ).then(ctx.handler(follow_prompt), next_in, next_out, api_visibility="private", **model_events)
    # the bars follow the prompt as it is typed (one forward pass, the latest edit wins)
    live = dict(trigger_mode="always_last", api_visibility="private", **model_events)
    c.prompt.change(ctx.handler(follow_prompt), next_in, next_out, **live)
    # after a language switch: the run's line and the next-token bars again, in the new language
    tr.on_switch(ctx.handler(describe_run), [ctx.owner, picker, ctx.lang], run_info)
    tr.on_switch(redraw_next, [knobs.next_state, *knobs.shaping, ctx.lang], [knobs.next_plot, knobs.next_summary])
    for name, button in knobs.preset_buttons.items():
        button.click(lambda name=name: apply_preset(name), None, knobs.preset, **quick)
    c.num_samples.change(show_slots, c.num_samples, c.slots, **quick)

    gen_inputs = [ctx.owner, picker, c.prompt, *knobs.all, c.num_samples, ctx.lang]  # lang last: see run_generate
    gen_outputs = [*c.slot_boxes, c.seed_used, c.tokens, c.inspect, c.alternatives, c.state]
    gen_event = gr.on(
        [c.generate_btn.click, c.prompt.submit],
        ctx.handler(run_generate),
        gen_inputs,
        gen_outputs,
        api_name="generate",
        **model_events,
    )
    c.stop_btn.click(None, None, None, cancels=[gen_event], **quick)

    c.inspect.change(pick_sample, [c.state, c.inspect], [c.tokens, c.alternatives], **quick)
    c.tokens.select(select_token, [c.state, c.inspect, ctx.lang], c.alternatives, **quick)
    for i, (up, down) in enumerate(c.thumbs):
        up.click(ctx.handler(rate_sample, i, 1), [ctx.owner, c.state, ctx.lang], None, api_visibility="private")
        down.click(ctx.handler(rate_sample, i, -1), [ctx.owner, c.state, ctx.lang], None, api_visibility="private")

    knobs.next_btn.click(ctx.handler(run_next_token), next_in, next_out, api_name="next_token", **model_events)
    for knob in knobs.shaping:
        knob.change(
            redraw_next,
            [knobs.next_state, *knobs.shaping, ctx.lang],
            [knobs.next_plot, knobs.next_summary],
            trigger_mode="always_last",
            **quick,
        )

    chat_inputs = [ctx.owner, picker, chat.message, chat.chatbot, *knobs.all, ctx.lang]  # lang last: see run_chat
    chat_event = gr.on(
        [chat.send_btn.click, chat.message.submit],
        ctx.handler(run_chat),
        chat_inputs,
        [chat.chatbot, chat.message],
        api_name="chat",
        **model_events,
    )
    chat.stop_btn.click(None, None, None, cancels=[chat_event], **quick)
    chat.clear_btn.click(lambda: ([], ""), None, [chat.chatbot, chat.message], **quick)
    chat.chatbot.like(
        ctx.handler(rate_chat), [ctx.owner, picker, chat.chatbot, ctx.lang], None, api_visibility="private"
    )
