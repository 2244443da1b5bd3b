"""The inference engine: KV-cached generation with the usual sampling knobs, token probabilities, attention
maps and the logit lens. The app, the CLI, chat and the trainer's periodic samples all sample through here; the
one-token decoder and its KV cache are core/decoder.py's.

Generation prefills the prompt once, then decodes one token per step, reusing the keys and values of
earlier positions from a preallocated cache instead of recomputing them. When the context fills up, the
window slides: the cache is rebuilt from the last block_size tokens (learned absolute positions mean the old
keys cannot simply be shifted), so every token past the context sees exactly the window a full recompute
would see.
"""

from __future__ import annotations

import codecs
import copy
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.ao.quantization import quantize_dynamic

from core.decoder import Decoder, KVCache
from core.device import check_seed
from core.errors import ConfigError, NewleafError
from core.messages import Text

# ----------------------------------------------------------------------------------------------------------
# int8 weights


def quantize_int8(model):
    """An int8 copy for CPU sampling: every Linear's weights stored as int8 and its activations quantized on
    the fly (PyTorch's dynamic quantization). About 4x less weight memory to read per token, which is what
    bounds a larger model's decoding speed; the logits move slightly (BENCHMARKS.md reports the effect on
    validation loss). Opt-in, CPU only."""
    if model.transformer.wte.weight.device.type != "cpu":
        raise ConfigError(f"int8 sampling is for the CPU; this model is on {model.transformer.wte.weight.device.type}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is marked deprecated in favour of torchao
        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)


# ----------------------------------------------------------------------------------------------------------
# Sampling parameters and the logits -> probabilities pipeline

# Each new token is checked against every stop string: their number and length are bounded so that a request
# cannot make that check cost more than the model itself.
MAX_STOP_STRINGS = 32
MAX_STOP_CHARS = 200


@dataclass
class SamplingParams:
    max_new_tokens: int = 200
    temperature: float = 1.0  # 0 = greedy (always the most likely token)
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set whose probability reaches p (nucleus)
    min_p: float | None = None  # drop tokens less likely than min_p x the most likely one
    repetition_penalty: float = 1.0  # >1 discourages tokens already in the text (CTRL-style)
    presence_penalty: float = 0.0  # subtract once from the logit of any token already generated
    frequency_penalty: float = 0.0  # subtract per occurrence
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)  # tokens that end a row, never shown (chat's <|end|>)
    num_samples: int = 1
    top_alternatives: int = 10  # how many alternatives to report per generated token

    def validate(self, max_new_tokens_limit: int | None = None) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(Text("engine.max_new_tokens"))
        if max_new_tokens_limit and self.max_new_tokens > max_new_tokens_limit:
            raise ConfigError(Text("engine.max_new_tokens_limit", limit=max_new_tokens_limit, got=self.max_new_tokens))
        if self.temperature < 0:
            raise ConfigError(Text("engine.temperature", got=self.temperature))
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(Text("engine.top_k", got=self.top_k))
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise ConfigError(Text("engine.top_p", got=self.top_p))
        if self.min_p is not None and not (0 <= self.min_p <= 1):
            raise ConfigError(Text("engine.min_p", got=self.min_p))
        if self.repetition_penalty <= 0:
            raise ConfigError(Text("engine.repetition_penalty", got=self.repetition_penalty))
        if not 1 <= self.num_samples <= 64:
            raise ConfigError(Text("engine.num_samples", got=self.num_samples))
        if self.seed is not None:
            check_seed(self.seed)
        if len(self.stop) > MAX_STOP_STRINGS:
            raise ConfigError(Text("engine.stop_count", max=MAX_STOP_STRINGS, got=len(self.stop)))
        longest = max((len(s) for s in self.stop), default=0)
        if longest > MAX_STOP_CHARS:
            raise ConfigError(Text("engine.stop_length", max=MAX_STOP_CHARS, got=longest))


def apply_penalties(
    logits: torch.Tensor, history: torch.Tensor, counts: torch.Tensor | None, p: SamplingParams
) -> torch.Tensor:
    """logits (B, V); history (B, V) bool: token occurs in the prompt or output; counts (B, V): how often
    each token was generated. Repetition penalty divides positive logits and multiplies negative ones by
    the penalty (CTRL, as in transformers); presence/frequency penalties subtract (OpenAI's definition)."""
    if p.repetition_penalty != 1.0 and history is not None:
        penalized = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
        logits = torch.where(history, penalized, logits)
    if counts is not None and (p.presence_penalty or p.frequency_penalty):
        logits = logits - p.presence_penalty * (counts > 0).to(logits.dtype) - p.frequency_penalty * counts
    return logits


