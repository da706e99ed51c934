"""Data-parallel scoring and embedding under `accelerate launch` with 2 CPU processes: the same
values as one process, every pair stored once, one run written by rank 0."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from skyrm.parallel import Group, split

ROOT = Path(__file__).resolve().parents[1]


def test_split_gives_contiguous_slices_in_rank_order():
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1], 2) == [[1], []]
    assert split([], 2) == [[], []]
    one = Group()
    assert one.main and one.scatter([[1, 2]]) == [1, 2] and one.gather(5) == [5] and one.broadcast(3) == 3


def _launch(tmp_path, args):
    pytest.importorskip("torch")
    from test_rm_resume import _env, _free_port

    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launcher not installed")
    # `--multi_gpu` on a machine without GPUs runs torch.distributed.run with gloo on CPU (see
    # test_rm_resume.test_accelerate_ddp_on_two_cpu_processes).
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "skyrm", *args, "--json"]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)  # rank 0 alone prints


@pytest.mark.slow
def test_score_on_two_processes_equals_one_process(tmp_path):
    pytest.importorskip("torch")
    from test_rm_tiny import make_store, tiny_decoder

    from skyrm.rm.score import score_pool
    from skyrm.store import Store

    model = tiny_decoder(tmp_path / "m")
    make_store(tmp_path / "one.db", n=37).close()
    shutil.copy(tmp_path / "one.db", tmp_path / "two.db")
    # 5 pairs per process per block: 37 pairs make 4 blocks, the last one uneven (7 pairs: 4 + 3)
    summary = _launch(tmp_path, ["score", "--db", str(tmp_path / "two.db"), "--model", str(model), "--pool", "all",
                                 "--batch-size", "4", "--chunk", "5", "--device", "cpu"])
    assert summary["pairs"] == summary["scored"] == 37 and summary["world_size"] == 2
    with Store(tmp_path / "one.db") as store:
        single = score_pool(store, str(model), pool="all", batch_size=4, chunk=5, device="cpu")
        expected = store.scores_for(single["run_id"])
    with Store(tmp_path / "two.db") as store:
        runs = store.list_runs("score")
        got = store.scores_for(summary["run_id"])
        rows, distinct = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT pair_id) FROM scores").fetchone()
        cached = store.db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
    assert [(r["id"], r["status"]) for r in runs] == [(summary["run_id"], "done")]  # one run, from rank 0
    assert rows == distinct == 37 and cached == 74
    assert set(got) == set(expected)
    for pair_id, (r_chosen, r_rejected, p) in expected.items():
        assert got[pair_id] == pytest.approx((r_chosen, r_rejected, p), abs=1e-5)
    assert summary["accuracy_stored"] == single["accuracy_stored"]


@pytest.mark.slow
def test_embed_on_two_processes_equals_one_process(tmp_path):
    np = pytest.importorskip("numpy")
    pytest.importorskip("torch")
    from test_rm_tiny import make_store, tiny_encoder

    from skyrm.embed import EmbedConfig, embed_pool
    from skyrm.store import Store

    encoder = tiny_encoder(tmp_path / "enc")
    make_store(tmp_path / "one.db", n=37).close()
    shutil.copy(tmp_path / "one.db", tmp_path / "two.db")
    summary = _launch(tmp_path, ["embed", "--db", str(tmp_path / "two.db"), "--model", str(encoder),
                                 "--what", "prompt", "--chunk", "4", "--batch-size", "3", "--device", "cpu"])
    assert summary["todo"] == summary["embedded"] == 37 and summary["world_size"] == 2
    with Store(tmp_path / "one.db") as store:
        single = embed_pool(store, EmbedConfig(model=str(encoder), what="prompt", chunk=4, batch_size=3,
                                               device="cpu"))
        ids = store.pair_ids("all")
        expected = store.get_embeddings(single["fingerprint"], "prompt@1", ids)
    assert single["fingerprint"] == summary["fingerprint"]
    with sqlite3.connect(tmp_path / "two.db") as conn:
        rows, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT pair_id) FROM embeddings").fetchone()
        runs = conn.execute("SELECT status FROM runs WHERE kind = 'embed'").fetchall()
    assert rows == distinct == 37 and runs == [("done",)]
    with Store(tmp_path / "two.db") as store:
        got = store.get_embeddings(summary["fingerprint"], "prompt@1", ids)
        again = embed_pool(store, EmbedConfig(model=str(encoder), what="prompt", device="cpu"))
    assert again["todo"] == 0  # nothing missing after the parallel run
    for pair_id in ids:
        assert np.allclose(np.frombuffer(got[pair_id], dtype="<f4"), np.frombuffer(expected[pair_id], dtype="<f4"),
                           atol=1e-5)
