"""Readers and writers for preference-data files, with row validation.

Readers stream: JSONL line by line, JSON arrays element by element (an
incremental decoder, never ``json.load`` of the whole file), Parquet batch by
batch, and ``.gz`` of each. Every row becomes zero or more ``Pair`` objects or a
``BadRow`` naming file, line, field and reason; nothing is silently dropped.

Shapes read (``--format``): hf, trl, sharegpt, hh, rmb, rmb-bon, judgebench,
rm-bench; ``auto`` picks one from the first row. Shapes written: trl, hf,
openrlhf, sharegpt.

A record is where it is: its line and, for an element of a JSON array, its index
in the array (counted from 0), since a one-line array puts every element on line 1.
The path ``-`` reads JSON lines (optionally gzip-compressed) from standard input.

Deliberately not here: the store (import/export orchestration lives in
``skyrm.io``) and any model.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from skyrm.errors import InputError
from skyrm.records import Message, Pair, messages_text

FORMATS = ("auto", "hf", "trl", "sharegpt", "hh", "rmb", "rmb-bon", "judgebench", "rm-bench")
SHAPES = ("trl", "hf", "openrlhf", "sharegpt")
MAX_FIELD_CHARS = 400_000  # a response longer than this is almost surely broken data
RM_BENCH_STYLES = ("concise", "detailed", "markdown")
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


# ---------------------------------------------------------------- raw records
STDIN = "-"  # the path that means standard input
GZIP_MAGIC, PARQUET_MAGIC = b"\x1f\x8b", b"PAR1"


STDIN_NAME = "<stdin>"  # how messages and the quarantine name standard input


def is_stdin(path: str | os.PathLike[str]) -> bool:
    return str(path) == STDIN


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as messages show it ('<stdin>' for '-')."""
    return STDIN_NAME if is_stdin(path) else str(path)


def _open_binary(path: Path) -> Any:
    if is_stdin(path):
        stream = sys.stdin.buffer
        peek = getattr(stream, "peek", None)
        if peek is not None and peek(2)[:2] == GZIP_MAGIC:
            return gzip.GzipFile(fileobj=stream, mode="rb")  # closing it leaves stdin open
        return nullcontext(stream)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _base_suffix(path: Path) -> str:
    if is_stdin(path):
        return ".jsonl"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


class Record(NamedTuple):
    """One record of a file: ``number`` orders records (the line of a line-delimited file,
    1 + the element index in a JSON array, the row of a Parquet file) and is what a resumed
    import skips to; ``element`` is the array index (None outside arrays)."""

    number: int
    line: int
    element: int | None
    value: Any
    error: str | None
    raw: str


def _iter_jsonl(path: Path, keep: Callable[[int], bool] | None = None) -> Iterator[Record]:
    number = 0  # lines read whole, skipped ones too: where a damaged file breaks off
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if keep is not None and not keep(number):
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Record(number, number, None, None, f"invalid UTF-8 at byte {exc.start}",
                                 raw.decode("utf-8", "replace"))
                    continue
                text = text.rstrip("\r\n")
                if not text.strip():
                    continue
                try:
                    yield Record(number, number, None, json.loads(text), None, text)
                except json.JSONDecodeError as exc:
                    yield Record(number, number, None, None, f"invalid JSON ({exc.msg} at column {exc.colno})",
                                 text)
                except RecursionError:  # a row nested thousands deep: bad, not fatal for the file
                    yield Record(number, number, None, None, TOO_DEEP, text[:2000])
    except (OSError, EOFError, zlib.error) as exc:  # truncated or not really gzip, or an I/O error
        after = f" after line {number}" if number else ""
        raise InputError(f"cannot read the file{after} ({exc})", path=display_path(path)) from exc


