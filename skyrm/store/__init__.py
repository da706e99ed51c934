"""The SQLite store: the only module that writes SQL.

One file holds pairs, attributes, append-only labels with provenance, runs,
scores, caches (rewards, features, embeddings, judge outputs), quarantined rows
and resumable step markers. Every write is idempotent where the caller gives
an identity (content-hashed pairs, label ``dedup_key``), so an interrupted
command can simply be run again.

It is the one module over ~400 lines on purpose: every query the project runs is
here, next to the schema it reads (``migrations.py``), so a schema change is checked
against every statement in one file, and no other module holds SQL.

Deliberately not here: parsing files (``skyrm.formats``) or deciding labels (labelling, curate).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from skyrm.errors import StoreError
from skyrm.records import POOLS, Attributes, Label, Pair, canonical_json, content_hash
from skyrm.selection import ALL, TRAINABLE, parse_selection, unknown_choice_error
from skyrm.store.migrations import migrations

DEFAULT_DB = "skyrm.db"
BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 64 * 1024


def default_db_path() -> str:
    return os.environ.get("SKYRM_DB") or DEFAULT_DB


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def pair_row(pair: Pair) -> tuple:
    """A pair as the ``pairs`` columns before ``created_at``: what ``Store.add_pair_rows`` takes.

    Plain strings, so an import can hash and serialise in another process.
    """
    meta = canonical_json(pair.meta) if pair.meta else "{}"
    return (pair.id, *pair.canonical, pair.source, pair.split, meta)


def _row_pair(row: sqlite3.Row | tuple, oriented_verdict: str | None = None) -> Pair:
    pair = Pair(prompt=json.loads(row[1]), chosen=json.loads(row[2]), rejected=json.loads(row[3]),
                source=row[4], split=row[5], meta=json.loads(row[6]))
    if oriented_verdict == "rejected":
        return pair.flipped()
    return pair


_PAIR_COLUMNS = "p.id, p.prompt, p.chosen, p.rejected, p.source, p.split, p.meta"


def _process_alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class Store:
    """A skyrm store in one SQLite file (WAL mode, busy timeout, migrated on open)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True):
        self.path = str(path if path is not None else default_db_path())
        if self.path != ":memory:" and not Path(self.path).parent.is_dir():  # sqlite would only say "unable to open"
            raise StoreError(f"{self.path}: directory {Path(self.path).parent.resolve()} does not exist "
                             "(create it, or give another --db)")
        if self.path != ":memory:" and not create and not Path(self.path).exists():
            raise StoreError(f"no store at {self.path}: run 'skyrm init --db {self.path}' first")
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            self.db = Database(conn, execute_plugins=False)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            # Pair ids are random hashes, so inserts land all over the primary-key B-tree;
            # a 64 MiB page cache keeps large imports from slowing down as the store grows.
            self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            # Checkpoint the WAL every ~32 MB instead of 4 MB: a page dirtied by several
            # import batches is copied back once (measured: ~20% faster bulk imports).
            self.db.execute("PRAGMA wal_autocheckpoint = 8192")
            self.db.execute("PRAGMA foreign_keys = ON")
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable skyrm store ({exc})") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (nested blocks use savepoints)."""
        with self.db.atomic():
            yield

    @contextmanager
    def bulk_import(self) -> Iterator[None]:
        """Foreign-key checks off for an import's batches, back on after (outside any transaction).

        Safe for ``add_pair_rows``: each ``pair_sources`` row refers to a pair the same
        batch has just inserted or found; the lookups cost ~15% of a large import's writes.
        """
        self.db.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            self.db.execute("PRAGMA foreign_keys = ON")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self.db.execute(sql, list(params)).fetchall()

    def _query_in(self, sql: str, keys: Iterable[Any], params: Iterable[Any] = ()) -> Iterator[tuple]:
        """Rows of ``sql`` whose ``{marks}`` placeholder takes the keys, 500 at a time (SQLite's limit)."""
        ids, fixed = list(keys), list(params)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            yield from self._query(sql.format(marks=",".join("?" * len(chunk))), [*fixed, *chunk])

    def migrations_applied(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    # ------------------------------------------------------------------ pairs
    def add_pairs(self, pairs: Iterable[Pair]) -> tuple[int, int]:
        """Insert pairs in one transaction; returns (new, already present).

        A pair seen before (same content hash) is not stored again, but the new
        source is recorded in ``pair_sources``.
        """
        return self.add_pair_rows([pair_row(pair) for pair in pairs])

    def add_pair_rows(self, rows: Sequence[tuple]) -> tuple[int, int]:
        """``add_pairs`` for rows made by ``pair_row``; returns (new, already present)."""
        stamp = now()
        # In id order: the id B-trees are then walked front to back once per batch
        # instead of at random (measured: ~20% less write time on large imports).
        ordered = sorted(rows, key=itemgetter(0))  # stable: the first of equal ids still wins
        with self.transaction():
            before = self.db.conn.total_changes
            self.db.conn.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                     [(*row, stamp) for row in ordered])
            new = self.db.conn.total_changes - before
            self.db.conn.executemany("INSERT OR IGNORE INTO pair_sources VALUES (?, ?)",
                                     [(row[0], row[4]) for row in ordered])
        return new, len(ordered) - new

    def get_pair(self, pair_id: str) -> Pair | None:
        rows = self._query(f"SELECT {_PAIR_COLUMNS} FROM pairs p WHERE p.id = ?", [pair_id])
        return _row_pair(rows[0]) if rows else None

    def get_pairs(self, pair_ids: Iterable[str]) -> dict[str, Pair]:
        """Pairs by id, in their stored orientation (missing ids are left out)."""
        return {row[0]: _row_pair(row) for row in self._query_in(
            f"SELECT {_PAIR_COLUMNS} FROM pairs p WHERE p.id IN ({{marks}})", pair_ids)}

    def pool_counts(self) -> dict[str, int]:
        """Pairs per derived pool (every pool named, empty ones with 0)."""
        counts = {pool: 0 for pool in POOLS}
        counts.update(dict(self._query("SELECT pool, COUNT(*) FROM pair_status GROUP BY pool")))
        return counts

    def source_counts(self) -> dict[str, int]:
        """Pairs per source name (a pair imported from two sources counts in both)."""
        return dict(self._query("SELECT source, COUNT(*) FROM pair_sources GROUP BY source ORDER BY source"))

    def require_source(self, name: str) -> None:
        """Raise (listing the valid names) unless some pair was imported under this source."""
        # pairs.source is indexed and holds a pair's first source; pair_sources has the rest
        if self._query("SELECT 1 FROM pairs WHERE source = ? LIMIT 1", [name]) or self._query(
                "SELECT 1 FROM pair_sources WHERE source = ? LIMIT 1", [name]):
            return
        raise unknown_choice_error(name, self.pool_counts(), self.source_counts())

    def _pool_where(self, pool: str | None, source: str | None, split: str | None) -> tuple[str, list]:
        where, params = [], []
        # Parsed in one place (skyrm.selection); anything not a pool names a source, which must exist.
        choice = parse_selection(pool) if pool is not None else None
        if choice is None or choice.kind == ALL:
            pass
        elif choice.kind == "ids":
            where.append(f"p.id IN (SELECT id FROM temp.{self._id_table(choice.ids)})")
        elif choice.kind == TRAINABLE:
            where.append("s.verdict IN ('chosen', 'rejected')")
        elif choice.kind == "pool":
            where.append("s.pool = ?")
            params.append(choice.name)
        else:
            self.require_source(choice.name)
            source = source or choice.name
        if source is not None:
            where.append("p.id IN (SELECT pair_id FROM pair_sources WHERE source = ?)")
            params.append(source)
        if split is not None:
            where.append("p.split = ?")
            params.append(split)
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def _id_table(self, ids: Sequence[str]) -> str:
        """A temporary table holding these pair ids (a list or a file of any length selects by join,
        not by an IN list of parameters); the same ids reuse the same table."""
        name = "selected_" + content_hash(list(ids), 12)
        exists = self._query("SELECT 1 FROM temp.sqlite_master WHERE name = ?", [name])
        if not exists:  # in a transaction of its own: an implicit one left open would swallow later commits
            with self.transaction():
                self.db.conn.execute(f"CREATE TEMP TABLE {name} (id TEXT PRIMARY KEY)")
                self.db.conn.executemany(f"INSERT OR IGNORE INTO temp.{name} VALUES (?)", ((i,) for i in ids))
        return name

    def iter_pairs(self, pool: str | None = None, *, source: str | None = None,
                   split: str | None = None, oriented: bool = True, limit: int | None = None,
                   batch: int = 1000) -> Iterator[tuple[str, Pair, str | None]]:
        """Yield ``(stored_id, pair, verdict)`` for a pool ('all', a pool name or a source).

        With ``oriented`` a pair whose effective verdict is 'rejected' comes
        flipped, so its ``chosen`` is the preferred response; the stored id is
        given separately because a flipped pair hashes differently.
        Streams in id order with keyset pagination: constant memory.
        """
        yielded = 0
        for rows in self._pages(f"{_PAIR_COLUMNS}, s.verdict", pool, source, split, batch):
            for row in rows:
                verdict = row[7]
                yield row[0], _row_pair(row, verdict if oriented else None), verdict
                yielded += 1
                if limit is not None and yielded >= limit:
                    return

    def iter_pair_id_blocks(self, pool: str | None = None, *, batch: int = 5000) -> Iterator[list[str]]:
        """The ids of a pool in id order (as ``pair_ids``), a block at a time: constant memory.
        An unknown pool or source raises here, not at the first block."""
        pages = self._pages("p.id", pool, None, None, batch)
        return ([row[0] for row in rows] for rows in pages)

    def _pages(self, columns: str, pool: str | None, source: str | None, split: str | None,
               batch: int) -> Iterator[list[tuple]]:
        """Rows of a pool in id order, ``batch`` at a time (keyset pagination); the first column is the id."""
        where, params = self._pool_where(pool, source, split)  # checked now, before the first page is asked for
        return self._keyset_pages(columns, where, params, batch)

    def _keyset_pages(self, columns: str, where: str, params: list, batch: int) -> Iterator[list[tuple]]:
        cond = (" AND " if where else " WHERE ") + "p.id > ?"
        last = ""
        while True:
            rows = self._query(f"SELECT {columns} FROM pairs p JOIN pair_status s ON s.pair_id = p.id"
                               f"{where}{cond} ORDER BY p.id LIMIT ?", [*params, last, batch])
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def pair_ids(self, pool: str | None = None, *, source: str | None = None,
                 split: str | None = None) -> list[str]:
        where, params = self._pool_where(pool, source, split)
        return [r[0] for r in self._query(
            f"SELECT p.id FROM pairs p JOIN pair_status s ON s.pair_id = p.id{where} ORDER BY p.id", params)]

    def count_pairs(self, pool: str | None = None, *, source: str | None = None) -> int:
        where, params = self._pool_where(pool, source, None)
        return self._query(
            f"SELECT COUNT(*) FROM pairs p JOIN pair_status s ON s.pair_id = p.id{where}", params)[0][0]

    def pair_status(self, pair_id: str) -> dict[str, Any] | None:
        rows = self.db.execute("SELECT * FROM pair_status WHERE pair_id = ?", [pair_id])
        columns = [c[0] for c in rows.description]
        row = rows.fetchone()
        return dict(zip(columns, row)) if row else None

    def sources_of(self, pair_id: str) -> list[str]:
        return [r[0] for r in self._query(
            "SELECT source FROM pair_sources WHERE pair_id = ? ORDER BY source", [pair_id])]

    # ------------------------------------------------------------- attributes
    def add_attributes(self, pair_id: str, attributes: Attributes, *, producer: str,
                       prompt_version: str = "") -> None:
        row = asdict(attributes)
        row.update(pair_id=pair_id, producer=producer, prompt_version=prompt_version, created_at=now())
        with self.transaction():
            self.db["attributes"].insert(row)

    def get_attributes(self, pair_id: str) -> Attributes | None:
        """The latest attributes written for a pair, or None."""
        return self.get_attributes_many([pair_id]).get(pair_id)

    def get_attributes_many(self, pair_ids: Iterable[str]) -> dict[str, Attributes]:
        return {row[0]: Attributes(*row[1:6]) for row in self._query_in(
            "SELECT pair_id, task_category, objectivity, controversiality, desired_attributes, "
            "guideline, MAX(id) FROM attributes WHERE pair_id IN ({marks}) GROUP BY pair_id", pair_ids)}

    def pairs_without_attributes(self, pool: str | None = None, limit: int | None = None) -> list[str]:
        where, params = self._pool_where(pool, None, None)
        cond = (" AND " if where else " WHERE ") + "p.id NOT IN (SELECT pair_id FROM attributes)"
        sql = f"SELECT p.id FROM pairs p JOIN pair_status s ON s.pair_id = p.id{where}{cond} ORDER BY p.id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [r[0] for r in self._query(sql, params)]

    # ----------------------------------------------------------------- labels
    def add_labels(self, labels: Iterable[Label], *, dedup_keys: Iterable[str | None] | None = None) -> int:
        """Append labels in one transaction; returns how many were new.

        A label given a ``dedup_key`` already present is skipped: this is what
        makes an interrupted labelling run safe to resume.
        """
        stamp = now()
        keys = iter(dedup_keys) if dedup_keys is not None else None
        added = 0
        with self.transaction():
            for label in labels:
                key = next(keys) if keys is not None else None
                # ON CONFLICT (not OR IGNORE): a duplicate key is skipped, a bad kind or verdict still fails.
                cursor = self.db.conn.execute(
                    'INSERT INTO labels (pair_id, kind, producer, prompt_version, verdict, '
                    'confidence, "order", round, detail, dedup_key, created_at) '
                    'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING',
                    (label.pair_id, label.kind, label.producer, label.prompt_version, label.verdict,
                     label.confidence, label.order, label.round, canonical_json(label.detail), key, stamp))
                added += cursor.rowcount
        return added

    def labels_for(self, pair_id: str, kind: str | None = None) -> list[Label]:
        sql = ('SELECT pair_id, kind, producer, verdict, confidence, prompt_version, "order", round, detail '
               "FROM labels WHERE pair_id = ?")
        params: list[Any] = [pair_id]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        return [Label(*row[:8], detail=json.loads(row[8])) for row in self._query(sql + " ORDER BY id", params)]

    def latest_labels(self, pair_ids: Iterable[str], kind: str) -> dict[str, Label]:
        """The newest label of one kind on each of these pairs (pairs without one are absent)."""
        rows = self._query_in(
            'SELECT pair_id, kind, producer, verdict, confidence, prompt_version, "order", round, detail, MAX(id) '
            "FROM labels WHERE kind = ? AND pair_id IN ({marks}) GROUP BY pair_id", pair_ids, [kind])
        return {row[0]: Label(*row[:8], detail=json.loads(row[8])) for row in rows}

    def has_label_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of these dedup keys are already stored (to skip finished work on resume)."""
        return {r[0] for r in self._query_in("SELECT dedup_key FROM labels WHERE dedup_key IN ({marks})", keys)}

    # ------------------------------------------------------------------- runs
    def start_run(self, kind: str, config: dict[str, Any], *, name: str = "", path: str = "") -> int:
        with self.transaction():
            cursor = self.db.conn.execute(
                "INSERT INTO runs (kind, name, config, status, path, started_at, host, pid) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (kind, name, canonical_json(config), path, now(), socket.gethostname(), os.getpid()))
        return int(cursor.lastrowid)

    def close_stale_runs(self) -> list[int]:
        """Mark 'interrupted' the running runs of this host whose process no longer exists.

        A process killed outright (kill -9, a native crash) cannot close its own run.
        Returns the ids closed.
        """
        host = socket.gethostname()
        stale = [run_id for run_id, pid in self._query(
            "SELECT id, pid FROM runs WHERE status = 'running' AND host = ? AND pid IS NOT NULL", [host])
            if not _process_alive(pid)]
        if stale:
            with self.transaction():
                for run_id in stale:
                    self.db.conn.execute("UPDATE runs SET status = 'interrupted', finished_at = ? "
                                         "WHERE id = ? AND status = 'running'", (now(), run_id))
        return stale

    def finish_run(self, run_id: int, *, status: str = "done", metrics: dict[str, Any] | None = None,
                   path: str | None = None) -> None:
        with self.transaction():
            self.db.conn.execute(
                "UPDATE runs SET status = ?, metrics = ?, finished_at = ?, path = COALESCE(?, path) WHERE id = ?",
                (status, canonical_json(metrics or {}), now(), path, run_id))

    def update_run(self, run_id: int, *, metrics: dict[str, Any] | None = None, path: str | None = None,
                   status: str | None = None) -> None:
        with self.transaction():
            if metrics is not None:
                self.db.conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (canonical_json(metrics), run_id))
            if path is not None:
                self.db.conn.execute("UPDATE runs SET path = ? WHERE id = ?", (path, run_id))
            if status is not None:
                self.db.conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        rows = list(self.db["runs"].rows_where("id = ?", [run_id]))
        if not rows:
            return None
        row = rows[0]
        row["config"] = json.loads(row["config"])
        row["metrics"] = json.loads(row["metrics"])
        return row

    def list_runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        where, params = ("kind = ?", [kind]) if kind else (None, None)
        runs = []
        for row in self.db["runs"].rows_where(where, params, order_by="id"):
            row["config"] = json.loads(row["config"])
            row["metrics"] = json.loads(row["metrics"])
            runs.append(row)
        return runs

    # ---------------------------------------------------------------- scores
    def add_scores(self, run_id: int, rows: Iterable[tuple[str, float, float, float]]) -> None:
        """Store (pair_id, r_chosen, r_rejected, p) for a scoring run (replacing earlier values)."""
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)",
                                     ((run_id, *row) for row in rows))

    def pairs_scored_at_most(self, run_id: int, p: float) -> list[str]:
        """Pairs of a scoring run whose p is at most ``p`` (the ones the model disagrees with)."""
        return [r[0] for r in self._query("SELECT pair_id FROM scores WHERE run_id = ? AND p <= ? ORDER BY pair_id",
                                          [run_id, p])]

    def scores_of(self, run_id: int, pair_ids: Iterable[str]) -> dict[str, float]:
        """p of these pairs in one scoring run (a chunk at a time: memory bounded by the caller's chunk)."""
        return {r[0]: r[1] for r in self._query_in(
            "SELECT pair_id, p FROM scores WHERE run_id = ? AND pair_id IN ({marks})", pair_ids, [run_id])}

    def scores_for(self, run_id: int) -> dict[str, tuple[float, float, float]]:
        return {r[0]: (r[1], r[2], r[3]) for r in self._query(
            "SELECT pair_id, r_chosen, r_rejected, p FROM scores WHERE run_id = ?", [run_id])}

    # ------------------------------------------------------ per-model caches
    def get_rewards(self, model: str, items: Iterable[str]) -> dict[str, float]:
        """Cached rewards r(x, y) of one model (by fingerprint) for item keys."""
        return dict(self._query_in("SELECT item, reward FROM rewards WHERE model = ? AND item IN ({marks})",
                                   items, [model]))

    def put_rewards(self, model: str, rewards: dict[str, float]) -> None:
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO rewards VALUES (?, ?, ?)",
                                     ((model, item, float(r)) for item, r in rewards.items()))

    def get_features(self, model: str, items: Iterable[str]) -> dict[str, bytes]:
        """Cached pooled features (float32 bytes) of a frozen backbone, by item key."""
        return dict(self._query_in("SELECT item, vector FROM features WHERE model = ? AND item IN ({marks})",
                                   items, [model]))

    def put_features(self, model: str, vectors: dict[str, bytes], dim: int) -> None:
        with self.transaction():
            self.db.conn.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                                     ((model, item, dim, blob) for item, blob in vectors.items()))

    def cache_get(self, key: str) -> Any | None:
        rows = self._query("SELECT output FROM judge_cache WHERE key = ?", [key])
        return json.loads(rows[0][0]) if rows else None

    def cache_put(self, key: str, output: Any) -> None:
        with self.transaction():
            self.db.conn.execute("INSERT OR REPLACE INTO judge_cache VALUES (?, ?, ?)",
                                 (key, canonical_json(output), now()))

    # ------------------------------------------------------------------ hints
    def add_hints(self, hints: Iterable[dict[str, Any]]) -> int:
        """Append annotator hints (pair_id, side, kind, producer, prompt_version, p, detail, dedup_key).

        Hints never change pools; a hint whose ``dedup_key`` is stored is skipped.
        """
        stamp = now()
        added = 0
        with self.transaction():
            for hint in hints:
                cursor = self.db.conn.execute(
                    "INSERT OR IGNORE INTO hints (pair_id, side, kind, producer, prompt_version, p, detail, "
                    "dedup_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (hint["pair_id"], hint["side"], hint.get("kind", "correct"), hint["producer"],
                     hint.get("prompt_version", ""), hint.get("p"), canonical_json(hint.get("detail", {})),
                     hint.get("dedup_key"), stamp))
                added += cursor.rowcount
        return added

    def hints_for(self, pair_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT side, kind, producer, prompt_version, p, detail, dedup_key, created_at "
                           "FROM hints WHERE pair_id = ? ORDER BY id", [pair_id])
        return [{"side": r[0], "kind": r[1], "producer": r[2], "prompt_version": r[3], "p": r[4],
                 "detail": json.loads(r[5]), "dedup_key": r[6], "created_at": r[7]} for r in rows]

    # ------------------------------------------------------------- quarantine
    def add_quarantine(self, rows: Iterable[dict[str, Any]]) -> int:
        """Record bad input rows (source, path, line, element, field, reason, raw); re-imports add nothing.

        ``element`` is the row's index in a JSON array (None for line-delimited files).
        """
        stamp = now()
        added = 0
        with self.transaction():
            for row in rows:
                cursor = self.db.conn.execute(
                    "INSERT OR IGNORE INTO quarantine (source, path, line, element, field, reason, raw, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (row["source"], row["path"], row["line"], row.get("element"), row.get("field", ""),
                     row["reason"], row["raw"], stamp))
                added += cursor.rowcount
        return added

    def import_paths(self, source: str) -> set[str]:
        """The files imported (or being imported) under a source name, as their import steps recorded them."""
        return {row[0] for row in self._query(
            "SELECT json_extract(detail, '$.path') FROM steps WHERE name LIKE 'import:%' AND "
            "COALESCE(json_extract(detail, '$.source'), json_extract(detail, '$.summary.source')) = ?", [source])
            if row[0]}

    def holds_nothing(self) -> bool:
        """True when no pair, quarantined row or step was ever written (a store just created)."""
        return not any(self._query(f"SELECT 1 FROM {table} LIMIT 1") for table in ("pairs", "quarantine", "steps"))

    def quarantined(self, source: str | None = None) -> list[dict[str, Any]]:
        where, params = ("source = ?", [source]) if source else (None, None)
        return list(self.db["quarantine"].rows_where(where, params, order_by="id"))

    # ------------------------------------------------------------------ steps
    def step_status(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT status, detail FROM steps WHERE name = ?", [name])
        return {"status": rows[0][0], "detail": json.loads(rows[0][1])} if rows else None

    def set_step(self, name: str, status: str, detail: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self.db.conn.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)",
                                 (name, status, canonical_json(detail or {}), now()))

    # ----------------------------------------------------------------- status
    def summary(self) -> dict[str, Any]:
        """Counts for ``skyrm status``: pairs per source and pool, labels, quarantine, runs."""
        per_source: dict[str, dict[str, int]] = {}
        for source, pool, n in self._query(
                "SELECT ps.source, s.pool, COUNT(*) FROM pair_sources ps "
                "JOIN pair_status s ON s.pair_id = ps.pair_id GROUP BY ps.source, s.pool"):
            per_source.setdefault(source, {})[pool] = n
        pools = {pool: 0 for pool in POOLS}
        pools.update(dict(self._query("SELECT pool, COUNT(*) FROM pair_status GROUP BY pool")))
        labels = [{"kind": k, "producer": p, "count": n} for k, p, n in self._query(
            "SELECT kind, producer, COUNT(*) FROM labels GROUP BY kind, producer ORDER BY kind, producer")]
        runs = [{"id": i, "kind": k, "name": nm, "status": st, "path": pa} for i, k, nm, st, pa in self._query(
            "SELECT id, kind, name, status, path FROM runs ORDER BY id")]
        return {
            "db": self.path,
            "pairs": self._query("SELECT COUNT(*) FROM pairs")[0][0],
            "pools": pools,
            "sources": per_source,
            "labels": labels,
            "attributes": self._query("SELECT COUNT(DISTINCT pair_id) FROM attributes")[0][0],
            "quarantine": self._query("SELECT COUNT(*) FROM quarantine")[0][0],
            "runs": runs,
        }

    # ===================================================== embeddings and retrieval (issue 13)
    # Vectors are float32 little-endian blobs. An embedding space is (fingerprint, recipe):
    # the encoder's files and pooling, and the text that was embedded (skyrm/embed.py).
    def embedding_todo(self, fingerprint: str, recipe: str, pool: str | None = None, *,
                       with_attributes: bool = False, limit: int | None = None, after: str = "") -> list[str]:
        """Ids of a pool's pairs without a current embedding in the space, in id order.

        With ``with_attributes`` an embedding made before the pair's latest attributes
        row (or without it) is not current. ``after`` and ``limit`` page through them
        (keyset: ids greater than ``after``), so a caller never holds the whole list.
        """
        where, params = self._embedding_todo_where(fingerprint, recipe, pool, with_attributes)
        sql = f"SELECT p.id FROM pairs p JOIN pair_status s ON s.pair_id = p.id{where} AND p.id > ? ORDER BY p.id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [r[0] for r in self._query(sql, [*params, after])]

    def count_embedding_todo(self, fingerprint: str, recipe: str, pool: str | None = None, *,
                             with_attributes: bool = False) -> int:
        """How many ids ``embedding_todo`` gives without a limit."""
        where, params = self._embedding_todo_where(fingerprint, recipe, pool, with_attributes)
        return self._query(f"SELECT COUNT(*) FROM pairs p JOIN pair_status s ON s.pair_id = p.id{where}", params)[0][0]

    def _embedding_todo_where(self, fingerprint: str, recipe: str, pool: str | None,
                              with_attributes: bool) -> tuple[str, list]:
        where, params = self._pool_where(pool, None, None)
        current = "e.fingerprint = ? AND e.recipe = ? AND e.pair_id = p.id"
        if with_attributes:
            current += " AND e.attributes_id IS (SELECT MAX(a.id) FROM attributes a WHERE a.pair_id = p.id)"
        cond = (" AND " if where else " WHERE ") + f"NOT EXISTS (SELECT 1 FROM embeddings e WHERE {current})"
        return where + cond, [*params, fingerprint, recipe]

    def latest_attribute_ids(self, pair_ids: Iterable[str]) -> dict[str, int]:
        """The id of each pair's latest attributes row (pairs without attributes are left out)."""
        return dict(self._query_in("SELECT pair_id, MAX(id) FROM attributes WHERE pair_id IN ({marks}) "
                                   "GROUP BY pair_id", pair_ids))

    def put_embeddings(self, rows: Iterable[tuple[str, str, str, str, int | None, int, bytes]]) -> int:
        """Store (pair_id, model, recipe, fingerprint, attributes_id, dim, vector) rows in one
        transaction, replacing a pair's earlier vector in the same space; returns the count."""
        stamp = now()
        batch = [(*row, stamp) for row in rows]
        with self.transaction():
            self.db.conn.executemany(
                "INSERT INTO embeddings (pair_id, model, recipe, fingerprint, attributes_id, dim, vector, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, recipe, pair_id) DO UPDATE SET "
                "model = excluded.model, attributes_id = excluded.attributes_id, dim = excluded.dim, "
                "vector = excluded.vector, created_at = excluded.created_at", batch)
        return len(batch)

    def get_embeddings(self, fingerprint: str, recipe: str, pair_ids: Iterable[str]) -> dict[str, bytes]:
        """Stored vectors of one space by pair id (pairs without one are left out)."""
        return dict(self._query_in("SELECT pair_id, vector FROM embeddings WHERE fingerprint = ? AND recipe = ? "
                                   "AND pair_id IN ({marks})", pair_ids, [fingerprint, recipe]))

    def iter_embeddings(self, fingerprint: str, recipe: str, pool: str | None = None, *,
                        without_label_kind: str | None = None, batch: int = 10_000
                        ) -> Iterator[list[tuple[str, bytes]]]:
        """Batches of (pair_id, vector) of a pool's pairs in one space, in id order.

        ``without_label_kind`` leaves out pairs that already have a label of that kind
        (a contested LLM verdict leaves a pair unverified but labelled).
        """
        where, params = self._pool_where(pool, None, None)
        conds = ["e.fingerprint = ?", "e.recipe = ?"]
        extra: list[Any] = [fingerprint, recipe]
        if without_label_kind is not None:
            conds.append("NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.id AND l.kind = ?)")
            extra.append(without_label_kind)
        cond = (" AND " if where else " WHERE ") + " AND ".join(conds)
        cursor = self.db.conn.execute(
            f"SELECT p.id, e.vector FROM pairs p JOIN pair_status s ON s.pair_id = p.id "
            f"JOIN embeddings e ON e.pair_id = p.id{where}{cond} ORDER BY p.id", [*params, *extra])
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            yield rows

    def embedding_spaces(self, pool: str | None = None) -> list[dict[str, Any]]:
        """Each (model, fingerprint, recipe) stored, with its dimension and how many of a pool's pairs it
        covers, most covered first (the latest made first among equals)."""
        where, params = self._pool_where(pool, None, None)
        rows = self._query(
            "SELECT e.model, e.fingerprint, e.recipe, e.dim, COUNT(*), MAX(e.created_at) FROM embeddings e "
            f"JOIN pairs p ON p.id = e.pair_id JOIN pair_status s ON s.pair_id = p.id{where} "
            "GROUP BY e.fingerprint, e.recipe, e.model ORDER BY COUNT(*) DESC, MAX(e.created_at) DESC", params)
        return [{"model": m, "fingerprint": f, "recipe": r, "dim": d, "pairs": n, "latest": t}
                for m, f, r, d, n, t in rows]

    def add_retrievals(self, run_id: int, round_: int, rows: Iterable[tuple[str, str, float, int, int, float]]
                       ) -> int:
        """Record (gold_id, pair_id, similarity, rank, k, p) links of one retrieval run in one
        transaction; a link already recorded for the round is kept; returns how many were new."""
        stamp = now()
        with self.transaction():
            before = self.db.conn.total_changes
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO retrievals (run_id, round, gold_id, pair_id, similarity, rank, k, p, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, round_, *row, stamp) for row in rows])
            return self.db.conn.total_changes - before

    def retrievals(self, *, round_: int | None = None, run_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded links, oldest first, optionally of one round or one run."""
        where, params = [], []
        if round_ is not None:
            where.append("round = ?")
            params.append(round_)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        sql = ("SELECT run_id, round, gold_id, pair_id, similarity, rank, k, p FROM retrievals"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id")
        keys = ("run_id", "round", "gold_id", "pair_id", "similarity", "rank", "k", "p")
        return [dict(zip(keys, row)) for row in self._query(sql, params)]

    def retrieved_pair_ids(self, round_: int | None = None, *, unlabelled_kind: str | None = "llm") -> list[str]:
        """Distinct retrieved pool pairs (of one round, or all), in the order first retrieved,
        leaving out those that have a label of ``unlabelled_kind`` since."""
        conds, params = [], []
        if round_ is not None:
            conds.append("r.round = ?")
            params.append(round_)
        if unlabelled_kind is not None:
            conds.append("NOT EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = r.pair_id AND l.kind = ?)")
            params.append(unlabelled_kind)
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        return [r[0] for r in self._query(
            f"SELECT r.pair_id, MIN(r.id) AS first FROM retrievals r{where} GROUP BY r.pair_id ORDER BY first",
            params)]
    # ================================================= end of embeddings and retrieval section

    # ======================================================= human annotation (issue 15)
    # Human labels of annotators have producer 'annotator:NAME'. An undo appends a row to
    # `label_withdrawals`; every query below (and the pair_status view) ignores withdrawn labels.
    def add_label(self, label: Label, *, dedup_key: str | None = None) -> int | None:
        """Append one label; returns its id, or None when ``dedup_key`` is already stored."""
        with self.transaction():
            cursor = self.db.conn.execute(
                'INSERT INTO labels (pair_id, kind, producer, prompt_version, verdict, '
                'confidence, "order", round, detail, dedup_key, created_at) '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING',
                (label.pair_id, label.kind, label.producer, label.prompt_version, label.verdict,
                 label.confidence, label.order, label.round, canonical_json(label.detail), dedup_key, now()))
        return int(cursor.lastrowid) if cursor.rowcount else None

    def withdraw_label(self, label_id: int, *, by: str, reason: str = "undo") -> bool:
        """Take back a human label (an annotator's undo); False when it was withdrawn already."""
        kind = self._query("SELECT kind FROM labels WHERE id = ?", [label_id])
        if not kind or kind[0][0] != "human":
            raise StoreError(f"label {label_id} is not a human label: only those can be withdrawn")
        with self.transaction():  # starts with its write: waits for the lock instead of failing
            cursor = self.db.conn.execute(
                "INSERT OR IGNORE INTO label_withdrawals (label_id, withdrawn_by, reason, created_at) "
                "VALUES (?, ?, ?, ?)", (label_id, by, reason, now()))
        return bool(cursor.rowcount)

    def human_labels(self, *, producer_like: str = "annotator:%") -> list[dict[str, Any]]:
        """Standing (not withdrawn) human labels of annotators, oldest first."""
        rows = self._query(
            'SELECT id, pair_id, producer, verdict, "order", detail, created_at FROM labels '
            "WHERE kind = 'human' AND producer LIKE ? AND id NOT IN (SELECT label_id FROM label_withdrawals) "
            "ORDER BY id", [producer_like])
        return [{"id": r[0], "pair_id": r[1], "producer": r[2], "verdict": r[3], "order": r[4],
                 "detail": json.loads(r[5]), "created_at": r[6]} for r in rows]

    def queue_for_human(self, pair_ids: Iterable[str], reason: str, run_id: int | None = None,
                        round_: int = 0) -> int:
        """Send pairs to human annotators (``skyrm annotate`` takes them first); returns how many
        were new. The same pair queued again for the same reason and round is kept once."""
        stamp = now()
        ids = list(dict.fromkeys(pair_ids))
        found = {r[0] for r in self._query_in("SELECT id FROM pairs WHERE id IN ({marks})", ids)}
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise StoreError(f"{len(unknown)} pair id(s) not in the store, e.g. {unknown[0]}")
        with self.transaction():
            before = self.db.conn.total_changes
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO human_queue (pair_id, reason, round, run_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)", [(i, reason, round_, run_id, stamp) for i in ids])
            return self.db.conn.total_changes - before

    def human_queue(self, *, waiting: bool = True) -> list[dict[str, Any]]:
        """Queued pairs, one row each (their reasons joined, the latest round), in the order first queued;
        ``waiting`` leaves out pairs a human has labelled since."""
        cond = (" WHERE q.pair_id NOT IN (SELECT pair_id FROM labels WHERE kind = 'human' "
                "AND id NOT IN (SELECT label_id FROM label_withdrawals))") if waiting else ""
        rows = self._query(
            "SELECT q.pair_id, GROUP_CONCAT(DISTINCT q.reason), MAX(q.round), MIN(q.id) AS first "
            f"FROM human_queue q{cond} GROUP BY q.pair_id ORDER BY first")
        return [{"pair_id": r[0], "reasons": sorted(r[1].split(",")), "round": r[2]} for r in rows]

    def annotation_facts(self, pair_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """What the annotation queue orders by, per pair: latest attributes, the latest RM score's p,
        the latest LLM label's verdict, confidence and whether its two orders disagreed."""
        facts: dict[str, dict[str, Any]] = {}
        ids = list(pair_ids)
        for begin in range(0, len(ids), 500):
            chunk = ids[begin:begin + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                    "SELECT p.id, a.task_category, a.objectivity, a.controversiality, s.p, l.verdict, l.confidence, "
                    "json_extract(l.detail, '$.contested') FROM pairs p "
                    "LEFT JOIN (SELECT pair_id, task_category, objectivity, controversiality, MAX(id) FROM attributes "
                    f"          WHERE pair_id IN ({marks}) GROUP BY pair_id) a ON a.pair_id = p.id "
                    f"LEFT JOIN (SELECT pair_id, p, MAX(run_id) FROM scores WHERE pair_id IN ({marks}) "
                    "          GROUP BY pair_id) s ON s.pair_id = p.id "
                    "LEFT JOIN (SELECT pair_id, verdict, confidence, detail, MAX(id) FROM labels "
                    f"          WHERE kind = 'llm' AND pair_id IN ({marks}) GROUP BY pair_id) l ON l.pair_id = p.id "
                    f"WHERE p.id IN ({marks})", chunk * 4):
                facts[row[0]] = {"task_category": row[1], "objectivity": row[2], "controversiality": row[3],
                                 "rm_p": row[4], "llm_verdict": row[5], "llm_confidence": row[6],
                                 "llm_contested": bool(row[7])}
        return facts

    def annotated_once_by_others(self, annotator: str) -> list[str]:
        """Pairs that exactly one annotator other than ``annotator`` has labelled (standing labels):
        the candidates for a second, overlapping opinion."""
        return [r[0] for r in self._query(
            "SELECT pair_id FROM labels WHERE kind = 'human' AND producer LIKE 'annotator:%' "
            "AND id NOT IN (SELECT label_id FROM label_withdrawals) GROUP BY pair_id "
            "HAVING COUNT(DISTINCT producer) = 1 AND MAX(producer) != ? ORDER BY MIN(id)", [annotator])]

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """A write transaction that takes the write lock first (BEGIN IMMEDIATE): two processes
        reading then writing in deferred transactions could both read the same free pair."""
        if self.db.conn.in_transaction:
            raise StoreError("an immediate transaction cannot start inside another transaction")
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.conn.execute("ROLLBACK")
            raise
        self.db.conn.execute("COMMIT")

    def claim_next(self, annotator: str, candidates: Sequence[str], *, overlap: frozenset[str] = frozenset(),
                   ttl_seconds: float = 1800.0, chunk: int = 500) -> str | None:
        """Claim the first candidate nobody else holds and ``annotator`` has not labelled, in one
        immediate transaction (two processes never claim the same pair). A pair another annotator
        labelled qualifies only when it is in ``overlap`` and only one annotator labelled it.
        Expired claims are released first. Returns the pair id, or None when none is left."""
        stamp = now()
        with self._immediate():
            self.db.conn.execute("DELETE FROM annotation_claims WHERE expires <= ?", [stamp])
            for start in range(0, len(candidates), chunk):
                ids = list(candidates[start:start + chunk])
                status = {r[0]: r[1:] for r in self._query(
                    "SELECT p.id, "
                    "EXISTS (SELECT 1 FROM annotation_claims c WHERE c.pair_id = p.id AND c.annotator != ?), "
                    "EXISTS (SELECT 1 FROM labels l WHERE l.pair_id = p.id AND l.kind = 'human' AND l.producer = ? "
                    "        AND l.id NOT IN (SELECT label_id FROM label_withdrawals)), "
                    "(SELECT COUNT(DISTINCT l.producer) FROM labels l WHERE l.pair_id = p.id AND l.kind = 'human' "
                    "        AND l.producer LIKE 'annotator:%' AND l.producer != ? "
                    "        AND l.id NOT IN (SELECT label_id FROM label_withdrawals)) "
                    f"FROM pairs p WHERE p.id IN ({','.join('?' * len(ids))})", [annotator, annotator, annotator, *ids])}
                for pair_id in ids:
                    if pair_id not in status:
                        continue
                    claimed, mine, others = status[pair_id]
                    if claimed or mine or others > 1 or (others == 1 and pair_id not in overlap):
                        continue
                    self._claim(pair_id, annotator, ttl_seconds)
                    return pair_id
        return None

    def _claim(self, pair_id: str, annotator: str, ttl_seconds: float) -> None:
        stamp = datetime.now(timezone.utc)
        expires = datetime.fromtimestamp(stamp.timestamp() + ttl_seconds, timezone.utc)
        self.db.conn.execute("INSERT OR REPLACE INTO annotation_claims VALUES (?, ?, ?, ?)",
                             (pair_id, annotator, stamp.isoformat(timespec="microseconds"),
                              expires.isoformat(timespec="microseconds")))

    def claim(self, pair_id: str, annotator: str, *, ttl_seconds: float = 1800.0) -> None:
        """Hold a pair for ``annotator`` whoever else holds it (an undo takes its pair back)."""
        with self._immediate():
            self._claim(pair_id, annotator, ttl_seconds)

    def release_claims(self, annotator: str, pair_id: str | None = None) -> int:
        """Release one pair's claim of ``annotator``, or all of them; returns how many."""
        sql, params = "DELETE FROM annotation_claims WHERE annotator = ?", [annotator]
        if pair_id is not None:
            sql += " AND pair_id = ?"
            params.append(pair_id)
        with self.transaction():
            return self.db.conn.execute(sql, params).rowcount

    def claims(self) -> list[dict[str, Any]]:
        """Unexpired claims: who has which pair on screen."""
        return [{"pair_id": r[0], "annotator": r[1], "claimed_at": r[2], "expires": r[3]} for r in self._query(
            "SELECT pair_id, annotator, claimed_at, expires FROM annotation_claims WHERE expires > ? "
            "ORDER BY claimed_at", [now()])]

    def human_comparisons(self) -> list[dict[str, Any]]:
        """For each pair with a standing annotator label: its task category, the latest LLM label's
        verdict and the latest RM score's p (for human-vs-judge and human-vs-RM agreement)."""
        rows = self._query(
            "SELECT h.pair_id, a.task_category, l.verdict, s.p FROM "
            "(SELECT DISTINCT pair_id FROM labels WHERE kind = 'human' AND producer LIKE 'annotator:%' "
            " AND id NOT IN (SELECT label_id FROM label_withdrawals)) h "
            "LEFT JOIN (SELECT pair_id, task_category, MAX(id) FROM attributes GROUP BY pair_id) a "
            "    ON a.pair_id = h.pair_id "
            "LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels WHERE kind = 'llm' GROUP BY pair_id) l "
            "    ON l.pair_id = h.pair_id "
            "LEFT JOIN (SELECT pair_id, p, MAX(run_id) FROM scores GROUP BY pair_id) s ON s.pair_id = h.pair_id")
        return [{"pair_id": r[0], "task_category": r[1], "llm_verdict": r[2], "rm_p": r[3]} for r in rows]
    # ================================================== end of human annotation section

