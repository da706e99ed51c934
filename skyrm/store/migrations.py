"""The store's schema, as numbered migrations that are never edited once released.

A schema change is a new function at the end of this file, named ``mNNN_what``.
sqlite-utils records applied migrations in ``_sqlite_migrations``, so opening an
old store upgrades it in place.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("skyrm")


def _run(db: Database, script: str) -> None:
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


@migrations()
def m001_initial(db: Database) -> None:
    _run(db, """
CREATE TABLE pairs (
    id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    chosen TEXT NOT NULL,
    rejected TEXT NOT NULL,
    source TEXT NOT NULL,
    split TEXT NOT NULL DEFAULT 'train',
    meta TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX pairs_source ON pairs(source);
CREATE TABLE pair_sources (
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    source TEXT NOT NULL,
    PRIMARY KEY (pair_id, source)
) WITHOUT ROWID;
CREATE INDEX pair_sources_source ON pair_sources(source);
CREATE TABLE attributes (
    id INTEGER PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    task_category TEXT NOT NULL,
    objectivity TEXT NOT NULL,
    controversiality TEXT NOT NULL,
    desired_attributes TEXT NOT NULL,
    guideline TEXT NOT NULL,
    producer TEXT NOT NULL,
    prompt_version TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX attributes_pair ON attributes(pair_id);
CREATE TABLE labels (
    id INTEGER PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    kind TEXT NOT NULL CHECK (kind IN ('human', 'llm', 'rm', 'rule')),
    producer TEXT NOT NULL,
    prompt_version TEXT NOT NULL DEFAULT '',
    verdict TEXT NOT NULL CHECK (verdict IN ('chosen', 'rejected', 'tie', 'skip')),
    confidence REAL,
    "order" TEXT NOT NULL DEFAULT '',
    round INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}',
    dedup_key TEXT UNIQUE,
    created_at TEXT NOT NULL
);
CREATE INDEX labels_pair_kind ON labels(pair_id, kind);
CREATE INDEX labels_producer ON labels(producer);
CREATE TRIGGER labels_no_update BEFORE UPDATE ON labels
BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END;
CREATE TRIGGER labels_no_delete BEFORE DELETE ON labels
BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END;
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    path TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE scores (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    r_chosen REAL NOT NULL,
    r_rejected REAL NOT NULL,
    p REAL NOT NULL,
    PRIMARY KEY (run_id, pair_id)
) WITHOUT ROWID;
CREATE TABLE rewards (
    model TEXT NOT NULL,
    item TEXT NOT NULL,
    reward REAL NOT NULL,
    PRIMARY KEY (model, item)
) WITHOUT ROWID;
CREATE TABLE features (
    model TEXT NOT NULL,
    item TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, item)
) WITHOUT ROWID;
CREATE TABLE embeddings (
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (pair_id, model)
) WITHOUT ROWID;
CREATE TABLE judge_cache (
    key TEXT PRIMARY KEY,
    output TEXT NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    line INTEGER NOT NULL,
    field TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (path, line, source)
);
CREATE TABLE steps (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
""")


@migrations()
def m002_pair_status_view(db: Database) -> None:
    # Pools are derived from labels, never stored as flags (DESIGN.md "Data model").
    # Precedence: a rule 'skip' (decontamination, curation discard) or a human 'skip'
    # discards; otherwise the latest human label makes gold; a curation rule label
    # makes curated; the latest LLM label makes silver; else unverified.
    # SQLite returns the row of MAX(id) for bare columns: the latest label of each kind.
    _run(db, """
CREATE VIEW pair_status AS
SELECT
    p.id AS pair_id,
    h.verdict AS human_verdict,
    c.verdict AS curate_verdict,
    l.verdict AS llm_verdict,
    (r.pair_id IS NOT NULL) AS ruled_out,
    CASE
        WHEN r.pair_id IS NOT NULL OR h.verdict = 'skip' THEN 'discarded'
        WHEN h.verdict IS NOT NULL THEN 'gold'
        WHEN c.verdict IN ('chosen', 'rejected') THEN 'curated'
        WHEN l.verdict IN ('chosen', 'rejected') THEN 'silver'
        ELSE 'unverified'
    END AS pool,
    CASE
        WHEN r.pair_id IS NOT NULL OR h.verdict = 'skip' THEN NULL
        WHEN h.verdict IS NOT NULL THEN h.verdict
        WHEN c.verdict IN ('chosen', 'rejected') THEN c.verdict
        WHEN l.verdict IN ('chosen', 'rejected') THEN l.verdict
        ELSE NULL
    END AS verdict
FROM pairs p
LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels WHERE kind = 'human' GROUP BY pair_id) h
    ON h.pair_id = p.id
LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels
           WHERE kind = 'rule' AND producer LIKE 'curate%' AND verdict != 'skip' GROUP BY pair_id) c
    ON c.pair_id = p.id
LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels WHERE kind = 'llm' GROUP BY pair_id) l
    ON l.pair_id = p.id
LEFT JOIN (SELECT DISTINCT pair_id FROM labels WHERE kind = 'rule' AND verdict = 'skip') r
    ON r.pair_id = p.id
""")


@migrations()
def m003_hints(db: Database) -> None:
    # Pre-verification hints for human annotators (METHOD.md Stage 1: objective pairs are
    # checked one response at a time by an LLM). Kept apart from `labels` on purpose: a
    # hint must never move a pair between pools. `side` is relative to the stored pair.
    _run(db, """
CREATE TABLE hints (
    id INTEGER PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    side TEXT NOT NULL CHECK (side IN ('chosen', 'rejected')),
    kind TEXT NOT NULL DEFAULT 'correct',
    producer TEXT NOT NULL,
    prompt_version TEXT NOT NULL DEFAULT '',
    p REAL,
    detail TEXT NOT NULL DEFAULT '{}',
    dedup_key TEXT UNIQUE,
    created_at TEXT NOT NULL
);
CREATE INDEX hints_pair ON hints(pair_id)
""")


@migrations()
def m004_embedding_spaces_and_retrievals(db: Database) -> None:
    # Embeddings keyed by (fingerprint, recipe, pair): the fingerprint hashes the encoder's
    # files and pooling, the recipe names the text that was embedded (issue 13), so two
    # encoders or two recipes never mix, and `model` keeps the name the user gave.
    # `attributes_id` is the attributes row a prompt+attributes text included: newer
    # attributes make the row stale and `skyrm embed` redoes it. m001's table held nothing
    # recipe-aware (and no code wrote it); its rows are kept under the recipe 'legacy'.
    # `retrievals` records Stage 1 step 2 (METHOD.md): which pool pair was pulled in,
    # for which gold pair, at what similarity, rank, k and RM confidence p, in which round.
    _run(db, """
CREATE TABLE embeddings_v2 (
    id INTEGER PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    attributes_id INTEGER,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (fingerprint, recipe, pair_id)
);
INSERT INTO embeddings_v2 (pair_id, model, recipe, fingerprint, attributes_id, dim, vector, created_at)
SELECT pair_id, model, 'legacy', model, NULL, dim, vector, '' FROM embeddings;
DROP TABLE embeddings;
ALTER TABLE embeddings_v2 RENAME TO embeddings;
CREATE INDEX embeddings_pair ON embeddings(pair_id);
CREATE TABLE retrievals (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    round INTEGER NOT NULL,
    gold_id TEXT NOT NULL REFERENCES pairs(id),
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    similarity REAL NOT NULL,
    rank INTEGER NOT NULL,
    k INTEGER NOT NULL,
    p REAL NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (round, gold_id, pair_id)
);
CREATE INDEX retrievals_pair ON retrievals(pair_id);
CREATE INDEX retrievals_run ON retrievals(run_id)
""")


@migrations()
def m005_quarantine_element(db: Database) -> None:
    # Elements of a JSON array written on one line all start on line 1, and m001's
    # UNIQUE (path, line, source) kept only the first bad element of such a line (issue 12).
    # `element` is the index in the array (from 0; NULL for line-delimited rows), part of
    # the identity; a UNIQUE constraint cannot be altered in SQLite, so the table is rebuilt.
    _run(db, """
