"""`skyrm demo`: the pipeline end to end on generated demo data, offline, on a CPU, in minutes.

The demo data (skyrm.demo_data) has an objectively better response in every
pair; the pool copy has 25% of its labels flipped. The demo holds out clean
pairs as human-verified gold, imports the rest as the unverified pool, and
then runs each step the installed parts allow, reporting what it measured.
Deliberately not here: any logic the steps use (each is a library call).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skyrm import demo_data
from skyrm.ingest import import_file
from skyrm.runs import StepLog
from skyrm.store import Store

Progress = Callable[[int, "int | None", str], None]
GOLD_PAIRS = 300
TOTAL_PAIRS = 3000
NOISE = 0.25
STEPS = ("import", "train", "score", "eval", "judge", "export")


def prepare_files(workdir: Path) -> tuple[Path, Path]:
    """Write the gold file (clean pairs) and the pool file (the others, with flipped labels)."""
    import gzip
    import json

    workdir.mkdir(parents=True, exist_ok=True)
    gold, pool = workdir / "demo_gold.jsonl.gz", workdir / "demo_pool.jsonl.gz"
    rows = list(demo_data.generate(TOTAL_PAIRS, seed=0, noise=NOISE))
    clean = {r["id"]: r for r in demo_data.generate(TOTAL_PAIRS, seed=0)}
    with gzip.open(gold, "wt", encoding="utf-8") as g, gzip.open(pool, "wt", encoding="utf-8") as p:
        for index, row in enumerate(rows):
            if index < GOLD_PAIRS:
                g.write(json.dumps(clean[row["id"]], sort_keys=True) + "\n")
            else:
                p.write(json.dumps(row, sort_keys=True) + "\n")
    return gold, pool


def _step(steps: StepLog, name: str, report: dict[str, Any], action: Callable[[], dict[str, Any]], *,
          still_valid: Callable[[], bool] = lambda: True) -> None:
    """Run one demo step once per store (``StepLog``): a finished step is reused on the next run,
    so ``skyrm demo`` run again continues where it stopped. A step whose optional parts are not
    installed is reported as skipped, not fatal, and is tried again next time."""
    try:
        result = steps.run(name, action, still_valid=still_valid)
    except ModuleNotFoundError as exc:
        report[name] = {"skipped": f"needs the '{exc.name}' package (pip install -e '.[models]')"}
        steps.store.set_step(steps.key(name), "skipped", report[name])
        return
    if result.pop("reused", False):
        result["state"] = "done in an earlier run (reused)"
    report[name] = result


def demo_state(store: Store) -> str:
    """What a run of the demo on this store will do: start, continue, or reuse a finished demo."""
    states = [store.step_status(StepLog(store, "demo").key(name)) for name in STEPS]
    if all(state is None for state in states):
        return "fresh store: running every step"
    if all(state is not None and state["status"] == "done" for state in states):
        return "this store holds a finished demo: its steps are reused (delete the store to start clean)"
    finished = [name for name, state in zip(STEPS, states) if state is not None and state["status"] == "done"]
    return (f"continuing an earlier demo that stopped before the end: {', '.join(finished) or 'no step'} "
            "finished, the rest runs now")


def run_demo(store: Store, workdir: Path, *, judge_pairs: int = 6,
             progress: Progress | None = None) -> dict[str, Any]:
    """Run the demo steps; returns a report of what each step did and measured.

    1. import: 300 clean pairs as human-verified gold, 2,700 as the unverified
       pool with 25% of labels flipped;
    2. train: a reward model on gold (frozen MiniLM features + a trained head, seconds);
    3. score: the pool with it, and how many flipped labels the RM disagrees with
       (the consistency signal stage 2 filters on);
    4. judge: a few pool pairs with the offline SmolLM2 judge, gold examples in the prompt;
    5. eval: the RM on 500 held-out demo pairs;
    6. export: the pool, oriented by its labels, as TRL-shaped JSONL.
    """
    from skyrm.ingest import export_pairs

    report: dict[str, Any] = {"demo": {"state": demo_state(store), "store": store.path,
                                       "workdir": str(workdir)}}
    steps = StepLog(store, "demo")
    gold_file, pool_file = prepare_files(workdir)  # deterministic: rewriting gives the same files

    def import_() -> dict[str, Any]:
        gold = import_file(store, gold_file, source="demo-gold", as_="gold", progress=progress)
        pool = import_file(store, pool_file, source="demo-pool", progress=progress)
        return {"gold_pairs": store.count_pairs("gold"), "pool_pairs": store.count_pairs("demo-pool"),
                "new": gold.pairs_new + pool.pairs_new}

    rm_dir = workdir / "rm-gold"

    def train() -> dict[str, Any]:
        from skyrm.rm.config import TrainConfig
        from skyrm.rm.train import train_reward_model

        config = TrainConfig(base="minilm", method="head", pool="gold", eval_pool="holdout", holdout=0.2,
                             out=str(rm_dir), max_length=256)
        if rm_dir.exists():  # a run cut short before it finished: head training takes seconds, start it again
            shutil.rmtree(rm_dir)
        result = train_reward_model(store, config, progress=progress)
        return {"method": "head on frozen MiniLM", "train_pairs": result["train_pairs"],
                "held-out accuracy": result["best_accuracy"], "seconds": result["seconds"], "out": result["out"]}

    def score() -> dict[str, Any]:
        from skyrm.rm.score import score_pool

        result = score_pool(store, str(rm_dir / "best"), pool="demo-pool", batch_size=32, progress=progress)
        scores = store.scores_for(result["run_id"])
        flipped = {pid for pid, pair, _ in store.iter_pairs("demo-pool", oriented=False) if pair.meta.get("flipped")}
        caught = sum(1 for pid in flipped if scores[pid][2] < 0.5)
        clean_kept = sum(1 for pid, s in scores.items() if pid not in flipped and s[2] > 0.5)
        return {"pairs scored": len(scores), "flipped labels": len(flipped),
                "flipped caught (p < 0.5)": f"{caught} ({caught / max(len(flipped), 1):.0%})",
                "clean labels kept (p > 0.5)": f"{clean_kept} ({clean_kept / max(len(scores) - len(flipped), 1):.0%})",
                "pairs/s": result.get("pairs_per_s"), "run": result["run_id"]}

    def judge() -> dict[str, Any]:
        from skyrm.labelling.label import JudgeConfig, label_pairs

        # contested pairs (the two orders disagree) get the averaged verdict here, so the demo shows labels
        config = JudgeConfig(pool="demo-pool", limit=judge_pairs, shots=1, mode="logprob", contested="average")
        result = label_pairs(store, config, progress=progress).as_dict()
        labels = [label for pid in store.pair_ids("silver") for label in store.labels_for(pid, "llm")]
        truth = {pid: not pair.meta.get("flipped") for pid, pair, _ in store.iter_pairs("silver", oriented=False)}
        right = sum(1 for lab in labels if (lab.verdict == "chosen") == truth.get(lab.pair_id))
        return {"judge": ", ".join(result.get("producers", [])), "pairs labelled": result.get("labelled"),
                "verdicts matching the truth": f"{right}/{len(labels)}",
                "note": "a 135M judge is near chance; bring a larger GGUF or a server with --judge",
                "pairs/s": round(result.get("pairs_per_second") or 0, 2)}

    def evaluate() -> dict[str, Any]:
        from skyrm.evaluate.run import EvalConfig, run_eval

        heldout = demo_data.write(workdir / "demo_heldout.jsonl.gz", n=500, seed=1)
        config = EvalConfig(model=str(rm_dir / "best"), benches=(("pairs", str(heldout)),), batch_size=32)
        result = run_eval(store, config, progress=progress)
        return {"benchmark": "500 held-out demo pairs", "accuracy": result["overall"]["mean"]}

    def export() -> dict[str, Any]:
        out = workdir / "demo_pool_trl.jsonl"
        count = export_pairs(store, out, pool="demo-pool", shape="trl")
        return {"pool exported": count, "file": str(out)}

    _step(steps, "import", report, import_)
    trained = lambda: (rm_dir / "best").is_dir()  # noqa: E731 - a finished step whose files were deleted runs again
    _step(steps, "train", report, train, still_valid=trained)
    if report["train"].get("skipped") is None:
        _step(steps, "score", report, score, still_valid=trained)
        _step(steps, "eval", report, evaluate, still_valid=trained)
    _step(steps, "judge", report, judge)
    _step(steps, "export", report, export, still_valid=lambda: (workdir / "demo_pool_trl.jsonl").exists())
    report["status"] = store.summary()["pools"]
    return report
