"""Training recipes: what to train, and how, for the time a person gives it.

The default recipe scales with the budget: given the time budget, this machine's measured speed (core/probe.py)
and the corpus's size, `choose` picks the tokenizer and the shape of the ladder below that loss models fitted to
measured runs predict to reach the lowest held-out loss per character in that time, with the batch, context and
learning rate each shape trains with (the scaling study: bench/scaling.py; its data, fit and plot in BENCHMARKS.md).
Any knob can still be set by hand. RECIPES holds the fixed, named ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.messages import Text
from core.model import GPTConfig, flops_per_token, param_count, training_memory

SHAPE_KNOBS = frozenset(GPTConfig.__dataclass_fields__)  # a knob of these sets the model; any other, the training

# max_steps of a run that only its time budget ends (a step count no run reaches)
NO_STEP_LIMIT = 10**9

# How every recipe trains: Muon for the hidden matrices and AdamW for the rest, warmup then a stable learning
# rate and a linear decay over the last 40 % of the time budget (the schedule follows elapsed time).
SCHEDULE = dict(
    max_steps=NO_STEP_LIMIT, schedule="wsd", cooldown_frac=0.4, min_lr_ratio=0.0, optimizer="muon",
    weight_decay=0.0, beta2=0.99, eval_every=250, eval_batches=20,
)  # fmt: skip
# The scaled recipe's: the same, with weight decay 0.2, since its picks read the corpus several times over (BPE 512
# on 4L/128 for 180 s, 4.3 epochs: 2.2105 bits/char without, 2.1890 with 0.1; 7.4 epochs at lr 6e-3: 2.1533 with
# 0.1, 2.1236 with 0.2, 2.1230 with 0.3; characters, 4L/128: 2.1913 with 0.1, 2.1821 with 0.2; BENCHMARKS.md §3b).
SCALED_SCHEDULE = {**SCHEDULE, "weight_decay": 0.2, "warmup_steps": 50}


@dataclass(frozen=True)
class Rung:
    """A shape of the ladder, with the batch and learning rate measured best for it, and its training speed:
    the FLOP rate it reaches, as a fraction of the rate the speed probe measures (small models waste more)."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    lr: float
    speed: float

    def config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, block_size=self.block_size,
                         vocab_size=vocab_size)  # fmt: skip


