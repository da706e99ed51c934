"""`skyrm curate --dry-run`'s estimate: unit costs from the store's finished runs, times the work; hand-computed."""

from __future__ import annotations

import pytest

from skyrm.curate import CurateConfig, plan
from skyrm.curate.estimate import DEFAULT_COSTS, measured_costs
from skyrm.records import Label, Pair
from skyrm.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "s.db", create=True)
    pairs = [Pair(prompt=[{"role": "user", "content": f"q{i}"}], chosen=[{"role": "assistant", "content": f"good {i}"}],
                  rejected=[{"role": "assistant", "content": f"bad {i}"}], source="pool") for i in range(110)]
    store.add_pairs(pairs)
    store.add_labels([Label(p.id, "human", "import:gold", "chosen") for p in pairs[:10]])  # 10 gold, 100 unverified
    return store


def _run(store: Store, kind: str, metrics: dict, status: str = "done") -> None:
    store.finish_run(store.start_run(kind, {}), status=status, metrics=metrics)


def test_costs_default_then_come_from_finished_runs(store):
    config = CurateConfig()
    costs, sources = measured_costs(store, config)
    assert costs == DEFAULT_COSTS and all(s.startswith("default") for s in sources.values())
    _run(store, "judge", {"model_calls": 16, "seconds": 40.0})
    _run(store, "judge", {"model_calls": 10, "seconds": 999.0}, status="interrupted")  # not a measurement
    _run(store, "score", {"pairs": 100, "seconds": 5.0, "items_cached": 0})
    _run(store, "score", {"pairs": 100, "seconds": 0.1, "items_cached": 200})  # cache hits: not a rate
    _run(store, "train", {"features_computed": 400, "feature_seconds": 8.0, "head_seconds": 2.0, "train_pairs": 200})
    costs, sources = measured_costs(store, config)
    assert costs["judge_call"] == 2.5 and costs["score_pair"] == 0.05
    assert costs["feature_text"] == 0.02 and costs["head_pair"] == 0.01
    assert sources["judge_call"] == "judge runs"
    # no embed run yet: embedding one text a pair costs what the encoder's feature pass cost
    assert costs["embed_pair"] == costs["feature_text"] and sources["embed_pair"] == "train runs (features)"


def test_plan_is_costs_times_work(store):
    _run(store, "judge", {"model_calls": 10, "seconds": 10.0})  # 1 s a call
    _run(store, "score", {"pairs": 10, "seconds": 1.0})  # 0.1 s a pair
    _run(store, "embed", {"embedded": 10, "seconds": 1.0})  # 0.1 s a pair
    _run(store, "train", {"features_computed": 100, "feature_seconds": 1.0, "head_seconds": 1.0, "train_pairs": 100,
                          "best_accuracy": 0.5})  # 0.01 s a text, 0.01 s a pair; features cached for 100 texts
    config = CurateConfig(iterations=1, folds=2, judge_check_pairs=4, k_max=8, budget_judge_calls=20, rm_method="lora")
    estimate = plan(store, config)
    # LoRA: train_pair is the default 0.5 s (no finished non-head run); no features
    # judge: min(20, (4 + retrieved + disagreed) * 2 calls) = 20 calls at 1 s
    # stage 1: embed 110 pairs at 0.1 = 11 s; train 10 gold pairs at 0.5 = 5 s; score 10 gold at 0.1 = 1 s
    # stage 2: 2 folds each on 50 pairs and the gold RM on 10 = 55 s; score 2 * 100 pairs at 0.1 = 20 s
    assert estimate["judge_calls"] == 20
    assert estimate["seconds_by_work"] == {"judge": 20.0, "train": 60.0, "score": 21.0, "embed": 11.0}
    assert estimate["estimated_seconds"] == 20 + 60 + 21 + 11
    assert estimate["trainings"] == 1 + 2 + 1
    # head: features for 2 * (100 + 10) texts - 100 cached = 120 at 0.01 s = 1.2 s, then 0.01 s a pair trained
    # (10 + 2 * 50 + 10 = 120 pairs: 1.2 s); scoring reads the cached features, no backbone pass
    head = plan(store, CurateConfig(iterations=1, folds=2, judge_check_pairs=4, k_max=8, budget_judge_calls=20))
    assert head["seconds_by_work"] == {"judge": 20.0, "train": 2.4, "score": 0.0, "embed": 11.0}