CREATE TABLE quarantine_v2 (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    line INTEGER NOT NULL,
    element INTEGER,
    field TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO quarantine_v2 (id, source, path, line, element, field, reason, raw, created_at)
SELECT id, source, path, line, NULL, field, reason, raw, created_at FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_v2 RENAME TO quarantine;
CREATE UNIQUE INDEX quarantine_where ON quarantine(path, line, IFNULL(element, -1), source)
""")


@migrations()
def m006_annotation(db: Database) -> None:
    # Human verification (issue 15, METHOD.md Stage 1 "Human protocol").
    # - `label_withdrawals`: an annotator's undo. Labels stay append-only, and 'withdrawn' is no
    #   verdict, so an undo appends a row here naming the label it takes back; the pools
    #   below ignore withdrawn human labels. Append-only itself (an undo is not undone by
    #   deleting it: the annotator answers again, which appends a new label).
    # - `annotation_claims`: which annotator has which pair on screen, until `expires`, so two
    #   annotators on one store never see the same pair unless overlap is asked for.
    # - `human_queue`: pairs other stages send to humans (contested, low-confidence), with why
    #   and in which round; `skyrm annotate` takes them first.
    # The pair_status view is m002's with one change: withdrawn human labels do not count.
    _run(db, """
CREATE TABLE label_withdrawals (
    label_id INTEGER PRIMARY KEY REFERENCES labels(id),
    withdrawn_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE TRIGGER label_withdrawals_no_update BEFORE UPDATE ON label_withdrawals
BEGIN SELECT RAISE(ABORT, 'label withdrawals are append-only'); END;
CREATE TRIGGER label_withdrawals_no_delete BEFORE DELETE ON label_withdrawals
BEGIN SELECT RAISE(ABORT, 'label withdrawals are append-only'); END;
CREATE TABLE annotation_claims (
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    annotator TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    expires TEXT NOT NULL,
    PRIMARY KEY (pair_id, annotator)
) WITHOUT ROWID;
CREATE INDEX annotation_claims_expires ON annotation_claims(expires);
CREATE TABLE human_queue (
    id INTEGER PRIMARY KEY,
    pair_id TEXT NOT NULL REFERENCES pairs(id),
    reason TEXT NOT NULL,
    round INTEGER NOT NULL DEFAULT 0,
    run_id INTEGER REFERENCES runs(id),
    created_at TEXT NOT NULL,
    UNIQUE (pair_id, reason, round)
);
CREATE INDEX human_queue_pair ON human_queue(pair_id);
DROP VIEW pair_status;
CREATE VIEW pair_status AS
SELECT
    p.id AS pair_id,
    h.verdict AS human_verdict,
    c.verdict AS curate_verdict,
    l.verdict AS llm_verdict,
    (r.pair_id IS NOT NULL) AS ruled_out,
    CASE
        WHEN r.pair_id IS NOT NULL OR h.verdict = 'skip' THEN 'discarded'
        WHEN h.verdict IS NOT NULL THEN 'gold'
        WHEN c.verdict IN ('chosen', 'rejected') THEN 'curated'
        WHEN l.verdict IN ('chosen', 'rejected') THEN 'silver'
        ELSE 'unverified'
    END AS pool,
    CASE
        WHEN r.pair_id IS NOT NULL OR h.verdict = 'skip' THEN NULL
        WHEN h.verdict IS NOT NULL THEN h.verdict
        WHEN c.verdict IN ('chosen', 'rejected') THEN c.verdict
        WHEN l.verdict IN ('chosen', 'rejected') THEN l.verdict
        ELSE NULL
    END AS verdict
FROM pairs p
LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels WHERE kind = 'human'
           AND id NOT IN (SELECT label_id FROM label_withdrawals) GROUP BY pair_id) h
    ON h.pair_id = p.id
LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels
           WHERE kind = 'rule' AND producer LIKE 'curate%' AND verdict != 'skip' GROUP BY pair_id) c
    ON c.pair_id = p.id
LEFT JOIN (SELECT pair_id, verdict, MAX(id) FROM labels WHERE kind = 'llm' GROUP BY pair_id) l
    ON l.pair_id = p.id
LEFT JOIN (SELECT DISTINCT pair_id FROM labels WHERE kind = 'rule' AND verdict = 'skip') r
    ON r.pair_id = p.id
""")


@migrations()
def m007_run_owner(db: Database) -> None:
    # Which process runs a run (host and pid), so a run whose process was killed outright
    # (kill -9, a native crash) can be closed as 'interrupted' by the next run (issue 16).
    _run(db, """
ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN pid INTEGER
""")
