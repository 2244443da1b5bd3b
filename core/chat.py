"""Chat: turning a conversation into tokens and sampling the assistant's reply.

Two templates:

    TokenChatTemplate   what chat fine-tuning writes: each message is <|role|> content <|end|>, where the four
                        markers are special tokens added to the tokenizer (see core/tokenizer.py). Ordinary text
                        never encodes to them, so markers are unambiguous for every tokenizer, character-level
                        included, and a user typing "<|end|>" cannot end a turn.
    ChatTemplate        the fallback for a model only pretrained on plain text: it simply continues a
                        "User: ... / Assistant: ..." transcript, which is all a plain language model can do.

A chat fine-tuned run stores its template in config.json (`chat_template`), next to the markers' ids in
tokenizer.json, so chat in the app and `python -m core chat` render conversations exactly as the model was
trained on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

from core.engine import SamplingParams, stream
from core.errors import NewleafError
from core.messages import Text

ROLES = ("system", "user", "assistant")
SPECIAL_KIND = "special_tokens"


# ----------------------------------------------------------------------------------------------------------
# Markers as special tokens (what fine-tuning trains)


@dataclass
class TokenChatTemplate:
    """<|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|>: the markers are special tokens."""

    system: str = "<|system|>"
    user: str = "<|user|>"
    assistant: str = "<|assistant|>"
    end: str = "<|end|>"

    @property
    def markers(self) -> list[str]:
        return [self.system, self.user, self.assistant, self.end]

    def marker_ids(self, tokenizer) -> dict[str, int]:
        """role (and "end") -> special token id; a clear error when the tokenizer lacks a marker."""
        specials = tokenizer.special_tokens
        missing = [m for m in self.markers if m not in specials]
        if missing:
            raise NewleafError(Text("chat.no_markers", markers=", ".join(missing)))
        return {k: specials[getattr(self, k)] for k in (*ROLES, "end")}

    def encode_with_mask(self, tokenizer, messages: list[dict]) -> tuple[list[int], list[bool]]:
        """The conversation as token ids, and per token whether it is assistant output the loss should
        count: an assistant turn's content and its <|end|> (so the model learns to stop), nothing else."""
        mid = self.marker_ids(tokenizer)
        ids, mask = [], []
        for m in messages:
            role = _check_role(m.get("role"))
            content = tokenizer.encode(m["content"])
            learn = role == "assistant"
            ids += [mid[role], *content, mid["end"]]
            mask += [False, *[learn] * len(content), learn]
        return ids, mask

    def encode(self, tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """The prompt for the model: the conversation, then <|assistant|> where its reply begins."""
        ids, _ = self.encode_with_mask(tokenizer, messages)
        return ids + [self.marker_ids(tokenizer)["assistant"]] if add_generation_prompt else ids

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as text with the markers spelled out: for showing it, never for encoding it
        (use `encode`: the markers are special tokens, which no text encodes to)."""
        text = "".join(getattr(self, _check_role(m["role"])) + m["content"] + self.end for m in messages)
        return text + self.assistant if add_generation_prompt else text

    def parse(self, tokenizer, ids) -> list[dict]:
        """Token ids back to messages (the inverse of encode_with_mask). A last turn without <|end|> (a
        reply still being written) is included as it stands, unless it is still empty."""
        by_id = {i: role for role, i in self.marker_ids(tokenizer).items()}
        messages, role, content = [], None, []

        def close():
            if role is not None:
                messages.append({"role": role, "content": tokenizer.decode(content)})

        for i in ids.tolist() if hasattr(ids, "tolist") else ids:
            marker = by_id.get(i)
            if marker is None:
                content.append(i)
            elif marker == "end":
                close()
                role, content = None, []
            else:
                close()
                role, content = marker, []
        if role is not None and content:
            close()
        return messages

    def stop_ids(self, tokenizer) -> list[int]:
        """Every marker ends a reply: <|end|> normally, and a model that starts another turn is done too."""
        return sorted(self.marker_ids(tokenizer).values())

    @property
    def stops(self) -> list[str]:
        return []  # no stop strings: the markers are tokens

    def to_dict(self) -> dict:
        return {"kind": SPECIAL_KIND, **asdict(self)}


# ----------------------------------------------------------------------------------------------------------
# Plain transcript (models never fine-tuned for chat)


@dataclass
class ChatTemplate:
    """Markers written before each role's message and after each message. Stop strings end a reply."""

    system: str = "System: "
    user: str = "User: "
    assistant: str = "Assistant: "
    end: str = "\n"

    def prefix(self, role: str) -> str:
        return getattr(self, _check_role(role))

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as text; with add_generation_prompt, ending where the assistant's reply begins."""
        parts = [self.prefix(m["role"]) + m["content"] + self.end for m in messages]
        if add_generation_prompt:
            parts.append(self.assistant)
        return "".join(parts)

    def encode(self, tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        return tokenizer.encode(self.render(messages, add_generation_prompt))

    def stop_ids(self, tokenizer) -> list[int]:
        return []

    @property
    def stops(self) -> list[str]:
        """A reply ends where the model starts writing the next turn."""
        return [self.end + self.user.strip(), self.end + self.system.strip()]

    def to_dict(self) -> dict:
        return asdict(self)


def _check_role(role) -> str:
    if role not in ROLES:
        raise NewleafError(Text("chat.role", role=role, roles=", ".join(ROLES)))
    return role


def template_for(config: dict) -> TokenChatTemplate | ChatTemplate:
    """The run's saved chat template; the plain transcript for a run that has none."""
    saved = config.get("chat_template")
    if not saved:
        return ChatTemplate()
    if not isinstance(saved, dict):
        raise NewleafError(Text("chat.template_bad", reason="not an object"))
    cls = TokenChatTemplate if saved.get("kind") == SPECIAL_KIND else ChatTemplate
    try:
        return cls(**{k: v for k, v in saved.items() if k in ("system", "user", "assistant", "end")})
    except TypeError as e:
        raise NewleafError(Text("chat.template_bad", reason=str(e))) from None


def normalize_history(history: list) -> list[dict]:
    """Accept [{"role", "content"}] dicts (Gradio's messages format) and keep only text turns."""
    out = []
    for m in history or []:
        role, content = (m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
        if isinstance(content, list):  # Gradio may hand content as a list of parts
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        if role in ROLES and isinstance(content, str):
            out.append({"role": role, "content": content})
    return out


def stream_reply(model, tokenizer, config: dict, messages: list[dict], params: SamplingParams) -> Iterator[str]:
    """Yield the assistant's reply to `messages` piece by piece (one sample). The run's own template renders
    the conversation; the reply ends at the end marker, which is never shown."""
    template = template_for(config)
    messages = normalize_history(messages)
    if not messages or messages[-1]["role"] != "user":
        raise NewleafError(Text("chat.end_with_user"))
    ids = template.encode(tokenizer, messages)
    params.stop = list(dict.fromkeys([*template.stops, *params.stop]))
    params.stop_token_ids = list(dict.fromkeys([*template.stop_ids(tokenizer), *params.stop_token_ids]))
    params.num_samples = 1
    # the prompt may be longer than the context: the engine keeps its most recent block_size tokens
    for ev in stream(model, tokenizer, ids, params):
        if ev.text:
            yield ev.text


def reply(model, tokenizer, config: dict, messages: list[dict], params: SamplingParams) -> str:
    """The whole reply at once."""
    return "".join(stream_reply(model, tokenizer, config, messages, params))