@dataclass(frozen=True)
class LossFit:
    """Held-out loss (nats per character) after training N non-embedding parameters on D tokens:
    E + A / N^alpha + B / D'^beta (Chinchilla's form), where D' counts a corpus read more than once for less
    (Muennighoff et al. 2023, data-constrained scaling): past the U unique tokens of the corpus, repeated epochs
    add U·R·(1 - exp(-(D/U - 1) / R)) at most, R = `repeat`. Fitted to the scaling study's runs."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    repeat: float = math.inf

    def loss(self, n: float, d: float, unique: float | None = None) -> float:
        d = effective_tokens(d, unique, self.repeat)
        return self.E + self.A / max(n, 1.0) ** self.alpha + self.B / max(d, 1.0) ** self.beta


def effective_tokens(d: float, unique: float | None, repeat: float) -> float:
    """Tokens seen, counting the epochs past the first for less (see LossFit)."""
    if not unique or d <= unique or math.isinf(repeat):
        return d
    return unique * (1 + repeat * (1 - math.exp(-(d / unique - 1) / repeat)))


# Characters per token on Tiny Shakespeare's training text (measured): the unique tokens a corpus gives a
# tokenizer, estimated before it is trained. A tokenizer not here counts as the nearest BPE (GPT-2's as 3.3).
CHARS_PER_TOKEN = {"char": 1.0, "bpe:512": 2.04, "bpe:1024": 2.61, "gpt2": 3.3}


def chars_per_token(tokenizer: str) -> float:
    if tokenizer in CHARS_PER_TOKEN:
        return CHARS_PER_TOKEN[tokenizer]
    size = vocab_of(tokenizer, 65)
    bpes = [k for k in CHARS_PER_TOKEN if k.startswith("bpe:")]
    return CHARS_PER_TOKEN[min(bpes, key=lambda k: abs(math.log(vocab_of(k, 65) / size)))]


def non_embedding_params(cfg: GPTConfig) -> int:
    return param_count(cfg) - (cfg.vocab_size + cfg.block_size) * cfg.n_embd


def recipe_settings(rung: Rung, budget_s: float) -> tuple[dict, dict]:
    """(model shape, training settings) of a rung trained for `budget_s` seconds."""
    shape = dict(n_layer=rung.n_layer, n_head=rung.n_head, n_embd=rung.n_embd, block_size=rung.block_size)
    warmup = SCALED_SCHEDULE["warmup_steps"] if budget_s >= 60 else 20  # a shorter warmup for a minute or less
    return shape, {**SCALED_SCHEDULE, "batch_size": rung.batch_size, "lr": rung.lr, "warmup_steps": warmup,
                   "max_time": float(budget_s)}  # fmt: skip


# The ladder: shapes from a first look on a CPU to GPT-2 small; head size 32 up to width 256, 64 above.
# fmt: off
LADDER = (
    Rung("3L/96",   3,  3,  96,  64,  32, 4e-3, speed=0.597),
    Rung("4L/128",  4,  4,  128, 64,  24, 6e-3, speed=0.994),
    Rung("4L/192",  4,  6,  192, 128, 16, 3e-3, speed=1.258),
    Rung("6L/192",  6,  6,  192, 128, 16, 3e-3, speed=1.295),
    Rung("6L/256",  6,  8,  256, 128, 16, 3e-3, speed=1.280),
    # too slow to measure on this CPU in a short pass: taken as fast as the largest rung measured (a larger
    # matrix product is at least as efficient)
    Rung("8L/384",  8,  6,  384, 256, 16, 2e-3, speed=1.280),
    Rung("12L/768", 12, 12, 768, 512, 16, 1e-3, speed=1.280),
)
# fmt: on

# The loss models fitted to the scaling study on Tiny Shakespeare (`python -m bench.scaling fit` prints them, and
# each rung's speed above; data, fit and plot in BENCHMARKS.md): one per tokenizer it measured.
# fmt: off
FITS: dict[str, LossFit] = {
    "bpe:1024": LossFit(E=0.0541, A=4.811e+09, alpha=2.000, B=31.4, beta=0.225, repeat=1.0),  # 6 runs, rms 0.024
    "bpe:512": LossFit(E=0.0794, A=6.963e+09, alpha=2.000, B=24.02, beta=0.200, repeat=2.0),  # 12 runs, rms 0.031
    "char": LossFit(E=1.3881, A=3.976e+09, alpha=2.000, B=2.429e+05, beta=0.975, repeat=2.0),  # 12 runs, rms 0.019
}
# fmt: on
# The most tokens the study trained each (tokenizer, shape) on (`fit` prints it). The fits are trusted up to
# TRUST times that: past it they predicted well but trained badly (BPE 512 on 6L/192 for 900 s, 12 epochs of Tiny
# Shakespeare: 2.55 bits/char, predicted 2.17), so choose() leaves such options out while any other is left.
# fmt: off
MEASURED: dict[tuple[str, str], float] = {
    ("bpe:1024", "3L/96"): 7.48e6, ("bpe:1024", "4L/128"): 3.55e6, ("bpe:1024", "4L/192"): 9.03e5,
    ("bpe:512", "3L/96"): 1.00e7, ("bpe:512", "4L/128"): 5.19e6, ("bpe:512", "4L/192"): 1.95e6,
    ("bpe:512", "6L/192"): 6.33e5,
    ("char", "3L/96"): 1.13e7, ("char", "4L/128"): 4.08e6, ("char", "4L/192"): 8.89e6, ("char", "6L/192"): 6.45e5,
}
# fmt: on
TRUST = 1.5
# The most times over a BPE option may read its corpus. Without weight decay a BPE model still improved at 6.7
# epochs (BPE 512, 4L/128: 2.185 bits/char) and got worse by 9.2 (BPE 1024, 4L/128: 2.187 after 4.6 epochs, 2.246
# after 9.2); with the recipe's weight decay 0.2 it improved to 7.5 epochs (2.124) and held there at 10.5 (2.128),
# while characters still improved at 11. On the Python-source corpus, whose held-out modules share less with the
# rest than one act of a play with another, BPE 1024 read ~28 times over (no weight decay) measured 2.59 bits/char
# against characters' 2.27. Past it a BPE model learns the corpus's words by heart instead of its language.
MAX_BPE_EPOCHS = 10.0
STUDY_FLOPS_RATE = 9.667e10  # the speed probe's FLOP/s on the study's machine (2 threads; BENCHMARKS.md)
STUDY_TRAIN_CHARS = 1_003_854  # the characters the study trained on: Tiny Shakespeare's first 90 %
SCALED = "scaled"  # the default recipe's name (CLI, Model tab): chosen by choose() below
DEFAULT_BUDGET_S = 180.0  # the budget the recipe is chosen for when a person gives none (a run with no time limit)
# A tokenizer left to the scaled recipe: characters or a BPE trained on the corpus, whichever `choose` picks for
# the corpus and the time budget. The app starts with it (the Data tab, a run started before any corpus is loaded).
AUTO = "auto"
DEFAULT_TOKENIZER = AUTO

RECIPES: dict[str, dict] = {
    # Best character-level validation loss on Tiny Shakespeare after 3 minutes on a 2-core CPU (measured
    # 2026-11-28; BENCHMARKS.md).
    "cpu-3min": dict(
        preset="micro",
        overrides=dict(n_layer=4, n_head=4, n_embd=128, block_size=64),
        train={**SCHEDULE, "batch_size": 24, "lr": 4e-3, "warmup_steps": 50, "max_time": 180.0},
    ),
}
DEFAULT_CPU_RECIPE = "cpu-3min"


def vocab_of(tokenizer: str, char_vocab: int) -> int:
    """The vocabulary a tokenizer spec gives: a BPE's own size, GPT-2's 50,257, or the corpus's characters."""
    if tokenizer.startswith("bpe:") and tokenizer[4:].isdigit():
        return max(int(tokenizer[4:]), 1)
    return 50257 if tokenizer == "gpt2" else char_vocab  # (a spec that is neither: make_tokenizer refuses it)


