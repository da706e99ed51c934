"""Rows and files found by benchmarks/bench_faults.py that once crashed an import or slipped through."""

from __future__ import annotations

import json

from skyrm.errors import InputError
from skyrm.ingest import import_file


def test_a_row_nested_thousands_deep_is_quarantined_not_fatal(store, tmp_path):
    deep = "[" * 5000 + "]" * 5000
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n"
                    + '{"prompt": "q2", "chosen": ' + deep + ', "rejected": "b"}\n'
                    + json.dumps({"prompt": "q3", "chosen": "a3", "rejected": "b3"}) + "\n")
    summary = import_file(store, path, source="deep")
    assert (summary.pairs_new, summary.bad_rows) == (2, 1)
    [bad] = store.quarantined("deep")
    assert bad["line"] == 2 and "nested too deeply" in bad["reason"]


def test_a_file_named_parquet_that_is_not_is_one_line(store, tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet")
    try:
        import_file(store, path, source="bad")
    except InputError as exc:
        assert "\n" not in str(exc) and "not a readable Parquet file" in str(exc) and "bad.parquet" in str(exc)
    else:
        raise AssertionError("a broken Parquet file was imported")
    assert store.count_pairs("all") == 0


def test_hf_rows_with_an_empty_response_are_quarantined(store, tmp_path):
    def row(chosen: str) -> str:
        return json.dumps({"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": chosen}],
                           "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]})

    path = tmp_path / "hf.jsonl"
    path.write_text(row("   ") + "\n" + row("ok") + "\n")
    summary = import_file(store, path, source="hf")
    assert (summary.pairs_new, summary.bad_rows) == (1, 1)
    assert store.quarantined("hf")[0]["field"] == "chosen"


def test_selecting_by_an_id_file_leaves_later_writes_committed(store, tmp_path):
    """The id-file selection fills a temporary table; it must not leave a transaction open that would
    keep every later write of this connection from reaching the file."""
    import sqlite3

    from skyrm.records import Label, Pair

    pairs = [Pair([{"role": "user", "content": f"q{i}"}], [{"role": "assistant", "content": "a"}],
                  [{"role": "assistant", "content": "b"}], source="s") for i in range(3)]
    store.add_pairs(pairs)
    ids = tmp_path / "ids.txt"
    ids.write_text(pairs[0].id + "\n" + pairs[1].id + "\n")
    assert store.count_pairs(str(ids)) == 2
    store.add_labels([Label(pairs[0].id, "rule", "curate:test", "chosen")])
    with sqlite3.connect(store.path) as other:  # another connection sees it: it was committed
        assert other.execute("SELECT COUNT(*) FROM labels WHERE producer = 'curate:test'").fetchone()[0] == 1
