"""Fine-tuning data: read it, check it, turn it into token ids with a loss mask, store it, batch it.

Reading top to bottom:
  1. loading           - plain text (the corpus loader's inputs) or conversations, from .jsonl / .json / .csv files
                         or a built-in demo task; every problem is one CorpusError naming the file and line
  2. encoding          - conversations -> (ids, mask) with the chat template; examples longer than the context are
                         truncated or dropped, and counted
  3. storage           - a split as three flat files: ids (uint16/uint32), mask (uint8), offsets (int64)
  4. batching          - random examples padded to the longest in the batch; padding and every token that is not
                         assistant output gets target -1, which carries no loss

Conversation shapes accepted, one per JSONL line (or as the items of a .json array):
    {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
    {"instruction": "...", "input": "..." (optional), "output": "..."}       (Alpaca)
    {"prompt": "...", "completion": "..."}
    {"conversations": [{"from": "human" | "gpt" | "system", "value": "..."}, ...]}   (ShareGPT)
and an optional "system" string beside instruction / prompt. CSV: a prompt column and a response column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core import demo_task
from core.data import (
    check_unicode,
    json_problem,
    max_corpus_bytes,
    parse_csv_text,
    read_checked_text,
    read_csv_table,
    read_text_file,
    token_dtype,
    write_array,
)
from core.datasets import BUILTIN_DATASETS, load_builtin
from core.errors import ConfigError, CorpusError
from core.files import atomic_write_text, read_jsonl
from core.messages import Text
from core.units import format_bytes

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
TOO_LONG = ("truncate", "drop")
CSV_PAIRS = (
    ("prompt", "response"),
    ("prompt", "completion"),
    ("instruction", "output"),
    ("question", "answer"),
    ("input", "output"),
    ("input", "target"),
)

# ----------------------------------------------------------------------------------------------------------
# 1. Loading


@dataclass
class FinetuneData:
    kind: str  # "chat" (conversations) or "text" (continued pretraining)
    name: str  # shown to the user
    sources: list[str] = field(default_factory=list)
    conversations: list[list[dict]] = field(default_factory=list)  # chat: all examples
    held_out: list[list[dict]] | None = None  # chat: a fixed validation set (the demo task's held-out questions)
    text: str = ""  # text: the corpus
    task: dict | None = None  # the demo task, when this is one

    def describe(self) -> str:
        if self.kind == "text":
            return f"{self.name}: plain text, {len(self.text):,} characters (continued pretraining)"
        n = len(self.conversations) + len(self.held_out or [])
        turns = sum(len(c) for c in self.conversations)
        return f"{self.name}: {n:,} conversations, {turns / max(1, len(self.conversations)):.1f} messages each"


def load_finetune_data(
    specs: str | os.PathLike | Sequence,
    *,
    prompt_column: str | None = None,
    response_column: str | None = None,
    csv_column: str | None = None,
    max_bytes: int | None = None,
) -> FinetuneData:
    """Conversations or plain text from files, or a built-in dataset ("builtin:arithmetic", "builtin:shakespeare").

    .jsonl / .json: conversations in any shape listed at the top of this file; objects with only a "text" field are
    plain text, as for pretraining. .csv: conversations from prompt_column and response_column (found by name when
    not given: prompt/response, instruction/output, question/answer ...), else plain text like the corpus loader.
    .txt / .md: plain text. Several files must all be conversations or all plain text."""
    specs = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    if not specs:
        raise CorpusError(Text("sft.no_data"))
    builtins = [s for s in specs if isinstance(s, str) and s.startswith(demo_task.PREFIX)]
    if builtins:
        if len(specs) > 1:
            raise CorpusError(Text("datasets.combined"))
        return _load_builtin(builtins[0])

    limit = max_corpus_bytes(max_bytes)
    paths = [Path(p) for p in specs]
    total = sum(os.stat(p).st_size for p in paths if p.is_file())
    if len(paths) > 1 and total > limit:
        raise CorpusError(Text("sft.files_too_big", n=len(paths), size=format_bytes(total), limit=format_bytes(limit)))
    parts = [_load_file(p, prompt_column, response_column, csv_column, limit) for p in paths]
    kinds = {kind for kind, _ in parts}
    if len(kinds) > 1:
        chat = next(p.name for p, (k, _) in zip(paths, parts) if k == "chat")
        text = next(p.name for p, (k, _) in zip(paths, parts) if k == "text")
        raise CorpusError(Text("sft.mixed", chat=chat, text=text))
    name = " + ".join(p.name for p in paths)
    if kinds == {"text"}:
        return FinetuneData("text", name, [str(p) for p in paths], text="\n\n".join(t for _, t in parts))
    return FinetuneData("chat", name, [str(p) for p in paths], conversations=[c for _, cs in parts for c in cs])


def _load_builtin(spec: str) -> FinetuneData:
    task = demo_task.task_for(spec)
    if task is not None:
        train, test = task.items()
        return FinetuneData(
            "chat",
            task.title,
            [spec],
            conversations=[demo_task.to_conversation(i) for i in train],
            held_out=[demo_task.to_conversation(i) for i in test],
            task=task.to_dict(),
        )
    name = spec[len(demo_task.PREFIX) :]
    if name not in BUILTIN_DATASETS:
        known = ", ".join([*demo_task.TASKS, *BUILTIN_DATASETS])
        raise CorpusError(Text("datasets.unknown", name=name, known=known))
    corpus = load_builtin(name)
    return FinetuneData("text", corpus.name, corpus.sources, text=corpus.text)


def _load_file(path: Path, prompt_column, response_column, csv_column, limit) -> tuple[str, object]:
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        return "text", read_text_file(path, max_bytes=limit)
    text = read_checked_text(path, limit, kind="data")
    if suffix == ".csv":
        return _parse_csv(text, path.name, prompt_column, response_column, csv_column)
    if suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            problem = Text("sft.json_at", msg=e.msg, line=e.lineno, column=e.colno)
            raise CorpusError(Text("sft.json_bad", where=path.name, problem=problem)) from None
        except (ValueError, RecursionError) as e:  # nested too deeply, an integer of thousands of digits
            raise CorpusError(Text("sft.json_bad", where=path.name, problem=json_problem(e))) from None
        if not isinstance(items, list):
            raise CorpusError(Text("sft.json_not_list", name=path.name))
        records = [(Text("where.item", name=path.name, item=i), obj) for i, obj in enumerate(items, 1)]
    else:
        records = []
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                where = Text("where.line", name=path.name, line=lineno)
                problem = Text("sft.json_column", msg=e.msg, column=e.colno)
                raise CorpusError(Text("sft.jsonl_bad", where=where, problem=problem)) from None
            except (ValueError, RecursionError) as e:
                where = Text("where.line", name=path.name, line=lineno)
                raise CorpusError(Text("sft.jsonl_bad", where=where, problem=json_problem(e))) from None
            records.append((Text("where.line", name=path.name, line=lineno), obj))
    if not records:
        raise CorpusError(Text("sft.no_examples", name=path.name))
    first = records[0][1]
    if isinstance(first, dict) and "text" in first and not _has_chat_fields(first):
        if suffix == ".json":
            raise CorpusError(Text("sft.json_text", name=path.name))
        return "text", read_text_file(path, max_bytes=limit)
    return "chat", [conversation_from_record(obj, where) for where, obj in records]


def _has_chat_fields(obj: dict) -> bool:
    return any(k in obj for k in ("messages", "conversations", "instruction", "output", "prompt", "completion"))


def conversation_from_record(obj, where: str | Text) -> list[dict]:
    """One example in any accepted shape -> a checked list of {"role", "content"} messages."""
    if not isinstance(obj, dict):
        raise CorpusError(Text("sft.not_object", where=where, found=type(obj).__name__))
    if "messages" in obj or "conversations" in obj:
        key = "messages" if "messages" in obj else "conversations"
        raw = obj[key]
        if not isinstance(raw, list) or not raw:
            raise CorpusError(Text("sft.messages_list", where=where, key=key))
        messages = [_message(m, key, i, where) for i, m in enumerate(raw, 1)]
    elif "instruction" in obj or "output" in obj:
        _require(obj, ("instruction", "output"), where, Text("sft.alpaca_needs"))
        extra = obj.get("input")
        if extra is not None and not isinstance(extra, str):
            raise CorpusError(Text("sft.field_string", where=where, field="input"))
        user = obj["instruction"] + (f"\n\n{extra}" if extra and extra.strip() else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": obj["output"]}]
    elif "prompt" in obj or "completion" in obj:
        _require(obj, ("prompt", "completion"), where, Text("sft.prompt_needs"))
        messages = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["completion"]}]
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
        raise CorpusError(Text("sft.no_fields", where=where, keys=keys))
    system = obj.get("system")
    if system is not None and not ("messages" in obj or "conversations" in obj):
        if not isinstance(system, str):
            raise CorpusError(Text("sft.field_string", where=where, field="system"))
        if system.strip():
            messages.insert(0, {"role": "system", "content": system})
    return check_conversation(messages, where)


def _require(obj: dict, keys, where: str | Text, what: Text) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CorpusError(Text("sft.missing_field", where=where, field=missing[0], what=what))
    wrong = [k for k in keys if not isinstance(obj[k], str)]
    if wrong:
        raise CorpusError(Text("sft.field_not_string", where=where, field=wrong[0], found=type(obj[wrong[0]]).__name__))


def _message(m, key: str, i: int, where: str | Text) -> dict:
    where = Text("where.message", where=where, i=i)
    if not isinstance(m, dict):
        raise CorpusError(Text("sft.message_object", where=where))
    if key == "conversations" and "from" in m:
        speaker = m.get("from")
        role, content = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None, m.get("value")
        if role is None:
            raise CorpusError(Text("sft.speaker", where=where, speaker=m.get("from")))
    else:
        role, content = m.get("role"), m.get("content")
        if "role" not in m or "content" not in m:
            missing = "role" if "role" not in m else "content"
            raise CorpusError(Text("sft.message_field", where=where, field=missing))
        if role not in ROLES:
            raise CorpusError(Text("sft.role", where=where, role=role))
    if not isinstance(content, str):
        raise CorpusError(Text("sft.content_string", where=where, found=type(content).__name__))
    return {"role": role, "content": content}


def check_conversation(messages: list[dict], where: str | Text) -> list[dict]:
    """Every assistant turn has text, and there is at least one: it is all the loss learns from."""
    if not any(m["role"] == "assistant" for m in messages):
        raise CorpusError(Text("sft.no_assistant", where=where))
    for i, m in enumerate(messages, 1):
        check_unicode(m["content"], Text("where.message", where=where, i=i))
        if m["role"] == "assistant" and not m["content"].strip():
            raise CorpusError(Text("sft.empty_assistant", where=Text("where.message", where=where, i=i)))
    return messages


def _parse_csv(text: str, name: str, prompt_column, response_column, csv_column):
    df = read_csv_table(text, name)
    columns = [str(c) for c in df.columns]
    listed = ", ".join(repr(c) for c in columns)
    if prompt_column is None and response_column is None:
        lower = {c.lower(): c for c in columns}
        pair = next(((lower[p], lower[r]) for p, r in CSV_PAIRS if p in lower and r in lower), None)
        if pair is None or csv_column is not None:
            return "text", parse_csv_text(text, name, csv_column)
        prompt_column, response_column = pair
    if prompt_column is None or response_column is None:
        raise CorpusError(Text("sft.csv_both_columns", name=name, listed=listed))
    for c in (prompt_column, response_column):
        if c not in df.columns:
            raise CorpusError(Text("data.csv_no_column", name=name, column=c, listed=listed))
    conversations = []
    for row, (p, r) in enumerate(zip(df[prompt_column], df[response_column]), start=2):  # line 1 is the header
        if not isinstance(r, str) or not r.strip():
            where = Text("where.row", name=name, row=row)
            raise CorpusError(Text("sft.csv_empty_response", where=where, column=response_column))
        conversations.append(
            [{"role": "user", "content": p if isinstance(p, str) else ""}, {"role": "assistant", "content": r}]
        )
    if not conversations:
        raise CorpusError(Text("sft.csv_no_rows", name=name))
    return "chat", conversations


def conversation_text(conversations: list[list[dict]]) -> str:
    """All the text of some conversations (to find characters a character-level vocabulary lacks)."""
    return "".join(m["content"] for c in conversations for m in c)


# ----------------------------------------------------------------------------------------------------------
# 2. Encoding


@dataclass
class Encoded:
    ids: list[list[int]]
    masks: list[list[bool]]
    examples: int = 0  # how many came in
    truncated: int = 0
    dropped: int = 0
    kept_indices: list[int] = field(default_factory=list)

    @property
    def target_tokens(self) -> int:
        return sum(sum(m[1:]) for m in self.masks)

    def report(self, block_size: int, policy: str, split: str) -> Text | None:
        """One sentence about examples that did not fit (split: "training", "validation" or "fine-tuning"), or
        None when all did."""
        if not (self.truncated or self.dropped):
            return None
        why = Text("sft.dropped_long") if policy == "drop" else Text("sft.dropped_empty")
        if self.truncated and self.dropped:
            what = Text("sft.truncated_and_dropped", truncated=self.truncated, dropped=self.dropped, why=why)
        elif self.truncated:
            what = Text("sft.truncated", truncated=self.truncated)
        else:
            what = Text("sft.dropped", dropped=self.dropped, why=why)
        return Text(
            "sft.too_long",
            n=self.truncated + self.dropped,
            examples=self.examples,
            split=Text(f"what.{split}"),
            block=block_size,
            what=what,
        )


def encode_conversations(
    conversations: list[list[dict]], tokenizer, template, block_size: int, too_long: str = "truncate"
) -> Encoded:
    """Each conversation as ids + mask (True: an assistant token the loss counts). A sequence of block_size + 1
    tokens gives block_size predictions, so that is the longest that fits; longer ones are truncated (their end
    is cut) or dropped, per `too_long`. A truncated example with no assistant token left is dropped."""
    if too_long not in TOO_LONG:
        raise ConfigError(Text("sft.too_long_policy", got=too_long))
    limit = block_size + 1
    out = Encoded([], [], examples=len(conversations))
    for i, conv in enumerate(conversations):
        ids, mask = template.encode_with_mask(tokenizer, conv)
        if len(ids) > limit:
            if too_long == "drop":
                out.dropped += 1
                continue
            ids, mask = ids[:limit], mask[:limit]
            if not any(mask[1:]):
                out.dropped += 1
                continue
            out.truncated += 1
        out.ids.append(ids)
        out.masks.append(mask)
        out.kept_indices.append(i)
    return out


# ----------------------------------------------------------------------------------------------------------
# 3. Storage: data/sft-{split}.ids.bin, .mask.bin, .offsets.bin


def _paths(data_dir: Path, split: str) -> tuple[Path, Path, Path]:
    return tuple(data_dir / f"sft-{split}.{part}.bin" for part in ("ids", "mask", "offsets"))


def write_examples(data_dir, split: str, encoded: Encoded, vocab_size: int) -> None:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ids_path, mask_path, off_path = _paths(data_dir, split)
    flat = np.fromiter((i for seq in encoded.ids for i in seq), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    offsets = np.cumsum([0] + [len(s) for s in encoded.ids], dtype=np.int64)
    write_array(ids_path, flat.astype(token_dtype(vocab_size)))
    write_array(mask_path, np.fromiter((m for seq in encoded.masks for m in seq), dtype=np.uint8))
    write_array(off_path, offsets)


class Examples:
    """A stored split: example i is ids[offsets[i]:offsets[i+1]] with its mask."""

    def __init__(self, data_dir, split: str, vocab_size: int):
        ids_path, mask_path, off_path = _paths(Path(data_dir), split)
        for p in (ids_path, mask_path, off_path):
            if not p.is_file():
                raise CorpusError(Text("sft.file_missing", path=str(p)))
        self.ids = np.fromfile(ids_path, dtype=token_dtype(vocab_size))
        self.mask = np.fromfile(mask_path, dtype=np.uint8)
        self.offsets = np.fromfile(off_path, dtype=np.int64)
        if len(self.offsets) < 2 or self.offsets[-1] != len(self.ids) or len(self.mask) != len(self.ids):
            raise CorpusError(Text("sft.corrupt", path=str(data_dir), split=split))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.mask[a:b]

    def batch(self, indices, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T), y (B, T) for these examples, T = the longest minus one. y is the next token where it is
        assistant output, else -1 (no loss), as on the padding."""
        pairs = [self.example(int(i)) for i in indices]
        T = max(len(ids) for ids, _ in pairs) - 1
        x = torch.zeros(len(pairs), T, dtype=torch.long)
        y = torch.full((len(pairs), T), -1, dtype=torch.long)
        for r, (ids, mask) in enumerate(pairs):
            ids = torch.from_numpy(ids.astype(np.int64))
            n = len(ids) - 1
            x[r, :n] = ids[:-1]
            y[r, :n] = torch.where(torch.from_numpy(mask[1:].astype(bool)), ids[1:], -1)
        return x.to(device), y.to(device)

    def random_batch(self, batch_size: int, generator: torch.Generator, device="cpu"):
        """batch_size examples drawn at random (with replacement) with `generator`, so restoring its state
        reproduces the batches, as for pretraining."""
        return self.batch(torch.randint(len(self), (batch_size,), generator=generator).tolist(), device)

    def target_tokens(self) -> int:
        return int(sum(self.mask[self.offsets[i] + 1 : self.offsets[i + 1]].sum() for i in range(len(self))))


def write_conversations(path, conversations: list[list[dict]]) -> None:
    """Conversations as JSONL ({"messages": [...]} per line), atomically: the validation set is kept readable in
    the run so evaluation and the app can show prompts, references and replies."""
    atomic_write_text(path, "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations))


def read_conversations(path) -> list[list[dict]]:
    records, _ = read_jsonl(path)
    return [r["messages"] for r in records]
