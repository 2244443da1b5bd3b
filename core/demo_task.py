"""The built-in demo task: arithmetic questions a tiny model can learn on a CPU in a couple of minutes.

    "What is 37 + 45?"  ->  "82"

The items are generated (seeded, so the same every time), split into training questions and held-out questions
that never appear in training, not even with the operands swapped, and scored by exact match of the model's
greedy answer. Measured before and after fine-tuning, the score shows fine-tuning working: a model that was never
taught the format answers nothing right before, and a good share of sums it never saw after (two-digit
addition from a fresh model, 1,500 steps: 0 % -> 36 %; see BENCHMARKS.md).

    builtin:arithmetic        sums of two numbers from 0 to 99 (10,000 possible questions)
    builtin:arithmetic-small  sums of two digits (100 possible questions): learned in well under a minute
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

PREFIX = "builtin:"


@dataclass(frozen=True)
class ArithmeticTask:
    name: str
    title: str
    max_operand: int  # operands are 0..max_operand
    n_train: int  # distinct training questions
    n_test: int  # distinct held-out questions, none of them in training
    seed: int = 0

    def items(self) -> tuple[list[dict], list[dict]]:
        """(train, held_out): lists of {"question", "answer"}, in a fixed random order. A sum and its commuted
        twin ("3 + 5" and "5 + 3") are one question asked two ways, so they are held out together: no held-out
        question, in either order, is ever trained on."""
        n = self.max_operand + 1
        questions = [[(a, b)] + ([(b, a)] if a != b else []) for a in range(n) for b in range(a, n)]
        random.Random(self.seed).shuffle(questions)
        n_test = min(self.n_test, n * n // 5)
        test, train = [], []
        for pairs in questions:
            (test if len(test) < n_test else train).extend(pairs)
        rng = random.Random(self.seed + 1)
        rng.shuffle(test)
        rng.shuffle(train)
        return [_item(a, b) for a, b in train[: self.n_train]], [_item(a, b) for a, b in test[:n_test]]

    def describe(self) -> str:
        train, test = self.items()
        return f"{self.title}: {len(train):,} training questions and {len(test):,} held-out ones, scored by exact match"

    def to_dict(self) -> dict:
        return asdict(self)


def _item(a: int, b: int) -> dict:
    return {"question": f"What is {a} + {b}?", "answer": str(a + b)}


TASKS: dict[str, ArithmeticTask] = {
    t.name: t
    for t in (
        ArithmeticTask("arithmetic", "Two-digit addition", max_operand=99, n_train=8000, n_test=200),
        ArithmeticTask("arithmetic-small", "One-digit addition", max_operand=9, n_train=80, n_test=20),
    )
}


def task_for(spec) -> ArithmeticTask | None:
    """The task named by "builtin:NAME", or None when `spec` names no demo task."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        return TASKS.get(spec[len(PREFIX) :])
    return None


def to_conversation(item: dict) -> list[dict]:
    return [{"role": "user", "content": item["question"]}, {"role": "assistant", "content": item["answer"]}]