def _iter_json_array(path: Path, chunk_chars: int = 1 << 20) -> Iterator[Record]:
    """Stream the elements of a top-level JSON array (or one object) with their start line and index."""
    decoder = json.JSONDecoder()
    with _open_binary(path) as raw_handle:
        handle = io.TextIOWrapper(raw_handle, encoding="utf-8", errors="strict")
        buffer, pos, line, eof = "", 0, 1, False

        def fill() -> bool:
            nonlocal buffer, pos, eof
            if eof:
                return False
            try:
                chunk = handle.read(chunk_chars)
            except UnicodeDecodeError as exc:
                raise InputError(f"invalid UTF-8 near byte {exc.start} of a read block", path=str(path)) from exc
            if not chunk:
                eof = True
                return False
            buffer = buffer[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos, line
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n":
                    if buffer[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buffer) or not fill():
                    return

        skip_ws()
        if pos >= len(buffer):
            return
        if buffer[pos] == "{":  # a single object file
            text = buffer[pos:] + handle.read()
            try:
                yield Record(1, line, None, json.loads(text), None, text)
            except json.JSONDecodeError as exc:
                yield Record(1, line, None, None, f"invalid JSON ({exc.msg})", text[:2000])
            except RecursionError:
                yield Record(1, line, None, None, TOO_DEEP, text[:2000])
            return
        if buffer[pos] != "[":
            raise InputError("not a JSON array or object", path=str(path), line=line)
        pos += 1
        index = 0  # of the next element, from 0
        while True:
            skip_ws()
            if pos >= len(buffer):
                raise InputError("unexpected end of file inside the JSON array", path=str(path), line=line)
            if buffer[pos] == "]":
                return
            if buffer[pos] == "," and index > 0:
                pos += 1
                skip_ws()
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                    break
                except json.JSONDecodeError as exc:
                    if fill():
                        continue
                    raise InputError(f"invalid JSON in element {index} ({exc.msg})", path=str(path),
                                     line=line + buffer.count("\n", pos, exc.pos)) from exc
                except RecursionError as exc:
                    raise InputError(f"element {index}: {TOO_DEEP}; the elements before it are read",
                                     path=str(path), line=line) from exc
            raw = buffer[pos:end]
            start_line = line
            line += raw.count("\n")
            pos = end
            yield Record(index + 1, start_line, index, value, None, raw)
            index += 1


TOO_DEEP = "nested too deeply to parse"


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    tmp_name = None
    source: Any = path
    if path.suffix == ".gz":  # Parquet needs a seekable file: decompress to a temporary one
        with gzip.open(path, "rb") as src, tempfile.NamedTemporaryFile(suffix=".parquet", delete=False) as dst:
            while block := src.read(1 << 20):
                dst.write(block)
            tmp_name = source = dst.name
    try:
        number = 0
        try:
            parquet = pq.ParquetFile(source)
        except Exception as exc:  # pyarrow raises ArrowInvalid and others for a file that is not Parquet
            raise InputError(f"not a readable Parquet file ({str(exc).splitlines()[0]})", path=str(path)) from exc
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield Record(number, number, None, row, None, "")
    finally:
        if tmp_name:
            os.unlink(tmp_name)


def is_line_delimited(path: str | os.PathLike[str]) -> bool:
    """One record per line (.jsonl, .ndjson, optionally .gz): lines can be split among readers."""
    return _base_suffix(Path(path)) in (".jsonl", ".ndjson")


def iter_records(path: str | os.PathLike[str], keep: Callable[[int], bool] | None = None
                 ) -> Iterator[tuple[int, Any, str | None, str]]:
    """Yield ``(line, value, error, raw_text)`` for each record of a file, streaming.

    ``keep(line)`` (line-delimited files only) skips the other lines unparsed.
    """
    return ((r.line, r.value, r.error, r.raw) for r in iter_records_at(path, keep))


def iter_records_at(path: str | os.PathLike[str], keep: Callable[[int], bool] | None = None) -> Iterator[Record]:
    """``iter_records`` with each record's number and array index (``Record``)."""
    file = Path(path)
    if not is_stdin(file) and not file.exists():
        raise InputError("no such file", path=str(file))
    kind = _base_suffix(file)
    if keep is not None and kind not in (".jsonl", ".ndjson"):
        raise ValueError("keep= needs a line-delimited file")
    if kind in (".jsonl", ".ndjson"):
        return _iter_jsonl(file, keep)
    if kind == ".json":
        return _iter_json_array(file)
    if kind == ".parquet":
        return _iter_parquet(file)
    raise InputError(f"unsupported file type '{kind or file.name}': use .jsonl, .json or .parquet (optionally .gz)",
                     path=str(file))


# ------------------------------------------------------------- field helpers
def _require(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise RowError(key, "missing")
    if row[key] is None:
        raise RowError(key, "is null")
    return row[key]


def _text(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if value is None:
        raise RowError(field, "is null")
    if not isinstance(value, str):
        raise RowError(field, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise RowError(field, f"too long ({len(value)} characters, limit {MAX_FIELD_CHARS})")
    if not allow_empty and not value.strip():
        raise RowError(field, "is empty")
    return value


def _messages(value: Any, field: str, *, role_key: str = "role", content_key: str = "content") -> list[Message]:
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
                         "content": _text(content, f"{where}.{content_key}", allow_empty=True)})
    return messages


def _response(value: Any, field: str) -> list[Message]:
    """A response: a string, one message, or a list of messages ending with the assistant's."""
    if isinstance(value, str):
        messages = [{"role": "assistant", "content": _text(value, field)}]
    elif isinstance(value, dict):
        messages = _messages([value], field)
    else:
        messages = _messages(value, field)
    if not messages:
        raise RowError(field, "is empty")
    if not messages_text(messages).strip():
        raise RowError(field, "is empty")
    return messages


def _split_conversation(messages: list[Message], field: str) -> tuple[list[Message], list[Message]]:
    """Split an HF conversational side into (history, final assistant turn)."""
    if not messages or messages[-1]["role"] != "assistant":
        raise RowError(field, "must end with an assistant message")
    return messages[:-1], messages[-1:]


def _make_pair(prompt: list[Message], chosen: list[Message], rejected: list[Message], source: str,
               meta: dict[str, Any] | None = None, rejected_field: str = "rejected") -> Pair:
    if messages_text(chosen).strip() == messages_text(rejected).strip():
        raise RowError(rejected_field, "identical to chosen")
    if not any(m["content"].strip() for m in prompt):
        raise RowError("prompt", "is empty")
    return Pair(prompt=prompt, chosen=chosen, rejected=rejected, source=source, meta=meta or {})


# --------------------------------------------------------------- row parsers
def _extra_meta(row: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """Scalar fields beyond the shape's own (id, category, subset...) are kept in ``meta``."""
    return {k: v for k, v in row.items() if k not in known and isinstance(v, (str, int, float, bool))}


def parse_hf(row: dict[str, Any], source: str) -> list[Pair]:
    chosen_all = _messages(_require(row, "chosen"), "chosen")
    rejected_all = _messages(_require(row, "rejected"), "rejected")
    history, chosen = _split_conversation(chosen_all, "chosen")
    history_r, rejected = _split_conversation(rejected_all, "rejected")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages_text(messages).strip():
            raise RowError(field, "is empty")
    if history != history_r:
        raise RowError("rejected", "history differs from the chosen side's history")
    if "prompt" in row and row["prompt"] is not None and not history:
        history = _prompt_messages(row["prompt"])
    return [_make_pair(history, chosen, rejected, source, _extra_meta(row, ("chosen", "rejected", "prompt")))]


def _prompt_messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        return [{"role": "user", "content": _text(value, "prompt")}]
    return _messages(value, "prompt")


def parse_trl(row: dict[str, Any], source: str) -> list[Pair]:
    prompt = _prompt_messages(_require(row, "prompt"))
    chosen = _response(_require(row, "chosen"), "chosen")
    rejected = _response(_require(row, "rejected"), "rejected")
    return [_make_pair(prompt, chosen, rejected, source, _extra_meta(row, ("chosen", "rejected", "prompt")))]


def parse_sharegpt(row: dict[str, Any], source: str) -> list[Pair]:
    prompt = _messages(_require(row, "conversations"), "conversations")
    if not prompt:
        raise RowError("conversations", "is empty")
    chosen = _response(_require(row, "chosen"), "chosen")
    rejected = _response(_require(row, "rejected"), "rejected")
    return [_make_pair(prompt, chosen, rejected, source,
                       _extra_meta(row, ("chosen", "rejected", "conversations")))]


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
    chosen_text = _text(_require(row, "chosen"), "chosen")
    rejected_text = _text(_require(row, "rejected"), "rejected")
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
    return [_make_pair(prompt, chosen, rejected, source)]


def _rmb_answer(value: Any, field: str) -> tuple[list[Message], str]:
    if not isinstance(value, dict):
        raise RowError(field, f"expected an object with 'answer', got {type(value).__name__}")
    answer = _text(value.get("answer"), f"{field}.answer")
    return [{"role": "assistant", "content": answer}], str(value.get("llm_name", ""))


def _rmb_prompt(row: dict[str, Any]) -> list[Message]:
    return [{"role": m["role"], "content": m["content"]} for m in
            _messages(_require(row, "conversation_input"), "conversation_input")]


def parse_rmb(row: dict[str, Any], source: str) -> list[Pair]:
    prompt = _rmb_prompt(row)
    chosen, chosen_model = _rmb_answer(_require(row, "chosen"), "chosen")
    rejected, rejected_model = _rmb_answer(_require(row, "reject"), "reject")
    meta = {"uid": row.get("pair_uid"), "category": row.get("category_path"),
            "chosen_model": chosen_model, "rejected_model": rejected_model}
    return [_make_pair(prompt, chosen, rejected, source, meta, rejected_field="reject")]


def parse_rmb_bon(row: dict[str, Any], source: str) -> list[Pair]:
    """One pair per (best, loser); ``meta.group`` ties the list together for best-of-N metrics."""
    prompt = _rmb_prompt(row)
    best, best_model = _rmb_answer(_require(row, "bon_best"), "bon_best")
    losers = _require(row, "loser_list")
    if not isinstance(losers, list) or not losers:
        raise RowError("loser_list", "expected a non-empty list")
    pairs = []
    for index, loser in enumerate(losers):
        rejected, rejected_model = _rmb_answer(loser, f"loser_list[{index}]")
        meta = {"group": row.get("bon_uid"), "category": row.get("category_path"), "loser_index": index,
                "n_losers": len(losers), "chosen_model": best_model, "rejected_model": rejected_model}
        pairs.append(_make_pair(prompt, best, rejected, source, meta, rejected_field=f"loser_list[{index}]"))
    return pairs


def parse_judgebench(row: dict[str, Any], source: str) -> list[Pair]:
    question = _text(_require(row, "question"), "question")
    a = _text(_require(row, "response_A"), "response_A")
    b = _text(_require(row, "response_B"), "response_B")
    label = _require(row, "label")
    if label not in ("A>B", "B>A"):
        raise RowError("label", f"expected 'A>B' or 'B>A', got {label!r}")
    chosen, rejected = (a, b) if label == "A>B" else (b, a)
    meta = {"uid": row.get("pair_id"), "category": row.get("source"), "label": label}
    return [_make_pair([{"role": "user", "content": question}], [{"role": "assistant", "content": chosen}],
                       [{"role": "assistant", "content": rejected}], source, meta,
                       rejected_field="response_B" if label == "A>B" else "response_A")]


def parse_rm_bench(row: dict[str, Any], source: str) -> list[Pair]:
    """One pair per (chosen style, rejected style): the 3x3 matrix, styles kept in ``meta``."""
    prompt = [{"role": "user", "content": _text(_require(row, "prompt"), "prompt")}]
    chosen_all, rejected_all = _require(row, "chosen"), _require(row, "rejected")
    for field, value in (("chosen", chosen_all), ("rejected", rejected_all)):
        if not isinstance(value, list) or len(value) != 3:
            raise RowError(field, "expected a list of 3 responses (concise, detailed, markdown)")
    pairs = []
    for i, chosen in enumerate(chosen_all):
        for j, rejected in enumerate(rejected_all):
            meta = {"uid": row.get("id"), "category": row.get("subset"), "chosen_style": RM_BENCH_STYLES[i],
                    "rejected_style": RM_BENCH_STYLES[j]}
            pairs.append(_make_pair(prompt, [{"role": "assistant", "content": _text(chosen, f"chosen[{i}]")}],
                                    [{"role": "assistant", "content": _text(rejected, f"rejected[{j}]")}],
                                    source, meta))
    return pairs


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


def strip_data_suffixes(name: str) -> str:
    """'harmless-base-test' for 'harmless-base-test.jsonl.gz'."""
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def default_source(path: Path) -> str:
    """A source name from a file name: 'harmless-base-test' for harmless-base-test.jsonl.gz,
    'stdin' for standard input. (``skyrm.ingest.default_sources`` names several files at once.)"""
    if is_stdin(path):
        return "stdin"
    return strip_data_suffixes(Path(path).name)


def sniff(path: str | os.PathLike[str]) -> str | None:
    """What a file whose rows are no JSON objects probably is, as a hint for the user (or None):
    its first bytes tell gzip or Parquet data under another name, or data that is not text."""
    file = Path(path)
    if is_stdin(file):
        return None
    try:
        with open(file, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if file.suffix != ".gz" and head.startswith(GZIP_MAGIC):
        return "the file is gzip-compressed: name it with a .gz suffix"
    if _base_suffix(file) != ".parquet" and head.startswith(PARQUET_MAGIC):
        return "the file is Parquet: name it with a .parquet suffix"
    if b"\x00" in head or (head and _not_text(head)):
        return "the file is binary, not JSON text"
    return None


def _not_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a multi-byte character cut by the 4096-byte read is still text
    return False


# ------------------------------------------------------------------- writers
def pair_to_row(pair: Pair, shape: str) -> dict[str, Any]:
    """A pair in an exchange shape that TRL, OpenRLHF or LLaMA-Factory read."""
    if shape == "trl":
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if shape == "hf":
        return {"chosen": pair.prompt + pair.chosen, "rejected": pair.prompt + pair.rejected}
    if shape == "openrlhf":
        # OpenRLHF's reward datasets: prompt + chosen/rejected as message lists (apply_chat_template).
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if shape == "sharegpt":
        if len(pair.chosen) != 1 or len(pair.rejected) != 1:
            raise InputError("the sharegpt shape holds one message per response; use --shape trl")
        return {"conversations": [{"from": m["role"], "content": m["content"]} for m in pair.prompt],
                "chosen": {"from": "assistant", "content": pair.chosen[0]["content"]},
                "rejected": {"from": "assistant", "content": pair.rejected[0]["content"]}}
    raise InputError(f"unknown shape '{shape}' (choose from {', '.join(SHAPES)})")


SHAPE_TO_FORMAT = {"trl": "trl", "hf": "hf", "openrlhf": "trl", "sharegpt": "sharegpt"}


class PairWriter:
    """Write rows to .jsonl or .parquet (optionally .jsonl.gz), chosen by the file name."""

    def __init__(self, path: str | os.PathLike[str], batch_rows: int = 2048):
        self.path = Path(path)
        self.kind = _base_suffix(self.path)
        if self.kind not in (".jsonl", ".parquet"):
            raise InputError("export writes .jsonl, .jsonl.gz or .parquet", path=str(self.path))
        self._rows: list[dict[str, Any]] = []
        self._batch = batch_rows
        self._writer: Any = None
        self._text: IO[str] | None = None
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        if self.kind == ".jsonl":
            self._text = (gzip.open(self._tmp, "wt", encoding="utf-8") if self.path.suffix == ".gz"
                          else open(self._tmp, "w", encoding="utf-8"))

    def write(self, row: dict[str, Any]) -> None:
        self.count += 1
        if self._text is not None:
            self._text.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))
        self._rows = []

    def close(self) -> None:
        """Finish the file and move it into place (a crash leaves only a .part file)."""
        if self._text is not None:
            self._text.close()
        else:
            self._flush()
            if self._writer is None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({}), self._tmp)
            else:
                self._writer.close()
        os.replace(self._tmp, self.path)
