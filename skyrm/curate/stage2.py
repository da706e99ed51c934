"""Stage 2 (METHOD.md): large-scale automatic curation, no humans, streamed in chunks.

1. The pool (every pair not gold and not discarded) is scored by the best RM. Here
   the best RM is trained on the pool's own labels (silver verdicts where the judges
   gave one, the source's label otherwise), **cross-fitted**: with ``folds = K`` each
   fold is scored by an RM trained on the other folds, so no pair is scored by a
   model that memorised its label (``folds = 1`` scores the pool with the model
   trained on it, for comparison).
2. Pairs the best RM disagrees with (p <= 0.5) are labelled by the voting judges.
3. A gold RM is trained on every human-verified pair and scores the pool.
4. ``rules.stage2_decision`` keeps, discards or (``recycle = "flip"``) flips each
   pair; the decision is a ``rule`` label by ``curate:stage2`` with its reason,
   so the pair moves to ``curated`` or ``discarded`` and nothing is deleted.
Pair ids travel through files and the store, a chunk at a time: memory stays flat
in the pool's size. Every step is a ``StepLog`` entry (resumable).
Deliberately not here: Stage 1, the building blocks (work.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skyrm.curate.config import CurateConfig
from skyrm.curate.rules import stage2_decision
from skyrm.curate.stage1 import judge_step_names
from skyrm.curate.work import STAGE2_ROUND, calls_used, check_judges, judge_pairs, train_rm
from skyrm.records import Label, content_hash
from skyrm.runs import Progress, StepLog
from skyrm.store import Store

PRODUCER = "curate:stage2"
POOL_STATES = ("unverified", "silver", "curated")  # what Stage 2 curates: neither gold nor discarded
CHUNK = 2000


def _read_ids(path: str) -> Iterator[list[str]]:
    """Pair ids from an id file, a chunk at a time."""
    chunk: list[str] = []
    with open(path) as handle:
        for line in handle:
            if line.strip():
                chunk.append(line.strip())
                if len(chunk) >= CHUNK:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _fold_of(prompt_key: str, folds: int, seed: int) -> int:
    return int(content_hash([seed, prompt_key], 8), 16) % folds


def split_pool(store: Store, config: CurateConfig, workdir: Path) -> dict[str, Any]:
    """Write the pool's ids, and per fold the ids it scores and the ids its RM trains on (by prompt)."""
    (workdir / "ids").mkdir(parents=True, exist_ok=True)
    pool_path = workdir / "ids" / "stage2-pool.txt"
    folds = config.folds
    score_paths = [workdir / "ids" / f"stage2-fold{f}-score.txt" for f in range(folds)]
    train_paths = [workdir / "ids" / f"stage2-fold{f}-train.txt" for f in range(folds)]
    handles = [open(p, "w") for p in (pool_path, *score_paths, *train_paths)]
    counts = Counter()
    try:
        for state in POOL_STATES:
            for pid, pair, _ in store.iter_pairs(state, oriented=False):
                handles[0].write(pid + "\n")
                fold = _fold_of(content_hash(pair.prompt, 16), folds, config.seed) if folds > 1 else 0
                handles[1 + fold].write(pid + "\n")
                for other in range(folds):
                    if folds == 1 or other != fold:
                        handles[1 + folds + other].write(pid + "\n")
                counts[state] += 1
    finally:
        for handle in handles:
            handle.close()
    return {"pool": str(pool_path), "pairs": sum(counts.values()), "by_pool": dict(counts),
            "score_files": [str(p) for p in score_paths], "train_files": [str(p) for p in train_paths]}


