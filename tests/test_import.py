"""Import and export through the library and the CLI: counts, dedup, quarantine, strict, resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skyrm.errors import InputError, SkyrmError
from skyrm.ingest import BATCH_ROWS, export_pairs, import_file, import_files
from skyrm.records import Label


def _write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_import_fixtures_then_reimport_adds_nothing(store, test_data):
    files = sorted((test_data / "formats").iterdir())
    first = import_files(store, files)
    assert sum(s.pairs_new for s in first) == 23 and sum(s.bad_rows for s in first) == 0
    again = import_files(store, files)
    assert all(s.skipped_done for s in again)
    assert store.count_pairs() == 23


def test_same_pair_from_two_sources_stored_once(store, tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}]
    a = import_file(store, _write_rows(tmp_path / "a.jsonl", rows), source="alpha")
    b = import_file(store, _write_rows(tmp_path / "b.jsonl", rows), source="beta")
    assert (a.pairs_new, b.pairs_new, b.pairs_seen) == (1, 0, 1)
    (pid,) = store.pair_ids()
    assert store.sources_of(pid) == ["alpha", "beta"]
    assert store.count_pairs("beta") == 1


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "reader-process"])
def test_mixed_file_stores_good_rows_and_quarantines_bad(store, tmp_path, parallel):
    rows: list[str] = []
    for i in range(120):
        if i % 6 == 5:  # 20 bad rows of four kinds
            kind = (i // 6) % 4
            bad = [{"prompt": f"q{i}", "chosen": f"a{i}"},
                   {"prompt": f"q{i}", "chosen": None, "rejected": "x"},
                   {"prompt": f"q{i}", "chosen": "same", "rejected": "same"}][kind] if kind < 3 else None
            rows.append(json.dumps(bad) if bad is not None else '{"broken": ')
        else:
            rows.append(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(rows) + "\n")
    summary = import_file(store, path, parallel=parallel, batch_rows=50)
    assert (summary.pairs_new, summary.bad_rows) == (100, 20)
    quarantined = store.quarantined()
    assert len(quarantined) == 20
    assert {q["reason"] for q in quarantined} == {"missing", "is null", "identical to chosen",
                                                  "invalid JSON (Expecting value at column 12)"}
    first = quarantined[0]
    assert first["line"] == 6 and first["field"] == "rejected" and first["path"] == str(path.resolve())
    assert json.loads(first["raw"]) == {"prompt": "q5", "chosen": "a5"}
    # importing the same file again, even forcing a re-read, quarantines nothing twice
    store.set_step(next(iter(store.db["steps"].rows))["name"], "running", {"line": 0})
    again = import_file(store, path, parallel=parallel)
    assert (again.rows, again.pairs_new, again.pairs_seen) == (120, 0, 100)
    assert len(store.quarantined()) == 20


def test_split_readers_merge_blocks_in_file_order_even_around_blank_blocks(store, tmp_path):
    from skyrm.import_reader import READERS, read_batches_in_children

    lines = []
    for i in range(1, 41):
        blank = 6 <= i <= 15  # two whole blocks of five lines hold no rows
        lines.append("" if blank else json.dumps({"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"}))
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert READERS > 1
    seen = [row[0] for batch in read_batches_in_children(path, "auto", "gaps", 0, 5) for row in batch]
    assert seen == [i for i in range(1, 41) if not 6 <= i <= 15]  # every row once, in file order
    summary = import_file(store, path, parallel=True, batch_rows=5)
    assert (summary.rows, summary.pairs_new) == (30, 30)
    resumed = import_file(store, path, parallel=True, batch_rows=5)
    assert resumed.skipped_done and store.count_pairs() == 30


def test_reader_process_reports_an_unreadable_file_in_one_line(store, tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(SkyrmError) as error:
        import_file(store, path, parallel=True)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert store.count_pairs() == 0


def test_strict_stores_nothing_and_names_file_line_field(store, tmp_path):
    good = _write_rows(tmp_path / "good.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    bad = _write_rows(tmp_path / "bad.jsonl", [{"prompt": "q1", "chosen": "a", "rejected": "b"},
                                              {"prompt": "q2", "chosen": "a"}])
    with pytest.raises(InputError) as error:
        import_files(store, [good, bad], strict=True)
    assert str(error.value) == f"{bad}:2: field 'rejected': missing"
    assert store.count_pairs() == 0 and store.quarantined() == []


def test_import_as_gold_and_silver_records_labels_once(store, tmp_path):
    path = _write_rows(tmp_path / "g.jsonl", [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(3)])
    summary = import_file(store, path, as_="gold")
    assert summary.labels == 3
    assert store.count_pairs("gold") == 3
    silver = _write_rows(tmp_path / "s.jsonl", [{"prompt": "z", "chosen": "a", "rejected": "b"}])
    import_file(store, silver, as_="silver")
    assert store.count_pairs("silver") == 1
    (label,) = store.labels_for(store.pair_ids("silver")[0])
    assert (label.kind, label.producer, label.verdict) == ("llm", "import:s", "chosen")
    with pytest.raises(InputError, match="--as must be one of pool, gold, silver"):
        import_file(store, path, as_="bronze")


@pytest.mark.parametrize("shape", ["trl", "hf", "openrlhf", "sharegpt"])
def test_round_trip_import_export_import(store, tmp_path, test_data, shape):
    from skyrm.ingest import shape_format
    from skyrm.store import Store

    import_files(store, [test_data / "formats" / "hf.jsonl", test_data / "formats" / "sharegpt.json"])
    out = tmp_path / f"out-{shape}.jsonl"
    assert export_pairs(store, out, pool="all", shape=shape) == 5
    other = Store(tmp_path / "other.db")
    import_file(other, out, fmt=shape_format(shape))
    assert other.pair_ids() == store.pair_ids()
    for pid in store.pair_ids():
        assert other.get_pair(pid).prompt == store.get_pair(pid).prompt


def test_export_orients_by_verdict(store, tmp_path):
    path = _write_rows(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "worse", "rejected": "better"}])
    import_file(store, path)
    (pid,) = store.pair_ids()
    store.add_labels([Label(pid, "human", "ann", "rejected")])
    out = tmp_path / "gold.jsonl"
    export_pairs(store, out, pool="gold", shape="trl")
    row = json.loads(out.read_text())
    assert row["chosen"][0]["content"] == "better" and row["rejected"][0]["content"] == "worse"


def test_real_files_expected_counts_and_second_run_adds_nothing(store, shared_data):
    hh = import_file(store, shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz")
    assert hh.rows == 2312 and hh.pairs_new + hh.pairs_seen + hh.bad_rows == 2312
    assert hh.bad_rows == 4  # transcripts whose final assistant turn is empty
    rmb = import_files(store, sorted((shared_data / "rmb" / "Pairwise_set").rglob("*.json")))
    rows = sum(s.rows for s in rmb)
    assert rows == 14543
    assert sum(s.pairs_new + s.pairs_seen + s.bad_rows for s in rmb) == 14543
    before = store.count_pairs()
    assert store.count_pairs() == hh.pairs_new + sum(s.pairs_new for s in rmb)
    again = import_files(store, [shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz",
                                 *sorted((shared_data / "rmb" / "Pairwise_set").rglob("*.json"))])
    assert all(s.skipped_done for s in again) and store.count_pairs() == before


@pytest.mark.slow
def test_kill_9_mid_import_then_resume(tmp_path):
    from skyrm.ingest import READER_PROCESS_MIN_BYTES

    n = 60_000
    path = tmp_path / "big.jsonl"
    padding = "so " * 100
    with open(path, "w") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"question number {i}", "chosen": f"a good answer {i} {padding}",
                                     "rejected": f"a bad answer {i}"}) + "\n")
    assert path.stat().st_size >= READER_PROCESS_MIN_BYTES  # the child-process reader is what gets killed
    db = tmp_path / "kill.db"
    env = {**os.environ, "SKYRM_DB": str(db)}
    proc = subprocess.Popen([sys.executable, "-m", "skyrm", "import", str(path), "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        except sqlite3.OperationalError:
            continue
        if stored >= BATCH_ROWS:
            break
    assert proc.poll() is None, "the import finished before it could be killed; make the file larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _assert_no_reader_left(path)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        partial = conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        orphans = conn.execute("SELECT COUNT(*) FROM pairs WHERE id NOT IN (SELECT pair_id FROM pair_sources)"
                               ).fetchone()[0]
    assert 0 < partial < n and orphans == 0 and partial % BATCH_ROWS == 0  # whole batches only
    done = subprocess.run([sys.executable, "-m", "skyrm", "import", str(path), "--json"], env=env,
                          capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)[0]
    assert summary["rows"] == n - partial  # resumed after the last stored batch, not from the start
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] == n
        assert conn.execute("SELECT COUNT(*) FROM pair_sources").fetchone()[0] == n


def _assert_no_reader_left(path, wait_s: float = 10.0) -> None:
    """The import's reader child exits once its parent is gone (no orphan left running)."""
    deadline = time.time() + wait_s
    while True:
        readers = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "skyrm.import_reader" in text and str(path) in text:
                readers.append(cmdline.parent.name)
        if not readers or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not readers, f"reader processes still running: {readers}"


def test_directory_expands_to_its_data_files(store, test_data, tmp_path):
    from skyrm.ingest import expand_paths

    files = expand_paths([test_data / "formats"])
    assert [f.name for f in files] == sorted(f.name for f in (test_data / "formats").iterdir())
    assert sum(s.pairs_new for s in import_files(store, [test_data / "formats"])) == 23
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: no .jsonl, .json or .parquet files in this directory"):
        expand_paths([empty])