@dataclass(frozen=True)
class Option:
    """One (tokenizer, shape) the choice weighed, with what the loss model predicts for it in the budget."""

    tokenizer: str
    rung: Rung
    tokens: float  # tokens it is expected to see in the budget
    predicted: float  # held-out nats per character
    epochs: float = 0.0  # how many times over it reads the corpus


@dataclass(frozen=True)
class Choice:
    """What the budget-scaled recipe picked, and why (for the Model tab and the CLI)."""

    best: Option
    budget_s: float
    runner_up: Option | None  # the best other shape with the same tokenizer, for the explanation
    other_tokenizer: Option | None  # the best option of another tokenizer, when the tokenizer was not given
    skipped_for_memory: tuple[str, ...]
    measured: bool  # False: no study measured this tokenizer; the shape is picked with the nearest one's fit
    beyond: float = 0.0  # > 1: every option goes past the study (this many times the tokens it trusts)

    @property
    def rung(self) -> Rung:
        return self.best.rung

    @property
    def tokenizer(self) -> str:
        return self.best.tokenizer

    @property
    def better_tokenizer(self) -> bool:
        """Whether another tokenizer is predicted to do better than the one picked (given by the person), or keeps
        within what the study measured where the one picked does not."""
        other = self.other_tokenizer
        return other is not None and (other.predicted < self.best.predicted or self.beyond > 1)

    @property
    def predicted_bits(self) -> float:
        """The loss model's held-out bits per character for the pick."""
        return self.best.predicted / math.log(2)

    def settings(self, overrides: dict | None = None) -> tuple[dict, dict]:
        """(model shape, training settings), with any knob the person set by hand in `overrides` winning over the
        recipe's (a shape knob such as n_embd, or a training one such as lr, which TrainConfig then checks)."""
        shape, train = recipe_settings(self.rung, self.budget_s)
        for knob, value in (overrides or {}).items():
            (shape if knob in SHAPE_KNOBS else train)[knob] = value
        return shape, train

    def why(self) -> Text:
        """What it picked and why, as a Text (str() is the English; the app says it in the page's language)."""
        rung, best = self.rung, self.best
        if self.measured:
            prediction = Text("recipes.predicts", bits=_bits(best.predicted), tokenizer=tokenizer_words(best.tokenizer))
        else:
            prediction = Text("recipes.unmeasured", tokenizer=tokenizer_words(best.tokenizer))
        runner_up = other = ""
        if self.runner_up is not None:
            r = self.runner_up.rung
            bigger = r.n_embd * r.n_layer > rung.n_embd * rung.n_layer
            runner_up = Text("recipes.bigger" if bigger else "recipes.smaller", name=r.name)
        if self.other_tokenizer is not None:
            o = self.other_tokenizer
            other = Text("recipes.other_tokenizer", tokenizer=tokenizer_words(o.tokenizer), bits=_bits(o.predicted))
        if self.beyond > 1:
            if best.tokenizer != "char" and best.epochs > MAX_BPE_EPOCHS:
                other = Text("recipes.epochs", epochs=f"{best.epochs:,.0f}", most=f"{MAX_BPE_EPOCHS:g}")
            else:
                other = Text("recipes.beyond", times=f"{self.beyond:,.0f}")
        return Text("recipes.why", budget=f"{self.budget_s:.0f}", layers=rung.n_layer, width=rung.n_embd,
                    context=rung.block_size, batch=rung.batch_size, lr=f"{rung.lr:g}",
                    params=f"{non_embedding_params(rung.config(65)) / 1e6:.2f}", tokens=f"{best.tokens / 1e6:.1f}",
                    prediction=prediction, runner_up=runner_up, other=other)  # fmt: skip


