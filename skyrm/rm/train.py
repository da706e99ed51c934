"""Train a pointwise Bradley-Terry reward model: the explicit loop, readable top to bottom.

``train_reward_model(store, config)`` selects pairs (``Store.iter_pairs``,
oriented so ``chosen`` is preferred), renders and tokenises them (data.py),
loads the backbone (backbone.py) for the method:

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

The parts it stands on, each in its own module: which pairs (trainset.py), where
and in what precision (runtime.py), the model for the method (build.py), what a
step computes (steps.py), how much memory a step needs (memory.py).
Deliberately not here: scoring pools (score.py), exporting (export.py).
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skyrm.errors import ConfigError
from skyrm.rm.build import build_model, load_optimizer, load_trainable, save_optimizer
from skyrm.rm.checkpoint import META, save_checkpoint, write_json
from skyrm.rm.config import TrainConfig
from skyrm.rm.data import Renderer, length_grouped_batches
from skyrm.rm.loss import bt_loss
from skyrm.rm.backbone import ModelSource, RewardReader, load_tokenizer, resolve_model
from skyrm.rm.runtime import Runtime, autocast, autocast_dtype, no_sync, peak_rss_mb, runtime, versions
from skyrm.rm.steps import evaluate_pairs, lr_lambda, pair_lengths, pair_rewards, use_shared_prefix
from skyrm.rm.trainset import encode_data, select_pairs
from skyrm.runs import Progress, Run, tracked_run
from skyrm.store import Store

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"



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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, total_steps))

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
    # rank 0 owns the run row: done, interrupted (Ctrl-C) or failed, also when the loop raises
    lifecycle = tracked_run(store, "train", run_config, name=out.name, path=str(out), run_id=run_id) \
        if rt.main else nullcontext(Run(run_id or 0))
    with lifecycle as run:
        run_id = run.id
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
                     "batch_size": config.batch_size, "grad_accum": config.grad_accum,
                     "losses": losses[-50:]}  # the running loss continues after a resume

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
            metrics = evaluate_pairs(eval_reader, eval_enc, tokenizer.pad_token_id, side, config.batch_size * 2, device, amp, rt,
                               packed)
            history.append({"step": step, "eval_accuracy": metrics["accuracy"], "eval_loss": metrics["loss"],
                            "train_loss": running_loss()})
            if metrics["accuracy"] > best["accuracy"]:
                best = {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "step": step}
                if rt.main:
                    save_checkpoint(model, tokenizer, out / "best", method=config.method,
                                    meta=dict(meta_base, step=step, eval=metrics))
            overhead[0] += time.perf_counter() - began

        losses: list[float] = list(resume_state.get("losses", [])) if resume_state else []

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
                sync = no_sync(model) if (rt.world > 1 and not boundary) else nullcontext()
                with sync:
                    with autocast(device, amp):
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
            run.metrics, run.path = metrics, str(out)
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


__all__ = ["train_reward_model"]
