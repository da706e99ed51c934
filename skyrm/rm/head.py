"""``--method head``: freeze the backbone, cache its features once, train only the reward head.

The features are exactly what the model's own head reads: the input of a
BERT-style pooler at the first token, or the input of a decoder's ``score``
layer at the last real token. The trained head therefore drops back into the
model (``head.safetensors``) and the checkpoint scores, loads and exports like
any other. Features live in the store's ``features`` table keyed by the
backbone's fingerprint and ``records.response_key``: the first run pays one
forward pass per item, later runs (the curation loops) train in seconds.

Deliberately not here: fine-tuning the backbone (train.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyrm.errors import ModelError
from skyrm.records import Message, response_key
from skyrm.rm.data import Renderer, length_grouped_batches, pad_batch
from skyrm.rm.backbone import ModelSource, head_modules, head_name, last_real_index, load_classifier, unwrap
from skyrm.runs import tracked_run

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from skyrm.store import Store

Progress = Callable[[int, "int | None", str], None]


@dataclass(frozen=True)
class FeatureSpec:
    """Where features are read (the input of ``modules[0]``) and which token is taken."""

    modules: tuple[str, ...]
    token: str  # "last" (decoders: the head runs per token) or "first" (encoders pool position 0)

    def as_dict(self) -> dict[str, Any]:
        return {"modules": list(self.modules), "token": self.token}


def feature_spec(model: Any) -> FeatureSpec:
    inner = unwrap(model)
    return FeatureSpec(tuple(head_modules(inner)), "last" if head_name(inner) == "score" else "first")


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside the block (the previous count restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def apply_head(model: Any, spec: FeatureSpec, features: "torch.Tensor") -> "torch.Tensor":
    """Rewards from features through the head modules: the same maths as the full forward."""
    inner = unwrap(model)
    x = features.unsqueeze(1)  # [B, 1, H]: each head module expects a sequence axis
    for name in spec.modules:
        x = inner.get_submodule(name)(x)
    return x.reshape(x.shape[0], -1)[:, 0].float()


def extract_features(model: Any, spec: FeatureSpec, encoded: list[list[int]], pad_id: int, *, device: str,
                     batch_size: int = 32, amp: Any = None, progress: Progress | None = None) -> "torch.Tensor":
    """Features of token-id sequences (float32, input order), one forward pass each."""
    import torch

    from skyrm.rm.runtime import autocast

    inner = unwrap(model)
    first = inner.get_submodule(spec.modules[0])
    captured: dict[str, Any] = {}

    def grab(module: Any, args: Any) -> None:
        captured["x"] = args[0]

    handle = first.register_forward_pre_hook(grab)
    lengths = [len(ids) for ids in encoded]
    out: "torch.Tensor | None" = None
    done = 0
    try:
        with torch.inference_mode(), autocast(device, amp):
            for batch in length_grouped_batches(lengths, batch_size):
                ids, mask = pad_batch([encoded[i] for i in batch], pad_id, side="right")
                ids, mask = ids.to(device), mask.to(device)
                position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
                inner(input_ids=ids, attention_mask=mask, position_ids=position_ids)
                x = captured.pop("x").float()
                if x.dim() == 3:
                    index = last_real_index(mask) if spec.token == "last" else torch.zeros(
                        len(batch), dtype=torch.long, device=x.device)
                    x = x[torch.arange(len(batch), device=x.device), index]
                if out is None:
                    out = torch.empty((len(encoded), x.shape[-1]), dtype=torch.float32)
                out[torch.tensor(batch)] = x.cpu()
                done += len(batch)
                if progress:
                    progress(done, len(encoded), "features")
    finally:
        handle.remove()
    if out is None:
        raise ModelError("no items to extract features from")
    return out


def cached_features(store: "Store", model: Any, spec: FeatureSpec, renderer: Renderer,
                    items: list[tuple[list[Message], list[Message]]], encoded: list[list[int]], *,
                    key: str, device: str, amp: Any, batch_size: int, progress: Progress | None
                    ) -> tuple["torch.Tensor", int]:
    """Features for items through the store's cache; returns (features, how many were computed)."""
    import numpy as np
    import torch

    keys = [response_key(h, r) for h, r in items]
    found = store.get_features(key, set(keys))
    todo = [i for i, k in enumerate(keys) if k not in found]
    unique: dict[str, int] = {}
    for i in todo:
        unique.setdefault(keys[i], i)
    if unique:
        order = list(unique.values())
        fresh = extract_features(model, spec, [encoded[i] for i in order], renderer.tokenizer.pad_token_id,
                                 device=device, batch_size=batch_size, amp=amp, progress=progress)
        blobs = {keys[i]: fresh[j].numpy().astype(np.float32).tobytes() for j, i in enumerate(order)}
        rows = list(blobs.items())
        for start in range(0, len(rows), 2000):
            store.put_features(key, dict(rows[start:start + 2000]), int(fresh.shape[1]))
        found.update(blobs)
    matrix = np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])
    return torch.from_numpy(matrix.copy()), len(unique)


