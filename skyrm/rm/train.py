"""Train a pointwise Bradley-Terry reward model: the explicit loop, readable top to bottom.

``train_reward_model(store, config)`` selects pairs (``Store.iter_pairs``,
oriented so ``chosen`` is preferred), renders and tokenises them (data.py),
loads the backbone (model.py) for the method:

- ``full``: every weight trains;
- ``lora`` / ``qlora``: peft adapters on the backbone's linear layers, the
  reward head (and a BERT pooler) trained in full and saved through
  ``modules_to_save`` (the head that other tools lose or freeze);
  ``qlora`` loads the backbone in 4-bit nf4 with bitsandbytes, head skipped;
- ``head``: see head.py (cached frozen features, seconds per run).

Each micro-batch puts chosen and rejected sequences through one forward,
batches are grouped by length with dynamic padding, dropout is off, bf16
autocast is used where it helps. Decoders run each pair as one shared-prefix
row (data.py: the history once, both responses after it), after a check on
real pairs that this gives the unpacked rewards; encoders, and any model that
fails the check, run chosen and rejected as two padded rows. Evaluation
accuracy on the eval pool every ``eval_every`` steps decides the ``best``
checkpoint; ``last`` (with optimizer state) is saved every ``save_every``
steps so ``resume`` continues a killed run exactly. Under ``accelerate launch`` (or torchrun) the same function runs
data-parallel: each process takes every world-th batch; rank 0 writes.

Deliberately not here: scoring pools (score.py), exporting (export.py).
"""

from __future__ import annotations

import math
import os
import platform
import random
import resource
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skyrm.errors import ConfigError, ModelError
from skyrm.records import Pair, content_hash
from skyrm.rm.checkpoint import META, read_meta, save_checkpoint, write_json
from skyrm.rm.config import TrainConfig
from skyrm.rm.data import Renderer, encode_pairs, length_grouped_batches, pack_pairs, packed_length, pad_batch
from skyrm.rm.loss import bt_loss
from skyrm.rm.model import (ModelSource, RewardReader, default_device, head_modules, load_classifier,
                            load_tokenizer, resolve_model, unwrap)
from skyrm.store import Store

Progress = Callable[[int, "int | None", str], None]
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"


# ---------------------------------------------------------------- data
@dataclass
class TrainData:
    train: list[tuple[str, Pair]]
    eval: list[tuple[str, Pair]]
    eval_source: str
    counts: dict[str, int] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return content_hash({"train": sorted(f"{i}:{p.id}" for i, p in self.train),
                             "eval": sorted(f"{i}:{p.id}" for i, p in self.eval)}, 24)


def _prompt_in_holdout(pair: Pair, share: float, seed: int) -> bool:
    key = content_hash({"seed": seed, "prompt": pair.prompt}, 16)
    return int(key, 16) / 16 ** 16 < share


