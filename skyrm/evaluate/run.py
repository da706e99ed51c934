"""Run an evaluation: load benchmarks, score each distinct (history, response) once, summarise.

``evaluate`` is the core: it takes loaded benchmarks and a scoring function
and returns a JSON-ready result holding every benchmark's tables, headline
scores and per-item rewards (enough to recompute or bootstrap anything later).
``run_eval`` wires it to a reward model and the store's rewards cache, so a
second run, or a run that adds a benchmark, recomputes nothing already scored,
and records the run in the store.

Benchmark items never enter the pairs table. Deliberately not here: rendering
(report.py, plots.py) and the reward model itself (skyrm.rm).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from skyrm.errors import ConfigError
from skyrm.evaluate.benchmarks import Item, Loaded, Task, get_task, load_benchmark
from skyrm.records import response_key
from skyrm.runs import Progress, tracked_run

if TYPE_CHECKING:
    from skyrm.store import Store

Scorer = Callable[[list[Item], "Progress | None"], list[float]]
RESULTS_VERSION = 1


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; saved with the run and in results.json."""

    model: str = ""
    benches: tuple[tuple[str, str], ...] = ()
    batch_size: int = 16
    max_length: int | None = None  # tokens per item; None: the model's own
    limit: int | None = None  # first N examples of each file: a quick look, not an official figure
    seed: int = 0  # best-of-N subsampling
    bon_draws: int = 16  # random N-subsets per prompt and N
    shared_prefix: str = "off"  # "on": decoders run a history shared by several responses once

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("--batch-size must be at least 1")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError("--max-length must be at least 8 tokens")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if self.bon_draws < 1:
            raise ConfigError("--bon-draws must be at least 1")
        if self.shared_prefix not in ("on", "off"):
            raise ConfigError("--shared-prefix takes 'on' or 'off'")


def parse_bench(spec: str) -> tuple[str, str]:
    """'rm-bench=../shared/data/rm-bench' -> ('rm-bench', '../shared/data/rm-bench')."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"--bench takes NAME=PATH, got {spec!r} (e.g. --bench rmb=data/rmb)")
    get_task(name.strip())
    return name.strip(), path.strip()


def bench_keys(benches: Sequence[tuple[str, str]]) -> list[str]:
    """Result keys: the benchmark name, made unique with the path's name when a name repeats."""
    counts: dict[str, int] = defaultdict(int)
    for name, _ in benches:
        counts[name] += 1
    keys, seen = [], set()
    for name, path in benches:
        key = name if counts[name] == 1 else f"{name}:{os.path.basename(os.path.normpath(path))}"
        while key in seen:
            key += "'"
        seen.add(key)
        keys.append(key)
    return keys


def pool_units(task: Task, records: Sequence[tuple[str, dict[str, Any], Sequence[float]]]
               ) -> tuple[dict[str, float], dict[str, float]]:
    """Pooled mean (sum of numerators / sum of denominators) and denominator per unit key."""
    num: dict[str, float] = defaultdict(float)
    den: dict[str, float] = defaultdict(float)
    for group, info, rewards in records:
        for key, n, d in task.units(group, info, rewards):
            num[key] += n
            den[key] += d
    return {k: num[k] / den[k] for k in den if den[k] > 0}, {k: den[k] for k in den if den[k] > 0}


def summarize(task: Task, records: Sequence[tuple[str, dict[str, Any], Sequence[float]]], *,
              seed: int = 0, draws: int = 16) -> dict[str, Any]:
    """A benchmark's tables and headline(s) from its examples' rewards."""
    means, sizes = pool_units(task, records)
    summary = task.aggregate(means, sizes)
    extras = task.extras(records, seed=seed, draws=draws)
    if extras:
        summary["extras"] = extras
    return summary


