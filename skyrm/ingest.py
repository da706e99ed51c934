"""Import files into the store and export pools out of it.

Import streams a file, validates every row, stores good pairs in batched
transactions (content-hash ids make re-imports no-ops) and quarantines bad rows
with file, line, field and reason. Progress is checkpointed per batch in the
``steps`` table inside the same transaction as the pairs, so an interrupted
import resumes where it stopped and a finished one is not read again.

Large files are read, validated and hashed by child processes while the
previous batch is written (``skyrm.import_reader``); small files are read
in-process, where starting an interpreter costs more than it saves.

Surprises (issue 12): nothing is written until the first ``PROBE_ROWS`` rows
(or the whole shorter file) have given at least one pair, so a wrong
``--format``, a binary or an empty file fails with its likely cause and leaves
no trace; a file that breaks off keeps the rows read before the damage and the
error says how many; default source names never put two files under one name.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyrm.errors import InputError, SkyrmError
from skyrm.formats import (SHAPE_TO_FORMAT, SHAPES, STDIN_NAME, PairWriter, default_source, detect_file_format,
                           data_files, display_path, is_stdin, pair_to_row, read_pairs, sniff, strip_data_suffixes)
from skyrm.import_reader import read_batches, read_batches_in_children
from skyrm.records import Label, content_hash
from skyrm.runs import Progress
from skyrm.selection import empty_selection_error
from skyrm.store import Store

IMPORT_AS = ("pool", "gold", "silver")
# Rows per transaction. Pair ids are random hashes, so every batch dirties index pages all
# over the B-tree; larger batches rewrite each page less often (measured: 10k rows wrote
# 2.7 GB for 300k pairs where 2k rows wrote 7.2 GB). Memory stays constant either way.
BATCH_ROWS = 10_000
# Files at least this large are read by child processes (see the module docstring).
READER_PROCESS_MIN_BYTES = 16 * 1024 * 1024
# Rows of a file read before anything is stored: when none of them gives a pair, the file is
# refused (wrong --format, binary, empty) instead of filling the quarantine (issue 12).
PROBE_ROWS = 100


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
    if is_stdin(path):
        raise InputError("--strict reads a file twice and standard input can be read once: "
                         "save it to a file and import that")
    for result in read_pairs(path, fmt=fmt, source=source):
        if result.bad is not None:
            raise InputError(result.bad.reason, path=result.bad.path, line=result.bad.line,
                             field=result.bad.field or None, element=result.bad.element)


def reason_kind(reason: str) -> str:
    """A reason without its position details: 'invalid JSON' for 'invalid JSON (Expecting value at column 12)'."""
    return _DETAIL.sub("", reason)


_DETAIL = re.compile(r" \(.*\)$| at byte \d+$")


def _reason_key(bad_row: dict[str, Any]) -> str:
    kind = reason_kind(bad_row["reason"])
    return f"field '{bad_row['field']}': {kind}" if bad_row.get("field") else kind


class _Probe:
    """The first ``PROBE_ROWS`` rows of a file, kept until they show the file is worth storing.

    A file whose first rows (all its rows, when it is shorter) give no pair is read
    with the wrong ``--format``, or is no data file at all: importing it would only
    fill the quarantine, so it fails with the likely cause and nothing is stored.
    """

    def __init__(self, file: Path, fmt: str):
        self.file, self.fmt = file, fmt
        self.rows = self.good = 0
        self.reasons: dict[str, int] = {}

    def add(self, pair_rows: list[tuple], bad_row: dict[str, Any] | None) -> None:
        if self.rows >= PROBE_ROWS:
            return
        self.rows += 1
        if bad_row is None and pair_rows:
            self.good += 1
        elif bad_row is not None:
            key = _reason_key(bad_row)
            self.reasons[key] = self.reasons.get(key, 0) + 1

    @property
    def full(self) -> bool:
        return self.rows >= PROBE_ROWS

    def check(self, *, ended: bool) -> None:
        """Raise when no probed row gave a pair; ``ended``: the file ended within the probe."""
        if self.good:
            return
        if self.rows == 0:
            error = InputError("the file has no rows (it is empty, holds only blank lines or an empty array); "
                               "nothing was imported", path=display_path(self.file))
        else:
            error = InputError(self.message(ended=ended), path=display_path(self.file))
        error.probe = True  # type: ignore[attr-defined] -- the import re-raises it as is
        raise error

    def message(self, *, ended: bool) -> str:
        n = self.rows
        scope = (f"its {n} row" if n == 1 else f"its {n} rows") if ended else f"its first {n} rows"
        try:
            detected = detect_file_format(self.file) if not is_stdin(self.file) else None
        except InputError:  # not even a JSON array: sniff() below says what it may be
            detected = None
        if self.fmt != "auto":
            what = f"matches --format {self.fmt}"
        elif detected:
            what = f"is a valid {detected} row"
        else:
            what = "is a valid row"
        top = sorted(self.reasons.items(), key=lambda item: -item[1])[:2]
        why = ", ".join(f"{key} in {count} of {n}" for key, count in top)
        if self.fmt == "auto" and detected:
            why = f"{detected} detected from its first row; {why}"
        if detected and self.fmt in ("auto", detected):
            hint = "the rows have that format's fields but not valid values: check the file"
        elif detected:
            hint = f"the rows look like {detected}: try --format {detected} or auto"
        else:
            hint = sniff(self.file) or "no --format fits its rows: check the file or pass --format"
        return f"none of {scope} {what} ({why}); {hint}; nothing was stored"


def import_file(store: Store, path: str | os.PathLike[str], *, fmt: str = "auto", source: str | None = None,
                as_: str = "pool", strict: bool = False, batch_rows: int = BATCH_ROWS,
                progress: Progress | None = None, parallel: bool | None = None) -> ImportSummary:
    """Import one file; see the module docstring for the guarantees.

    ``parallel`` forces the child-process readers on or off (default: by file size).
    The path ``-`` reads JSON lines from standard input (source 'stdin' by default;
    not checkpointed: run again, it adds nothing already stored).
    """
    if as_ not in IMPORT_AS:
        raise InputError(f"--as must be one of {', '.join(IMPORT_AS)}, got '{as_}'")
    file = Path(path)
    stdin = is_stdin(file)
    if not stdin and not file.exists():
        raise InputError("no such file", path=str(file))
    source_name = source or default_source(file)
    summary = ImportSummary(path=STDIN_NAME if stdin else str(file), source=source_name)
    step = None if stdin else _step_name(file, fmt, source_name, as_)
    state = store.step_status(step) if step else None
    if state and state["status"] == "done":
        summary.skipped_done = True
        return summary
    if strict:
        validate_file(file, fmt=fmt, source=source_name)
    start_line = int(state["detail"].get("line", 0)) if state else 0
    where = {"path": str(file.resolve()) if not stdin else STDIN_NAME, "source": source_name}

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
            if step:
                store.set_step(step, "running", {"line": last_line, **where})
        rows, bad, labels, keys = [], [], [], []

    # A resumed import has passed the probe already.
    probe: _Probe | None = _Probe(file, fmt) if start_line == 0 else None
    in_process = stdin or (file.stat().st_size < READER_PROCESS_MIN_BYTES if parallel is None else not parallel)
    if in_process:
        batches = read_batches(file, fmt, source_name, start_line, batch_rows)
    else:
        batches = read_batches_in_children(file, fmt, source_name, start_line, batch_rows)
    try:
        with store.bulk_import():
            for batch in batches:
                for line, pair_rows, bad_row in batch:
                    summary.rows += 1
                    last_line = line
                    if probe is not None:
                        probe.add(pair_rows, bad_row)
                    if bad_row is not None:
                        summary.bad_rows += 1
                        key = _reason_key(bad_row)
                        summary.reasons[key] = summary.reasons.get(key, 0) + 1
                        bad.append(bad_row)
                    for row in pair_rows:
                        rows.append(row)
                        made = _label_for(row[0], as_, source_name)
                        if made:
                            labels.append(made[0])
                            keys.append(made[1])
                if probe is not None and probe.full:
                    probe.check(ended=False)
                    probe = None
                if probe is None:  # rows wait for the probe's verdict before anything is written
                    flush()  # one transaction and checkpoint per batch
                if progress:
                    progress(summary.rows, None, f"{summary.pairs_new} new")
    except SkyrmError as exc:
        if getattr(exc, "probe", False):
            raise
        if probe is not None and not probe.good:
            raise InputError(f"{exc}; nothing from this file was stored") from exc
        if summary.rows == 0:
            if start_line:
                raise InputError(f"{exc}; the rows before it were stored by an earlier run, and the file is "
                                 "not marked as imported") from exc
            raise
        with store.bulk_import():
            flush()
        raise InputError(f"{exc}; the {summary.rows} rows read before that are stored ({summary.pairs_new} new "
                         f"pairs, {summary.bad_rows} bad rows quarantined), and the file is not marked as imported"
                         ) from exc
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()  # stops reader processes when the import stops early
    if probe is not None:
        probe.check(ended=True)
        with store.bulk_import():
            flush()
    if step:
        store.set_step(step, "done", {"line": last_line, **where, "summary": summary.as_dict()})
    if progress:
        progress(summary.rows, summary.rows, f"{summary.pairs_new} new")
    return summary


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a directory stands for every data file below it, in sorted order.

    Raises before anything is read when a path does not exist; ``-`` (standard input) may appear once.
    """
    return [path for path, _ in named_paths(paths)]


