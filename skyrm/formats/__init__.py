"""Preference-data files: which shapes exist, reading a file as pairs, and writing pairs.

A ``formats`` package with one module a job:

- ``files.py``: records from files (JSONL, JSON arrays, Parquet, ``.gz``, stdin), the data
  files under a directory, a file's name without its data suffixes;
- ``rows.py``: ``BadRow``/``RowError`` and the field checks every row parser shares;
- ``chat.py``: chat-data shapes (hf, trl, sharegpt, hh);
- ``benchmarks.py``: benchmark row shapes (rmb, rmb-bon, judgebench, rm-bench) and the
  first user turn of any benchmark row (decontamination);
- ``writers.py``: the exchange shapes written by export (trl, hf, openrlhf, sharegpt);
- here: the registry of shapes read (``--format``), ``auto`` detection from the first
  row, and ``read_pairs``, which turns every row into pairs or a ``BadRow`` naming file,
  line, field and reason.

Deliberately not here: the store (import and export orchestration live in
``skyrm.ingest``) and any model.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyrm.errors import InputError
from skyrm.formats.benchmarks import JUDGEBENCH_LABELS, RM_BENCH_STYLES, first_turn_prompt, parse_judgebench, parse_rm_bench, \
    parse_rmb, parse_rmb_bon
from skyrm.formats.chat import parse_hf, parse_hh, parse_sharegpt, parse_trl
from skyrm.formats.files import DATA_SUFFIXES, STDIN, STDIN_NAME, TOO_DEEP, Record, _iter_json_array, data_files, \
    display_path, is_line_delimited, is_stdin, iter_records, iter_records_at, sniff, strip_data_suffixes
from skyrm.formats.rows import MAX_FIELD_CHARS, ROLE_ALIASES, BadRow, RowError
from skyrm.formats.writers import SHAPE_TO_FORMAT, SHAPES, PairWriter, pair_to_row
from skyrm.records import Pair

__all__ = ["DATA_SUFFIXES", "FORMATS", "JUDGEBENCH_LABELS", "MAX_FIELD_CHARS", "PARSERS", "RM_BENCH_STYLES", "ROLE_ALIASES",
           "SHAPES", "SHAPE_TO_FORMAT", "STDIN", "STDIN_NAME", "TOO_DEEP", "BadRow", "PairWriter", "ReadResult",
           "Record", "RowError", "data_files", "default_source", "detect_file_format", "detect_format",
           "display_path", "first_turn_prompt", "is_line_delimited", "is_stdin", "iter_records",
           "iter_records_at", "pair_to_row", "read_pairs", "sniff", "strip_data_suffixes", "_iter_json_array"]

FORMATS = ("auto", "hf", "trl", "sharegpt", "hh", "rmb", "rmb-bon", "judgebench", "rm-bench")


PARSERS: dict[str, Callable[[dict[str, Any], str], list[Pair]]] = {
    "hf": parse_hf, "trl": parse_trl, "sharegpt": parse_sharegpt, "hh": parse_hh, "rmb": parse_rmb,
    "rmb-bon": parse_rmb_bon, "judgebench": parse_judgebench, "rm-bench": parse_rm_bench,
}


def detect_format(row: Any) -> str | None:
    """Guess a row's shape from its keys; None when no shape fits."""
    if not isinstance(row, dict):
        return None
    keys = set(row)
    if {"conversation_input", "bon_best"} <= keys:
        return "rmb-bon"
    if {"conversation_input", "chosen", "reject"} <= keys:
        return "rmb"
    if {"response_A", "response_B", "label"} <= keys:
        return "judgebench"
    if "conversations" in keys and {"chosen", "rejected"} <= keys:
        return "sharegpt"
    if {"chosen", "rejected"} <= keys:
        chosen = row["chosen"]
        if "prompt" in keys and isinstance(chosen, list) and len(chosen) == 3 and all(
                isinstance(c, str) for c in chosen) and isinstance(row.get("rejected"), list):
            return "rm-bench"
        if isinstance(chosen, str) and chosen.lstrip("\n").startswith("Human:") and "prompt" not in keys:
            return "hh"
        if "prompt" in keys:
            return "trl"
        if isinstance(chosen, list):
            return "hf"
    return None


@dataclass
class ReadResult:
    """What reading one row gave: pairs, or a bad row."""

    line: int
    pairs: list[Pair]
    bad: BadRow | None = None
    number: int = 0  # the record's number (``Record.number``): what a resumed read skips to
    element: int | None = None  # index in a JSON array


def read_pairs(path: str | os.PathLike[str], *, fmt: str = "auto", source: str | None = None,
               start_record: int = 0, keep: Callable[[int], bool] | None = None) -> Iterator[ReadResult]:
    """Stream a file as ReadResults: each row's pairs, or why the row is bad.

    ``start_record`` skips records numbered up to it (resuming a large import: the
    line of a line-delimited file, 1 + the element index of a JSON array);
    ``keep(line)`` reads only some lines of a line-delimited file (parallel readers).
    A file that cannot be read to its end (truncated gzip, I/O error) raises after
    the rows read before the damage, naming the last good line.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})", path=str(path))
    file = Path(path)
    source_name = source or default_source(file)
    chosen_format = None if fmt == "auto" else fmt
    last = [0]  # the line of the last record read
    try:
        yield from _parse_records(file, chosen_format, source_name, start_record, keep, last)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, truncated or not really gzip
        after = f" after line {last[0]}" if last[0] else ""
        raise InputError(f"cannot read the file{after} ({exc})", path=display_path(file)) from exc


def _parse_records(file: Path, chosen_format: str | None, source_name: str, start_record: int,
                   keep: Callable[[int], bool] | None, last: list[int]) -> Iterator[ReadResult]:
    for number, line, element, value, error, raw in iter_records_at(file, keep):
        last[0] = line
        if number <= start_record:
            continue
        if error is not None:
            yield ReadResult(line, [], BadRow(display_path(file), line, "", error, raw[:20000], element), number, element)
            continue
        if not isinstance(value, dict):
            yield ReadResult(line, [], BadRow(display_path(file), line, "", f"expected an object, got {type(value).__name__}",
                                              raw[:20000] or json.dumps(value)[:20000], element), number, element)
            continue
        if chosen_format is None:
            chosen_format = detect_format(value)
            if chosen_format is None:
                where = f" (element {element})" if element is not None else ""
                raise InputError(f"cannot tell the file's format from its first row{where} (keys: "
                                 f"{', '.join(sorted(value)) or 'none'}); pass --format", path=display_path(file), line=line)
        try:
            pairs = PARSERS[chosen_format](value, source_name)
        except RowError as exc:
            yield ReadResult(line, [], BadRow(display_path(file), line, exc.field, exc.reason,
                                              raw[:20000] or json.dumps(value, ensure_ascii=False, default=str)[:20000],
                                              element), number, element)
            continue
        yield ReadResult(line, pairs, None, number, element)


def detect_file_format(path: str | os.PathLike[str], start_line: int = 0) -> str | None:
    """The format of a file's first object row after ``start_line`` (None if it cannot tell)."""
    try:
        for line, value, error, _ in iter_records(path):
            if line > start_line and error is None and isinstance(value, dict):
                return detect_format(value)
    except (OSError, EOFError, zlib.error):
        return None  # reading it properly will say what is wrong
    return None


def default_source(path: Path) -> str:
    """A source name from a file name: 'harmless-base-test' for harmless-base-test.jsonl.gz,
    'stdin' for standard input. (``skyrm.ingest.default_sources`` names several files at once.)"""
    if is_stdin(path):
        return "stdin"
    return strip_data_suffixes(Path(path).name)

