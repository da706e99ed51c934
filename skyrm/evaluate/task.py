"""What every benchmark task is, and the helpers its loader uses to read rows.

A ``Task`` does three things, each small enough to read in one sitting:

- ``load(path)`` reads the benchmark's published layout into ``Example``s: the
  ``(history, response)`` items to score and the labels its rule needs;
- ``units(group, info, rewards)`` turns one example's rewards into
  ``(key, numerator, denominator)`` contributions (a win, a 1/k share, a
  correct-incorrect pair count), from labels and rewards only, never texts,
  so saved per-item scores are enough to recompute and bootstrap everything;
- ``aggregate(means, sizes)`` turns the pooled means per key into the
  benchmark's tables and headline score, using ``metrics.py``'s rules.

A loader is strict where import is forgiving: a malformed benchmark row stops the
load with its file, line and field (a benchmark scored on part of its rows would
be a wrong number), while ``skyrm import`` quarantines the row and goes on. Which
files a path stands for, and reading their records, are ``skyrm.formats``'.
Deliberately not here: any one benchmark (``tasks/``), models, the store, output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyrm.errors import InputError
from skyrm.formats import ROLE_ALIASES, iter_records
from skyrm.records import Message

Item = tuple[list[Message], list[Message]]  # (history, response): one reward
Unit = tuple[str, float, float]  # (key, numerator, denominator) pooled per key


@dataclass(frozen=True)
class Example:
    """One scored unit of a benchmark: a prompt with the responses its rule compares.

    ``group`` is the stratum for bootstrapping and the first breakdown (subset,
    domain, source); ``info`` holds the labels the rule needs (JSON-ready).
    """

    id: str
    group: str
    items: tuple[Item, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Loaded:
    """A benchmark read from disk, with notes on anything left out and why."""

    name: str
    path: str
    examples: list[Example]
    notes: list[str] = field(default_factory=list)


def read_rows(path: Path, limit: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of one file as (line, dict); a bad row stops the load with its file and line."""
    count = 0
    for line, value, error, _ in iter_records(path):
        if error is not None:
            raise InputError(error, path=str(path), line=line)
        if not isinstance(value, dict):
            raise InputError(f"expected an object, got {type(value).__name__}", path=str(path), line=line)
        yield line, value
        count += 1
        if limit is not None and count >= limit:
            return


def row_text(row: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise InputError("missing or not a string" if value is None else
                         f"expected a string, got {type(value).__name__}", path=str(path), line=line, field=key)
    return value


def row_strings(row: dict[str, Any], key: str, path: Path, line: int) -> list[str]:
    value = row.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError("expected a non-empty list of strings", path=str(path), line=line, field=key)
    return value


def row_conversation(value: Any, path: Path, line: int, key: str) -> list[Message]:
    """A prompt as messages: a string is one user turn; a list keeps its roles."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        messages = []
        for m in value:
            role = m.get("role", m.get("from"))
            content = m.get("content", m.get("value"))
            if not isinstance(role, str) or not isinstance(content, str):
                raise InputError("every message needs a string role and content", path=str(path), line=line,
                                 field=key)
            messages.append({"role": ROLE_ALIASES.get(role.lower(), role.lower()), "content": content})
        return messages
    raise InputError("expected a string or a list of messages", path=str(path), line=line, field=key)


def reply(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def table(title: str, columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"title": title, "columns": columns, "rows": rows}


def natural(text: str) -> list[Any]:
    """Sort key putting S2 before S10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class Task:
    """The interface every benchmark implements (see the module docstring)."""

    name = ""
    title = ""

    def load(self, path: str | os.PathLike[str], *, limit: int | None = None) -> Loaded:
        raise NotImplementedError

    def units(self, group: str, info: dict[str, Any], rewards: Sequence[float]) -> list[Unit]:
        raise NotImplementedError

    def aggregate(self, means: dict[str, float], sizes: dict[str, float]) -> dict[str, Any]:
        """Tables and headline(s) from pooled means per key: ``{"score", "headlines", "tables", "bars"}``."""
        raise NotImplementedError

    def extras(self, examples: Sequence[tuple[str, dict[str, Any], Sequence[float]]], *,
               seed: int, draws: int) -> dict[str, Any]:
        """Figures that are not pooled means (best-of-N curves); none by default."""
        return {}
