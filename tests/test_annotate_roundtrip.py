"""File round trip: export a batch, fill it as a spreadsheet or Label Studio would, import it back."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from skyrm.annotate.roundtrip import COLUMNS, export_batch, import_batch
from skyrm.annotate.session import first_side
from skyrm.errors import InputError
from skyrm.records import Attributes, Pair


def make_pair(i: int) -> Pair:
    return Pair(prompt=[{"role": "user", "content": f"What is {i} + {i}?"}],
                chosen=[{"role": "assistant", "content": f"{2 * i}"}],
                rejected=[{"role": "assistant", "content": f"{2 * i + 1}"}], source="s")


@pytest.fixture
def pairs(store):
    made = [make_pair(i) for i in range(5)]
    store.add_pairs(made)
    store.add_attributes(made[0].id, Attributes("math", "objective", "low", "the right sum", "add"), producer="t")
    return {p.id: p for p in made}


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def answer_for(pair: Pair, row: dict, better: str) -> str:
    """The verdict key that says the stored ``better`` side wins, given the row's shown order."""
    first = first_side(row["batch"], "", row["pair_id"])
    return "1" if first == better else "2"


def test_csv_round_trip_maps_the_shown_order_back(store, pairs, tmp_path):
    path = tmp_path / "batch.csv"
    summary = export_batch(store, path, n=4, pool="all")
    assert summary.pairs == 4 and summary.format == "csv"
    rows = read_csv(path)
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 4
    assert rows[0]["pair_id"] == next(iter(pairs))  # the one objective, low-controversiality pair first
    assert rows[0]["task_category"] == "math" and "Category: math" in rows[0]["rules"]
    for row in rows:
        pair = pairs[row["pair_id"]]
        first = first_side(row["batch"], "", row["pair_id"])
        assert row["candidate_1"] == getattr(pair, first)[0]["content"]
        assert row["conversation"] == pair.prompt[0]["content"].join(["User: ", ""]) and row["verdict"] == ""
    # Fill: row 0 says the stored chosen wins, row 1 the stored rejected, row 2 tie, row 3 left empty.
    rows[0]["verdict"] = answer_for(pairs[rows[0]["pair_id"]], rows[0], "chosen")
    rows[1]["verdict"] = answer_for(pairs[rows[1]["pair_id"]], rows[1], "rejected")
    rows[2]["verdict"], rows[2]["note"] = "Tie ", "both wrong"
    write_csv(path, rows)
    result = import_batch(store, path, annotator="carol")
    assert (result.rows, result.answered, result.unanswered, result.labels_new, result.bad_rows) == (4, 3, 1, 3, 0)
    verdicts = [store.labels_for(r["pair_id"], "human")[-1].verdict for r in rows[:3]]
    assert verdicts == ["chosen", "rejected", "tie"]
    label = store.labels_for(rows[2]["pair_id"], "human")[-1]
    assert label.producer == "annotator:carol" and label.detail["note"] == "both wrong"
    assert label.detail["via"] == "import" and label.detail["line"] == 4 and label.detail["batch"] == rows[2]["batch"]
    assert store.pair_status(rows[1]["pair_id"])["pool"] == "gold"
    again = import_batch(store, path, annotator="carol")
    assert (again.labels_new, again.already_imported) == (0, 3)


MALFORMED_ERRORS = [
    "{path}:3: field 'verdict': 'maybe' is not a verdict: use 1, 2, tie, skip or leave it empty",
    "{path}:4: field 'pair_id': unknown pair id 'ffffffffffffffffffffffffffffffff': not in this store ({db})",
    "{path}:5: field 'pair_id': pair {dup} appears twice (first at line 2): keep one row per pair",
    "{path}:6: field 'batch': '' is not the batch token the export wrote (12 hex digits): without it the order "
    "shown is unknown",
]


def malformed(store, tmp_path):
    path = tmp_path / "batch.csv"
    export_batch(store, path, n=4, pool="all")
    rows = read_csv(path)
    rows[0]["verdict"] = "1"
    rows[1]["verdict"] = "maybe"
    rows[2]["verdict"], rows[2]["pair_id"] = "2", "f" * 32
    duplicate = dict(rows[0], verdict="2")
    rows[3]["verdict"], rows[3]["batch"] = "1", ""
    rows = rows[:3] + [duplicate, rows[3]]
    write_csv(path, rows)
    expected = [e.format(path=path, db=store.path, dup=rows[0]["pair_id"]) for e in MALFORMED_ERRORS]
    return path, expected


def test_malformed_csv_strict_stores_nothing_and_names_each_line(store, pairs, tmp_path):
    path, expected = malformed(store, tmp_path)
    with pytest.raises(InputError) as caught:
        import_batch(store, path, annotator="carol", strict=True)
    assert str(caught.value) == f"{expected[0]}; 4 bad row(s) in all; nothing was stored (--strict)"
    assert store.human_labels() == []
    result = import_batch(store, path, annotator="carol")  # without --strict: the good row, the bad reported
    assert result.errors == expected
    assert result.labels_new == 1 and len(store.human_labels()) == 1