def train_head(store: "Store", config: Any, *, source: ModelSource, tokenizer: Any, renderer: Renderer,
               train_enc: list[tuple[list[int], list[int]]], eval_enc: list[tuple[list[int], list[int]]],
               data: Any, report: dict[str, Any], out: Path, base_meta: dict[str, Any], device: str,
               progress: Progress | None) -> dict[str, Any]:
    """Cache features, train the head on them, save best/last checkpoints; returns the run summary."""
    import torch

    from skyrm.rm.checkpoint import META, _weight_files, fingerprint, save_checkpoint, write_json
    from skyrm.rm.loss import bt_loss
    from skyrm.rm.runtime import autocast_dtype, peak_rss_mb, versions
    from skyrm.rm.trainset import encode_data

    run_config = dict(config.as_dict(), out=str(out), data_fingerprint=base_meta["data_fingerprint"])
    with tracked_run(store, "train", run_config, name=out.name, path=str(out)) as run:
        started = time.perf_counter()
        model, missing = load_classifier(source, tokenizer, device=device, seed=config.seed)
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        spec = feature_spec(model)
        # On a CPU, "auto" extracts fp32 features even where bf16 is native: the checkpoint scores in fp32
        # there, and reads these cached features instead of running its backbone only when they are
        # what its fp32 forward computes (score.head_rewards). The head's own steps are fp32 anyway.
        amp = autocast_dtype(config, device) if config.precision != "auto" or device.startswith("cuda") else None
        feature_key = "features:" + fingerprint(
            _weight_files(Path(source.path), source.gguf_file) if source.is_local else [],
            {"base": source.path if not source.is_local else None, "renderer": renderer.describe(),
             "spec": spec.as_dict(), "amp": str(amp), "init_seed": config.seed})

        # Items in pair order: (history, chosen), (history, rejected) for train, then eval.
        def items_of(pairs: list) -> tuple[list, list]:
            kept_enc, kept_ids, _ = encode_data(renderer, pairs)
            by_id = dict(pairs)
            items, encoded = [], []
            for (chosen_ids, rejected_ids), stored_id in zip(kept_enc, kept_ids):
                pair = by_id[stored_id]
                items += [(pair.prompt, pair.chosen), (pair.prompt, pair.rejected)]
                encoded += [chosen_ids, rejected_ids]
            return items, encoded

        train_items, train_tok = items_of(data.train)
        eval_items, eval_tok = items_of(data.eval)
        feats, computed = cached_features(store, model, spec, renderer, train_items + eval_items,
                                          train_tok + eval_tok, key=feature_key, device=device, amp=amp,
                                          batch_size=config.batch_size * 2, progress=progress)
        feature_seconds = time.perf_counter() - started
        n_train = len(train_items) // 2
        train_c, train_r = feats[0:2 * n_train:2], feats[1:2 * n_train:2]
        eval_c, eval_r = feats[2 * n_train::2], feats[2 * n_train + 1::2]

        head_params = [p for name in spec.modules for p in unwrap(model).get_submodule(name).parameters()]
        for param in head_params:
            param.requires_grad_(True)
        torch.manual_seed(config.seed)
        optimizer = torch.optim.AdamW(head_params, lr=config.learning_rate, weight_decay=config.weight_decay)
        per_epoch = max(1, math.ceil(n_train / config.head_batch_size))
        total_steps = config.steps or per_epoch * config.head_epochs
        rng = random.Random(config.seed)
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {"accuracy": -1.0, "step": 0}
        best_state = None
        head_started = time.perf_counter()
        cpu_model = model.to("cpu")  # the head is tiny: train it on CPU next to the features

        def evaluate() -> dict[str, float]:
            with torch.inference_mode():
                rc, rr = apply_head(cpu_model, spec, eval_c), apply_head(cpu_model, spec, eval_r)
            return {"accuracy": float((rc > rr).float().mean()), "loss": float(bt_loss(rc, rr))}

        step = 0
        # The head is one or two small matrices: a step is microseconds of work, and a second
        # thread only adds synchronisation (measured on 2 shared cores: 30 steps took 18 s with
        # 2 threads, a small op 10-45 ms instead of 0.1 ms).
        with one_thread():
            while step < total_steps:
                order = list(range(n_train))
                rng.shuffle(order)
                for start in range(0, n_train, config.head_batch_size):
                    index = torch.tensor(order[start:start + config.head_batch_size])
                    rc, rr = apply_head(cpu_model, spec, train_c[index]), apply_head(cpu_model, spec, train_r[index])
                    loss = bt_loss(rc, rr, margin=config.margin or None, center_coef=config.center_coef)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    if step % per_epoch == 0 or step == total_steps:
                        metrics = evaluate() if len(eval_c) else {"accuracy": None, "loss": None}
                        history.append({"step": step, "train_loss": float(loss.detach()),
                                        "eval_accuracy": metrics["accuracy"], "eval_loss": metrics["loss"]})
                        if metrics["accuracy"] is not None and metrics["accuracy"] > best["accuracy"]:
                            best = {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "step": step}
                            best_state = {n: p.detach().clone() for n, p in cpu_model.named_parameters()
                                          if p.requires_grad}
                        if progress:
                            progress(step, total_steps, f"loss {float(loss.detach()):.4f}")
                    if step >= total_steps:
                        break
        head_seconds = time.perf_counter() - head_started
        meta_base = dict(base_meta, model={"head_modules": list(spec.modules), "new_weights": missing,
                                           "feature_key": feature_key, "feature_amp": str(amp)},
                         versions=versions())
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(cpu_model, tokenizer, out / "last", method="head", meta=dict(meta_base, step=step))
        if best_state is not None:
            with torch.no_grad():
                for name, param in cpu_model.named_parameters():
                    if name in best_state:
                        param.copy_(best_state[name])
        else:
            best = {"accuracy": None, "step": step}
        save_checkpoint(cpu_model, tokenizer, out / "best", method="head",
                        meta=dict(meta_base, step=best["step"], eval={"accuracy": best["accuracy"]}))
        seconds = time.perf_counter() - started
        metrics = {
            **report, "steps": step, "total_steps": total_steps, "seconds": round(seconds, 2),
            "feature_seconds": round(feature_seconds, 2), "head_seconds": round(head_seconds, 3),
            "features_computed": computed, "features_cached": len(train_items + eval_items) - computed,
            "pairs_per_s": round(n_train * step / per_epoch / head_seconds, 1) if head_seconds else None,
            "best_step": best["step"], "best_accuracy": best["accuracy"],
            "final_accuracy": history[-1]["eval_accuracy"] if history else None, "history": history,
            "precision": str(amp).replace("torch.", "") if amp else "fp32", "peak_rss_mb": round(peak_rss_mb(), 1),
            "device": device, "method": "head", "world_size": 1, "resumed_from": None,
        }
        run.metrics, run.path = metrics, str(out)
        write_json(out / META, dict(meta_base, checkpoint="best", run_id=run.id, metrics=metrics, out=str(out)))
    return {"run_id": run.id, "out": str(out), **metrics}
