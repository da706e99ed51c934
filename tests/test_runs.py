"""Every run row ends done, interrupted or failed: the lifecycle by hand, then real processes stopped mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from skyrm.runs import tracked_run
from skyrm.store import Store


def test_done_interrupted_and_failed_keep_their_metrics(store):
    with tracked_run(store, "demo", {"a": 1}) as run:
        run.metrics = {"steps": 3}
    with pytest.raises(KeyboardInterrupt), tracked_run(store, "demo", {}) as stopped:
        stopped.metrics = {"steps": 1}
        raise KeyboardInterrupt
    with pytest.raises(ValueError), tracked_run(store, "demo", {}) as broken:
        raise ValueError("boom")
    rows = {r["id"]: r for r in store.list_runs("demo")}
    assert rows[run.id]["status"] == "done" and rows[run.id]["metrics"] == {"steps": 3}
    assert rows[stopped.id]["status"] == "interrupted" and rows[stopped.id]["metrics"] == {"steps": 1}
    assert rows[broken.id]["status"] == "failed"
    assert all(r["finished_at"] for r in rows.values())


def test_a_run_whose_process_died_is_closed_by_the_next_run(tmp_path):
    db = tmp_path / "s.db"
    Store(db).close()
    # a process that opens a run and dies without closing it (as kill -9 or a segfault leaves it)
    subprocess.run([sys.executable, "-c", "import sys; from skyrm.store import Store; "
                    "Store(sys.argv[1]).start_run('judge', {})", str(db)], check=True)
    with Store(db) as store:
        [orphan] = store.list_runs("judge")
        assert orphan["status"] == "running"
        with tracked_run(store, "judge", {}) as run:
            assert store.get_run(orphan["id"])["status"] == "interrupted"
            assert store.get_run(run.id)["status"] == "running"  # this process is alive: left alone
        assert store.get_run(run.id)["status"] == "done"


@pytest.mark.slow
def test_training_stopped_with_sigterm_ends_interrupted(tmp_path):
    pytest.importorskip("peft")
    from test_rm_resume import _args, _env
    from test_rm_tiny import make_store, tiny_decoder

    base = tiny_decoder(tmp_path / "base")
    make_store(tmp_path / "s.db", n=48).close()
    proc = subprocess.Popen([sys.executable, "-m", "skyrm", *_args(tmp_path / "s.db", base, tmp_path / "run", 400),
                             "--json"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = tmp_path / "run" / "last" / "trainer_state.json"
    deadline = time.time() + 240
    while not (state_file.exists() and json.loads(state_file.read_text())["step"] >= 2):  # a recorded step
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    with Store(tmp_path / "s.db") as store:
        [run] = store.list_runs("train")
    assert run["status"] == "interrupted" and run["finished_at"]
