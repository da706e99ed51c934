"""Benchmark row shapes: RMB (pairwise and best-of-N), JudgeBench and RM-Bench, read as pairs.

``skyrm import --format rmb|rmb-bon|judgebench|rm-bench`` reads these rows as pairs,
``skyrm decontam`` reads the first user turn of any benchmark row
(``first_turn_prompt``), and ``skyrm eval`` reads the same files with its own, stricter
rule per benchmark (``skyrm.evaluate``) using the constants here. Deliberately not
here: chat shapes (``chat.py``), scoring rules (``skyrm.evaluate``).
"""

from __future__ import annotations

from typing import Any

from skyrm.formats.rows import RowError, make_pair, message_list, require, text_field
from skyrm.records import Message, Pair

RM_BENCH_STYLES = ("concise", "detailed", "markdown")  # RM-Bench's three responses per side, in this order
JUDGEBENCH_LABELS = ("A>B", "B>A")


def _rmb_answer(value: Any, field: str) -> tuple[list[Message], str]:
    if not isinstance(value, dict):
        raise RowError(field, f"expected an object with 'answer', got {type(value).__name__}")
    answer = text_field(value.get("answer"), f"{field}.answer")
    return [{"role": "assistant", "content": answer}], str(value.get("llm_name", ""))


def _rmb_prompt(row: dict[str, Any]) -> list[Message]:
    return [{"role": m["role"], "content": m["content"]} for m in
            message_list(require(row, "conversation_input"), "conversation_input")]


def parse_rmb(row: dict[str, Any], source: str) -> list[Pair]:
    prompt = _rmb_prompt(row)
    chosen, chosen_model = _rmb_answer(require(row, "chosen"), "chosen")
    rejected, rejected_model = _rmb_answer(require(row, "reject"), "reject")
    meta = {"uid": row.get("pair_uid"), "category": row.get("category_path"),
            "chosen_model": chosen_model, "rejected_model": rejected_model}
    return [make_pair(prompt, chosen, rejected, source, meta, rejected_field="reject")]


def parse_rmb_bon(row: dict[str, Any], source: str) -> list[Pair]:
    """One pair per (best, loser); ``meta.group`` ties the list together for best-of-N metrics."""
    prompt = _rmb_prompt(row)
    best, best_model = _rmb_answer(require(row, "bon_best"), "bon_best")
    losers = require(row, "loser_list")
    if not isinstance(losers, list) or not losers:
        raise RowError("loser_list", "expected a non-empty list")
    pairs = []
    for index, loser in enumerate(losers):
        rejected, rejected_model = _rmb_answer(loser, f"loser_list[{index}]")
        meta = {"group": row.get("bon_uid"), "category": row.get("category_path"), "loser_index": index,
                "n_losers": len(losers), "chosen_model": best_model, "rejected_model": rejected_model}
        pairs.append(make_pair(prompt, best, rejected, source, meta, rejected_field=f"loser_list[{index}]"))
    return pairs


def parse_judgebench(row: dict[str, Any], source: str) -> list[Pair]:
    question = text_field(require(row, "question"), "question")
    a = text_field(require(row, "response_A"), "response_A")
    b = text_field(require(row, "response_B"), "response_B")
    label = require(row, "label")
    if label not in JUDGEBENCH_LABELS:
        raise RowError("label", f"expected 'A>B' or 'B>A', got {label!r}")
    chosen, rejected = (a, b) if label == "A>B" else (b, a)
    meta = {"uid": row.get("pair_id"), "category": row.get("source"), "label": label}
    return [make_pair([{"role": "user", "content": question}], [{"role": "assistant", "content": chosen}],
                       [{"role": "assistant", "content": rejected}], source, meta,
                       rejected_field="response_B" if label == "A>B" else "response_A")]


def parse_rm_bench(row: dict[str, Any], source: str) -> list[Pair]:
    """One pair per (chosen style, rejected style): the 3x3 matrix, styles kept in ``meta``."""
    prompt = [{"role": "user", "content": text_field(require(row, "prompt"), "prompt")}]
    chosen_all, rejected_all = require(row, "chosen"), require(row, "rejected")
    for field, value in (("chosen", chosen_all), ("rejected", rejected_all)):
        if not isinstance(value, list) or len(value) != 3:
            raise RowError(field, "expected a list of 3 responses (concise, detailed, markdown)")
    pairs = []
    for i, chosen in enumerate(chosen_all):
        for j, rejected in enumerate(rejected_all):
            meta = {"uid": row.get("id"), "category": row.get("subset"), "chosen_style": RM_BENCH_STYLES[i],
                    "rejected_style": RM_BENCH_STYLES[j]}
            pairs.append(make_pair(prompt, [{"role": "assistant", "content": text_field(chosen, f"chosen[{i}]")}],
                                    [{"role": "assistant", "content": text_field(rejected, f"rejected[{j}]")}],
                                    source, meta))
    return pairs


def first_turn_prompt(row: Any) -> str | None:
    """The first user turn of a benchmark row in any shape skyrm reads."""
    if not isinstance(row, dict):
        return None
    for key in ("prompt", "question", "instruction"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list):
            return _first_user(value)
    for key in ("conversation_input", "conversations", "messages"):
        if isinstance(row.get(key), list):
            return _first_user(row[key])
    chosen = row.get("chosen")
    if isinstance(chosen, str) and "Human:" in chosen:  # HH transcripts
        start = chosen.find("Human:") + len("Human:")
        end = chosen.find("\n\nAssistant:", start)
        return chosen[start:end if end >= 0 else None].strip()
    if isinstance(chosen, list):
        return _first_user(chosen)
    return None


def _first_user(messages: list[Any]) -> str | None:
    for message in messages:
        if isinstance(message, dict) and (message.get("role") or message.get("from")) in ("user", "human"):
            content = message.get("content", message.get("value"))
            return content if isinstance(content, str) else None
    return None
