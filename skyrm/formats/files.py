"""Records from data files: JSON lines, JSON arrays, Parquet, ``.gz`` of each, and standard input.

Readers stream: JSONL line by line, JSON arrays element by element (an incremental
decoder, never ``json.load`` of the whole file), Parquet batch by batch. A record is
where it is: its line and, for an element of a JSON array, its index in the array
(counted from 0), since a one-line array puts every element on line 1. The path
``-`` reads JSON lines (optionally gzip-compressed) from standard input. Which files
a directory stands for (``data_files``) and a file's name without its data suffixes
are decided here, for import, eval and decontamination alike.

Deliberately not here: what a record's fields mean (``chat.py``, ``benchmarks.py``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

from skyrm.errors import InputError

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


def base_suffix(path: Path) -> str:
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
    return base_suffix(Path(path)) in (".jsonl", ".ndjson")


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
    kind = base_suffix(file)
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



# ------------------------------------------------------------- names and directories
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")  # each optionally followed by .gz


def is_data_file(path: Path) -> bool:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    return name.endswith(DATA_SUFFIXES)


def data_files(path: str | os.PathLike[str]) -> list[Path]:
    """A file as it is, or every data file below a directory (sorted, so runs are reproducible)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError("no such file or directory", path=str(root))
    found = sorted(p for p in root.rglob("*") if p.is_file() and is_data_file(p))
    if not found:
        raise InputError("no .jsonl, .json or .parquet files in this directory", path=str(root))
    return found


def strip_data_suffixes(name: str) -> str:
    """'harmless-base-test' for 'harmless-base-test.jsonl.gz' (suffixes matched in any case)."""
    for suffix in (".gz", *DATA_SUFFIXES):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name



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
    if base_suffix(file) != ".parquet" and head.startswith(PARQUET_MAGIC):
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