def test_malformed_csv_on_the_command_line(store, pairs, tmp_path):
    path, expected = malformed(store, tmp_path)
    store.close()
    run = subprocess.run([sys.executable, "-m", "skyrm", "annotate", "import", str(path), "--annotator", "carol",
                          "--strict", "--db", store.path], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: {expected[0]}; 4 bad row(s) in all; nothing was stored (--strict)"
    run = subprocess.run([sys.executable, "-m", "skyrm", "annotate", "import", str(path), "--annotator", "carol",
                          "--db", store.path], capture_output=True, text=True)
    assert run.returncode == 0
    assert run.stderr.strip().splitlines() == [f"skipped: {e}" for e in expected]
    assert "1 new labels by carol (1 chosen" in run.stdout or "1 new labels by carol (1 rejected" in run.stdout


def test_resorted_sheet_and_bad_files_are_refused(store, pairs, tmp_path):
    path = tmp_path / "batch.csv"
    export_batch(store, path, n=2, pool="all")
    rows = read_csv(path)
    rows[0]["candidate_1"], rows[1]["candidate_1"] = rows[1]["candidate_1"], rows[0]["candidate_1"]
    rows[0]["verdict"] = rows[1]["verdict"] = "1"
    write_csv(path, rows)
    result = import_batch(store, path, annotator="carol")
    assert result.errors[0] == (f"{path}:2: field 'candidate_1': is not the text exported for pair "
                                f"{rows[0]['pair_id']} in batch {rows[0]['batch']} (were the rows re-sorted or edited?)")
    assert result.labels_new == 0
    bare = tmp_path / "bare.csv"
    bare.write_text("id,answer\nx,1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bare.csv:1: the header has no 'pair_id', 'batch', 'verdict' column"):
        import_batch(store, bare, annotator="carol")
    with pytest.raises(InputError, match=r"batch.xlsx: unknown file type: use .csv, .jsonl or .ls.json"):
        import_batch(store, tmp_path / "batch.xlsx", annotator="carol")
    with pytest.raises(InputError, match="no pairs to export from pool 'gold'"):
        export_batch(store, tmp_path / "none.csv", n=2, pool="gold")


def test_jsonl_round_trip(store, pairs, tmp_path):
    path = tmp_path / "batch.jsonl"
    export_batch(store, path, n=3, pool="all")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[0]["verdict"] = answer_for(pairs[rows[0]["pair_id"]], rows[0], "rejected")
    rows[1]["verdict"], rows[1]["seconds"] = "skip", 42
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n", encoding="utf-8")
    result = import_batch(store, path, annotator="dan")
    assert result.errors == [f"{path}:4: invalid JSON (Expecting property name enclosed in double quotes at column 2)"]
    assert store.labels_for(rows[0]["pair_id"], "human")[-1].verdict == "rejected"
    skipped = store.labels_for(rows[1]["pair_id"], "human")[-1]
    assert skipped.verdict == "skip" and skipped.detail["seconds"] == 42
    assert store.pair_status(rows[1]["pair_id"])["pool"] == "discarded"


def test_label_studio_round_trip(store, pairs, tmp_path):
    path = tmp_path / "batch.ls.json"
    summary = export_batch(store, path, n=3, pool="all")
    assert summary.config == str(tmp_path / "batch.ls.xml")
    assert '<Choices name="verdict"' in (tmp_path / "batch.ls.xml").read_text()
    tasks = json.loads(path.read_text(encoding="utf-8"))
    assert set(tasks[0]["data"]) >= {"pair_id", "batch", "conversation", "candidate_1", "candidate_2", "about"}

    def answered(choice, cancelled=False, note=None):
        result = [{"from_name": "verdict", "to_name": "conversation", "type": "choices", "value": {"choices": [choice]}}]
        if note:
            result.append({"from_name": "note", "to_name": "conversation", "type": "textarea",
                           "value": {"text": [note]}})
        return {"id": 1, "completed_by": 7, "lead_time": 33.5, "was_cancelled": cancelled, "result": result}

    # What Label Studio's JSON export holds: the tasks with their annotations.
    tasks[0]["annotations"] = [answered("Candidate 2", cancelled=True), answered("Candidate 1", note="checked")]
    tasks[1]["annotations"] = [answered("Cannot decide")]
    tasks[2]["annotations"] = [answered("Probably 1")]
    path.write_text(json.dumps(tasks), encoding="utf-8")
    result = import_batch(store, path, annotator="erin")
    assert result.errors == [f"{path}: element 2: field 'verdict': '?[\"Probably 1\"]' is not a verdict: use 1, 2, "
                             "tie, skip (Candidate 1, Candidate 2, Tie, Cannot decide) or leave it empty"]
    first = tasks[0]["data"]
    label = store.labels_for(first["pair_id"], "human")[-1]
    assert label.verdict == first_side(first["batch"], "", first["pair_id"])  # Candidate 1; the cancelled one ignored
    assert label.detail["seconds"] == 33.5 and label.detail["note"] == "checked" and label.detail["completed_by"] == 7
    assert store.labels_for(tasks[1]["data"]["pair_id"], "human")[-1].verdict == "skip"


def test_annotate_help_lists_the_file_commands_with_examples():
    for args, expected in ((["annotate", "--help"], ["export", "import", "Example: skyrm annotate --annotator"]),
                           (["annotate", "export", "--help"], ["Example: skyrm annotate export --n 200 --to batch.csv"]),
                           (["annotate", "import", "--help"], ["Example: skyrm annotate import batch.csv"])):
        run = subprocess.run([sys.executable, "-m", "skyrm", *args], capture_output=True, text=True,
                             env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
        assert run.returncode == 0, run.stderr
        for text in expected:
            assert text in run.stdout, run.stdout


def test_db_may_come_before_or_after_the_subcommand(store, pairs, tmp_path):
    store.close()
    for n, args in enumerate((["annotate", "--db", store.path, "export"], ["--db", store.path, "annotate", "export"],
                              ["annotate", "export", "--db", store.path])):
        out = tmp_path / f"b{n}.jsonl"
        run = subprocess.run([sys.executable, "-m", "skyrm", *args, "--n", "2", "--to", str(out), "--json"],
                             capture_output=True, text=True, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["pairs"] == 2 and len(out.read_text().splitlines()) == 2
