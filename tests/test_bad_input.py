"""Bad input and surprises (issue 12): each case's exit code, its one-line message, and that
nothing already stored is lost. The CLI runs as a user runs it, in a subprocess with pipes."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from skyrm.errors import InputError
from skyrm.ingest import PROBE_ROWS, import_file, import_files
from skyrm.selection import Selection, parse_selection
from skyrm.store import Store


def skyrm(*args, db=None, stdin: str | bytes | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "skyrm", *map(str, args)] + (["--db", str(db)] if db else [])
    return subprocess.run(cmd, capture_output=True, input=stdin.encode() if isinstance(stdin, str) else stdin)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command writes to stderr (asserting it is exactly one)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def snapshot(db: Path) -> dict:
    """Everything an import writes: pairs with their sources, quarantined rows, import steps."""
    with sqlite3.connect(db) as conn:
        return {"pairs": sorted(conn.execute("SELECT pair_id, source FROM pair_sources")),
                "quarantine": sorted(conn.execute("SELECT path, line, element, reason FROM quarantine")),
                "steps": sorted(conn.execute("SELECT name, status, detail FROM steps"))}


@pytest.fixture
def db(tmp_path, test_data) -> Path:
    """A store that already holds 3 pairs (and a finished import step) that no failure may lose."""
    path = tmp_path / "kept.db"
    result = skyrm("import", test_data / "formats" / "hf.jsonl", db=path)
    assert result.returncode == 0, result.stderr
    assert len(snapshot(path)["pairs"]) == 3
    return path


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ------------------------------------------------------------ 1. a file that is not what --format says
@pytest.mark.parametrize("file, fmt, field, rows, looks_like", [
    ("judgebench/claude-3-5-sonnet-pairs.jsonl", "hh", "chosen", "its first 100 rows", "judgebench"),
    ("hh-rlhf/harmless-base-test.jsonl.gz", "trl", "prompt", "its first 100 rows", "hh"),
    ("formats/sharegpt_dpo_demo.json", "rm-bench", "prompt", "its first 100 rows", "sharegpt"),
], ids=["hh-on-judgebench", "trl-on-hh", "rm-bench-on-sharegpt"])
def test_wrong_format_on_real_data_fails_and_stores_nothing(db, shared_data, file, fmt, field, rows, looks_like):
    before = snapshot(db)
    path = shared_data / file
    line = error_line(skyrm("import", path, "--format", fmt, db=db))
    assert line == (f"error: {path}: none of {rows} matches --format {fmt} (field '{field}': missing in 100 of "
                    f"100); the rows look like {looks_like}: try --format {looks_like} or auto; nothing was stored")
    assert snapshot(db) == before  # no pairs, no quarantine flood, no import step marked done


def test_rmb_format_on_trl_rows_names_the_missing_field(db, test_data, tmp_path):
    path = tmp_path / "trl.jsonl"
    path.write_bytes(gzip.decompress((test_data / "formats" / "trl_strings.jsonl.gz").read_bytes()))
    before = snapshot(db)
    line = error_line(skyrm("import", path, "--format", "rmb", db=db))
    assert line == (f"error: {path}: none of its 2 rows matches --format rmb (field 'conversation_input': missing "
                    f"in 2 of 2); the rows look like trl: try --format trl or auto; nothing was stored")
    assert snapshot(db) == before


def test_binary_file_named_jsonl_fails(db, tmp_path):
    path = tmp_path / "image.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe\n" + b"\xff\xd8\xff\xe0\x00\x10\n" * 2)
    before = snapshot(db)
    line = error_line(skyrm("import", path, db=db))
    assert line == (f"error: {path}: none of its 5 rows is a valid row (invalid UTF-8 in 4 of 5, invalid JSON in 1 "
                    f"of 5); the file is binary, not JSON text; nothing was stored")
    assert snapshot(db) == before


def test_gzip_data_without_gz_suffix_fails_with_the_cause(db, shared_data, tmp_path):
    path = tmp_path / "hh.jsonl"
    shutil.copy(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz", path)
    before = snapshot(db)
    line = error_line(skyrm("import", path, db=db))
    assert line.startswith(f"error: {path}: none of its first 100 rows is a valid row (invalid UTF-8 in ")
    assert line.endswith("; the file is gzip-compressed: name it with a .gz suffix; nothing was stored")
    assert snapshot(db) == before


def test_rows_of_the_detected_format_that_are_all_bad_fail(db, tmp_path):
    empty_turn = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant:"})
    path = tmp_path / "hollow.jsonl"
    path.write_text((empty_turn + "\n") * 3)
    before = snapshot(db)
    line = error_line(skyrm("import", path, db=db))
    assert line == (f"error: {path}: none of its 3 rows is a valid hh row (hh detected from its first row; field "
                    "'chosen': final assistant turn is empty in 3 of 3); the rows have that format's fields but not "
                    "valid values: check the file; nothing was stored")
    assert snapshot(db) == before


@pytest.mark.parametrize("name, content", [("empty.jsonl", ""), ("blank.jsonl", "\n\n  \n"), ("empty.json", "[]")])
def test_empty_file_fails_saying_it_has_no_rows(db, tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    before = snapshot(db)
    line = error_line(skyrm("import", path, db=db))
    assert line == (f"error: {path}: the file has no rows (it is empty, holds only blank lines or an empty array); "
                    "nothing was imported")
    assert snapshot(db) == before


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "reader-process"])
def test_probe_refuses_first_100_bad_rows_but_keeps_a_file_with_one_good_row(store, tmp_path, parallel):
    bad = [{"question": f"q{i}", "answer": "x"} for i in range(PROBE_ROWS)]
    good = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(50)]
    path = write_rows(tmp_path / "late.jsonl", bad + good)
    with pytest.raises(InputError) as error:
        import_file(store, path, fmt="trl", batch_rows=30, parallel=parallel)
    assert str(error.value) == (f"{path}: none of its first 100 rows matches --format trl (field 'prompt': missing in "
                                "100 of 100); no --format fits its rows: check the file or pass --format; "
                                "nothing was stored")
    assert store.count_pairs() == 0 and store.quarantined() == [] and store.holds_nothing()
    # one good row among the first 100 is enough: the bad rows are quarantined as before
    mixed = write_rows(tmp_path / "mixed.jsonl", bad[:PROBE_ROWS - 1] + good)
    summary = import_file(store, mixed, fmt="trl", batch_rows=30, parallel=parallel)
    assert (summary.pairs_new, summary.bad_rows) == (50, 99)
    assert summary.reasons == {"field 'prompt': missing": 99}
    assert len(store.quarantined()) == 99


def test_quarantine_summary_names_the_field(tmp_path):
    path = write_rows(tmp_path / "some_bad.jsonl", [{"prompt": "q1", "chosen": "a", "rejected": "b"},
                                                    {"prompt": "q2", "rejected": "b"},
                                                    {"prompt": "q3", "chosen": None, "rejected": "b"},
                                                    {"prompt": "q4", "chosen": "a", "rejected": "b"}])
    result = skyrm("import", path, db=tmp_path / "s.db")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert f"  quarantined 1 × field 'chosen': missing  ({path})" in out.splitlines()
    assert f"  quarantined 1 × field 'chosen': is null  ({path})" in out.splitlines()
    as_json = json.loads(skyrm("import", path, "--source", "again", "--json", db=tmp_path / "s.db").stdout)
    assert as_json[0]["reasons"] == {"field 'chosen': missing": 1, "field 'chosen': is null": 1}


# ------------------------------------------------------------ 2. bad elements of a one-line JSON array
def _one_line_array(tmp_path) -> Path:
    rows = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(6)]
    del rows[1]["chosen"]
    rows[3]["rejected"] = None
    rows[5]["rejected"] = "a5"
    path = tmp_path / "one_line.json"
    path.write_text(json.dumps(rows))  # one line
    return path


def test_every_bad_element_of_a_one_line_array_is_kept(db, tmp_path):
    path = _one_line_array(tmp_path)
    before = snapshot(db)
    result = skyrm("import", path, "--json", db=db)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["bad_rows"] == 3
    after = snapshot(db)
    assert set(before["pairs"]) <= set(after["pairs"]) and len(after["pairs"]) == 3 + 3
    assert after["quarantine"] == [(str(path), 1, 1, "missing"), (str(path), 1, 3, "is null"),
                                   (str(path), 1, 5, "identical to chosen")]
    # a second import of the same file (forced to re-read) adds no row twice
    assert skyrm("import", path, "--source", "other", db=db).returncode == 0
    assert len(snapshot(db)["quarantine"]) == 6  # the same rows under another source
    line = error_line(skyrm("import", path, "--strict", "--source", "strict", db=db))
    assert line == f"error: {path}:1: element 1: field 'chosen': missing"


def test_quarantine_upgrade_keeps_old_rows_and_tells_elements_apart(tmp_path):
    from sqlite_utils import Database

    from skyrm.store.migrations import migrations

    path = tmp_path / "old.db"
    old = Database(sqlite3.connect(path))
    migrations.apply(old, stop_before="m005_quarantine_element")  # a store made before m005
    old.execute("INSERT INTO quarantine (source, path, line, field, reason, raw, created_at) "
                "VALUES ('s', 'f.jsonl', 7, 'chosen', 'missing', '{}', 'then')")
    old.conn.commit()
    old.close()
    with Store(path) as store:
        (kept,) = store.quarantined()
        assert (kept["line"], kept["element"], kept["reason"]) == (7, None, "missing")
        row = {"source": "s", "path": "f.jsonl", "line": 7, "field": "chosen", "reason": "missing", "raw": "{}"}
        assert store.add_quarantine([row]) == 0  # the same line-delimited row is not stored twice
        elements = [{**row, "path": "a.json", "line": 1, "element": i} for i in range(3)]
        assert store.add_quarantine(elements + elements) == 3


# ------------------------------------------------------------ 3. a .gz cut short
def _readable_lines(path: Path) -> int:
    """Complete lines before the cut, decompressed by zlib itself (not by skyrm's reader)."""
    data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes())
    return data.count(b"\n")


