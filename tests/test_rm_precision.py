"""Training precision on its own: fp32 and bf16 when asked, and the "auto" rule (bf16 only where the
CPU runs it natively), so the other training tests can pin fp32 without leaving the rule untested."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from skyrm.rm import runtime  # noqa: E402
from skyrm.rm.config import load_config  # noqa: E402


@pytest.mark.parametrize(("precision", "native", "expected"), [
    ("fp32", True, None), ("fp32", False, None),
    ("bf16", True, torch.bfloat16), ("bf16", False, torch.bfloat16),
    ("auto", True, torch.bfloat16), ("auto", False, None),
])
def test_cpu_precision_rule(monkeypatch, precision, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    config = load_config(None, base="x", method="lora", precision=precision)
    assert runtime.autocast_dtype(config, "cpu") is expected


def test_qlora_never_autocasts(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    for precision in ("auto", "bf16"):
        assert runtime.autocast_dtype(load_config(None, base="x", method="qlora", precision=precision), "cpu") is None


@pytest.mark.parametrize(("avx512_bf16", "amx"), [(False, False), (True, False), (False, True), (True, True)])
def test_native_bf16_is_avx512_bf16_or_amx(monkeypatch, avx512_bf16, amx):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert runtime.cpu_has_native_bf16() is (avx512_bf16 or amx)


@pytest.mark.parametrize(("precision", "recorded"), [("fp32", "fp32"), ("bf16", "bfloat16")])
def test_training_records_the_precision_it_ran_in(tmp_path, precision, recorded):
    from test_rm_train import train
    from test_rm_tiny import make_store, tiny_decoder

    store = make_store(tmp_path / "s.db")
    result = train(store, tiny_decoder(tmp_path / "base"), tmp_path / "run", steps=2, precision=precision)
    assert result["steps"] == 2
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["metrics"]["precision"] == recorded
