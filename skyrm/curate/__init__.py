"""``skyrm curate``: METHOD.md's two-stage curation as an orchestration of the commands that exist.

- ``run_curation(store, config, stages)``: Stage 1 iterations (stage1.py), then
  Stage 2 (stage2.py); each step recorded in ``steps`` (``StepLog``), so the same
  command after a kill continues where it stopped and ends with the same pools.
- ``plan(store, config)`` (estimate.py): what a run would do and an estimate of its
  judge calls and time, from costs this store has measured (or defaults measured on a 2-core CPU).
Deliberately not here: any step's own logic (train, embed, retrieve, judge live in
their modules), printing.
"""

from __future__ import annotations

from typing import Any

from skyrm.curate.config import CurateConfig
from skyrm.curate.estimate import plan
from skyrm.runs import Progress, tracked_run
from skyrm.store import Store

__all__ = ["CurateConfig", "plan", "run_curation"]

STAGES = ("stage1", "stage2")


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