def named_paths(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Each file to import with its default source name.

    A file named on the command line is named by its file name without data suffixes
    ('harmless-base-test' for harmless-base-test.jsonl.gz); a file found in a directory
    by its path relative to that directory ('Pairwise_set/Harmlessness/S1' for
    rmb/Pairwise_set/Harmlessness/S1.json when rmb/ is given); standard input is 'stdin'.
    Where two different files would get the same name, each takes as many parent
    directories as make the names differ ('BoN_set/Harmlessness/S1').
    """
    named: list[tuple[Path, str]] = []
    stdin_seen = False
    for path in map(Path, paths):
        if is_stdin(path):
            if stdin_seen:
                raise InputError("'-' (standard input) can be given once")
            stdin_seen = True
            named.append((path, default_source(path)))
        elif path.is_dir():
            named.extend((found, strip_data_suffixes(found.relative_to(path).as_posix()))
                         for found in data_files(path))
        elif not path.exists():
            raise InputError("no such file", path=str(path))
        else:
            named.append((path, default_source(path)))
    files: dict[str, set[Path]] = {}
    for path, name in named:
        if not is_stdin(path):
            files.setdefault(name, set()).add(path.resolve())
    clashing = {name for name, found in files.items() if len(found) > 1}
    return [(path, _unique_name(path, name, files[name]) if name in clashing else name) for path, name in named]


def _unique_name(path: Path, name: str, clashing: set[Path]) -> str:
    """The file name under as many parent directories as tell it apart from the other files."""
    mine = path.resolve().parts
    for depth in range(2, len(mine) + 1):
        tails = {other.parts[-depth:] for other in clashing}
        if len(tails) == len(clashing):
            return strip_data_suffixes("/".join(mine[-depth:]))
    return strip_data_suffixes(path.resolve().as_posix())


def _same_file(recorded: str, path: Path) -> bool:
    try:
        return Path(recorded).samefile(path)
    except OSError:  # the recorded file is gone
        return False


def import_files(store: Store, paths: Iterable[str | os.PathLike[str]], **options: Any) -> list[ImportSummary]:
    """Import files (directories are searched); with ``strict`` every file is validated before any is written.

    Without ``source`` each file gets its default name (``named_paths``); a default name the
    store already holds for a different file is refused, so two files never merge by accident.
    """
    named = named_paths(paths)
    source = options.pop("source", None)
    if source is None:
        for path, name in named:
            if is_stdin(path):
                continue
            others = {other for other in store.import_paths(name) if not _same_file(other, path)}
            if others:
                raise InputError(f"its default source name '{name}' already names {sorted(others)[0]} in the "
                                 f"store: pass --source NAME, or import both from a directory above them",
                                 path=str(path))
    if options.get("strict"):
        for path, name in named:
            validate_file(path, fmt=options.get("fmt", "auto"), source=source or name)
    return [import_file(store, path, source=source or name, **options) for path, name in named]


def export_pairs(store: Store, path: str | os.PathLike[str], *, pool: str = "curated", shape: str = "trl",
                 progress: Progress | None = None) -> int:
    """Write a pool to JSONL or Parquet in an exchange shape; returns the number of pairs.

    Pairs come oriented by their effective verdict (a pair labelled 'rejected'
    is written flipped). The file appears only when complete. A pool without
    pairs writes no file and raises, saying what the store's pools and sources hold;
    an unknown pool or source name raises listing the valid ones.
    """
    if shape not in SHAPES:
        raise InputError(f"unknown shape '{shape}' (choose from {', '.join(SHAPES)})")
    pairs = store.iter_pairs(pool, oriented=True)  # checks the pool name before a file is opened
    first = next(pairs, None)
    if first is None:
        raise empty_selection_error(pool, store.pool_counts(), store.source_counts())
    writer = PairWriter(path)
    try:
        for _, pair, _ in itertools.chain([first], pairs):
            writer.write(pair_to_row(pair, shape))
            if progress and writer.count % 2000 == 0:
                progress(writer.count, None, "")
    except BaseException:  # an error or Ctrl-C part way: no file, not a partial one under the final name
        writer.abort()
        raise
    writer.close()
    return writer.count


def shape_format(shape: str) -> str:
    """The import format that reads an export shape back."""
    return SHAPE_TO_FORMAT[shape]
