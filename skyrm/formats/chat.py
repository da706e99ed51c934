"""Chat-data shapes read as pairs: hf, trl, sharegpt, hh (HH-RLHF transcripts).

Deliberately not here: benchmark shapes (``benchmarks.py``), reading files (``files.py``).
"""

from __future__ import annotations

import re
from typing import Any

from skyrm.formats.rows import RowError, extra_meta, make_pair, message_list, require, response_messages, \
    split_conversation, text_field
from skyrm.records import Message, Pair, messages_text


def parse_hf(row: dict[str, Any], source: str) -> list[Pair]:
    chosen_all = message_list(require(row, "chosen"), "chosen")
    rejected_all = message_list(require(row, "rejected"), "rejected")
    history, chosen = split_conversation(chosen_all, "chosen")
    history_r, rejected = split_conversation(rejected_all, "rejected")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages_text(messages).strip():
            raise RowError(field, "is empty")
    if history != history_r:
        raise RowError("rejected", "history differs from the chosen side's history")
    if "prompt" in row and row["prompt"] is not None and not history:
        history = _prompt_messages(row["prompt"])
    return [make_pair(history, chosen, rejected, source, extra_meta(row, ("chosen", "rejected", "prompt")))]


def _prompt_messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": text_field(value, "prompt")}]
    return message_list(value, "prompt")


def parse_trl(row: dict[str, Any], source: str) -> list[Pair]:
    prompt = _prompt_messages(require(row, "prompt"))
    chosen = response_messages(require(row, "chosen"), "chosen")
    rejected = response_messages(require(row, "rejected"), "rejected")
    return [make_pair(prompt, chosen, rejected, source, extra_meta(row, ("chosen", "rejected", "prompt")))]


def parse_sharegpt(row: dict[str, Any], source: str) -> list[Pair]:
    prompt = message_list(require(row, "conversations"), "conversations")
    if not prompt:
        raise RowError("conversations", "is empty")
    chosen = response_messages(require(row, "chosen"), "chosen")
    rejected = response_messages(require(row, "rejected"), "rejected")
    return [make_pair(prompt, chosen, rejected, source,
                       extra_meta(row, ("chosen", "rejected", "conversations")))]


HH_HUMAN, HH_ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


_HH_MARKER = re.compile(r"(\n\nHuman:|\n\nAssistant:)")


def _hh_turns(transcript: str, field: str) -> list[Message]:
    """Split an HH transcript fragment that starts with a Human: or Assistant: marker into turns."""
    parts = _HH_MARKER.split(transcript)
    if parts[0]:
        raise RowError(field, "transcript turns must start with '\\n\\nHuman:' or '\\n\\nAssistant:'")
    return [{"role": "user" if marker == HH_HUMAN else "assistant", "content": content.strip()}
            for marker, content in zip(parts[1::2], parts[2::2])]


def _common_prefix(a: str, b: str) -> str:
    """Longest common prefix by bisection on slice comparisons (fast for long, mostly equal texts)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return a[:low]


def parse_hh(row: dict[str, Any], source: str) -> list[Pair]:
    """HH-RLHF transcripts: the prompt is the shared prefix up to its last '\\n\\nAssistant:'.

    Where the two transcripts diverge before their final turn, each response
    keeps every turn after the shared prefix (as messages), so nothing is lost.
    """
    chosen_text = text_field(require(row, "chosen"), "chosen")
    rejected_text = text_field(require(row, "rejected"), "rejected")
    if not chosen_text.startswith(HH_HUMAN):
        raise RowError("chosen", "transcript must start with '\\n\\nHuman:'")
    cut = chosen_text.rfind(HH_ASSISTANT)
    if cut < 0 or chosen_text[:cut] != rejected_text[:cut] or rejected_text.rfind(HH_ASSISTANT) != cut:
        # the two transcripts diverge before their last turns: cut at the shared prefix instead
        cut = _common_prefix(chosen_text, rejected_text).rfind(HH_ASSISTANT)
    if cut < 0:
        raise RowError("rejected", "no shared history ending in an '\\n\\nAssistant:' turn")
    prompt = _hh_turns(chosen_text[:cut], "chosen")
    chosen = _hh_turns(chosen_text[cut:], "chosen")
    rejected = _hh_turns(rejected_text[cut:], "rejected")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages[-1]["content"] or messages[-1]["role"] != "assistant":
            raise RowError(field, "final assistant turn is empty")
    return [make_pair(prompt, chosen, rejected, source)]

