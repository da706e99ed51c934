"""Stage 1 (METHOD.md): small-scale, human-guided iterations.

Each iteration: train an RM on silver (on gold in the seed round, when silver is
empty) keeping the checkpoint with the best gold accuracy; embed the pairs that
lack a vector; score gold and retrieve from the unverified pool by the adaptive
rule; label the retrieved pairs with the judges that passed the gold check
(similar gold examples, both orders, self-consistency across models); queue the
pairs that need a human. Every step is a ``StepLog`` entry, so the same command
after a kill continues at the first unfinished step.
Deliberately not here: the building blocks (work.py), Stage 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyrm.curate.config import CurateConfig
from skyrm.curate.rules import human_reason
from skyrm.curate.work import calls_used, check_judges, judge_pairs, train_rm
from skyrm.runs import Progress, StepLog
from skyrm.store import Store

STEP_NAMES = ("train", "embed", "retrieve", "judge", "queue")


def judge_step_names(config: CurateConfig) -> list[str]:
    """Every step whose result counts model calls against the budget."""
    return ["judge-check", *(f"s1:i{i}:judge" for i in range(1, config.iterations + 1)), "s2:judge"]


def run_stage1(store: Store, config: CurateConfig, *, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run (or continue) the Stage 1 iterations; returns one row of figures per iteration."""
    steps = StepLog(store, "curate")
    workdir = Path(config.workdir)
    check = steps.run("judge-check", lambda: check_judges(store, config, progress))
    voting = tuple(check["voting"])
    rows = []
    for i in range(1, config.iterations + 1):
        rows.append(_iteration(store, steps, config, workdir, i, voting, check, progress))
    return rows


def _iteration(store: Store, steps: StepLog, config: CurateConfig, workdir: Path, i: int, voting: tuple[str, ...],
               check: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
    from skyrm.embed import EmbedConfig, embed_pool
    from skyrm.retrieve import RetrieveConfig, retrieve

    out = workdir / f"stage1-iter{i}"
    name = f"s1:i{i}"

    def timed(step: str, action: Any) -> dict[str, Any]:
        result = steps.run(f"{name}:{step}", action)
        seconds[step] = steps.seconds[f"{name}:{step}"]
        return result

    seconds: dict[str, float] = {}

    def train() -> dict[str, Any]:
        seed_round = store.count_pairs("silver") == 0
        result = train_rm(store, config, out, "gold" if seed_round else "silver",
                          "holdout" if seed_round else "gold", progress)
        return {**result, "trained_on": "gold (seed round)" if seed_round else "silver",
                "silver": store.count_pairs("silver")}

    trained = timed("train", train)
    embedded = timed("embed", lambda: embed_pool(store, EmbedConfig(model=config.embed_model, pool="all",
                                                                    device=config.device), progress=progress))
    retrieved = timed("retrieve", lambda: retrieve(store, RetrieveConfig(
        model=trained["best"], k_max=config.k_max, round=i, embed_model=config.embed_model,
        batch_size=config.score_batch_size, device=config.device), progress=progress))
    budget_left = None
    if config.budget_judge_calls is not None:
        budget_left = config.budget_judge_calls - calls_used(steps, judge_step_names(config))
    judged = timed("judge", lambda: judge_pairs(store, config, voting, f"retrieved:{i}", i, budget_left, progress))
    queued = timed("queue", lambda: queue_for_humans(store, config, i, judged.get("run_id")))
    return {"iteration": i, "trained_on": trained["trained_on"], "gold_accuracy": trained["gold_accuracy"],
            "silver": store.count_pairs("silver"), "embedded": embedded.get("embedded", 0),
            "retrieved": retrieved.get("selected", 0),
            "judged": judged.get("labelled", 0), "contested": judged.get("contested", 0),
            "queued": queued["queued"], "model_calls": judged.get("model_calls", 0),
            "judges": {spec: info["accuracy"] for spec, info in check["judges"].items()},
            "judge_check": check["judges"],
            "voting": list(voting), "seconds": seconds, "checkpoint": trained["best"]}


def queue_for_humans(store: Store, config: CurateConfig, round_: int, run_id: int | None) -> dict[str, Any]:
    """Send this round's judged pairs that need a human to the annotation queue, with the reason."""
    targets = store.retrieved_pair_ids(round_, unlabelled_kind=None)
    labels = store.latest_labels(targets, "llm")
    hinted = {pid for pid in labels if store.hints_for(pid)}
    attributes = store.get_attributes_many(list(hinted))
    reasons: dict[str, list[str]] = {}
    for pid, label in labels.items():
        if label.round != round_:
            continue
        objective = pid in hinted and attributes.get(pid) is not None and \
            attributes[pid].objectivity == "objective"
        reason = human_reason(label, config.low_confidence, objective)
        if reason:
            reasons.setdefault(reason, []).append(pid)
    queued = sum(store.queue_for_human(ids, reason, run_id, round_) for reason, ids in reasons.items())
    return {"queued": queued, "reasons": {reason: len(ids) for reason, ids in reasons.items()}}
