"""`skyrm demo`: the whole curation pipeline on generated demo data, offline, on a CPU, in minutes.

The demo data (skyrm.demo_data) has an objectively better response in every pair, so
the demo knows the truth: a slice of clean pairs stands in for human-verified gold
(imported under the source ``simulated-human-gold``, so every such label says it was
simulated), and the rest is the unverified pool with a share of its labels flipped.
Then: attributes for a few pairs, a reward model on the noisy pool (before), the
estimate of ``skyrm curate --dry-run``, Stage 1 and Stage 2 (``skyrm curate run``), a
reward model on the curated pool (after), both evaluated on the same held-out pairs,
and the curated pool exported. Each step is a ``StepLog`` entry: the demo run again
continues where it stopped, and a finished demo is reused.
Deliberately not here: any logic the steps use (each is a library call), printing.
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyrm import demo_data
from skyrm.errors import ConfigError
from skyrm.ingest import import_file
from skyrm.judges import DEFAULT_JUDGE
from skyrm.runs import Progress, StepLog
from skyrm.store import Store

STEPS = ("import", "attributes", "rm-before", "plan", "curate", "rm-after", "export")
GOLD_SOURCE, POOL_SOURCE = "simulated-human-gold", "demo-pool"
HELD_OUT_SEED = 1  # the evaluation pairs come from another seed than the pool


@dataclass(frozen=True)
class DemoConfig:
    """The demo's sizes. The defaults run in minutes on a 2-core CPU; CI uses smaller ones."""

    pairs: int = 3000           # gold + pool
    gold: int = 300             # clean pairs standing in for human-verified gold
    noise: float = 0.25         # share of pool labels flipped
    held_out: int = 500         # evaluation pairs (another seed)
    judges: tuple[str, ...] = (DEFAULT_JUDGE,)
    attribute_pairs: int = 4    # attributes take one judge generation per pair: a few show the step
    judge_check_pairs: int = 8  # gold pairs each judge is measured on before it may vote
    judge_calls: int = 24       # model calls for the whole curation, the gold check (2 per pair) included
    iterations: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.gold < self.pairs:
            raise ConfigError(f"--gold must be between 1 and --pairs - 1, got {self.gold} of {self.pairs}")
        if not 0.0 <= self.noise < 0.5:
            raise ConfigError(f"--noise must be in [0, 0.5), got {self.noise}")
        for name in ("held_out", "iterations"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("attribute_pairs", "judge_check_pairs", "judge_calls"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more")

    def curate_config(self, workdir: Path) -> Any:
        from skyrm.curate import CurateConfig

        return CurateConfig(iterations=self.iterations, judges=self.judges, shots=1,
                            judge_check_pairs=self.judge_check_pairs, budget_judge_calls=self.judge_calls,
                            workdir=str(workdir / "curate"))


def prepare_files(workdir: Path, config: DemoConfig) -> tuple[Path, Path, Path]:
    """Write the gold file (clean pairs), the pool file (the others, some flipped) and the held-out file.

    Deterministic: writing them again gives the same files, so a continued demo reads what it imported.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    gold, pool = workdir / "demo_gold.jsonl.gz", workdir / "demo_pool.jsonl.gz"
    rows = list(demo_data.generate(config.pairs, seed=0, noise=config.noise))
    clean = {r["id"]: r for r in demo_data.generate(config.pairs, seed=0)}
    with gzip.open(gold, "wt", encoding="utf-8") as g, gzip.open(pool, "wt", encoding="utf-8") as p:
        for index, row in enumerate(rows):
            if index < config.gold:
                g.write(json.dumps(clean[row["id"]], sort_keys=True) + "\n")
            else:
                p.write(json.dumps(row, sort_keys=True) + "\n")
    held_out = workdir / "demo_heldout.jsonl.gz"
    seen = {_pair_key(row) for row in rows}
    with gzip.open(held_out, "wt", encoding="utf-8") as h:
        # another seed repeats some template pairs: those are left out, so no evaluation pair was trained on
        fresh = (row for row in demo_data.generate(3 * config.held_out, seed=HELD_OUT_SEED)
                 if _pair_key(row) not in seen)
        for row in itertools.islice(fresh, config.held_out):
            h.write(json.dumps(row, sort_keys=True) + "\n")
    return gold, pool, held_out


def _pair_key(row: dict[str, Any]) -> tuple[str, ...]:
    """A generated pair whichever way its label points."""
    return (json.dumps(row["prompt"]), *sorted(json.dumps(row[side]) for side in ("chosen", "rejected")))


def demo_state(store: Store) -> str:
    """What a run of the demo on this store will do: start, continue, or reuse a finished demo."""
    steps = StepLog(store, "demo")
    states = [steps.status(name) for name in STEPS]
    if all(state is None for state in states):
        return "fresh store: running every step"
    if all(state == "done" for state in states):
        return "this store holds a finished demo: its steps are reused (delete the store to start clean)"
    finished = [name for name, state in zip(STEPS, states) if state == "done"]
    return (f"continuing an earlier demo that stopped before the end: {', '.join(finished) or 'no step'} "
            "finished, the rest runs now")


def run_demo(store: Store, workdir: Path, config: DemoConfig | None = None, *,
             progress: Progress | None = None) -> dict[str, Any]:
    """Run (or continue) the demo; returns what each step did and measured, and the before/after summary."""
    config = config or DemoConfig()
    report: dict[str, Any] = {"demo": {"state": demo_state(store), "store": store.path, "workdir": str(workdir)}}
    steps = StepLog(store, "demo")
    gold_file, pool_file, held_out = prepare_files(workdir, config)

    def step(name: str, action: Callable[[], dict[str, Any]],
             still_valid: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        result = steps.run(name, action, still_valid=still_valid)
        if result.pop("reused", False):
            result["state"] = "done in an earlier run (reused)"
        report[name] = result
        return result

    def import_() -> dict[str, Any]:
        gold = import_file(store, gold_file, source=GOLD_SOURCE, as_="gold", progress=progress)
        pool = import_file(store, pool_file, source=POOL_SOURCE, progress=progress)
        flipped = len(flipped_ids(store))
        return {"gold pairs (simulated human labels: the demo data's known truth)": store.count_pairs("gold"),
                "pool pairs": store.count_pairs(POOL_SOURCE), "pool labels flipped": flipped,
                "new": gold.pairs_new + pool.pairs_new}

    def attributes() -> dict[str, Any]:
        from skyrm.labelling.attributes import AttributesConfig, generate_attributes

        summary = generate_attributes(store, AttributesConfig(judge=config.judges[0], pool=POOL_SOURCE,
                                                              limit=config.attribute_pairs), progress=progress)
        return {"judge": config.judges[0], "pairs": summary.targets, "written": summary.written,
                "failed": summary.failed}

    curate_config = config.curate_config(workdir)

    def estimate() -> dict[str, Any]:
        from skyrm.curate import plan

        estimate = plan(store, curate_config, probe=True)
        return {"judge calls": estimate["judge_calls"], "trainings": estimate["trainings"],
                "estimated seconds": estimate["estimated_seconds"], "seconds by work": estimate["seconds_by_work"],
                "seconds per unit": estimate["costs"]}

    def curate() -> dict[str, Any]:
        from skyrm.curate import run_curation

        began = time.perf_counter()
        result = run_curation(store, curate_config, progress=progress)
        return {**result, "seconds": round(time.perf_counter() - began, 1)}

    def export() -> dict[str, Any]:
        from skyrm.ingest import export_pairs

        out = workdir / "demo_curated_trl.jsonl"
        return {"curated pairs exported": export_pairs(store, out, pool="curated", shape="trl"), "file": str(out)}

    step("import", import_)
    flipped = flipped_ids(store)
    step("attributes", attributes)
    before_dir, after_dir = workdir / "rm-before", workdir / "rm-after"
    step("rm-before", lambda: train_and_evaluate(store, POOL_SOURCE, before_dir, held_out, flipped, progress),
         still_valid=(before_dir / "best").is_dir)
    step("plan", estimate)
    step("curate", curate)
    step("rm-after", lambda: train_and_evaluate(store, "curated", after_dir, held_out, flipped, progress),
         still_valid=(after_dir / "best").is_dir)
    step("export", export, still_valid=(workdir / "demo_curated_trl.jsonl").exists)
    report["summary"] = summarise(store, report, flipped)
    return report


def train_and_evaluate(store: Store, pool: str, out: Path, held_out: Path, flipped: set[str],
                       progress: Progress | None) -> dict[str, Any]:
    """The same reward-model recipe on ``pool`` (head on frozen MiniLM, checkpoint chosen on gold),
    then its accuracy on the held-out pairs. The same recipe before and after curation, so the
    difference is the data."""
    from skyrm.evaluate.run import EvalConfig, run_eval
    from skyrm.rm.config import TrainConfig
    from skyrm.rm.train import train_reward_model

    if out.exists():  # a run cut short before it finished: head training takes seconds, start it again
        shutil.rmtree(out)
    config = TrainConfig(base="minilm", method="head", pool=pool, eval_pool="gold", out=str(out), max_length=256)
    trained = train_reward_model(store, config, progress=progress)
    in_training = len(flipped & set(store.pair_ids(pool)))
    evaluated = run_eval(store, EvalConfig(model=str(out / "best"), benches=(("pairs", str(held_out)),),
                                           batch_size=32), progress=progress)
    return {"trained on": pool, "train pairs": trained["train_pairs"], "flipped labels among them": in_training,
            "gold accuracy": trained["best_accuracy"], "held-out accuracy": evaluated["overall"]["mean"],
            "seconds": trained["seconds"]}


def flipped_ids(store: Store) -> set[str]:
    """The pool pairs whose label the demo flipped (the generator marks them)."""
    return {pid for pid, pair, _ in store.iter_pairs(POOL_SOURCE, oriented=False) if pair.meta.get("flipped")}


def summarise(store: Store, report: dict[str, Any], flipped: set[str]) -> dict[str, Any]:
    """Before/after in the terms a newcomer asks about: how much noise went out, what accuracy came back."""
    discarded = set(store.pair_ids("discarded"))
    caught = len(flipped & discarded)
    before, after = report["rm-before"], report["rm-after"]
    return {
        "flipped labels caught": f"{caught} of {len(flipped)} ({caught / max(len(flipped), 1):.0%})",
        "discarded pairs that were flipped": f"{caught} of {len(discarded)} "
                                             f"({caught / max(len(discarded), 1):.0%})",
        "held-out accuracy before curation": round(before["held-out accuracy"], 3),
        "held-out accuracy after curation": round(after["held-out accuracy"], 3),
        "training pairs before / after": f"{before['train pairs']} / {after['train pairs']}",
        "flipped labels in training before / after": f"{before['flipped labels among them']} / "
                                                      f"{after['flipped labels among them']}",
        "judges on gold": judges_line(store),
        "curation seconds: estimated / measured": f"{report['plan']['estimated seconds']} / "
                                                  f"{report['curate']['seconds']:.0f}",
        "pools": store.summary()["pools"],
    }


def judges_line(store: Store) -> str:
    """Each judge's gold check in words: right on how many decided pairs, how many contested, voting or not."""
    check = StepLog(store, "curate").result("judge-check") or {"judges": {}}
    parts = []
    for spec, info in check["judges"].items():
        decided, abstained = info.get("n", 0), info.get("abstained", 0)
        right = round((info.get("accuracy") or 0) * decided)
        parts.append(f"{spec}: right on {right} of {decided} decided gold pairs, {abstained} contested "
                     f"(its two orders disagree); {'votes' if info.get('votes') else 'does not vote'}")
    return "; ".join(parts) or "no judge was checked"
