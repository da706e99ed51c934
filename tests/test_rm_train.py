"""Training invariants on tiny models: what trains, what is saved, what a run reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from skyrm.rm.config import load_config  # noqa: E402
from skyrm.rm.score import load_reward_model  # noqa: E402
from skyrm.rm.train import train_reward_model  # noqa: E402
from test_rm_tiny import make_store, tiny_decoder, tiny_encoder  # noqa: E402

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json"}


def train(store, base, out, **overrides):
    settings = dict(base=str(base), pool="all", eval_pool="holdout", holdout=0.25, out=str(out), max_length=64,
                    batch_size=4, steps=4, eval_every=2, lr=5e-3, device="cpu",
                    precision="fp32")  # auto means bf16 on AVX512-BF16/AMX CPUs; these tests compare to 1e-5
    settings.update(overrides)
    return train_reward_model(store, load_config(None, **settings))


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_lora_trains_adapters_and_head_and_leaves_base_weights_unchanged(tmp_path):
    from skyrm.rm.backbone import ModelSource, load_tokenizer
    from skyrm.rm.build import build_model

    base = tiny_decoder(tmp_path / "base")
    original = load_file(str(base / "model.safetensors"))
    source = ModelSource(str(base))
    model, info = build_model(load_config(None, base=str(base), method="lora"), source,
                              load_tokenizer(source), "cpu")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("score" in n and "modules_to_save" in n for n in trainable)  # the head trains

    store = make_store(tmp_path / "s.db")
    result = train(store, base, tmp_path / "run", method="lora")
    adapter = load_file(str(tmp_path / "run" / "best" / "adapter_model.safetensors"))
    head_keys = [k for k in adapter if k.endswith("score.weight")]
    assert head_keys, "the reward head must be saved with the adapter"
    assert not torch.equal(adapter[head_keys[0]], original["score.weight"])  # head changed
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # adapters moved off their zero init
    assert not any(k.endswith(("embed_tokens.weight", "norm.weight")) for k in adapter)  # base not saved

    # Merged, every weight outside the adapted layers and the head is bit-identical to the base.
    merged = load_reward_model(result["out"], device="cpu").model.state_dict()
    for name, tensor in original.items():
        if "proj" in name or name.startswith("score"):
            continue
        assert torch.equal(merged[name], tensor), name
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           original["model.layers.0.self_attn.q_proj.weight"])


@pytest.mark.parametrize("method,weights", [
    ("lora", {"adapter_config.json", "adapter_model.safetensors", "chat_template.jinja"}),
    ("full", {"config.json", "model.safetensors", "chat_template.jinja"}),
    ("head", {"head.safetensors", "chat_template.jinja"}),
])
def test_checkpoint_file_sets_are_exact(tmp_path, method, weights):
    store = make_store(tmp_path / "s.db")
    result = train(store, tiny_decoder(tmp_path / "base"), tmp_path / "run", method=method)
    run = tmp_path / "run"
    assert files(run) == {"best", "last", "meta.json"}
    assert files(run / "best") == weights | TOKENIZER_FILES | {"meta.json"}
    resume_files = set() if method == "head" else {"optimizer.safetensors", "trainer_state.json"}
    assert files(run / "last") == weights | TOKENIZER_FILES | {"meta.json"} | resume_files
    meta = json.loads((run / "meta.json").read_text())
    assert meta["checkpoint"] == "best" and meta["data_fingerprint"] and meta["versions"]["torch"]
    assert meta["config"]["method"] == method and meta["metrics"]["train_pairs"] == result["train_pairs"]
    stored = store.get_run(result["run_id"])
    assert stored["kind"] == "train" and stored["status"] == "done" and stored["path"] == str(run)
    assert stored["config"]["data_fingerprint"] == meta["data_fingerprint"]
    assert stored["metrics"]["best_accuracy"] == result["best_accuracy"]


def test_encoder_lora_saves_pooler_and_classifier(tmp_path):
    store = make_store(tmp_path / "s.db")
    result = train(store, tiny_encoder(tmp_path / "base"), tmp_path / "run", method="lora")
    adapter = load_file(str(tmp_path / "run" / "best" / "adapter_model.safetensors"))
    assert any(k.endswith("classifier.weight") for k in adapter)
    assert any(k.endswith("pooler.dense.weight") for k in adapter)
    model = load_reward_model(result["out"], device="cpu")
    assert len(model.rewards([([], [{"role": "assistant", "content": "hi"}])])) == 1


def test_training_learns_an_easy_preference(tmp_path):
    store = make_store(tmp_path / "s.db", n=48)
    result = train(store, tiny_decoder(tmp_path / "base"), tmp_path / "run", method="full", steps=24,
                   eval_every=6, lr=3e-3, batch_size=8, max_length=128, holdout=0.3)
    assert result["eval_pairs"] >= 6, result
    assert result["best_accuracy"] >= 0.8, result["history"]


def test_skipped_and_held_out_pairs_are_counted(tmp_path):
    store = make_store(tmp_path / "s.db", n=40)
    result = train(store, tiny_decoder(tmp_path / "base"), tmp_path / "run", method="head", max_length=48)
    skipped = result["train_skipped"]
    assert skipped["too_long"] > 0  # the two-sentence answers do not fit in 48 tokens
    selected = result["selected"]
    assert selected["in_eval"] == selected["eval"] and selected["train"] + selected["in_eval"] == 40
    assert result["train_pairs"] + sum(v for k, v in skipped.items() if k != "truncated") == 40 - selected["eval"]


def test_holdout_splits_by_prompt(tmp_path):
    from skyrm.records import Pair
    from skyrm.rm.trainset import select_pairs
    from skyrm.store import Store

    store = Store(tmp_path / "s.db")
    prompt = lambda i: [{"role": "user", "content": f"prompt {i}"}]  # noqa: E731
    store.add_pairs(Pair(prompt(i // 3), [{"role": "assistant", "content": f"good {i}"}],
                         [{"role": "assistant", "content": f"bad {i}"}]) for i in range(90))
    data = select_pairs(store, load_config(None, base="x", pool="all", eval_pool="gold", holdout=0.3))
    assert data.eval and data.eval_source.startswith("holdout")  # gold is empty: fall back, and say so
    eval_prompts = {json.dumps(p.prompt) for _, p in data.eval}
    assert not eval_prompts & {json.dumps(p.prompt) for _, p in data.train}
    assert len(data.train) + len(data.eval) == 90


def test_gold_pairs_evaluate_and_never_train(tmp_path):
    from skyrm.records import Label
    from skyrm.rm.trainset import select_pairs

    store = make_store(tmp_path / "s.db", n=20)
    ids = store.pair_ids("all")
    store.add_labels([Label(i, "human", "tester", "chosen") for i in ids[:5]])
    store.add_labels([Label(ids[5], "human", "tester", "tie"), Label(ids[6], "rule", "decontam", "skip")])
    data = select_pairs(store, load_config(None, base="x", pool="all"))
    assert {i for i, _ in data.eval} == set(ids[:5])
    assert not {i for i, _ in data.train} & set(ids[:7])
    assert data.counts["no_preference"] == 1 and data.counts["discarded"] == 1


def test_head_method_caches_features_and_its_checkpoint_scores_like_the_features(tmp_path):
    from skyrm.rm.head import apply_head, extract_features, feature_spec

    store = make_store(tmp_path / "s.db")
    base = tiny_encoder(tmp_path / "base")
    first = train(store, base, tmp_path / "run1", method="head", steps=30)
    assert first["features_computed"] > 0 and first["features_cached"] == 0
    second = train(store, base, tmp_path / "run2", method="head", steps=30)
    assert second["features_computed"] == 0 and second["features_cached"] == first["features_computed"]
    assert second["best_accuracy"] == first["best_accuracy"]  # same features, same seed, same head

    model = load_reward_model(first["out"], device="cpu")
    items = [([{"role": "user", "content": "tell me about the lazy dog?"}],
              [{"role": "assistant", "content": text}]) for text in ("Here is a short answer.", "no ! ?")]
    encoded = [model.renderer.encode(h, r)[0] for h, r in items]
    spec = feature_spec(model.model)
    feats = extract_features(model.model, spec, encoded, model.tokenizer.pad_token_id, device="cpu")
    with torch.no_grad():
        via_head = apply_head(model.model, spec, feats).tolist()
    assert model.rewards(items) == pytest.approx(via_head, abs=1e-5)


def test_qlora_loads_4bit_and_trains(tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    from skyrm.rm.backbone import ModelSource, load_tokenizer
    from skyrm.rm.build import build_model

    store = make_store(tmp_path / "s.db")
    base = tiny_decoder(tmp_path / "base")
    source = ModelSource(str(base))
    model, _ = build_model(load_config(None, base=str(base), method="qlora", device="cpu"), source,
                           load_tokenizer(source), "cpu")
    four_bit = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert four_bit and all("score" not in name for name in four_bit)  # the backbone is 4-bit, the head is not
    assert any(getattr(p, "quant_type", None) == "nf4" for p in model.parameters())
    del model
    result = train(store, base, tmp_path / "run", method="qlora", steps=2)
    assert files(tmp_path / "run" / "best") >= {"adapter_model.safetensors", "adapter_config.json"}
    assert result["steps"] == 2
    adapter = load_file(str(tmp_path / "run" / "best" / "adapter_model.safetensors"))
    assert any(k.endswith("score.weight") for k in adapter)
    assert len(load_reward_model(result["out"], device="cpu").rewards([([], [{"role": "assistant",
                                                                             "content": "hi"}])])) == 1


def test_existing_run_directory_needs_resume(tmp_path):
    from skyrm.errors import ConfigError

    store = make_store(tmp_path / "s.db")
    base = tiny_decoder(tmp_path / "base")
    train(store, base, tmp_path / "run", method="head", steps=2)
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        train(store, base, tmp_path / "run", method="head", steps=2)


def test_grad_accum_and_checkpointing_count_optimizer_steps(tmp_path):
    store = make_store(tmp_path / "s.db", n=40)
    result = train(store, tiny_decoder(tmp_path / "base"), tmp_path / "run", method="full", steps=None,
                   epochs=1, grad_accum=2, gradient_checkpointing=True, holdout=0.0, eval_pool="none",
                   max_length=256)
    assert result["train_pairs"] == 40
    # 40 pairs in micro-batches of 4 = 10 micro-batches, 2 per optimizer step = 5 steps.
    assert result["steps"] == 5 and result["eval_pairs"] == 0 and result["best_accuracy"] is None
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()


def test_config_file_then_flags(tmp_path):
    from skyrm.errors import ConfigError

    path = tmp_path / "rm.toml"
    path.write_text('[train]\nbase = "minilm"\nmethod = "full"\nlr = 1e-5\nbatch_size = 4\n')
    cfg = load_config(path, batch_size=8, method=None)
    assert (cfg.base, cfg.method, cfg.lr, cfg.batch_size) == ("minilm", "full", 1e-5, 8)
    assert cfg.as_dict()["learning_rate"] == 1e-5
    path.write_text('base = "minilm"\nbatchsize = 4\n')
    with pytest.raises(ConfigError, match="unknown keys batchsize"):
        load_config(path)


def test_attention_choice():
    from skyrm.rm.backbone import choose_attention

    assert choose_attention("cpu") == "sdpa"


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_shared_prefix_rows_give_the_unpacked_rewards(tmp_path, pad_is_eos):
    from skyrm.rm.data import Renderer, encode_pairs, pack_pairs, pad_batch
    from skyrm.rm.loss import bt_loss
    from skyrm.rm.backbone import ModelSource, RewardReader, load_classifier, load_tokenizer
    from test_rm_tiny import synthetic_pairs

    source = ModelSource(str(tiny_decoder(tmp_path / "dec", pad_is_eos=pad_is_eos)))
    tokenizer = load_tokenizer(source)
    model, _ = load_classifier(source, tokenizer, device="cpu")
    model.eval()
    pairs = [(p.prompt, p.chosen, p.rejected) for p in synthetic_pairs(12)]
    encoded, _ = encode_pairs(Renderer.for_tokenizer(tokenizer, 128), pairs)
    reader = RewardReader(model)
    assert reader.per_position
    ids, mask = pad_batch([c for c, _ in encoded] + [r for _, r in encoded], tokenizer.pad_token_id,
                          side=tokenizer.padding_side or "right")
    separate = reader(ids, mask)
    bt_loss(separate[:len(encoded)], separate[len(encoded):]).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    chosen, rejected = reader.packed(pack_pairs(encoded, tokenizer.pad_token_id))
    bt_loss(chosen, rejected).backward()
    assert torch.allclose(torch.cat([chosen, rejected]), separate, atol=1e-5)
    for name, param in model.named_parameters():  # and the same gradients: training is unchanged
        assert torch.allclose(param.grad, grads[name], atol=1e-5), name


def test_shared_prefix_is_used_for_decoders_only_and_can_be_turned_off(tmp_path):
    store = make_store(tmp_path / "s.db")
    # lr 0: the weights stay put, so both layouts must evaluate to the same loss and accuracy
    on = train(store, tiny_decoder(tmp_path / "dec"), tmp_path / "on", method="full", lr=0.0)
    assert on["shared_prefix"].startswith("on (checked")
    off = train(store, tiny_decoder(tmp_path / "dec"), tmp_path / "off", method="full", lr=0.0, shared_prefix="off")
    assert off["shared_prefix"] == "off (asked)"
    assert on["history"][-1]["eval_accuracy"] == off["history"][-1]["eval_accuracy"]
    assert abs(on["history"][-1]["eval_loss"] - off["history"][-1]["eval_loss"]) < 1e-5
    assert on["train_pairs"] == off["train_pairs"]
    encoder = train(store, tiny_encoder(tmp_path / "enc"), tmp_path / "enc-run", method="full")
    assert encoder["shared_prefix"].startswith("off (encoder")
