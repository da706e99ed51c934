"""``skyrm curate --dry-run``: what a run would do, and its judge calls and time from costs measured here.

Time is a sum of unit costs times amounts of work: seconds per judge call, per pair
scored, per pair embedded, per text a frozen backbone encodes, per pair a head or
adapter trains on. Each unit cost is read from this store's finished runs (so a
store that has run anything is estimated at its own machine's speed) and falls back
to a figure measured on a 2-core CPU. Reading the store changes nothing.
Deliberately not here: running anything, printing.
"""

from __future__ import annotations

import math
from typing import Any

from skyrm.curate.config import CurateConfig
from skyrm.store import Store

# Seconds per unit on a 2-core CPU (SmolLM2 judge in logprob mode; MiniLM reward models and encoder).
DEFAULT_COSTS = {"judge_call": 0.8, "score_pair": 1 / 60, "embed_pair": 1 / 50, "feature_text": 1 / 100,
                 "head_pair": 0.005, "train_pair": 0.5}
ASSUMED_GOLD_ACCURACY = 0.75  # a first RM on a few hundred gold pairs, until the store has trained one


def _done(store: Store, kind: str) -> list[dict[str, Any]]:
    return [run["metrics"] for run in store.list_runs(kind) if run["status"] == "done"]


def _latest(values: list[float | None]) -> float | None:
    values = [v for v in values if v]
    return values[-1] if values else None


def measured_costs(store: Store, config: CurateConfig) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds per unit of work, from this store's finished runs where it has them; and where each came from."""
    costs, sources = dict(DEFAULT_COSTS), {name: "default (2-core CPU)" for name in DEFAULT_COSTS}

    def take(name: str, value: float | None, source: str) -> None:
        if value:
            costs[name], sources[name] = value, source

    judge = _done(store, "judge")
    take("judge_call", _latest([m["seconds"] / m["model_calls"] for m in judge
                                if m.get("model_calls") and m.get("seconds")]), "judge runs")
    score = _done(store, "score")
    take("score_pair", _latest([m["seconds"] / m["pairs"] for m in score
                                if m.get("pairs") and m.get("seconds") and not m.get("items_cached")]), "score runs")
    embed = _done(store, "embed")
    take("embed_pair", _latest([m["seconds"] / m["embedded"] for m in embed
                                if m.get("embedded") and m.get("seconds")]), "embed runs")
    train = _done(store, "train")
    take("feature_text", _latest([m["feature_seconds"] / m["features_computed"] for m in train
                                  if m.get("features_computed") and m.get("feature_seconds")]), "train runs (features)")
    take("head_pair", _latest([m["head_seconds"] / m["train_pairs"] for m in train
                               if m.get("head_seconds") and m.get("train_pairs")]), "train runs (head)")
    take("train_pair", _latest([m["seconds"] / m["train_pairs"] for m in train
                                if m.get("train_pairs") and m.get("seconds") and "head_seconds" not in m]),
         "train runs")
    if not sources["feature_text"].startswith("default"):  # the same kind of encoder pass, measured here
        if sources["score_pair"].startswith("default"):
            costs["score_pair"], sources["score_pair"] = 2 * costs["feature_text"], "train runs (features)"
        if sources["embed_pair"].startswith("default"):  # one text a pair
            costs["embed_pair"], sources["embed_pair"] = costs["feature_text"], "train runs (features)"
    return costs, sources


