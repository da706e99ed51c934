"""Import files into the store and export pools out of it.

Import streams a file, validates every row, stores good pairs in batched
transactions (content-hash ids make re-imports no-ops) and quarantines bad rows
with file, line, field and reason. Progress is checkpointed per batch in the
``steps`` table inside the same transaction as the pairs, so an interrupted
import resumes where it stopped and a finished one is not read again.

Large files are read, validated and hashed by child processes while the
previous batch is written (``skyrm.import_reader``); small files are read
in-process, where starting an interpreter costs more than it saves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyrm.errors import InputError
from skyrm.formats import SHAPE_TO_FORMAT, SHAPES, PairWriter, default_source, pair_to_row, read_pairs
from skyrm.import_reader import read_batches, read_batches_in_children
from skyrm.records import Label, content_hash
from skyrm.store import Store

IMPORT_AS = ("pool", "gold", "silver")
# Rows per transaction. Pair ids are random hashes, so every batch dirties index pages all
# over the B-tree; larger batches rewrite each page less often (measured: 10k rows wrote
# 2.7 GB for 300k pairs where 2k rows wrote 7.2 GB). Memory stays constant either way.
BATCH_ROWS = 10_000
# Files at least this large are read by child processes (see the module docstring).
READER_PROCESS_MIN_BYTES = 16 * 1024 * 1024
Progress = Callable[[int, "int | None", str], None]


@dataclass
class ImportSummary:
    path: str
    source: str
    rows: int = 0
    pairs_new: int = 0
    pairs_seen: int = 0
    bad_rows: int = 0
    labels: int = 0
    skipped_done: bool = False
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _step_name(path: Path, fmt: str, source: str, as_: str) -> str:
    stat = path.stat()
    identity = {"path": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime),
                "format": fmt, "source": source, "as": as_}
    return "import:" + content_hash(identity, 24)


def _label_for(pair_id: str, as_: str, source: str) -> tuple[Label, str] | None:
    if as_ == "pool":
        return None
    kind = "human" if as_ == "gold" else "llm"
    label = Label(pair_id=pair_id, kind=kind, producer=f"import:{source}", verdict="chosen",
                  detail={"from": "file label"})
    return label, f"import:{kind}:{source}:{pair_id}"


def validate_file(path: str | os.PathLike[str], *, fmt: str = "auto", source: str | None = None) -> None:
    """Read a whole file and raise on its first bad row (what ``--strict`` needs before writing)."""
    for result in read_pairs(path, fmt=fmt, source=source):
        if result.bad is not None:
            raise InputError(result.bad.reason, path=result.bad.path, line=result.bad.line,
                             field=result.bad.field or None)


def import_file(store: Store, path: str | os.PathLike[str], *, fmt: str = "auto", source: str | None = None,
                as_: str = "pool", strict: bool = False, batch_rows: int = BATCH_ROWS,
                progress: Progress | None = None, parallel: bool | None = None) -> ImportSummary:
    """Import one file; see the module docstring for the guarantees.

    ``parallel`` forces the child-process readers on or off (default: by file size).
    """
    if as_ not in IMPORT_AS:
        raise InputError(f"--as must be one of {', '.join(IMPORT_AS)}, got '{as_}'")
    file = Path(path)
    if not file.exists():
        raise InputError("no such file", path=str(file))
    source_name = source or default_source(file)
    summary = ImportSummary(path=str(file), source=source_name)
    step = _step_name(file, fmt, source_name, as_)
    state = store.step_status(step)
    if state and state["status"] == "done":
        summary.skipped_done = True
        return summary
    if strict:
        validate_file(file, fmt=fmt, source=source_name)
    start_line = int(state["detail"].get("line", 0)) if state else 0

    rows, bad, labels, keys = [], [], [], []
    last_line = start_line

    def flush() -> None:
        nonlocal rows, bad, labels, keys
        with store.transaction():
            new, seen = store.add_pair_rows(rows)
            summary.pairs_new += new
            summary.pairs_seen += seen
            if bad:
                store.add_quarantine(bad)
            if labels:
                summary.labels += store.add_labels(labels, dedup_keys=keys)
            store.set_step(step, "running", {"line": last_line, "path": str(file)})
        rows, bad, labels, keys = [], [], [], []

    in_process = file.stat().st_size < READER_PROCESS_MIN_BYTES if parallel is None else not parallel
    if in_process:
        batches = read_batches(file, fmt, source_name, start_line, batch_rows)
    else:
        batches = read_batches_in_children(file, fmt, source_name, start_line, batch_rows)
    with store.bulk_import():
        for batch in batches:
            for line, pair_rows, bad_row in batch:
                summary.rows += 1
                last_line = line
                if bad_row is not None:
                    summary.bad_rows += 1
                    summary.reasons[bad_row["reason"]] = summary.reasons.get(bad_row["reason"], 0) + 1
                    bad.append(bad_row)
                for row in pair_rows:
                    rows.append(row)
                    made = _label_for(row[0], as_, source_name)
                    if made:
                        labels.append(made[0])
                        keys.append(made[1])
            flush()  # one transaction and checkpoint per batch
            if progress:
                progress(summary.rows, None, f"{summary.pairs_new} new")
    store.set_step(step, "done", {"line": last_line, "path": str(file), "summary": summary.as_dict()})
    if progress:
        progress(summary.rows, summary.rows, f"{summary.pairs_new} new")
    return summary


DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a directory stands for every data file below it, in sorted order."""
    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and
                           any(p.name.endswith(s) or p.name.endswith(s + ".gz") for s in DATA_SUFFIXES))
            if not found:
                raise InputError("no .jsonl, .json or .parquet files in this directory", path=str(path))
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


def import_files(store: Store, paths: Iterable[str | os.PathLike[str]], **options: Any) -> list[ImportSummary]:
    """Import files (directories are searched); with ``strict`` every file is validated before any is written."""
    paths = expand_paths(paths)
    if options.get("strict"):
        for path in paths:
            validate_file(path, fmt=options.get("fmt", "auto"), source=options.get("source"))
    return [import_file(store, path, **options) for path in paths]


def export_pairs(store: Store, path: str | os.PathLike[str], *, pool: str = "curated", shape: str = "trl",
                 progress: Progress | None = None) -> int:
    """Write a pool to JSONL or Parquet in an exchange shape; returns the number of pairs.

    Pairs come oriented by their effective verdict (a pair labelled 'rejected'
    is written flipped). The file appears only when complete.
    """
    if shape not in SHAPES:
        raise InputError(f"unknown shape '{shape}' (choose from {', '.join(SHAPES)})")
    writer = PairWriter(path)
    try:
        for _, pair, _ in store.iter_pairs(pool, oriented=True):
            writer.write(pair_to_row(pair, shape))
            if progress and writer.count % 2000 == 0:
                progress(writer.count, None, "")
    finally:
        writer.close()
    return writer.count


def shape_format(shape: str) -> str:
    """The import format that reads an export shape back."""
    return SHAPE_TO_FORMAT[shape]