def run_stage2(store: Store, config: CurateConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or continue) Stage 2; returns its figures."""
    from skyrm.rm.score import score_pool

    steps = StepLog(store, "curate")
    workdir = Path(config.workdir)

    def timed(step: str, action: Any) -> dict[str, Any]:
        result = steps.run(f"s2:{step}", action)
        seconds[step] = steps.seconds[f"s2:{step}"]
        return result

    seconds: dict[str, float] = {}

    check = steps.run("judge-check", lambda: check_judges(store, config, progress))
    pool = timed("pool", lambda: split_pool(store, config, workdir))
    if not pool["pairs"]:
        return {"pairs": 0, "note": "no pair is left to curate (every pair is gold or discarded)"}

    def best_rm() -> dict[str, Any]:
        runs, accuracies = [], []
        for fold in range(config.folds):
            trained = train_rm(store, config, workdir / f"stage2-best-fold{fold}", pool["train_files"][fold],
                               "gold", progress)
            scored = score_pool(store, trained["best"], pool=pool["score_files"][fold],
                                batch_size=config.score_batch_size, device=config.device, progress=progress)
            runs.append(scored["run_id"])
            accuracies.append(trained["gold_accuracy"])
        return {"score_runs": runs, "gold_accuracy": accuracies, "folds": config.folds}

    best = timed("best-rm", best_rm)

    def disagreed() -> dict[str, Any]:
        ids = [pid for run in best["score_runs"] for pid in store.pairs_scored_at_most(run, 0.5)]
        labelled = store.latest_labels(ids, "llm")
        todo = [pid for pid in ids if pid not in labelled]
        path = workdir / "ids" / "stage2-disagreed.txt"
        path.write_text("".join(f"{pid}\n" for pid in todo))
        return {"disagreed": len(ids), "already_judged": len(ids) - len(todo), "file": str(path)}

    low = timed("disagreed", disagreed)
    budget_left = None
    if config.budget_judge_calls is not None:
        budget_left = config.budget_judge_calls - calls_used(steps, judge_step_names(config))
    voting = tuple(check["voting"])
    judged = timed("judge", lambda: judge_pairs(store, config, voting, low["file"], STAGE2_ROUND, budget_left,
                                                progress) if Path(low["file"]).stat().st_size else
                   {"labelled": 0, "model_calls": 0, "contested": 0})

    def gold_rm() -> dict[str, Any]:
        trained = train_rm(store, config, workdir / "stage2-gold", "gold", "holdout", progress)
        scored = score_pool(store, trained["best"], pool=pool["pool"], batch_size=config.score_batch_size,
                            device=config.device, progress=progress)
        return {"score_run": scored["run_id"], "held_out_accuracy": trained["gold_accuracy"],
                "train_pairs": trained["train_pairs"], "checkpoint": trained["best"]}

    gold = timed("gold-rm", gold_rm)
    decided = timed("decide", lambda: decide(store, config, pool["pool"], best["score_runs"], gold["score_run"],
                                             progress))
    return {"pairs": pool["pairs"], "by_pool": pool["by_pool"], "folds": config.folds,
            "best_rm_gold_accuracy": best["gold_accuracy"], "gold_rm_held_out_accuracy": gold["held_out_accuracy"],
            "disagreed": low["disagreed"], "judged": judged.get("labelled", 0),
            "model_calls": judged.get("model_calls", 0), **{k: decided[k] for k in ("kept", "discarded", "flipped")},
            "reasons": decided["reasons"], "seconds": seconds, "gold_checkpoint": gold["checkpoint"]}


def decide(store: Store, config: CurateConfig, pool_file: str, best_runs: list[int], gold_run: int,
           progress: Progress | None) -> dict[str, Any]:
    """Apply the keep rule to every pool pair, a chunk at a time; labels carry their reasons."""
    counts: Counter = Counter()
    reasons: Counter = Counter()
    done = 0
    for chunk in _read_ids(pool_file):
        p_gold = store.scores_of(gold_run, chunk)
        p_best: dict[str, float] = {}
        for run in best_runs:
            p_best.update(store.scores_of(run, chunk))
        judged = store.latest_labels(chunk, "llm")
        labels, keys = [], []
        for pid in chunk:
            judge = judged.get(pid)
            judges_agree = None if judge is None or judge.verdict not in ("chosen", "rejected") else \
                judge.verdict == "chosen"
            gold_agrees = None if pid not in p_gold else p_gold[pid] > 0.5
            best_agrees = None if pid not in p_best else p_best[pid] > 0.5
            verdict, reason = stage2_decision(gold_agrees, judges_agree, best_agrees, config.recycle)
            counts[{"chosen": "kept", "skip": "discarded", "rejected": "flipped"}[verdict]] += 1
            reasons[reason] += 1
            detail = {"reason": reason, "p_gold": p_gold.get(pid), "p_best": p_best.get(pid),
                      "judges": judge.verdict if judge else None, "recycle": config.recycle}
            labels.append(Label(pid, "rule", PRODUCER, verdict, p_gold.get(pid), order="", round=STAGE2_ROUND,
                                detail=detail))
            keys.append(content_hash({"pair": pid, "producer": PRODUCER, "recycle": config.recycle,
                                      "folds": config.folds, "seed": config.seed}, 40))
        store.add_labels(labels, dedup_keys=keys)
        done += len(chunk)
        if progress:
            progress(done, None, "stage 2 decisions")
    return {"kept": counts["kept"], "discarded": counts["discarded"], "flipped": counts["flipped"],
            "reasons": dict(reasons)}