def _bits(nats_per_char: float) -> str:
    return f"{nats_per_char / math.log(2):.2f}"


def tokenizer_words(tokenizer: str) -> Text:
    if tokenizer.startswith("bpe:"):
        return Text("recipes.tok.bpe", vocab=tokenizer.split(":", 1)[1])
    return Text("recipes.tok.gpt2" if tokenizer == "gpt2" else "recipes.tok.char")


def _nearest_fit(tokenizer: str, fits: dict[str, LossFit]) -> str:
    """The measured tokenizer closest in vocabulary to one no study measured (GPT-2's goes to the largest BPE)."""
    size = vocab_of(tokenizer, 65)
    return min(fits, key=lambda spec: (abs(math.log(vocab_of(spec, 65) / size)), spec))


def choose(budget_s: float, flops_rate: float, char_vocab: int = 65, memory_limit: int | None = None,
           tokenizer: str | None = None, fits: dict[str, LossFit] | None = None,
           ladder: tuple[Rung, ...] = LADDER, train_chars: int = STUDY_TRAIN_CHARS,
           studied: dict[tuple[str, str], float] | None = None) -> Choice:  # fmt: skip
    """The (tokenizer, shape) the loss models predict to reach the lowest held-out loss per character in
    `budget_s` seconds at `flops_rate` (the speed probe's FLOP/s). `tokenizer` given (the person chose it): only
    shapes for it. Rungs whose training would not fit `memory_limit` bytes are left out. Deterministic: the same
    probe and budget always give the same choice. `train_chars`: the corpus's training characters (a small corpus
    read many times over teaches less per token, sooner with a BPE, whose tokens each hold more of it; unknown:
    the study's corpus). Only options within what the study measured (`studied`: the most tokens it trained each
    (tokenizer, shape) on, times TRUST), and with a BPE no more than MAX_BPE_EPOCHS times over the corpus, are
    weighed; when none is (a GPU, a day-long budget), the option that goes least far past them."""
    fits = FITS if fits is None else fits
    studied = MEASURED if studied is None else studied
    if not fits or any(r.speed <= 0 for r in ladder):
        raise ValueError("the scaling study has not been fitted yet (python -m bench.scaling fit)")
    measured = tokenizer is None or tokenizer in fits
    options, skipped = [], set()
    for spec in sorted({*fits, tokenizer} - {None}):
        fit = fits[spec if spec in fits else _nearest_fit(spec, fits)]
        for rung in ladder:
            cfg = rung.config(vocab_of(spec, char_vocab))
            if memory_limit is not None and training_memory(cfg, rung.batch_size)["total"] > memory_limit:
                skipped.add(rung.name)
                continue
            tokens = budget_s * flops_rate * rung.speed / flops_per_token(cfg)
            unique = train_chars / chars_per_token(spec)
            predicted = fit.loss(non_embedding_params(cfg), tokens, unique)
            options.append(Option(spec, rung, tokens, predicted, epochs=tokens / unique))
    # inside what the study measured (for the study's corpus size; a bigger corpus is read fewer times over)
    scale = max(train_chars / STUDY_TRAIN_CHARS, 1.0)

    def reach(o: Option) -> float:  # how far past the study an option goes (1: as far as it is trusted)
        spec = o.tokenizer if o.tokenizer in fits else _nearest_fit(o.tokenizer, fits)
        tokens = o.tokens / (TRUST * scale * studied.get((spec, o.rung.name), 1e-9))
        return max(tokens, 0.0 if o.tokenizer == "char" else o.epochs / MAX_BPE_EPOCHS)

    options.sort(key=lambda o: (o.predicted, o.tokenizer, o.rung.name))
    mine = [o for o in options if tokenizer is None or o.tokenizer == tokenizer]
    if not mine:
        raise ValueError("no shape of the ladder fits the memory limit")
    inside = [o for o in mine if reach(o) <= 1.0]
    nearest = min(mine, key=reach)  # when all go past it: the one that goes least far
    best = inside[0] if inside else nearest
    same = [o for o in inside[1:] if o.tokenizer == best.tokenizer]
    # another tokenizer: the free choice's runner-up, or, when the person chose one, a better one they could pick
    other = [o for o in options if o.tokenizer != best.tokenizer and measured and o.tokenizer in fits and reach(o) <= 1]
    if tokenizer is not None:
        other = [o for o in other if o.predicted < best.predicted or not inside]
    return Choice(best, budget_s, same[0] if same else None, other[0] if other else None,
                  tuple(r.name for r in ladder if r.name in skipped), measured,
                  0.0 if inside else reach(nearest))  # fmt: skip
