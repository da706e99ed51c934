"""One lifecycle for every run a command records (judge, attributes, train, score, eval, embed, ...).

A run row is opened when the work starts and always closed: ``done`` when the
block ends, ``interrupted`` on Ctrl-C (and on SIGTERM, which the CLI turns into
one), ``failed`` on any other error, which is re-raised. What the flow measured
goes into ``run.metrics`` as it goes, so a failed or interrupted run keeps its
partial figures. A process killed outright (kill -9, a native crash) cannot close
its row; the next run on the store closes such rows (see
``Store.close_stale_runs``).
Deliberately not here: what a run does, and anything shown to the user.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from skyrm.store import Store

# progress(done, total or None, note): how the library reports long work; the CLI draws it.
Progress = Callable[[int, "int | None", str], None]


def no_progress(done: int, total: int | None = None, note: str = "") -> None:
    """The progress callback of a caller that does not want progress."""


class Meter:
    """Chunked work reported through a ``Progress``: 0 of ``total`` when it starts, then each chunk.

    It also times the work, so a flow reads its seconds and its rates from one clock.
    """

    def __init__(self, progress: Progress | None, total: int):
        self.progress = progress or no_progress
        self.total = total
        self.started = time.perf_counter()
        self.progress(0, total, "")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def per_second(self, count: float) -> float:
        """``count`` over the seconds so far (0.0 before the clock has moved)."""
        seconds = self.seconds
        return count / seconds if seconds > 0 else 0.0

    def advance(self, done: int, note: str = "") -> None:
        self.progress(done, self.total, note)


@dataclass
class Run:
    """An open run: its row id and what the flow records about it before it closes."""

    id: int
    metrics: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


@contextmanager
def tracked_run(store: Store, kind: str, config: dict[str, Any], *, name: str = "", path: str = "",
                run_id: int | None = None) -> Iterator[Run]:
    """Open a run row (or re-open ``run_id`` when resuming) and close it however the block ends."""
    store.close_stale_runs()
    if run_id is not None and store.get_run(run_id) is not None:
        store.update_run(run_id, status="running")
    else:
        run_id = store.start_run(kind, config, name=name, path=path)
    run = Run(run_id, path=path or None)
    try:
        yield run
    except KeyboardInterrupt:
        store.finish_run(run.id, status="interrupted", metrics=run.metrics, path=run.path)
        raise
    except BaseException:
        store.finish_run(run.id, status="failed", metrics=run.metrics, path=run.path)
        raise
    store.finish_run(run.id, status="done", metrics=run.metrics, path=run.path)


class StepLog:
    """Resumable steps of a long pipeline (curation, the demo), recorded in the store's ``steps`` table.

    ``run(name, action)`` runs ``action`` once per store: a step that finished is not run
    again, its recorded result is returned (with ``"reused": True``), so the same command
    after a kill continues at the first unfinished step. A step still marked 'running'
    was cut short and runs again; each action must therefore be safe to repeat (the
    library's commands are: labels have dedup keys, imports checkpoint, caches hit).
    """

    def __init__(self, store: Store, prefix: str):
        self.store = store
        self.prefix = prefix
        self.seconds: dict[str, float] = {}  # per step name: how long it ran in this process (0.0 when reused)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def status(self, name: str) -> str | None:
        state = self.store.step_status(self.key(name))
        return state["status"] if state else None

    def result(self, name: str) -> dict[str, Any] | None:
        state = self.store.step_status(self.key(name))
        return state["detail"] if state and state["status"] == "done" else None

    def run(self, name: str, action: Callable[[], dict[str, Any]], *,
            still_valid: Callable[[], bool] = lambda: True) -> dict[str, Any]:
        previous = self.result(name)
        if previous is not None and still_valid():
            self.seconds[name] = 0.0
            return {**previous, "reused": True}
        self.store.set_step(self.key(name), "running")
        began = time.perf_counter()
        result = action()
        self.seconds[name] = round(time.perf_counter() - began, 2)
        self.store.set_step(self.key(name), "done", result)
        return result