def select_pairs(store: Store, config: TrainConfig) -> TrainData:
    """Training and evaluation pairs, oriented, with every pair left out counted by reason."""
    counts = {"discarded": 0, "no_preference": 0, "in_eval": 0, "over_max_pairs": 0}
    discarded = set(store.pair_ids("discarded")) if config.pool != "discarded" else set()
    train: list[tuple[str, Pair]] = []
    for stored_id, pair, verdict in store.iter_pairs(config.pool, oriented=True):
        if stored_id in discarded:
            counts["discarded"] += 1
        elif verdict in ("tie", "skip"):
            counts["no_preference"] += 1
        else:
            train.append((stored_id, pair))
    if not train:
        raise ConfigError(f"pool '{config.pool}' has no trainable pairs: pass --pool all (the stored "
                          "orientation is the label), a source name, or label pairs first")
    evals: list[tuple[str, Pair]] = []
    eval_source = config.eval_pool
    if config.eval_pool not in ("holdout", "none", ""):
        evals = [(i, p) for i, p, v in store.iter_pairs(config.eval_pool, oriented=True)
                 if v not in ("tie", "skip") and i not in discarded]
    if not evals and config.eval_pool != "none" and config.holdout > 0:
        eval_source = f"holdout {config.holdout:.0%} of training prompts (eval pool '{config.eval_pool}' empty)" \
            if config.eval_pool != "holdout" else f"holdout {config.holdout:.0%} of training prompts"
        evals = [(i, p) for i, p in train if _prompt_in_holdout(p, config.holdout, config.seed)]
    eval_ids = {i for i, _ in evals}
    eval_prompts = {content_hash(p.prompt) for _, p in evals} if eval_source.startswith("holdout") else set()
    kept = []
    for stored_id, pair in train:
        if stored_id in eval_ids or (eval_prompts and content_hash(pair.prompt) in eval_prompts):
            counts["in_eval"] += 1
        else:
            kept.append((stored_id, pair))
    train = kept
    if config.max_pairs is not None and len(train) > config.max_pairs:
        rng = random.Random(config.seed)
        rng.shuffle(train)
        counts["over_max_pairs"] = len(train) - config.max_pairs
        train = sorted(train[:config.max_pairs])
    if config.max_eval_pairs is not None and len(evals) > config.max_eval_pairs:
        rng = random.Random(config.seed + 1)
        rng.shuffle(evals)
        evals = sorted(evals[:config.max_eval_pairs])
    if not train:
        raise ConfigError(f"no training pairs left: every pair of '{config.pool}' is also in the eval pool "
                          f"'{config.eval_pool}'; pass --eval-pool holdout or another pool")
    return TrainData(train, evals, eval_source if evals else "none", counts)


def encode_data(renderer: Renderer, pairs: list[tuple[str, Pair]]
                ) -> tuple[list[tuple[list[int], list[int]]], list[str], dict[str, int]]:
    encoded, counts = encode_pairs(renderer, [(p.prompt, p.chosen, p.rejected) for _, p in pairs])
    kept = [(e, i) for e, (i, _) in zip(encoded, pairs) if e is not None]
    return [e for e, _ in kept], [i for _, i in kept], counts


# ------------------------------------------------------------- runtime
@dataclass
class Runtime:
    """Process-group facts: one process, or one of several under accelerate/torchrun."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def runtime(config: TrainConfig) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = config.device or default_device()
    if world <= 1:
        return Runtime(0, 1, device)
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    if not dist.is_initialized():
        raise ModelError("WORLD_SIZE > 1 but no process group: launch with 'accelerate launch' or torchrun")
    return Runtime(state.process_index, state.num_processes,
                   str(state.device) if device != "cpu" else "cpu")


def autocast_dtype(config: TrainConfig, device: str) -> Any:
    """bf16 autocast where the device supports it (CUDA with bf16; CPUs where oneDNN runs bf16)."""
    import torch

    if config.precision == "fp32" or config.method == "qlora":
        return None  # qlora computes in bf16 inside the 4-bit layers already
    if config.precision == "bf16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() else None


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: where CPU bf16 autocast is faster than fp32.

    Measured here on an AVX2-only CPU: a MiniLM LoRA step under bf16 autocast
    took 260-356 s against 22-42 s in fp32 (emulated bf16 matmuls), so "auto"
    never picks bf16 on such a CPU; ``--precision bf16`` still forces it.
    """
    import torch

    checks = [getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)]
    return any(check() for check in checks if check is not None)


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from skyrm import __version__ as skyrm_version  # type: ignore[attr-defined]

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "skyrm": skyrm_version}


def peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# --------------------------------------------------------------- model
def lora_targets(model: Any, config: TrainConfig, skip: list[str]) -> list[str]:
    """Full names of the backbone's linear layers to adapt (never the head or pooler)."""
    import torch

    wanted = None if config.lora_targets == "all-linear" else {t.strip() for t in config.lora_targets.split(",")}
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) and type(module).__name__ not in ("Linear4bit", "Linear8bitLt"):
            continue
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if wanted is None or name.split(".")[-1] in wanted:
            names.append(name)
    if not names:
        raise ConfigError(f"--lora-targets '{config.lora_targets}' matches no linear layer")
    return names