def evaluate(loaded: Sequence[Loaded], scorer: Scorer, config: EvalConfig, *, keys: Sequence[str] | None = None,
             progress: Progress | None = None) -> dict[str, Any]:
    """Score every distinct item of the loaded benchmarks once and summarise each benchmark."""
    keys = list(keys) if keys is not None else bench_keys([(b.name, b.path) for b in loaded])
    index: dict[str, int] = {}
    unique: list[Item] = []
    positions: list[list[list[int]]] = []
    for bench in loaded:
        bench_positions = []
        for example in bench.examples:
            where = []
            for history, response in example.items:
                key = response_key(history, response)
                if key not in index:
                    index[key] = len(unique)
                    unique.append((history, response))
                where.append(index[key])
            bench_positions.append(where)
        positions.append(bench_positions)
    rewards = scorer(unique, progress) if unique else []
    if len(rewards) != len(unique):
        raise RuntimeError(f"the scorer returned {len(rewards)} rewards for {len(unique)} items")
    benchmarks: dict[str, Any] = {}
    for key, bench, bench_positions in zip(keys, loaded, positions):
        task = get_task(bench.name)
        records = [(ex.group, ex.info, [float(rewards[i]) for i in where])
                   for ex, where in zip(bench.examples, bench_positions)]
        summary = summarize(task, records, seed=config.seed, draws=config.bon_draws)
        n_items = sum(len(w) for w in bench_positions)
        benchmarks[key] = {
            "task": bench.name, "title": task.title, "path": bench.path, "notes": bench.notes,
            "examples": len(bench.examples), "items": n_items,
            "distinct_items": len({i for w in bench_positions for i in w}),
            **summary,
            "per_item": [{"id": ex.id, "group": g, "info": info, "rewards": r}
                         for ex, (g, info, r) in zip(bench.examples, records)],
        }
    return {"version": RESULTS_VERSION, "config": asdict(config), "benchmarks": benchmarks,
            "overall": overall(benchmarks), "distinct_items": len(unique)}


def overall(benchmarks: dict[str, Any]) -> dict[str, Any]:
    """Every headline (PPE gives two) and their plain mean, as the paper averages its seven."""
    rows = [[key, label, value] for key, bench in benchmarks.items() for label, value in bench["headlines"].items()]
    finite = [r[2] for r in rows if isinstance(r[2], float) and math.isfinite(r[2])]
    return {"rows": rows, "mean": sum(finite) / len(finite) if finite else float("nan")}


def load_all(config: EvalConfig) -> list[Loaded]:
    if not config.benches:
        raise ConfigError("nothing to evaluate: give at least one --bench NAME=PATH")
    return [load_benchmark(name, path, limit=config.limit) for name, path in config.benches]


def run_eval(store: Store | None, config: EvalConfig, *, model: Any = None, loaded: Sequence[Loaded] | None = None,
             progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate a reward model on the configured benchmarks, through the store's rewards cache.

    ``model`` is a loaded ``skyrm.rm.score.RewardModel``; when None, the one at
    ``config.model`` is loaded. ``loaded`` are the benchmarks already read with
    ``load_all(config)``. The run is recorded in the store (kind 'eval').
    """
    from skyrm.rm.score import load_reward_model, score_items

    if loaded is None:
        loaded = load_all(config)  # read everything first: a bad file fails before any model work
    if model is None:
        if not config.model:
            raise ConfigError("give --model DIR (a reward model checkpoint) to evaluate")
        model = load_reward_model(config.model, max_length=config.max_length, shared_prefix=config.shared_prefix)
    def scorer(items: list[Item], report: Progress | None) -> list[float]:
        return score_items(store, model, items, batch_size=config.batch_size, progress=report)

    name = os.path.basename(os.path.normpath(config.model or "model"))
    with tracked_run(store, "eval", asdict(config), name=name) if store is not None else nullcontext() as run:
        result = evaluate(loaded, scorer, config, progress=progress)
        result["model"] = {"path": config.model or getattr(model, "path", ""),
                           "fingerprint": getattr(model, "fingerprint", ""),
                           "max_length": getattr(model, "max_length", None),
                           "stats": dict(getattr(model, "stats", {}))}
        if run is not None:
            result["run_id"] = run.id
            run.metrics = {"overall": result["overall"]["mean"],
                           **{k: b["headlines"] for k, b in result["benchmarks"].items()}}
    return result
