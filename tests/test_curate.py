"""Curation: the Stage 2 keep rule as a truth table, the human-queue rule, and both stages end to end on a
small store with a judge registered through the real registry; then real kills at several points."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skyrm.curate.rules import human_reason, judge_accuracy, judge_votes, stage2_decision
from skyrm.records import Label

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ rules
@pytest.mark.parametrize("gold, judges, best", list(itertools.product([True, False, None], repeat=3)))
def test_stage2_keep_rule_truth_table(gold, judges, best):
    verdict, reason = stage2_decision(gold, judges, best, "drop")
    keep = gold is True and (judges is True or best is True)  # METHOD.md Stage 2 step 2
    assert verdict == ("chosen" if keep else "skip") and reason
    flipped, flip_reason = stage2_decision(gold, judges, best, "flip")
    assert flipped == ("chosen" if keep else "rejected")
    assert keep or "flip" in flip_reason


def test_human_reason():
    def label(confidence, verdict="chosen", contested=False, producer="llamacpp:x"):
        return Label("p", "llm", producer, verdict, confidence, detail={"contested": contested})

    assert human_reason(label(0.9, contested=True), 0.1) == "orders disagree"
    assert human_reason(label(0.9, contested=True, producer="merge:a+b"), 0.1) == "judges split"
    assert human_reason(label(0.55), 0.1) == "low confidence"
    assert human_reason(label(0.65), 0.1) is None
    assert human_reason(label(0.65), 0.2) == "low confidence"
    assert human_reason(label(0.9), 0.1, objective_hint=True) == "objective, pre-verified"
    assert human_reason(label(0.2, "rejected"), 0.1) is None


def test_judge_accuracy_is_over_decided_pairs_and_counts_abstentions_apart():
    truth = {"a": "chosen", "b": "rejected", "c": "chosen", "d": "chosen"}
    # c is contested (the orders disagree, verdict 'tie'): an abstention, not a wrong answer
    assert judge_accuracy({"a": "chosen", "b": "chosen", "c": "tie"}, truth) == (1 / 2, 2, 1)
    # a position-biased judge that is contested everywhere has no accuracy (and does not vote), not 0.0
    assert judge_accuracy(dict.fromkeys(truth, "tie"), truth) == (None, 0, 4)
    assert judge_accuracy({}, truth) == (None, 0, 0)


def test_a_judge_votes_only_on_enough_decided_gold_pairs():
    # SmolLM2 in the curation benchmark: 1 of 1 decided right, 4 of 5 abstained: not a 100% judge
    assert not judge_votes(1.0, 1, 5, 0.6)
    assert judge_votes(0.8, 5, 10, 0.6) and not judge_votes(0.5, 10, 10, 0.6)
    assert judge_votes(1.0, 3, 3, 0.6)  # a check on fewer pairs than MIN_DECIDED needs all of them decided
    assert not judge_votes(None, 0, 10, 0.0)


# ------------------------------------------------------------ end to end
def _rows(n: int, start: int, flip_every: int = 0) -> list[dict]:
    topics = ["the capital of France", "sorting a list in python", "the lazy dog", "a reward model",
              "punctuation", "the quick brown fox", "numbers 0 to 9", "a safer alternative"]
    rows = []
    for i in range(start, start + n):
        topic = topics[i % len(topics)]
        good, poor = f"a good answer about {topic}, number {i}.", f"no {i % 5} ! ? ; ( )"
        flipped = bool(flip_every) and i % flip_every == 0
        rows.append({"prompt": f"question {i}: tell me about {topic}?", "chosen": poor if flipped else good,
                     "rejected": good if flipped else poor, "flipped": flipped})
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def curation_store(tmp_path):
    pytest.importorskip("transformers")
    from skyrm.ingest import import_file
    from skyrm.store import Store
    from test_rm_tiny import tiny_encoder

    store = Store(tmp_path / "c.db")
    import_file(store, _write(tmp_path / "gold.jsonl", _rows(24, 0)), source="gold", as_="gold")
    import_file(store, _write(tmp_path / "pool.jsonl", _rows(90, 100, flip_every=4)), source="pool")
    encoder = tiny_encoder(tmp_path / "enc")
    yield store, encoder, tmp_path
    store.close()


def _config(encoder: Path, workdir: Path, **overrides):
    from skyrm.curate import CurateConfig

    settings = dict(base=str(encoder), embed_model=str(encoder), rm_method="head", max_length=64, iterations=2,
                    judges=("fake:a",), shots=2, k_max=4, folds=2, judge_check_pairs=10, workdir=str(workdir),
                    device="cpu")
    settings.update(overrides)
    return CurateConfig(**settings)


def test_both_stages_on_a_small_store_with_a_registered_judge(curation_store):
    from skyrm.curate import run_curation
    from skyrm.judges import BACKENDS, register_backend

    store, encoder, tmp_path = curation_store
    register_backend("fake", "fake_judge:FakeJudge")
    try:
        report = run_curation(store, _config(encoder, tmp_path / "work"))
    finally:
        BACKENDS.pop("fake", None)
    first, second = report["stage1"]
    assert first["judges"] == {"fake:a": 1.0} and first["voting"] == ["fake:a"]  # right on every checked gold pair
    assert first["trained_on"] == "gold (seed round)" and second["trained_on"] == "silver"
    assert first["retrieved"] > 0 and first["judged"] == first["retrieved"]  # no budget: every retrieved pair
    assert first["silver"] == first["judged"] and second["silver"] >= first["silver"]
    truth = {pid: not pair.meta.get("flipped") for pid, pair, _ in store.iter_pairs("pool", oriented=False)}
    judged = store.latest_labels(list(truth), "llm")
    assert judged and all((label.verdict == "chosen") == truth[pid] for pid, label in judged.items())

    stage2 = report["stage2"]
    pool_pairs = stage2["pairs"]
    assert pool_pairs == 90 and stage2["kept"] + stage2["discarded"] == pool_pairs and stage2["flipped"] == 0
    rules = store.latest_labels(list(truth), "rule")
    assert len(rules) == pool_pairs and {label.producer for label in rules.values()} == {"curate:stage2"}
    for label in rules.values():  # every decision recomputed from what its label recorded
        d = label.detail
        gold = None if d["p_gold"] is None else d["p_gold"] > 0.5
        best = None if d["p_best"] is None else d["p_best"] > 0.5
        judges = None if d["judges"] not in ("chosen", "rejected") else d["judges"] == "chosen"
        assert stage2_decision(gold, judges, best, "drop") == (label.verdict, d["reason"])
    assert report["pools"]["curated"] == stage2["kept"] and report["pools"]["discarded"] == stage2["discarded"]
    with sqlite3.connect(store.path) as conn:
        before = conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    register_backend("fake", "fake_judge:FakeJudge")
    try:
        again = run_curation(store, _config(encoder, tmp_path / "work"))  # every step is reused
    finally:
        BACKENDS.pop("fake", None)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == before
    assert again["pools"] == report["pools"]


def test_a_judge_below_the_gold_threshold_does_not_vote(curation_store):
    from skyrm.curate import run_curation
    from skyrm.judges import BACKENDS, register_backend

    store, encoder, tmp_path = curation_store
    register_backend("fake", "fake_judge:FakeJudge")
    try:
        report = run_curation(store, _config(encoder, tmp_path / "work", judges=("fake:inverted",), iterations=1),
                              stages=("stage1",))
    finally:
        BACKENDS.pop("fake", None)
    [row] = report["stage1"]
    assert row["judges"] == {"fake:inverted": 0.0} and row["voting"] == [] and row["judged"] == 0 and row["retrieved"] > 0
    assert store.count_pairs("silver") == 0


def test_dry_run_plans_without_changing_the_store(curation_store):
    from skyrm.curate import plan

    store, encoder, tmp_path = curation_store
    before = store.summary()
    estimate = plan(store, _config(encoder, tmp_path / "work", budget_judge_calls=30))
    assert estimate["judge_calls"] <= 30 and estimate["estimated_seconds"] > 0
    assert [s["step"] for s in estimate["steps"]] == ["judge check", "stage 1 iteration 1", "stage 1 iteration 2",
                                                       "stage 2"]
    assert store.summary() == before


# ------------------------------------------------------------ kill -9 resume
def _pools(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT pair_id, pool || ':' || IFNULL(verdict, '') FROM pair_status"))


def _label_keys(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT dedup_key FROM labels WHERE dedup_key IS NOT NULL")]


def _step(db: Path, name: str) -> str | None:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            row = conn.execute("SELECT status FROM steps WHERE name = ?", [name]).fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


@pytest.mark.slow
def test_kill_9_at_several_points_ends_with_the_same_pools(tmp_path):
    pytest.importorskip("transformers")
    from test_rm_tiny import tiny_encoder

    encoder = tiny_encoder(tmp_path / "enc")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, str(ROOT / "tests" / "fake_judge_cli.py")]
    gold, pool = _write(tmp_path / "gold.jsonl", _rows(24, 0)), _write(tmp_path / "pool.jsonl", _rows(90, 100, 4))

    def fresh(name: str) -> tuple[Path, list[str]]:
        db = tmp_path / f"{name}.db"
        for args in ([str(gold), "--as", "gold", "--source", "gold"], [str(pool), "--source", "pool"]):
            subprocess.run([*cli, "import", *args, "--db", str(db)], env=env, check=True, capture_output=True)
        return db, [*cli, "curate", "run", "--db", str(db), "--base", str(encoder), "--rm-method", "head",
                    "--max-length", "64", "--embed-model", str(encoder), "--judge", "fake:a", "--shots", "2", "--k-max", "4", "--folds", "2",
                    "--judge-check-pairs", "10", "--workdir", str(tmp_path / f"{name}-work"), "--device", "cpu",
                    "--json"]

    reference_db, command = fresh("reference")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = _pools(reference_db)
    # Stage 2's decisions reached the file (another process reads them): every pool pair is decided
    assert sum(1 for v in reference.values() if v.split(":")[0] in ("curated", "discarded")) == 90

    killed_db, command = fresh("killed")
    kills = 0
    for point in ("curate:s1:i1:retrieve", "curate:s1:i2:judge", "curate:s2:best-rm", "curate:s2:decide"):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        # wait for the recorded step, not for a time; a step quicker than one poll may be missed
        while _step(killed_db, point) not in ("running", "done") and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 3
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _pools(killed_db) == reference
    keys = _label_keys(killed_db)
    assert len(keys) == len(set(keys)) and len(keys) == len(_label_keys(reference_db))