def probe_judges(store: Store, config: CurateConfig, calls: int = 4) -> dict[str, float]:
    """Seconds per judge call and per judge load, measured now on this machine.

    Each judge is loaded and given ``calls`` real verdict prompts (gold pairs, ``shots``
    other gold pairs as examples, both orders). The first call evaluates the whole prompt
    cold, as the first call of every judge step does, so it counts with the load; the
    per-call figure is the mean of the others, which reuse the shared prefix as curation's
    calls mostly do (with the cold call averaged in, the demo's probe read 3.97 s a call
    against 2.06 s measured). Nothing is written to the store. Sample mode is probed with
    logprob calls, so it reads as a lower bound there.
    """
    import time

    from skyrm.judges import load_judge
    from skyrm.labelling.prompts import Shot, pairwise_choices, pairwise_prompts

    pairs = [(pair, verdict) for _, pair, verdict in store.iter_pairs("gold", oriented=False,
                                                                      limit=config.shots + calls // 2)]
    shots = [Shot(pair, None, verdict or "chosen") for pair, verdict in pairs[:config.shots]]
    prompts = [prompt for pair, _ in pairs[config.shots:] or pairs[:1]
               for prompt in pairwise_prompts(pair, None, shots).prompts.values()]
    load = call = 0.0
    for spec in config.judges:
        began = time.perf_counter()
        judge = load_judge(spec)
        try:
            cold, warm = (prompts[:1], prompts[1:]) if len(prompts) > 1 else ([], prompts)
            for prompt in cold:
                judge.choice_logprobs([prompt], pairwise_choices())
            loaded = time.perf_counter()
            for prompt in warm:
                judge.choice_logprobs([prompt], pairwise_choices())
        finally:
            judge.close()
        load += loaded - began
        call += (time.perf_counter() - loaded) / max(len(warm), 1)
    count = max(len(config.judges), 1)
    return {"judge_call": call / count, "judge_load": load / count}


def _featurised_texts(store: Store) -> int:
    """Texts whose frozen-backbone features a head run computed or found cached (they are cached now)."""
    counts = [m.get("features_computed", 0) + m.get("features_cached", 0) for m in _done(store, "train")]
    return max(counts, default=0)


def _embedded_pairs(store: Store) -> int:
    return max((space["pairs"] for space in store.embedding_spaces()), default=0)


def plan(store: Store, config: CurateConfig, stages: tuple[str, ...] = ("stage1", "stage2"), *,
         probe: bool = False) -> dict[str, Any]:
    """What a run would do, with judge calls and time estimated from measured costs.

    With ``probe`` and no finished judge run in the store, each judge is loaded and timed on a
    few real prompts now (``probe_judges``), since a judge's speed is the one cost nothing
    else in the store predicts; each judge step then also pays a load.

    Stage 1 retrieves at most ``k_max`` pairs per gold pair; an RM that is right on a
    share ``a`` of gold pulls in about ``(1 - a) * k_max + a * k_max / 4`` per gold pair
    (p spread over (0.5, 1]), less what the pool holds. Stage 2 judges the pairs the
    best RM disagrees with (about ``1 - a`` of the pool). Judges that fail the gold
    check do not vote, so their calls after the check are an upper bound.
    """
    costs, sources = measured_costs(store, config)
    judge_load = 0.0
    if probe and sources["judge_call"].startswith("default") and store.count_pairs("gold"):
        probed = probe_judges(store, config)
        costs["judge_call"], sources["judge_call"] = probed["judge_call"], "probed now"
        judge_load = probed["judge_load"]
    pools = store.summary()["pools"]
    gold, unverified = pools["gold"], pools["unverified"]
    curate_pool = pools["unverified"] + pools["silver"] + pools["curated"]
    accuracy = _latest([m.get("best_accuracy") for m in _done(store, "train")]) or ASSUMED_GOLD_ACCURACY
    per_gold = (1 - accuracy) * config.k_max + accuracy * math.ceil(config.k_max / 4)
    judges = len(config.judges)
    head = config.rm_method == "head"

    def training(pairs: int) -> float:
        return pairs * (costs["head_pair"] if head else costs["train_pair"])

    # A head checkpoint scores from the cached features (counted once, under training): no backbone pass.
    score_pair = 0.0 if head else costs["score_pair"]

    seconds = {"judge": 0.0, "train": 0.0, "score": 0.0, "embed": 0.0}
    if head:  # each text's features are computed once, then every head training reads them
        seconds["train"] += max(0, 2 * (curate_pool + gold) - _featurised_texts(store)) * costs["feature_text"]
    steps: list[dict[str, Any]] = [{"step": "judge check", "pairs": min(gold, config.judge_check_pairs) * judges}]
    judge_pairs, trainings, left = steps[0]["pairs"], 0, unverified
    if "stage1" in stages:
        seconds["embed"] += max(0, curate_pool + gold - _embedded_pairs(store)) * costs["embed_pair"]
        for i in range(1, config.iterations + 1):
            retrieved = min(left, int(gold * per_gold * 0.6))  # neighbourhoods overlap: ~60% distinct
            left -= retrieved
            judge_pairs += retrieved
            trainings += 1
            seconds["train"] += training(gold)  # silver stays small in Stage 1: about gold's size
            seconds["score"] += gold * score_pair  # retrieval scores gold with the new RM
            steps.append({"step": f"stage 1 iteration {i}", "train": 1, "retrieve": retrieved, "judge": retrieved})
    if "stage2" in stages:
        disagreed = int(curate_pool * (1 - accuracy))
        judge_pairs += disagreed
        trainings += config.folds + 1
        folds_train = curate_pool * (config.folds - 1) // config.folds if config.folds > 1 else curate_pool
        seconds["train"] += config.folds * training(folds_train) + training(gold)
        seconds["score"] += 2 * curate_pool * score_pair  # the cross-fitted pool RM and the gold RM
        steps.append({"step": "stage 2", "train": config.folds + 1, "score": 2 * curate_pool, "judge": disagreed})
    calls = judge_pairs * config.calls_per_pair * judges
    if config.budget_judge_calls is not None:
        calls = min(calls, config.budget_judge_calls)
        judge_pairs = calls // (config.calls_per_pair * judges)
    judge_steps = 1 + (config.iterations if "stage1" in stages else 0) + ("stage2" in stages)
    seconds["judge"] = calls * costs["judge_call"] + judge_steps * judge_load * judges
    return {"pools": pools, "steps": steps, "judge_calls": calls, "judged_pairs": judge_pairs,
            "trainings": trainings, "estimated_seconds": round(sum(seconds.values())),
            "seconds_by_work": {k: round(v, 1) for k, v in seconds.items()},
            "costs": {k: round(v, 5) for k, v in costs.items()}, "cost_sources": sources,
            "budget_judge_calls": config.budget_judge_calls}
