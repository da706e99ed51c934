"""``skyrm curate``: METHOD.md's two-stage curation as an orchestration of the commands that exist.

- ``run_curation(store, config, stages)``: Stage 1 iterations (stage1.py), then
  Stage 2 (stage2.py); each step recorded in ``steps`` (``StepLog``), so the same
  command after a kill continues where it stopped and ends with the same pools.
- ``plan(store, config)``: what a run would do and an estimate of its judge calls
  and time, from rates this store has measured (or defaults measured on a 2-core CPU).
Deliberately not here: any step's own logic (train, embed, retrieve, judge live in
their modules), printing.
"""

from __future__ import annotations

import math
from typing import Any

from skyrm.curate.config import CurateConfig
from skyrm.runs import Progress, tracked_run
from skyrm.store import Store

__all__ = ["CurateConfig", "plan", "run_curation"]

STAGES = ("stage1", "stage2")
# Measured on a 2-core CPU (SmolLM2 judge, logprob mode, 8 shots; MiniLM head RM): used when
# the store has no run of that kind to take a rate from.
DEFAULT_RATES = {"judge_pairs_per_s": 0.6, "score_pairs_per_s": 60.0, "embed_pairs_per_s": 40.0,
                 "train_seconds": 20.0}


def run_curation(store: Store, config: CurateConfig, stages: tuple[str, ...] = STAGES, *,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Run (or continue) the stages; returns the Stage 1 iteration rows and the Stage 2 figures."""
    from skyrm.curate.stage1 import run_stage1
    from skyrm.curate.stage2 import run_stage2

    if not store.count_pairs("gold"):
        from skyrm.errors import InputError

        raise InputError("curation needs human-verified gold pairs: import some with 'skyrm import FILE --as gold' "
                         "or label them with 'skyrm annotate'")
    report: dict[str, Any] = {}
    with tracked_run(store, "curate", {**config.as_dict(), "stages": list(stages)}) as run:
        if "stage1" in stages:
            report["stage1"] = run_stage1(store, config, progress=progress)
        if "stage2" in stages:
            report["stage2"] = run_stage2(store, config, progress=progress)
        report["pools"] = store.summary()["pools"]
        run.metrics = {"pools": report["pools"]}
    report["run_id"] = run.id
    return report


def measured_rates(store: Store) -> dict[str, float]:
    """Rates from this store's finished runs, falling back to ``DEFAULT_RATES``."""
    rates = dict(DEFAULT_RATES)
    judge = [r["metrics"].get("pairs_per_second") for r in store.list_runs("judge")
             if r["status"] == "done" and r["metrics"].get("labelled")]
    if judge and judge[-1]:
        rates["judge_pairs_per_s"] = judge[-1]
    score = [r["metrics"].get("pairs_per_s") for r in store.list_runs("score") if r["status"] == "done"]
    if score and score[-1]:
        rates["score_pairs_per_s"] = score[-1]
    train = [r["metrics"].get("seconds") for r in store.list_runs("train") if r["status"] == "done"]
    if train and train[-1]:
        rates["train_seconds"] = train[-1]
    return rates


def plan(store: Store, config: CurateConfig, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """What a run would do, with judge calls and time estimated from measured rates.

    Stage 1 retrieves at most ``k_max`` pairs per gold pair; an RM that is right on a
    share ``a`` of gold pulls in about ``(1 - a) * k_max + a * k_max / 4`` per gold pair
    (p spread over (0.5, 1]), less what the pool holds. Stage 2 judges the pairs the
    best RM disagrees with (about ``1 - a`` of the pool).
    """
    rates = measured_rates(store)
    pools = store.summary()["pools"]
    gold, unverified = pools["gold"], pools["unverified"]
    curate_pool = pools["unverified"] + pools["silver"] + pools["curated"]
    accuracy = 0.75  # a first RM on a few hundred gold pairs; refined by the store's last train run
    trains = [r["metrics"].get("best_accuracy") for r in store.list_runs("train") if r["status"] == "done"]
    if trains and trains[-1]:
        accuracy = float(trains[-1])
    per_gold = (1 - accuracy) * config.k_max + accuracy * math.ceil(config.k_max / 4)
    judges = len(config.judges)
    steps: list[dict[str, Any]] = [{"step": "judge check", "pairs": min(gold, config.judge_check_pairs) * judges}]
    left = unverified
    judge_pairs = steps[0]["pairs"]
    trains_count = 0
    if "stage1" in stages:
        for i in range(1, config.iterations + 1):
            retrieved = min(left, int(gold * per_gold * 0.6))  # neighbourhoods overlap: ~60% distinct
            left -= retrieved
            judge_pairs += retrieved
            trains_count += 1
            steps.append({"step": f"stage 1 iteration {i}", "train": 1, "retrieve": retrieved, "judge": retrieved})
    if "stage2" in stages:
        disagreed = int(curate_pool * (1 - accuracy))
        judge_pairs += disagreed
        trains_count += config.folds + 1
        steps.append({"step": "stage 2", "train": config.folds + 1, "score": 2 * curate_pool, "judge": disagreed})
    calls = judge_pairs * config.calls_per_pair * judges
    if config.budget_judge_calls is not None:
        calls = min(calls, config.budget_judge_calls)
        judge_pairs = calls // (config.calls_per_pair * judges)
    seconds = (judge_pairs / rates["judge_pairs_per_s"] + trains_count * rates["train_seconds"]
               + 2 * curate_pool / rates["score_pairs_per_s"] + curate_pool / rates["embed_pairs_per_s"])
    return {"pools": pools, "steps": steps, "judge_calls": calls, "judged_pairs": judge_pairs,
            "trainings": trains_count, "estimated_seconds": round(seconds), "rates": rates,
            "budget_judge_calls": config.budget_judge_calls}
