"""Resume after a real kill, data-parallel training under accelerate, and the CLI end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from skyrm.rm.config import load_config  # noqa: E402
from skyrm.rm.train import train_reward_model  # noqa: E402
from test_rm_tiny import make_store, tiny_decoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _args(db, base, out, steps):
    return ["train", "--db", str(db), "--base", str(base), "--method", "lora", "--pool", "all",
            "--eval-pool", "holdout", "--holdout", "0.25", "--out", str(out), "--max-length", "64",
            "--batch-size", "4", "--steps", str(steps), "--save-every", "2", "--eval-every", "1000",
            "--lr", "5e-3", "--device", "cpu", "--precision", "fp32"]


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_last_checkpoint(tmp_path):
    base = tiny_decoder(tmp_path / "base")
    make_store(tmp_path / "s.db", n=48).close()
    steps = 120  # long enough that the run cannot finish between two polls of its checkpoint
    proc = subprocess.Popen([sys.executable, "-m", "skyrm", *_args(tmp_path / "s.db", base, tmp_path / "run", steps),
                             "--json"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state_file = tmp_path / "run" / "last" / "trainer_state.json"
    killed_at = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists():
            step = json.loads(state_file.read_text())["step"]
            if step >= 4:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = json.loads(state_file.read_text())["step"]
                break
        time.sleep(0.05)
    if killed_at is None:
        proc.kill()
        pytest.fail(f"training never reached a checkpoint or finished before the kill: {proc.stderr.read()[-500:]}")
    assert killed_at < steps

    from skyrm.store import Store

    with Store(tmp_path / "s.db") as store:
        assert [r["status"] for r in store.list_runs("train")] == ["running"]  # the killed run
        cfg = load_config(None, base=str(base), method="lora", pool="all", eval_pool="holdout", holdout=0.25,
                          out=str(tmp_path / "run"), max_length=64, batch_size=4, steps=steps, save_every=2,
                          eval_every=1000, lr=5e-3, device="cpu", precision="fp32", resume=True)
        resumed = train_reward_model(store, cfg)
        assert resumed["resumed_from"] == killed_at and resumed["steps"] == steps
        runs = store.list_runs("train")
        assert len(runs) == 1 and runs[0]["status"] == "done"  # the same run, finished

        # The resumed run ends where an uninterrupted one ends.
        straight = train_reward_model(store, _fresh(cfg, tmp_path / "straight"))
    a = load_file(str(tmp_path / "run" / "last" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "straight" / "last" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert straight["best_accuracy"] == resumed["best_accuracy"]


def _fresh(cfg, out):
    from dataclasses import replace

    return replace(cfg, resume=False, out=str(out))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_accelerate_ddp_on_two_cpu_processes(tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launcher not installed")
    base = tiny_decoder(tmp_path / "base")
    make_store(tmp_path / "s.db", n=48).close()
    # accelerate 1.x starts one process for `--cpu --num_processes 2` (CPU multi-process needs an MPI
    # hostfile); `--multi_gpu` on a machine without GPUs runs torch.distributed.run with gloo on CPU.
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "skyrm", *_args(tmp_path / "s.db", base, tmp_path / "run", 4), "--json"]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["metrics"]["world_size"] == 2 and meta["metrics"]["steps"] == 4
    ranks = meta["metrics"]["ranks"]  # each process trained on its own share of the pairs
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["pairs"] > 0 for r in ranks)
    assert ranks[0]["digest"] != ranks[1]["digest"]
    assert (tmp_path / "run" / "best" / "adapter_model.safetensors").exists()
    from skyrm.rm.score import load_reward_model
    from skyrm.store import Store

    model = load_reward_model(str(tmp_path / "run"), device="cpu")
    assert len(model.rewards([([], [{"role": "assistant", "content": "hi"}])])) == 1
    with Store(tmp_path / "s.db") as store:
        runs = store.list_runs("train")
    assert len(runs) == 1 and runs[0]["status"] == "done"  # only rank 0 writes the store


def test_cli_train_score_export(tmp_path):
    from typer.testing import CliRunner

    from skyrm.cli import app

    runner = CliRunner()
    base = tiny_decoder(tmp_path / "base")
    make_store(tmp_path / "s.db", n=24).close()
    args = _args(tmp_path / "s.db", base, tmp_path / "run", 2)
    trained = runner.invoke(app, [*args, "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["steps"] == 2
    scored = runner.invoke(app, ["score", "--db", str(tmp_path / "s.db"), "--model", str(tmp_path / "run"),
                                 "--pool", "all", "--batch-size", "8", "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["scored"] == 24
    exported = runner.invoke(app, ["export-model", str(tmp_path / "run"), "--out", str(tmp_path / "exp")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "exp" / "model.safetensors").exists()
    bad = runner.invoke(app, ["train", "--db", str(tmp_path / "s.db"), "--base", str(base), "--method", "nope"])
    # The app raises; skyrm.cli.main turns SkyrmError into one red line (tested in test_cli.py).
    assert bad.exit_code == 1 and str(bad.exception) == "--method must be one of full, lora, qlora, head, got 'nope'"
