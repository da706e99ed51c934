"""Benchmarks by name: a lazy registry of tasks, each in its own module under ``tasks/``.

``get_task(name)`` imports a benchmark's module the first time it is asked for, so
adding a benchmark is one module and one line here. What a task is (load, units,
aggregate) is in ``task.py``. Benchmark items are scored, never imported into the
pairs table: they must never become training data. Deliberately not here: any one
benchmark's rule, models, the store, output.
"""

from __future__ import annotations

import importlib
import os

from skyrm.errors import InputError
from skyrm.evaluate.task import Example, Item, Loaded, Task, Unit

__all__ = ["TASKS", "Example", "Item", "Loaded", "Task", "Unit", "get_task", "load_benchmark"]

# name -> "module:class"; the order is the order names are listed in
TASKS: dict[str, str] = {
    "rewardbench": "skyrm.evaluate.tasks.rewardbench:RewardBenchTask",
    "rewardbench2": "skyrm.evaluate.tasks.rewardbench2:RewardBench2Task",
    "rm-bench": "skyrm.evaluate.tasks.rm_bench:RMBenchTask",
    "judgebench": "skyrm.evaluate.tasks.judgebench:JudgeBenchTask",
    "rmb": "skyrm.evaluate.tasks.rmb:RMBTask",
    "ppe": "skyrm.evaluate.tasks.ppe:PPETask",
    "pairs": "skyrm.evaluate.tasks.pairs:PairsTask",
}
_LOADED: dict[str, Task] = {}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown benchmark '{name}' (choose from {', '.join(TASKS)})")
    if name not in _LOADED:
        module, _, attr = TASKS[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), attr)()
    return _LOADED[name]


def load_benchmark(name: str, path: str | os.PathLike[str], *, limit: int | None = None) -> Loaded:
    """Read one benchmark; an empty one is an error, not a silent zero."""
    loaded = get_task(name).load(path, limit=limit)
    if not loaded.examples:
        raise InputError(f"no {name} examples found", path=str(path))
    return loaded