def filter_logits(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p; removed tokens get -inf. With temperature 0 the scaling is
    skipped (greedy takes the argmax anyway; the filtered distribution is still useful to display)."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p: the kept set is the smallest whose
        # mass reaches p (the most likely token is always kept)
        drop_sorted = (cum - F.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    if min_p is not None and min_p > 0:
        probs = F.softmax(logits, dim=-1)
        threshold = min_p * probs.max(dim=-1, keepdim=True).values
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    return logits


def next_token_distribution(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> torch.Tensor:
    """Probabilities the sampler would draw from, given raw logits (…, V). Pure and cheap: the app keeps
    the logits of one forward pass and calls this each time a slider moves."""
    if temperature == 0:
        probs = torch.zeros_like(logits, dtype=torch.float32)
        probs.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
        return probs
    return F.softmax(filter_logits(logits, temperature, top_k, top_p, min_p), dim=-1)


# ----------------------------------------------------------------------------------------------------------
# Token-level generation


@dataclass
class TokenStep:
    """One decoding step: for each row, the chosen token, its probability, and the top alternatives."""

    tokens: list[int]
    probs: list[float]
    alternatives: list[list[tuple[int, float]]]
    context_len: int  # how many of the latest tokens the prediction saw (less than all once the window slid)


def _make_generator(seed: int | None, device) -> tuple[torch.Generator, int]:
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g, seed


@torch.inference_mode()
def generate_tokens(
    model,
    prompt_ids: list[int],
    params: SamplingParams,
    generator: torch.Generator | None = None,
    slide_keep: int | None = None,
) -> Iterator[TokenStep]:
    """Yield one TokenStep per new token, for params.num_samples rows sampled in one batch.

    The cache holds at most block_size positions. When it is full, the window slides: the cache is
    rebuilt from the last `slide_keep` tokens (default block_size: exactly what a full recompute of the
    window gives, at the cost of one window's forward pass per token from then on; a smaller slide_keep
    re-prefills less often but conditions on fewer tokens). Rows never stop early here; the caller decides
    when a row is finished."""
    cfg = model.config
    if not prompt_ids:
        raise NewleafError(Text("engine.prompt_empty"))
    was_training = model.training
    model.eval()
    device = model.transformer.wte.weight.device
    if generator is None:
        generator, _ = _make_generator(params.seed, device)
    B, V = params.num_samples, cfg.vocab_size
    keep = min(slide_keep or cfg.block_size, cfg.block_size)
    history = None  # which tokens occur so far (the whole prompt counts): only the repetition penalty needs it
    if params.repetition_penalty != 1.0:
        history = torch.zeros(B, V, dtype=torch.bool, device=device)
        history[:, torch.tensor(prompt_ids, dtype=torch.long, device=device).clamp(max=V - 1)] = True
    # the prompt's last window and every new token, preallocated (memory bounded whatever the prompt's
    # length): the window slides over its end
    prompt_ids = prompt_ids[-cfg.block_size :]
    n_prompt = len(prompt_ids)
    seq = torch.empty(B, n_prompt + params.max_new_tokens, dtype=torch.long, device=device)
    seq[:, :n_prompt] = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    length = n_prompt
    needs_counts = bool(params.presence_penalty or params.frequency_penalty)
    counts = torch.zeros(B, V, device=device) if needs_counts else None
    cache = KVCache.for_model(model, B)
    decoder = Decoder(model) if Decoder.supports(model) else None
    try:
        window = seq[:, max(0, length - cfg.block_size) : length]
        logits, _ = model(window, kv_cache=cache, last_only=True)
        logits = logits[:, -1, :]
        for _ in range(params.max_new_tokens):
            context_len = cache.pos
            logits = apply_penalties(logits.float(), history, counts, params)
            shown = filter_logits(logits, params.temperature or 1.0, params.top_k, params.top_p, params.min_p)
            probs = F.softmax(shown, dim=-1)  # (B, V)
            if params.temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            top = torch.topk(probs, min(params.top_alternatives, V), dim=-1)
            # whole tensors to Python at once: per-row tensor views cost more than the model at small sizes
            yield TokenStep(
                tokens=nxt.view(-1).tolist(),
                probs=probs.gather(-1, nxt).view(-1).tolist(),
                alternatives=[list(zip(i, v)) for i, v in zip(top.indices.tolist(), top.values.tolist())],
                context_len=context_len,
            )
            if history is not None:
                history.scatter_(1, nxt, True)
            if counts is not None:
                counts.scatter_add_(1, nxt, torch.ones_like(nxt, dtype=counts.dtype))
            nxt = nxt.view(-1)
            seq[:, length] = nxt
            length += 1
            if cache.pos >= cfg.block_size:  # full: rebuild the cache from the most recent tokens
                cache.reset()
                logits = model(seq[:, length - keep : length], kv_cache=cache, last_only=True)[0][:, -1, :]
            elif decoder is not None:
                logits = decoder.step(nxt, cache)
            else:
                logits = model(nxt.view(B, 1), kv_cache=cache)[0][:, -1, :]
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------------------------------
# Text-level generation: stop strings and UTF-8-safe streaming


@dataclass
class StreamEvent:
    """One token of one row: the text it made safe to show (possibly empty), and its probabilities."""

    row: int
    text: str
    token_id: int
    prob: float
    alternatives: list[tuple[int, float]]
    finish_reason: str | None = None  # set on a row's last event: "length" | "stop" | "eos"


@dataclass
class Completion:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    token_probs: list[float] = field(default_factory=list)
    alternatives: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str = "length"


class _RowText:
    """Turns a row's tokens into text that is safe to show: never half a UTF-8 character (a byte-level
    BPE token can end inside one), and never the start of a stop string that may still complete."""

    def __init__(self, stop: list[str]):
        self.stop = list(dict.fromkeys(s for s in stop if s))  # duplicates dropped, in one pass
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""  # complete characters so far (cut at a stop string once one appears)
        self.emitted = 0  # characters already handed out
        self.stopped = False

    def push(self, token_bytes: bytes) -> str:
        self.text += self.decoder.decode(token_bytes)
        for s in self.stop:
            i = self.text.find(s, max(0, self.emitted - len(s)))
            if i != -1:
                self.text, self.stopped = self.text[:i], True
        return self._take(final=self.stopped)

    def finish(self) -> str:
        if not self.stopped:
            self.text += self.decoder.decode(b"", final=True)
        return self._take(final=True)

    def _take(self, final: bool) -> str:
        end = len(self.text)
        if not final:  # hold back a tail that could be the beginning of a stop string
            for s in self.stop:
                end = min(end, len(self.text) - _partial_stop(self.text, s))
        end = max(end, self.emitted)
        new, self.emitted = self.text[self.emitted : end], end
        return new


def _partial_stop(text: str, stop: str) -> int:
    """The length of the longest end of `text` that begins `stop` (and is shorter than it): what must be held
    back in case the stop string completes. Only positions holding stop's first character are tried."""
    tail = text[len(text) - min(len(stop) - 1, len(text)) :]
    i = tail.find(stop[0])
    while i != -1:
        if stop.startswith(tail[i:]):
            return len(tail) - i
        i = tail.find(stop[0], i + 1)
    return 0


def stream(model, tokenizer, prompt: str | list[int], params: SamplingParams) -> Iterator[StreamEvent]:
    """Generate params.num_samples continuations of `prompt` (text, or token ids such as a rendered chat),
    yielding one event per token per row as it is produced. Ends when every row has hit a stop string, the
    end-of-text token or one of params.stop_token_ids (finish_reason "eos", the token not shown), or
    max_new_tokens. params.seed is filled in when it was None, so a caller can report the seed that was used."""
    params.validate()
    device = model.transformer.wte.weight.device
    generator, params.seed = _make_generator(params.seed, device)
    ids = list(prompt) if isinstance(prompt, (list, tuple)) else tokenizer.encode(prompt)
    rows = [_RowText(params.stop) for _ in range(params.num_samples)]
    done = [False] * params.num_samples
    ends = {tokenizer.eot_id, *params.stop_token_ids} - {None}
    for n, step in enumerate(generate_tokens(model, ids, params, generator), start=1):
        last = n == params.max_new_tokens
        for r, row in enumerate(rows):
            if done[r]:
                continue
            tok = step.tokens[r]
            if tok in ends:
                text, reason = row.finish(), "eos"
            else:
                text = row.push(tokenizer.decode_bytes([tok]))
                reason = "stop" if row.stopped else None
                if reason is None and last:
                    text, reason = text + row.finish(), "length"
            done[r] = reason is not None
            yield StreamEvent(r, text, tok, step.probs[r], step.alternatives[r], reason)
        if all(done):
            return


def stream_completions(model, tokenizer, prompt: str | list[int], params: SamplingParams) -> Iterator[list[Completion]]:
    """The params.num_samples completions of `prompt` as they grow: the same list, yielded after each token of
    any row (the prompt itself is not included; nor is an end token). A caller that shows progress takes what it
    needs from each; the last one yielded is finished."""
    out = [Completion() for _ in range(params.num_samples)]
    for ev in stream(model, tokenizer, prompt, params):
        c = out[ev.row]
        c.text += ev.text
        if ev.finish_reason != "eos":
            c.token_ids.append(ev.token_id)
            c.token_probs.append(ev.prob)
            c.alternatives.append(ev.alternatives)
        if ev.finish_reason:
            c.finish_reason = ev.finish_reason
        yield out


def generate(model, tokenizer, prompt: str | list[int], params: SamplingParams) -> list[Completion]:
    """params.num_samples completions of `prompt` (the prompt itself is not included; nor is the end token)."""
    completions = [Completion() for _ in range(params.num_samples)]
    for completions in stream_completions(model, tokenizer, prompt, params):  # noqa: B007  the last is finished
        pass
    return completions


# ----------------------------------------------------------------------------------------------------------
# Looking inside


@torch.inference_mode()
def prompt_logits(model, ids: list[int]) -> torch.Tensor:
    """Raw next-token logits (V,) after the prompt (its last block_size tokens)."""
    model.eval()
    device = model.transformer.wte.weight.device
    x = torch.tensor(ids[-model.config.block_size :], dtype=torch.long, device=device)[None]
    logits, _ = model(x, last_only=True)
    return logits[0, -1].float().cpu()


@torch.inference_mode()
def attention_maps(model, ids: list[int]) -> list[torch.Tensor]:
    """Per layer, the (n_head, T, T) attention weights for the prompt (its last block_size tokens)."""
    model.eval()
    device = model.transformer.wte.weight.device
    x = torch.tensor(ids[-model.config.block_size :], dtype=torch.long, device=device)[None]
    maps: list[torch.Tensor] = []
    model(x, attention_out=maps)
    return [m[0].float().cpu() for m in maps]


@dataclass
class LogitLens:
    """What each layer would predict: rows are the embeddings (0) and the output of each block (1..n_layer, the
    last being the model's own prediction); columns are positions of the prompt."""

    top_ids: torch.Tensor  # (n_layer + 1, P, k) the k most likely next tokens at each layer and position
    top_probs: torch.Tensor  # (n_layer + 1, P, k) their probabilities
    next_probs: torch.Tensor  # (n_layer + 1, P) the probability of the token that really comes next (NaN at the end)
    positions: list[int]  # the P positions, counted in the window the model saw


@torch.inference_mode()
def logit_lens(model, ids: list[int], top_k: int = 5, last: int | None = None) -> LogitLens:
    """The "logit lens" (nostalgebraist, 2020): the residual stream after the embeddings and after each block,
    put through the final LayerNorm and the output head as if the model stopped there. For the prompt's last
    block_size tokens; `last` limits the positions reported to the last ones (the whole window is still run)."""
    model.eval()
    device = model.transformer.wte.weight.device
    window = ids[-model.config.block_size :]
    x_ids = torch.tensor(window, dtype=torch.long, device=device)[None]  # (1, T)
    T = len(window)
    first = T - min(T, last or T)
    tr = model.transformer
    x = tr.wte(x_ids) + tr.wpe(torch.arange(T, device=device))  # (1, T, C); dropout is off in eval mode
    streams = [x]
    for block in tr.h:
        x = block(x)
        streams.append(x)
    stream = torch.cat(streams)[:, first:]  # (n_layer + 1, P, C)
    probs = F.softmax(model.lm_head(tr.ln_f(stream)).float(), dim=-1)  # (n_layer + 1, P, V)
    top = torch.topk(probs, min(top_k, probs.size(-1)), dim=-1)
    following = torch.tensor(window[first + 1 :], dtype=torch.long, device=device)  # the token after each position
    next_probs = torch.full(probs.shape[:2], float("nan"), device=device)
    next_probs[:, : len(following)] = probs[:, : len(following)].gather(
        -1, following.expand(probs.size(0), -1)[..., None]
    )[..., 0]
    return LogitLens(top.indices.cpu(), top.values.cpu(), next_probs.cpu(), list(range(first, T)))
