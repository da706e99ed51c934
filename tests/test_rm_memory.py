"""The training memory guard: the estimate by hand, the micro-batch plan, and a run that follows it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from skyrm.errors import ConfigError
from skyrm.rm.memory import (ATTENTION_COPIES, FFN_COEF, GIB, HIDDEN_COEF, RUNTIME_OVERHEAD, ModelShape,
                             estimate_step_bytes, parse_memory, plan_micro_batch)

SHAPE = ModelShape(params=1000, trainable=100, hidden=8, layers=2, heads=2, intermediate=32)


def test_estimate_by_hand():
    # 3 pairs x 2 rows x 10 tokens = 60 tokens; per token and layer: 4 * (10*8 + 5.5*32) + 4 * 2.5 * 2 * 10
    per_token_layer = 4 * (HIDDEN_COEF * 8 + FFN_COEF * 32) + 4 * ATTENTION_COPIES * 2 * 10
    assert per_token_layer == 4 * (80 + 176) + 200
    expected = RUNTIME_OVERHEAD + 1000 * 4 + 12 * 100 + 60 * 2 * per_token_layer
    assert estimate_step_bytes(SHAPE, pairs=3, seq_len=10) == int(expected)
    # one shared-prefix row per pair halves the activations; bf16 halves the per-value bytes
    packed = estimate_step_bytes(SHAPE, pairs=3, seq_len=10, rows_per_pair=1)
    assert packed == int(RUNTIME_OVERHEAD + 1000 * 4 + 12 * 100 + 30 * 2 * per_token_layer)
    checkpointed = estimate_step_bytes(SHAPE, pairs=3, seq_len=10, checkpointing=True)
    assert checkpointed == int(RUNTIME_OVERHEAD + 1000 * 4 + 12 * 100 + 60 * (2 * 4 * 8 + per_token_layer))


def test_smollm2_batch_16_at_256_tokens_is_a_large_step():
    # SmolLM2-135M's shape; measured peak of this step in fp32 on CPU: about 17-21 GB
    smol = ModelShape(params=134_515_008, trainable=4_884_480, hidden=576, layers=30, heads=9, intermediate=1536)
    estimate = estimate_step_bytes(smol, pairs=16, seq_len=256) / GIB
    assert 15 < estimate < 24


def test_plan_keeps_the_batch_when_it_fits_and_splits_it_when_not():
    full = estimate_step_bytes(SHAPE, pairs=16, seq_len=10)
    roomy = plan_micro_batch(SHAPE, batch_size=16, grad_accum=1, seq_len=10, limit_bytes=2 * full)
    assert (roomy.batch_size, roomy.grad_accum, roomy.note) == (16, 1, "")
    four = estimate_step_bytes(SHAPE, pairs=4, seq_len=10)
    eight = estimate_step_bytes(SHAPE, pairs=8, seq_len=10)
    limit = int((four + eight) / 2 / 0.9)  # room for 4 pairs but not for 8
    tight = plan_micro_batch(SHAPE, batch_size=16, grad_accum=3, seq_len=10, limit_bytes=limit)
    assert (tight.batch_size, tight.grad_accum) == (4, 12)  # 4 x 12 = 16 x 3 pairs per optimizer step
    assert "micro-batch 4 with 12 accumulation steps" in tight.note and "48 pairs" in tight.note


def test_plan_fails_with_one_line_when_one_pair_does_not_fit():
    with pytest.raises(ConfigError) as info:
        plan_micro_batch(SHAPE, batch_size=8, grad_accum=1, seq_len=10, limit_bytes=GIB // 2)
    message = str(info.value)
    assert "\n" not in message and "one pair of 10 tokens needs about" in message
    assert "--max-length" in message and "--gradient-checkpointing" in message


@pytest.mark.parametrize("text, expected", [("16GB", 16 * GIB), ("16g", 16 * GIB), ("1500MB", 1500 << 20),
                                            ("0.5TB", 1 << 39), ("2", 2 * GIB), ("512 MiB", 512 << 20)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


def test_parse_memory_rejects_nonsense():
    with pytest.raises(ConfigError, match="--max-memory 'lots'"):
        parse_memory("lots")


def test_training_follows_the_plan_with_the_same_effective_batch(tmp_path):
    pytest.importorskip("peft")
    from test_rm_tiny import make_store, tiny_decoder
    from test_rm_train import train

    store = make_store(tmp_path / "s.db", n=40)
    base = tiny_decoder(tmp_path / "base")
    roomy = train(store, base, tmp_path / "roomy", method="full", steps=None, epochs=1, holdout=0.0,
                  eval_pool="none", max_length=64, batch_size=8, shared_prefix="off")
    assert roomy["memory"]["batch_size"] == 8 and roomy["memory"]["grad_accum"] == 1
    # a budget between the estimates of 2 and 4 pairs: micro-batch 2, four of them per optimizer step
    from skyrm.rm.memory import ModelShape, estimate_step_bytes
    from skyrm.rm.backbone import ModelSource, load_tokenizer
    from skyrm.rm.config import load_config
    from skyrm.rm.build import build_model

    config = load_config(None, base=str(base), method="full", device="cpu")
    model, _ = build_model(config, ModelSource(str(base)), load_tokenizer(ModelSource(str(base))), "cpu")
    longest = 64
    two, four = (estimate_step_bytes(ModelShape.of(model), pairs=n, seq_len=longest) for n in (2, 4))
    budget = f"{(two + four) / 2 / 0.9 / (1 << 20):.0f}MB"
    tight = train(store, base, tmp_path / "tight", method="full", steps=None, epochs=1, holdout=0.0,
                  eval_pool="none", max_length=64, batch_size=8, shared_prefix="off", max_memory=budget)
    assert tight["memory"]["batch_size"] == 2 and tight["memory"]["grad_accum"] == 4
    assert "micro-batch 2 with 4 accumulation steps" in tight["memory"]["note"]
    assert roomy["train_pairs"] == tight["train_pairs"], (roomy["train_pairs"], roomy["steps"], tight["steps"])
    # 8 pairs per optimizer step either way (the epoch's last step takes the rest)
    assert tight["steps"] == roomy["steps"] == -(-roomy["train_pairs"] // 8)


def test_cli_names_what_to_change_when_nothing_fits(tmp_path):
    pytest.importorskip("peft")
    from test_rm_tiny import make_store, tiny_decoder

    make_store(tmp_path / "s.db", n=12).close()
    base = tiny_decoder(tmp_path / "base")
    done = subprocess.run([sys.executable, "-m", "skyrm", "train", "--db", str(tmp_path / "s.db"), "--base", str(base),
                           "--method", "full", "--pool", "all", "--eval-pool", "holdout", "--out",
                           str(tmp_path / "run"), "--max-length", "64", "--device", "cpu", "--max-memory", "10MB",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "error: one pair of" in errors[0] and "--max-memory" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(subprocess.run([sys.executable, "-m", "skyrm", "status", "--db", str(tmp_path / "s.db"),
                                      "--json"], capture_output=True, text=True).stdout)["pairs"] == 12