def build_model(config: TrainConfig, source: ModelSource, tokenizer: Any, device: str) -> tuple[Any, dict[str, Any]]:
    """The model to train, and facts about it for meta.json."""
    import torch

    quant = None
    if config.method == "qlora":
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ModelError("--method qlora needs bitsandbytes: pip install bitsandbytes") from exc
        # The reward head must stay in float: quantising a new 1-output head breaks it (BERT's
        # classifier in particular); decoders skip their `score` head themselves.
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=torch.bfloat16,
                                   llm_int8_skip_modules=["classifier", "score", "pooler"])
    model, missing = load_classifier(source, tokenizer, device=device, quantization_config=quant,
                                     seed=config.seed)
    heads = head_modules(model)
    new_modules = sorted({k.rsplit(".", 1)[0] for k in missing})
    info = {"head_modules": heads, "new_weights": missing,
            "params": sum(p.numel() for p in model.parameters())}
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        if config.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=config.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        save = sorted({n.split(".")[-1] for n in heads} | {n.split(".")[-1] for n in new_modules})
        targets = lora_targets(model, config, skip=heads + new_modules)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=targets, modules_to_save=save, bias="none")
        model = get_peft_model(model, lora)
        info["modules_to_save"] = save
        info["lora_targets"] = len(targets)
    if config.gradient_checkpointing and config.method != "qlora":
        unwrap(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    info["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, info


def trainable_state(model: Any) -> dict[str, Any]:
    """Tensors of the trainable parameters (what a resume must restore)."""
    inner = getattr(model, "module", model)
    return {n: p.detach().cpu().contiguous() for n, p in inner.named_parameters() if p.requires_grad}


def save_optimizer(optimizer: Any, model: Any, path: Path) -> None:
    """AdamW state as safetensors, keyed by parameter name (no pickle)."""
    from safetensors.torch import save_file

    inner = getattr(model, "module", model)
    names = {id(p): n for n, p in inner.named_parameters()}
    tensors = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                tensors[f"{names[id(param)]}::{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
    save_file(tensors, str(path))


def load_optimizer(optimizer: Any, model: Any, path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    inner = getattr(model, "module", model)
    params = dict(inner.named_parameters())
    for key, value in load_file(str(path)).items():
        name, slot = key.rsplit("::", 1)
        param = params[name]
        optimizer.state.setdefault(param, {})[slot] = value.to(param.device) if value.dim() else \
            torch.tensor(float(value), dtype=torch.float32)


def load_trainable(model: Any, directory: Path, method: str) -> None:
    """Restore trainable weights from a ``last`` checkpoint."""
    from safetensors.torch import load_file

    inner = getattr(model, "module", model)
    if method in ("lora", "qlora"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(inner, load_file(str(directory / "adapter_model.safetensors")))
    else:
        state = load_file(str(directory / "model.safetensors"))
        missing = unwrap(inner).load_state_dict(state, strict=False)
        if missing.unexpected_keys:
            raise ModelError(f"{directory}: checkpoint does not fit the model ({missing.unexpected_keys[:3]})")


# ---------------------------------------------------------------- loop
def _lr_lambda(config: TrainConfig, total: int) -> Callable[[int], float]:
    warmup = int(round(config.warmup_ratio * total))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def pair_lengths(encoded: list[tuple[list[int], list[int]]], packed: bool) -> list[int]:
    """What each pair costs in a batch: its packed row, or the longer of its two rows."""
    return [packed_length(c, r) if packed else max(len(c), len(r)) for c, r in encoded]


def pair_rewards(reader: RewardReader, pairs: list[tuple[list[int], list[int]]], pad_id: int, side: str,
                 device: str, packed: bool) -> tuple[Any, Any, int]:
    """(chosen rewards, rejected rewards, real tokens) of a batch of pairs, in one forward."""
    if packed:
        batch = pack_pairs(pairs, pad_id)
        chosen, rejected = reader.packed(batch.to(device))
        return chosen, rejected, batch.tokens
    ids, mask = pad_batch([c for c, _ in pairs] + [r for _, r in pairs], pad_id, side=side)
    rewards = reader(ids.to(device), mask.to(device))
    return rewards[:len(pairs)], rewards[len(pairs):], int(mask.sum())


def use_shared_prefix(config: TrainConfig, reader: RewardReader, pairs: list[tuple[list[int], list[int]]],
                      pad_id: int, side: str, device: str, amp: Any) -> tuple[bool, str]:
    """Whether to pack pairs: decoders only, and only if packed rewards match unpacked ones here.

    The check runs a few real pairs both ways (the model's attention must honour a
    4D mask and position ids; flash-attention 2 does not take such masks).
    """
    import torch

    if config.shared_prefix == "off":
        return False, "off (asked)"
    if not reader.per_position:
        return False, "off (encoder: the head pools the whole sequence)"
    attention = getattr(getattr(unwrap(reader.model), "config", None), "_attn_implementation", None)
    if attention == "flash_attention_2":
        return False, "off (flash_attention_2 takes no 4D mask)"
    sample = pairs[:4]
    if not sample:
        return False, "off (no pairs)"
    was_training = reader.model.training
    reader.model.eval()
    try:
        with torch.inference_mode(), _autocast(device, amp):
            a_c, a_r, _ = pair_rewards(reader, sample, pad_id, side, device, packed=False)
            b_c, b_r, _ = pair_rewards(reader, sample, pad_id, side, device, packed=True)
        ref = torch.cat([a_c, a_r]).float()
        diff = float((torch.cat([b_c, b_r]).float() - ref).abs().max())
    except Exception as exc:  # noqa: BLE001 -- a model that rejects the layout trains unpacked
        return False, f"off (check failed: {type(exc).__name__})"
    finally:
        if was_training:
            reader.model.train()
    tolerance = (2e-2 if amp is not None else 1e-3) * (1.0 + float(ref.abs().max()))
    if diff > tolerance:
        return False, f"off (packed rewards differ by {diff:.2e})"
    return True, f"on (checked: max difference {diff:.1e})"


def evaluate(reader: RewardReader, encoded: list[tuple[list[int], list[int]]], pad_id: int, side: str,
             batch_size: int, device: str, amp: Any, rt: Runtime, packed: bool = False) -> dict[str, float]:
    """Accuracy and mean loss on the eval pairs (sharded across processes, then summed)."""
    import torch

    lengths = pair_lengths(encoded, packed)
    batches = length_grouped_batches(lengths, batch_size)[rt.rank::rt.world]
    correct = total = 0
    loss_sum = 0.0
    was_training = reader.model.training
    reader.model.eval()
    with torch.inference_mode(), _autocast(device, amp):
        for batch in batches:
            chosen, rejected, _ = pair_rewards(reader, [encoded[i] for i in batch], pad_id, side, device, packed)
            chosen, rejected = chosen.float(), rejected.float()
            correct += int((chosen > rejected).sum())
            total += len(batch)
            loss_sum += float(bt_loss(chosen, rejected)) * len(batch)
    if was_training:
        reader.model.train()
    if rt.world > 1:
        import torch.distributed as dist

        sums = torch.tensor([correct, total, loss_sum], dtype=torch.float64)
        dist.all_reduce(sums)
        correct, total, loss_sum = int(sums[0]), int(sums[1]), float(sums[2])
    return {"accuracy": correct / total if total else 0.0, "loss": loss_sum / total if total else 0.0,
            "pairs": total}


def _autocast(device: str, dtype: Any) -> Any:
    import contextlib

    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def default_out(config: TrainConfig, data_fp: str) -> str:
    base = Path(config.base).name or config.base
    return str(Path("runs") / f"rm-{config.method}-{base}-{data_fp[:8]}")


def train_reward_model(store: Store, config: TrainConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train, evaluate, checkpoint; returns the run summary (also in ``runs`` and ``meta.json``)."""
    rt = runtime(config)
    data = select_pairs(store, config)
    data_fp = data.fingerprint()
    out = Path(config.out or default_out(config, data_fp))
    resume_state = _check_out_dir(out, config, data_fp)
    source = resolve_model(config.base)
    tokenizer = load_tokenizer(source)
    renderer = Renderer.for_tokenizer(tokenizer, config.max_length, config.rendering)
    train_enc, _, train_counts = encode_data(renderer, data.train)
    eval_enc, _, eval_counts = encode_data(renderer, data.eval)
    if not train_enc:
        raise ConfigError(f"every training pair was skipped ({train_counts}): raise --max-length")
    report = {"selected": dict(data.counts, train=len(data.train), eval=len(data.eval)),
              "train_skipped": train_counts, "eval_skipped": eval_counts,
              "train_pairs": len(train_enc), "eval_pairs": len(eval_enc), "eval_source": data.eval_source}
    base_meta = {"base": source.as_dict(), "rendering": renderer.describe(), "init_seed": config.seed,
                 "config": config.as_dict(), "data_fingerprint": data_fp}
    if config.method == "head":
        if rt.world > 1:
            raise ConfigError("--method head trains in seconds in one process: run it without accelerate")
        from skyrm.rm.head import train_head

        return train_head(store, config, source=source, tokenizer=tokenizer, renderer=renderer,
                          train_enc=train_enc, eval_enc=eval_enc, data=data, report=report, out=out,
                          base_meta=base_meta, device=rt.device, progress=progress)
    return _train_loop(store, config, rt, source, tokenizer, renderer, train_enc, eval_enc, report, out,
                       base_meta, data_fp, resume_state, progress)


def _check_out_dir(out: Path, config: TrainConfig, data_fp: str) -> dict[str, Any] | None:
    state_path = out / "last" / STATE_FILE
    if config.resume:
        if not state_path.exists():
            return None  # nothing to resume: start fresh (a kill before the first checkpoint)
        import json

        state = json.loads(state_path.read_text())
        if state.get("data_fingerprint") != data_fp:
            raise ConfigError(f"{out}: the data changed since the interrupted run; start a new --out")
        return state
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already holds a run: pass --resume to continue it or choose another --out")
    return None


def _train_loop(store: Store, config: TrainConfig, rt: Runtime, source: ModelSource, tokenizer: Any,
                renderer: Renderer, train_enc: list, eval_enc: list, report: dict[str, Any], out: Path,
                base_meta: dict[str, Any], data_fp: str, resume_state: dict[str, Any] | None,
                progress: Progress | None) -> dict[str, Any]:
    import torch

    device = rt.device
    torch.manual_seed(config.seed)
    model, model_info = build_model(config, source, tokenizer, device)
    if resume_state:
        load_trainable(model, out / "last", config.method)
    model.train()
    if rt.world > 1:
        # No buffer broadcast: the buffers (rotary tables, position ids) are constants, and evaluation
        # runs unequal shard sizes through the inner module, which must not trigger collectives.
        model = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    reader = RewardReader(model)
    eval_reader = RewardReader(model.module) if rt.world > 1 else reader
    side = "right" if model_info["head_modules"][-1].split(".")[-1] != "score" else \
        (getattr(tokenizer, "padding_side", "right") or "right")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    amp = autocast_dtype(config, device)

    packed, report["shared_prefix"] = use_shared_prefix(config, eval_reader, train_enc, tokenizer.pad_token_id,
                                                        side, device, amp)
    lengths = pair_lengths(train_enc, packed)
    config, report["memory"] = fit_memory(config, model, max(lengths), packed, amp, rt, resume_state)
    if progress and rt.main and report["memory"]["note"]:
        progress(0, None, report["memory"]["note"])
    per_epoch_micro = (math.ceil(len(train_enc) / config.batch_size) // rt.world) * rt.world or rt.world
    # an epoch ends with a short accumulation group rather than dropping it (the loop steps at the end of its
    # micro-batches), so a micro-batch split by the memory guard gives the same optimizer steps
    steps_per_epoch = max(1, math.ceil(per_epoch_micro / (rt.world * config.grad_accum)))
    total_steps = config.steps or max(1, int(round(config.epochs * steps_per_epoch)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, total_steps))

    step, epoch, micro = 0, 0, 0
    history: list[dict[str, Any]] = []
    best = {"accuracy": -1.0, "step": 0}
    run_id = None
    if resume_state:
        load_optimizer(optimizer, model, out / "last" / OPTIMIZER_FILE)
        step, epoch, micro = resume_state["step"], resume_state["epoch"], resume_state["micro"]
        history, best = resume_state["history"], resume_state["best"]
        run_id = resume_state.get("run_id")
        with warnings.catch_warnings():  # replaying the schedule before any optimizer step is intended
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                scheduler.step()
    meta_base = dict(base_meta, model=model_info, versions=versions())
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        run_config = dict(config.as_dict(), out=str(out), data_fingerprint=data_fp)
        if run_id is None or store.get_run(run_id) is None:
            run_id = store.start_run("train", run_config, name=out.name, path=str(out))
        else:
            store.update_run(run_id, status="running")
    started = time.perf_counter()
    tokens = pairs_done = 0
    resumed_from = step if resume_state else None
    eval_every = config.eval_every or total_steps
    save_every = config.checkpoint_every or total_steps

    overhead = [0.0]  # seconds spent evaluating and saving: not training throughput

    def save_last() -> None:
        if not rt.main:
            return
        began = time.perf_counter()
        state = {"step": step, "epoch": epoch, "micro": micro, "history": history, "best": best,
                 "run_id": run_id, "data_fingerprint": data_fp, "total_steps": total_steps,
                 "batch_size": config.batch_size, "grad_accum": config.grad_accum}

        meta = dict(meta_base, step=step, trainer_state=state)
        save_checkpoint(model, tokenizer, out / "last", method=config.method, meta=meta,
                        extra=lambda tmp: (save_optimizer(optimizer, model, tmp / OPTIMIZER_FILE),
                                           write_json(tmp / STATE_FILE, state)))
        overhead[0] += time.perf_counter() - began

    def run_eval() -> None:
        nonlocal best
        if not eval_enc:
            return
        began = time.perf_counter()
        metrics = evaluate(eval_reader, eval_enc, tokenizer.pad_token_id, side, config.batch_size * 2, device, amp, rt,
                           packed)
        history.append({"step": step, "eval_accuracy": metrics["accuracy"], "eval_loss": metrics["loss"],
                        "train_loss": running_loss()})
        if metrics["accuracy"] > best["accuracy"]:
            best = {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "step": step}
            if rt.main:
                save_checkpoint(model, tokenizer, out / "best", method=config.method,
                                meta=dict(meta_base, step=step, eval=metrics))
        overhead[0] += time.perf_counter() - began

    losses: list[float] = []

    def running_loss() -> float | None:
        return sum(losses[-50:]) / len(losses[-50:]) if losses else None

    seen: set[int] = set()  # pair indices this process trained on (ranks must see different pairs)
    optimizer.zero_grad(set_to_none=True)
    while step < total_steps:
        batches = length_grouped_batches(lengths, config.batch_size, seed=config.seed + epoch)
        usable = (len(batches) // rt.world) * rt.world or len(batches)
        mine = batches[:usable][rt.rank::rt.world]
        while micro < len(mine) and step < total_steps:
            batch = mine[micro]
            boundary = (micro + 1) % config.grad_accum == 0 or micro + 1 == len(mine)
            sync = _no_sync(model) if (rt.world > 1 and not boundary) else _null()
            with sync:
                with _autocast(device, amp):
                    chosen, rejected, batch_tokens = pair_rewards(reader, [train_enc[i] for i in batch],
                                                                  tokenizer.pad_token_id, side, device, packed)
                loss = bt_loss(chosen, rejected, margin=config.margin or None, center_coef=config.center_coef)
                (loss / config.grad_accum).backward()
            losses.append(float(loss.detach()))
            seen.update(batch)
            tokens += batch_tokens
            pairs_done += len(batch)
            micro += 1
            if not boundary:
                continue
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if progress and rt.main:
                progress(step, total_steps, f"loss {running_loss():.4f}")
            if step % eval_every == 0 or step == total_steps:
                run_eval()
            if step % save_every == 0 or step == total_steps:
                save_last()
        if micro >= len(mine):
            epoch += 1
            micro = 0
    seconds = time.perf_counter() - started
    train_seconds = max(1e-9, seconds - overhead[0])
    if not eval_enc and rt.main:  # no eval data: the final weights are the best we know
        save_checkpoint(model, tokenizer, out / "best", method=config.method, meta=dict(meta_base, step=step))
        best = {"accuracy": None, "step": step}
    world_pairs = pairs_done * rt.world
    ranks = rank_data(seen, rt)
    metrics = {
        **report, "steps": step, "total_steps": total_steps, "epochs_run": round(step / steps_per_epoch, 3),
        "seconds": round(seconds, 2), "train_seconds": round(train_seconds, 2),
        "pairs_per_s": round(world_pairs / train_seconds, 3),
        "tokens_per_s": round(tokens * rt.world / train_seconds, 1),
        "best_step": best["step"], "best_accuracy": best["accuracy"],
        "final_accuracy": history[-1]["eval_accuracy"] if history else None,
        "final_train_loss": running_loss(), "history": history, "resumed_from": resumed_from,
        "world_size": rt.world, "precision": str(amp).replace("torch.", "") if amp else "fp32",
        "peak_rss_mb": round(peak_rss_mb(), 1), "device": device, "method": config.method, "ranks": ranks,
    }
    if rt.main:
        run_meta = dict(meta_base, checkpoint="best", run_id=run_id, metrics=metrics, out=str(out),
                        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_json(out / META, run_meta)
        store.finish_run(run_id, metrics=metrics, path=str(out))
    reader.close()
    eval_reader.close()
    if rt.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return {"run_id": run_id, "out": str(out), **metrics}


def rank_data(seen: set[int], rt: Runtime) -> list[dict[str, Any]]:
    """Per process: how many distinct pairs it trained on and a digest of which (gathered from every rank)."""
    import hashlib

    mine = {"rank": rt.rank, "pairs": len(seen),
            "digest": hashlib.sha256(",".join(map(str, sorted(seen))).encode()).hexdigest()[:16]}
    if rt.world <= 1:
        return [mine]
    import torch.distributed as dist

    gathered: list[Any] = [None] * rt.world
    dist.all_gather_object(gathered, mine)
    return gathered


def fit_memory(config: TrainConfig, model: Any, seq_len: int, packed: bool, amp: Any, rt: Runtime,
               resume_state: dict[str, Any] | None) -> tuple[TrainConfig, dict[str, Any]]:
    """The config with a micro-batch that fits memory (same effective batch), and the plan's report.

    A resumed run keeps the micro-batch it started with, so its batches replay exactly.
    """
    from skyrm.rm.memory import (ModelShape, activation_bytes_for, available_bytes, parse_memory,
                                 plan_micro_batch, weight_bytes_for)

    if resume_state and "batch_size" in resume_state:
        kept = replace(config, batch_size=resume_state["batch_size"], grad_accum=resume_state["grad_accum"])
        return kept, {"batch_size": kept.batch_size, "grad_accum": kept.grad_accum, "note": ""}
    limit = parse_memory(config.max_memory) if config.max_memory else available_bytes(rt.device)
    if rt.device == "cpu" and not config.max_memory:
        limit //= rt.world  # the processes of a CPU run share one machine's memory
    plan = plan_micro_batch(ModelShape.of(model), batch_size=config.batch_size, grad_accum=config.grad_accum,
                            seq_len=seq_len, limit_bytes=limit, activation_bytes=activation_bytes_for(amp),
                            weight_bytes=weight_bytes_for(config.method),
                            checkpointing=config.gradient_checkpointing, rows_per_pair=1 if packed else 2)
    fitted = replace(config, batch_size=plan.batch_size, grad_accum=plan.grad_accum)
    return fitted, plan.as_dict()


def _no_sync(model: Any) -> Any:
    return model.no_sync()


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def remove_run_dir(out: Path) -> None:
    """Delete a run directory (tests and benchmarks use it to start clean)."""
    shutil.rmtree(out, ignore_errors=True)


__all__ = ["TrainData", "select_pairs", "train_reward_model", "read_meta"]
