"""Reading a file for import: rows parsed, validated and hashed, in batches.

``read_batches`` runs in-process. ``read_batches_in_child`` runs the same
reader in a child interpreter (``python -m skyrm.import_reader``) that streams
pickled batches through a pipe, so parsing and SQLite's B-tree work use two
cores; a thread would not help, as the GIL serialises the parser with every
row written. The pipe holds little, so the child is at most about a batch
ahead and memory stays constant in the file size. The child is our own code
talking to its parent: the pickles never come from a file.

If the parent dies (kill -9), the child's next write fails and it exits;
Ctrl-C is left to the parent, which stops the child.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skyrm.errors import SkyrmError
from skyrm.formats import read_pairs
from skyrm.store import pair_row

# One row of a file as the writer needs it: line, pair rows (``store.pair_row``), quarantine row.
ParsedRow = tuple[int, list[tuple], "dict[str, Any] | None"]


def read_batches(path: Path, fmt: str, source: str, start_line: int, batch_rows: int) -> Iterator[list[ParsedRow]]:
    """The file from ``start_line`` as batches of ``batch_rows`` parsed rows (the last may be short)."""
    where = str(Path(path).resolve())
    batch: list[ParsedRow] = []
    for result in read_pairs(path, fmt=fmt, source=source, start_line=start_line):
        bad = None
        if result.bad is not None:
            bad = {"source": source, "path": where, "line": result.line, "field": result.bad.field,
                   "reason": result.bad.reason, "raw": result.bad.raw}
        batch.append((result.line, [pair_row(pair) for pair in result.pairs], bad))
        if len(batch) == batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


def read_batches_in_child(path: Path, fmt: str, source: str, start_line: int,
                          batch_rows: int) -> Iterator[list[ParsedRow]]:
    """``read_batches`` computed by a child process while the caller writes the previous batch."""
    args = [str(path), fmt, source, str(start_line), str(batch_rows)]
    child = subprocess.Popen([sys.executable, "-m", "skyrm.import_reader", *args],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert child.stdout is not None
    try:
        while True:
            try:
                kind, value = pickle.load(child.stdout)
            except EOFError:
                child.wait()
                raise SkyrmError(f"{path}: the import reader process exited with code {child.returncode}") from None
            if kind == "end":
                return
            if kind == "error":
                raise SkyrmError(value)
            yield value
    finally:
        if child.poll() is None:
            child.terminate()
        child.stdout.close()
        child.wait()


def _child_main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    path, fmt, source, start_line, batch_rows = argv
    out = os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    sys.stdout = sys.stderr  # nothing else may write into the pipe
    try:
        try:
            for batch in read_batches(Path(path), fmt, source, int(start_line), int(batch_rows)):
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
