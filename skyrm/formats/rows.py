"""What every row parser shares: where a bad row is, why, and the checks on its fields.

A parser raises ``RowError(field, reason)``; the reader adds the file and line and
turns it into a ``BadRow`` for the quarantine, so nothing is silently dropped.
Deliberately not here: any one shape (``chat.py``, ``benchmarks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyrm.records import Message, Pair, messages_text

MAX_FIELD_CHARS = 400_000  # a response longer than this is almost surely broken data
ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "bot": "assistant", "model": "assistant", "system": "system", "tool": "tool",
                "function": "tool", "observation": "tool"}


@dataclass(frozen=True)
class BadRow:
    """A row that could not become a pair: where it is and why."""

    path: str
    line: int
    field: str
    reason: str
    raw: str
    element: int | None = None  # index in a JSON array (from 0); None for a line-delimited row

    def message(self) -> str:
        where = f"{self.path}:{self.line}" + (f": element {self.element}" if self.element is not None else "")
        return f"{where}: field '{self.field}': {self.reason}" if self.field else f"{where}: {self.reason}"


class RowError(Exception):
    """Raised inside a row parser; becomes a BadRow with the file and line added."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason



def require(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise RowError(key, "missing")
    if row[key] is None:
        raise RowError(key, "is null")
    return row[key]


def text_field(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if value is None:
        raise RowError(field, "is null")
    if not isinstance(value, str):
        raise RowError(field, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise RowError(field, f"too long ({len(value)} characters, limit {MAX_FIELD_CHARS})")
    if not allow_empty and not value.strip():
        raise RowError(field, "is empty")
    return value


def message_list(value: Any, field: str, *, role_key: str = "role", content_key: str = "content") -> list[Message]:
    if not isinstance(value, list):
        raise RowError(field, f"expected a list of messages, got {type(value).__name__}")
    messages = []
    for index, message in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise RowError(where, f"expected a message object, got {type(message).__name__}")
        role = message.get(role_key, message.get("from", message.get("role")))
        if not isinstance(role, str):
            raise RowError(f"{where}.{role_key}", "missing or not a string")
        content = message.get(content_key, message.get("value", message.get("content")))
        messages.append({"role": ROLE_ALIASES.get(role.lower(), role.lower()),
                         "content": text_field(content, f"{where}.{content_key}", allow_empty=True)})
    return messages


def response_messages(value: Any, field: str) -> list[Message]:
    """A response: a string, one message, or a list of messages ending with the assistant's."""
    if isinstance(value, str):
        messages = [{"role": "assistant", "content": text_field(value, field)}]
    elif isinstance(value, dict):
        messages = message_list([value], field)
    else:
        messages = message_list(value, field)
    if not messages:
        raise RowError(field, "is empty")
    if not messages_text(messages).strip():
        raise RowError(field, "is empty")
    return messages


def split_conversation(messages: list[Message], field: str) -> tuple[list[Message], list[Message]]:
    """Split an HF conversational side into (history, final assistant turn)."""
    if not messages or messages[-1]["role"] != "assistant":
        raise RowError(field, "must end with an assistant message")
    return messages[:-1], messages[-1:]


def make_pair(prompt: list[Message], chosen: list[Message], rejected: list[Message], source: str,
               meta: dict[str, Any] | None = None, rejected_field: str = "rejected") -> Pair:
    if messages_text(chosen).strip() == messages_text(rejected).strip():
        raise RowError(rejected_field, "identical to chosen")
    if not any(m["content"].strip() for m in prompt):
        raise RowError("prompt", "is empty")
    return Pair(prompt=prompt, chosen=chosen, rejected=rejected, source=source, meta=meta or {})



def extra_meta(row: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """Scalar fields beyond the shape's own (id, category, subset...) are kept in ``meta``."""
    return {k: v for k, v in row.items() if k not in known and isinstance(v, (str, int, float, bool))}
