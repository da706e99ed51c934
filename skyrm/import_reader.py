"""Reading a file for import: rows parsed, validated and hashed, in batches.

``read_batches`` runs in-process. ``read_batches_in_children`` runs the same
reader in child interpreters (``python -m skyrm.import_reader``) that stream
pickled batches through pipes, so parsing and SQLite's B-tree work run on
separate cores; a thread would not help, as the GIL serialises the parser with
every row written. A line-delimited file is split among ``READERS`` children
by blocks of ``batch_rows`` lines (each reads every line but parses only its
own blocks) and the parent merges the blocks back in file order, so the
resume checkpoint still moves forward line by line. The pipes hold little, so
each child is at most about a batch ahead and memory stays constant in the
file size. The children are our own code talking to their parent: the
pickles never come from a file.

If the parent dies (kill -9), the child's next write fails and it exits;
Ctrl-C is left to the parent, which stops the child.

A file that cannot be read to its end (a truncated .gz) yields every row read
before the damage, then raises: the caller decides what to keep.
"""

from __future__ import annotations

import heapq
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from skyrm.errors import SkyrmError
from skyrm.formats import STDIN_NAME, detect_file_format, is_line_delimited, is_stdin, read_pairs
from skyrm.store import pair_row

# One row of a file as the writer needs it: record number (``formats.Record``; the line of a
# line-delimited file), pair rows (``store.pair_row``), quarantine row.
ParsedRow = tuple[int, list[tuple], "dict[str, Any] | None"]
# Child processes for a line-delimited file: two parsers keep a writer busy on two cores.
READERS = 2


def _parsed_rows(path: Path, fmt: str, source: str, start_line: int,
                 keep: Callable[[int], bool] | None = None) -> Iterator[ParsedRow]:
    where = STDIN_NAME if is_stdin(path) else str(Path(path).resolve())
    for result in read_pairs(path, fmt=fmt, source=source, start_record=start_line, keep=keep):
        bad = None
        if result.bad is not None:
            bad = {"source": source, "path": where, "line": result.line, "element": result.element,
                   "field": result.bad.field, "reason": result.bad.reason, "raw": result.bad.raw}
        yield result.number, [pair_row(pair) for pair in result.pairs], bad


def read_batches(path: Path, fmt: str, source: str, start_line: int, batch_rows: int) -> Iterator[list[ParsedRow]]:
    """The file after record ``start_line`` as batches of ``batch_rows`` parsed rows (the last may be short)."""
    batch: list[ParsedRow] = []
    try:
        for row in _parsed_rows(path, fmt, source, start_line):
            batch.append(row)
            if len(batch) == batch_rows:
                yield batch
                batch = []
    except SkyrmError:
        if batch:  # the rows read before the file broke off
            yield batch
        raise
    if batch:
        yield batch


def read_blocks(path: Path, fmt: str, source: str, start_line: int, batch_rows: int, index: int,
                count: int) -> Iterator[tuple[int, list[ParsedRow]]]:
    """``(block, rows)`` of a line-delimited file: blocks of ``batch_rows`` lines after ``start_line``.

    Only blocks index, index + count, index + 2 count... are parsed (the other
    lines are skipped unparsed); a block with no rows is not sent.
    """
    def block_of(line: int) -> int:
        return (line - start_line - 1) // batch_rows

    def keep(line: int) -> bool:
        return line > start_line and block_of(line) % count == index

    batch: list[ParsedRow] = []
    block = -1
    try:
        for row in _parsed_rows(path, fmt, source, start_line, keep):
            here = block_of(row[0])
            if here != block and batch:
                yield block, batch
                batch = []
            block = here
            batch.append(row)
    except SkyrmError:
        if batch:  # the rows read before the file broke off
            yield block, batch
        raise
    if batch:
        yield block, batch


def read_batches_in_children(path: Path, fmt: str, source: str, start_line: int,
                             batch_rows: int) -> Iterator[list[ParsedRow]]:
    """``read_batches`` computed by child processes while the caller writes; batches in file order."""
    count = READERS if is_line_delimited(path) else 1
    if count > 1 and fmt == "auto":
        fmt = detect_file_format(path, start_line) or "auto"  # every child must read the same format
    children = [subprocess.Popen([sys.executable, "-m", "skyrm.import_reader", str(path), fmt, source,
                                  str(start_line), str(batch_rows), str(k), str(count)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) for k in range(count)]
    try:
        heads: list[tuple[int, int, list[ParsedRow]]] = []  # (block, child, rows): the next batch of each child
        errors: list[str] = []
        for k, child in enumerate(children):
            _push_next(heads, k, child, path, errors)
        while heads:
            block, k, rows = heapq.heappop(heads)
            yield rows
            _push_next(heads, k, children[k], path, errors)
        # A child that could not read on sent its rows before the damage first; every child reads
        # the same bytes, so the others stopped at the same place and what was merged is all there is.
        if errors:
            raise SkyrmError(errors[0])
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
            assert child.stdout is not None
            child.stdout.close()
            child.wait()


def _push_next(heads: list, k: int, child: subprocess.Popen, path: Path, errors: list[str]) -> None:
    """Read child ``k``'s next batch into the merge heap (nothing when it has ended; its error
    message into ``errors`` when it could not read on)."""
    stream: IO[bytes] = child.stdout  # type: ignore[assignment]
    try:
        kind, value = pickle.load(stream)
    except EOFError:
        child.wait()
        raise SkyrmError(f"{path}: an import reader process exited with code {child.returncode}") from None
    if kind == "error":
        errors.append(value)
        return
    if kind == "batch":
        heapq.heappush(heads, (value[0], k, value[1]))


def _child_main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    path, fmt, source, start_line, batch_rows, index, count = argv
    out = os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    sys.stdout = sys.stderr  # nothing else may write into the pipe
    try:
        try:
            if int(count) == 1:  # any file: batches of rows, numbered in order
                batches = enumerate(read_batches(Path(path), fmt, source, int(start_line), int(batch_rows)))
            else:
                batches = read_blocks(Path(path), fmt, source, int(start_line), int(batch_rows), int(index), int(count))
            for batch in batches:
                pickle.dump(("batch", batch), out, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(("end", None), out)
        except SkyrmError as exc:
            pickle.dump(("error", str(exc)), out)
        except Exception as exc:  # noqa: BLE001 -- reported by the parent as one line
            pickle.dump(("error", f"{path}: {type(exc).__name__}: {exc}"), out)
        out.flush()
    except BrokenPipeError:
        return 1  # the parent is gone
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