def test_truncated_gz_stores_what_was_read_and_says_so(db, shared_data, tmp_path):
    whole = (shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").read_bytes()
    cut = tmp_path / "harmless-cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 9 // 10])
    lines = _readable_lines(cut)
    assert 1500 < lines < 2312
    with pytest.raises(EOFError) as gzip_error:
        gzip.decompress(cut.read_bytes())
    before = snapshot(db)
    line = error_line(skyrm("import", cut, db=db))
    after = snapshot(db)
    new = [p for p in after["pairs"] if p not in before["pairs"]]
    bad = [q for q in after["quarantine"] if q not in before["quarantine"]]
    assert len(new) + len(bad) == lines  # every readable row is stored or quarantined
    assert line == (f"error: {cut}: cannot read the file after line {lines} ({gzip_error.value}); the {lines} rows "
                    f"read before that are stored ({len(new)} new pairs, {len(bad)} bad rows quarantined), and the "
                    "file is not marked as imported")
    assert set(before["pairs"]) <= set(after["pairs"]) and all(s[1] == "running" for s in after["steps"]
                                                                if s not in before["steps"])
    again = error_line(skyrm("import", cut, db=db))
    assert again == (f"error: {cut}: cannot read the file after line {lines} ({gzip_error.value}); the rows before "
                     "it were stored by an earlier run, and the file is not marked as imported")
    assert snapshot(db)["pairs"] == after["pairs"]


def test_truncated_gz_read_by_child_processes_stores_the_same_rows(store, shared_data, tmp_path):
    whole = (shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz").read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 9 // 10])
    lines = _readable_lines(cut)
    with pytest.raises(InputError, match=f"cannot read the file after line {lines} .* the {lines} rows read before"):
        import_file(store, cut, parallel=True, batch_rows=300)
    assert store.count_pairs() + len(store.quarantined()) == lines


# ------------------------------------------------------------ 4. export and --pool choices
def test_export_of_an_empty_pool_fails_listing_pools_and_sources(db, tmp_path):
    out = tmp_path / "x.jsonl"
    line = error_line(skyrm("export", "--to", out, db=db))  # the default pool is curated
    assert line == ("error: --pool 'curated' has no pairs; the store holds pools: unverified 3, gold 0, silver 0, "
                    "discarded 0, curated 0; sources: hf 3")
    assert not out.exists() and not out.with_name("x.jsonl.part").exists()


def test_export_of_an_unknown_pool_is_an_error_listing_valid_names(db, tmp_path):
    out = tmp_path / "x.jsonl"
    line = error_line(skyrm("export", "--to", out, "--pool", "unverifed", db=db))
    assert line == ("error: --pool 'unverifed' is neither a pool nor a source in the store (did you mean "
                    "'unverified'?); choose from unverified, gold, silver, discarded, curated, all, trainable or a "
                    "source (hf 3)")
    assert not out.exists()


def test_export_of_an_unknown_shape_is_an_error_and_writes_nothing(db, tmp_path):
    out = tmp_path / "x.jsonl"
    line = error_line(skyrm("export", "--to", out, "--pool", "hf", "--shape", "alpaca", db=db))
    assert line == "error: unknown shape 'alpaca' (choose from trl, hf, openrlhf, sharegpt)"
    assert not out.exists() and not out.with_name("x.jsonl.part").exists()


def test_an_export_that_fails_part_way_leaves_no_file(store, tmp_path):
    from skyrm.ingest import export_pairs
    from skyrm.records import Pair

    two_turns = [{"role": "assistant", "content": "one"}, {"role": "assistant", "content": "two"}]
    store.add_pairs([Pair(prompt=[{"role": "user", "content": f"q{i}"}], chosen=[{"role": "assistant", "content": "a"}],
                          rejected=[{"role": "assistant", "content": "b"}], source="mixed") for i in range(3)]
                    + [Pair(prompt=[{"role": "user", "content": "q"}], chosen=two_turns,
                            rejected=[{"role": "assistant", "content": "b"}], source="mixed")])
    out = tmp_path / "x.jsonl"
    with pytest.raises(InputError, match="sharegpt"):
        export_pairs(store, out, pool="mixed", shape="sharegpt")
    assert not out.exists() and not out.with_name("x.jsonl.part").exists()


def test_export_json_reports_what_it_wrote(db, tmp_path):
    out = tmp_path / "x.jsonl"
    result = skyrm("export", "--to", out, "--pool", "hf", "--json", db=db)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"path": str(out), "pool": "hf", "shape": "trl", "pairs": 3}
    assert len(out.read_text().splitlines()) == 3


def test_pool_choices_are_parsed_in_one_place(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("a" * 32 + "\n\n" + "b" * 32 + "\n")
    assert parse_selection("gold") == Selection("pool", "gold")
    assert parse_selection("all") == Selection("all", "all")
    assert parse_selection("trainable") == Selection("trainable", "trainable")
    assert parse_selection("x,y") == Selection("ids", ids=("x", "y"))
    assert parse_selection("f" * 32) == Selection("ids", ids=("f" * 32,))
    assert parse_selection(str(ids)) == Selection("ids", ids=("a" * 32, "b" * 32), path=str(ids))
    assert parse_selection("x,y", ids=False) == Selection("source", "x,y")
    assert parse_selection("my-source") == Selection("source", "my-source")
    with pytest.raises(InputError, match="an empty --pool"):
        parse_selection(" ")


# ------------------------------------------------------------ 5. --db, missing files, standard input
def test_db_in_a_missing_directory_names_it(tmp_path, test_data):
    missing = tmp_path / "no" / "such"
    for command in (["init"], ["status"], ["import", test_data / "formats" / "hf.jsonl"]):
        line = error_line(skyrm(*command, db=missing / "s.db"))
        assert line == f"error: {missing / 's.db'}: directory {missing} does not exist (create it, or give another --db)"
    assert not (tmp_path / "no").exists()


def test_failing_import_into_a_new_store_leaves_no_store_file(tmp_path, shared_data):
    db = tmp_path / "new.db"
    assert error_line(skyrm("import", tmp_path / "nope.jsonl", db=db)) == f"error: {tmp_path / 'nope.jsonl'}: no such file"
    assert not db.exists()
    error_line(skyrm("import", shared_data / "judgebench" / "claude-3-5-sonnet-pairs.jsonl", "--format", "hh", db=db))
    assert list(tmp_path.glob("new.db*")) == []  # created for the import, removed when nothing went into it


def test_import_from_standard_input(db, test_data):
    rows = (test_data / "formats" / "hh.jsonl").read_text()
    result = skyrm("import", "-", "--json", db=db, stdin=rows)
    assert result.returncode == 0, result.stderr
    (summary,) = json.loads(result.stdout)
    assert (summary["path"], summary["source"], summary["pairs_new"]) == ("<stdin>", "stdin", 2)
    compressed = skyrm("import", "-", "--source", "piped", "--json", db=db, stdin=gzip.compress(rows.encode()))
    assert json.loads(compressed.stdout)[0]["pairs_seen"] == 2
    status = json.loads(skyrm("status", "--json", db=db).stdout)
    assert status["sources"] == {"hf": {"unverified": 3}, "piped": {"unverified": 2}, "stdin": {"unverified": 2}}
    line = error_line(skyrm("import", "-", "--strict", db=db, stdin=rows))
    assert line == ("error: --strict reads a file twice and standard input can be read once: save it to a file "
                    "and import that")


# ------------------------------------------------------------ 6. conventions
def test_version():
    result = skyrm("--version")
    from skyrm import __version__

    assert result.returncode == 0 and result.stdout.decode() == f"skyrm {__version__}\n"


def test_db_before_or_after_the_command(db):
    before = skyrm("--db", db, "status", "--json")
    after = skyrm("status", "--json", "--db", db)
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(before.stdout)["pairs"] == 3
    # given both ways, the one after the command wins
    line = error_line(skyrm("--db", db, "status", "--db", db.with_name("other.db")))
    assert line.startswith(f"error: no store at {db.with_name('other.db')}")


def test_piped_tables_keep_long_paths_whole(tmp_path, test_data):
    deep = tmp_path / ("a-rather-long-directory-name-" * 3) / "and-another-one-below-it"
    deep.mkdir(parents=True)
    path = deep / "pairs_with_a_long_file_name.jsonl"
    shutil.copy(test_data / "formats" / "hf.jsonl", path)
    assert len(str(path)) > 120
    result = skyrm("import", path, db=tmp_path / "s.db")
    assert result.returncode == 0, result.stderr
    assert any(str(path) in line for line in result.stdout.decode().splitlines())


def test_decontam_takes_several_files_after_one_against(tmp_path):
    db = tmp_path / "d.db"
    leaked = "please explain in simple words why the sky looks blue during the day and red at sunset"
    pairs = write_rows(tmp_path / "p.jsonl", [{"prompt": leaked, "chosen": "scattering", "rejected": "paint"},
                                              {"prompt": "how long should pasta boil in salted water at home",
                                               "chosen": "ten minutes", "rejected": "an hour"}])
    bench1 = write_rows(tmp_path / "b1.jsonl", [{"prompt": leaked}])
    bench2 = write_rows(tmp_path / "b2.jsonl", [{"question": "How long should pasta boil in salted water at home?"}])
    assert skyrm("import", pairs, db=db).returncode == 0
    result = skyrm("decontam", "--against", bench1, bench2, "--json", db=db)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"checked": 2, "marked": 2, "benchmark_prompts": 2}
    assert error_line(skyrm("decontam", db=db)) == "error: no benchmark files: give them with --against FILE [FILE...]"


# ------------------------------------------------------------ 7. default source names
@pytest.fixture
def rmb_copy(shared_data, tmp_path) -> Path:
    """RMB's two S1.json files (best-of-N and pairwise) in their published layout."""
    root = tmp_path / "rmb"
    for part in ("BoN_set", "Pairwise_set"):
        (root / part / "Harmlessness").mkdir(parents=True)
        shutil.copy(shared_data / "rmb" / part / "Harmlessness" / "S1.json", root / part / "Harmlessness" / "S1.json")
    return root


def test_directory_import_names_sources_by_relative_path(store, rmb_copy):
    summaries = import_files(store, [rmb_copy])
    assert [s.source for s in summaries] == ["BoN_set/Harmlessness/S1", "Pairwise_set/Harmlessness/S1"]
    assert sorted(store.source_counts()) == ["BoN_set/Harmlessness/S1", "Pairwise_set/Harmlessness/S1"]


def test_same_file_names_get_their_parents_and_never_merge(store, rmb_copy, test_data):
    bon, pairwise = rmb_copy / "BoN_set/Harmlessness/S1.json", rmb_copy / "Pairwise_set/Harmlessness/S1.json"
    summaries = import_files(store, [bon, pairwise, test_data / "formats" / "hf.jsonl"])
    assert [s.source for s in summaries] == ["BoN_set/Harmlessness/S1", "Pairwise_set/Harmlessness/S1", "hf"]


def test_a_default_name_already_used_for_another_file_is_refused(db, rmb_copy):
    bon, pairwise = rmb_copy / "BoN_set/Harmlessness/S1.json", rmb_copy / "Pairwise_set/Harmlessness/S1.json"
    assert skyrm("import", bon, db=db).returncode == 0
    before = snapshot(db)
    line = error_line(skyrm("import", pairwise, db=db))
    assert line == (f"error: {pairwise}: its default source name 'S1' already names {bon} in the store: pass "
                    "--source NAME, or import both from a directory above them")
    assert snapshot(db) == before
    assert skyrm("import", bon, db=db).returncode == 0  # the same file again is fine (and adds nothing)
    assert snapshot(db) == before
