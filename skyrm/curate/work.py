"""The building blocks both curation stages call: train an RM, judge pairs within a budget,
measure a judge on gold, write id files. Each is one library call of the commands that exist.

Deliberately not here: the order of the steps (stage1.py, stage2.py), decisions (rules.py).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from skyrm.curate.config import CurateConfig
from skyrm.curate.rules import judge_accuracy, judge_votes
from skyrm.records import content_hash
from skyrm.runs import Progress, StepLog
from skyrm.store import Store

STAGE2_ROUND = 1000  # the round recorded on Stage 2's labels (Stage 1 uses 1..iterations)


def ids_file(workdir: Path, name: str, ids: list[str]) -> str:
    """Write pair ids one per line (``--pool FILE`` reads them) and return the path."""
    path = workdir / "ids" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{pid}\n" for pid in ids))
    return str(path)


def train_rm(store: Store, config: CurateConfig, out: Path, pool: str, eval_pool: str,
             progress: Progress | None) -> dict[str, Any]:
    """One reward model for a curation step; the checkpoint with the best eval accuracy is kept.

    A step cut short left a partial directory: head runs start again (seconds), the other
    methods resume from their last checkpoint.
    """
    from skyrm.rm.config import TrainConfig
    from skyrm.rm.train import train_reward_model

    resume = False
    if out.exists():
        if config.rm_method == "head":
            shutil.rmtree(out)
        else:
            resume = True
    train = TrainConfig(base=config.base, method=config.rm_method, pool=pool, eval_pool=eval_pool, holdout=0.2,
                        out=str(out), max_length=config.max_length, batch_size=config.rm_batch_size,
                        seed=config.seed, device=config.device, resume=resume)
    result = train_reward_model(store, train, progress=progress)
    return {"out": str(out), "best": str(out / "best"), "train_pairs": result["train_pairs"],
            "eval_pairs": result["eval_pairs"], "eval_source": result.get("eval_source"),
            "gold_accuracy": result["best_accuracy"], "seconds": result["seconds"], "run_id": result["run_id"]}


def calls_used(steps: StepLog, names: list[str]) -> int:
    return sum((steps.result(name) or {}).get("model_calls", 0) for name in names)


def judge_pairs(store: Store, config: CurateConfig, judges: tuple[str, ...], pool: str, round_: int,
                budget_left: int | None, progress: Progress | None) -> dict[str, Any]:
    """Label a selection with the voting judges (similar gold examples, both orders), within the budget."""
    from skyrm.labelling.label import JudgeConfig, label_pairs

    if not judges:
        return {"labelled": 0, "model_calls": 0, "contested": 0, "note": "no judge passed the gold check"}
    limit = None
    if budget_left is not None:
        limit = budget_left // (config.calls_per_pair * len(judges))
        if limit <= 0:
            return {"labelled": 0, "model_calls": 0, "contested": 0, "note": "judge-call budget spent"}
    judge = JudgeConfig(judges=judges, mode=config.judge_mode, votes=config.votes, shots=config.shots, pool=pool,
                        limit=limit, seed=config.seed, round=round_)
    summary = label_pairs(store, judge, progress=progress)
    return {"targets": summary.targets, "labelled": summary.labelled, "already_done": summary.already_done,
            "contested": summary.contested, "failed": summary.failed, "model_calls": summary.model_calls,
            "cache_hits": summary.cache_hits, "verdicts": summary.verdicts, "run_id": summary.run_id,
            "seconds": round(summary.seconds, 2), "producers": summary.producers}


def check_judges(store: Store, config: CurateConfig, progress: Progress | None) -> dict[str, Any]:
    """Each judge's accuracy on gold pairs (never one of its own examples: the example selector
    leaves the target out); judges below ``min_judge_gold_acc`` do not vote."""
    from skyrm.labelling.label import JudgeConfig, label_pairs

    gold = {pid: verdict for pid, _, verdict in store.iter_pairs("gold", oriented=False)
            if verdict in ("chosen", "rejected")}
    # a seeded, order-free sample of gold pairs
    sample = sorted(gold, key=lambda pid: content_hash([config.seed, pid], 16))[:config.judge_check_pairs]
    results: dict[str, Any] = {"pairs": len(sample), "judges": {}, "voting": [], "model_calls": 0}
    started = time.perf_counter()
    for spec in config.judges:
        if not sample:
            results["judges"][spec] = {"accuracy": None, "n": 0, "votes": True, "note": "no gold pair to check on"}
            results["voting"].append(spec)
            continue
        summary = label_pairs(store, JudgeConfig(judges=(spec,), mode=config.judge_mode, votes=config.votes,
                                                 shots=config.shots, pool=",".join(sample), seed=config.seed,
                                                 round=0), progress=progress)
        labels = store.latest_labels(sample, "llm")
        verdicts = {pid: label.verdict for pid, label in labels.items() if label.producer == summary.producers[0]}
        accuracy, n, abstained = judge_accuracy(verdicts, {pid: gold[pid] for pid in sample})
        votes = judge_votes(accuracy, n, len(sample), config.min_judge_gold_acc)
        results["judges"][spec] = {"accuracy": accuracy, "n": n, "abstained": abstained, "votes": votes}
        results["model_calls"] += summary.model_calls
        if votes:
            results["voting"].append(spec)
    results["seconds"] = round(time.perf_counter() - started, 2)
    return results
