"""Reward-model commands: train, score, export-model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, print_json, progress_bar
from skyrm.errors import ConfigError


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@app.command()
def train(
    db: DbOption,
    base: Annotated[Optional[str], typer.Option(help="Backbone: a directory, .gguf file, hub name, or a short "
                                                "name: minilm, smollm2, gemma3-270m, qwen2.5-0.5b.")] = None,
    method: Annotated[Optional[str], typer.Option(help="full, lora, qlora or head (frozen backbone, "
                                                  "cached features, trains in seconds). Default lora.")] = None,
    pool: Annotated[Optional[str], typer.Option(help="Training pairs: silver, gold, curated, trainable, all, "
                                                "or a source name. Default silver.")] = None,
    eval_pool: Annotated[Optional[str], typer.Option(help="Evaluation pairs (best checkpoint by accuracy): a "
                                                     "pool, a source, or 'holdout'. Default gold.")] = None,
    holdout: Annotated[Optional[float], typer.Option(help="Share of training prompts held out for evaluation "
                                                     "when the eval pool is empty or 'holdout'.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/rm-METHOD-BASE-DATA).")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Max tokens per (history, response).")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the training pairs.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (overrides --epochs).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default by method).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per micro-batch.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Micro-batches per optimizer step.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Steps between evaluations.")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Steps between resumable checkpoints.")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto, bf16 or fp32.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option(
        "--gradient-checkpointing/--no-gradient-checkpointing", help="Trade compute for memory.")] = None,
    shared_prefix: Annotated[Optional[str], typer.Option(
        help="auto: decoders run each pair as one row with the history once (checked on real pairs "
             "first); off: chosen and rejected as two rows.")] = None,
    lora_r: Annotated[Optional[int], typer.Option(help="LoRA rank.")] = None,
    lora_alpha: Annotated[Optional[int], typer.Option(help="LoRA alpha.")] = None,
    margin: Annotated[Optional[float], typer.Option(help="BT margin m in -log σ(r_w - r_l - m).")] = None,
    center_coef: Annotated[Optional[float], typer.Option(help="Reward-centering coefficient.")] = None,
    max_pairs: Annotated[Optional[int], typer.Option(help="Train on a seeded sample of at most N pairs.")] = None,
    max_eval_pairs: Annotated[Optional[int], typer.Option(help="Evaluate on a seeded sample of at most N pairs.")] = None,
    head_epochs: Annotated[Optional[int], typer.Option(help="--method head: passes over the cached features.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for data order, hold-out and new weights.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 … (default: cuda if present).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with any of these settings.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    max_memory: Annotated[Optional[str], typer.Option(
        help="Memory a training step may use, e.g. 16GB (default: what the machine has free). A batch "
             "that would not fit runs as smaller micro-batches with gradient accumulation.")] = None,
    json_: JsonOption = False,
) -> None:
    """Train a Bradley-Terry reward model on a pool; keep the checkpoint with the best eval accuracy.

    Runs data-parallel under `accelerate launch --num_processes N [--cpu] -m skyrm train ...`.

    Example: skyrm train --base minilm --method lora --pool silver --eval-pool gold --out runs/rm1
    """
    from skyrm.rm.config import load_config
    from skyrm.rm.train import train_reward_model

    settings = dict(base=base, method=method, pool=pool, eval_pool=eval_pool, holdout=holdout,
                    out=str(out) if out else None, max_length=max_length, epochs=epochs, steps=steps, lr=lr,
                    batch_size=batch_size, grad_accum=grad_accum, eval_every=eval_every, save_every=save_every,
                    precision=precision, gradient_checkpointing=gradient_checkpointing,
                    shared_prefix=shared_prefix, lora_r=lora_r,
                    lora_alpha=lora_alpha, margin=margin, center_coef=center_coef, max_pairs=max_pairs,
                    max_eval_pairs=max_eval_pairs, head_epochs=head_epochs,
                    seed=seed, device=device, resume=resume or None, max_memory=max_memory)
    cfg = load_config(config, **settings)
    store = open_store(db)
    main = _is_main_process()
    with progress_bar(f"train {cfg.method}", enabled=main and not json_) as progress:
        result = train_reward_model(store, cfg, progress=progress)
    if not main:
        return
    if json_:
        print_json(result)
        return
    table = Table("metric", "value")
    for key in ("out", "run_id", "method", "train_pairs", "eval_pairs", "eval_source", "steps", "best_step",
                "best_accuracy", "final_accuracy", "seconds", "pairs_per_s", "tokens_per_s", "precision", "shared_prefix",
                "world_size", "peak_rss_mb", "resumed_from"):
        if key in result and result[key] is not None:
            value = result[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    skipped = {k: v for k, v in result["train_skipped"].items() if v}
    table.add_row("train skipped/truncated", str(skipped or "none"))
    left_out = {k: v for k, v in result["selected"].items() if k not in ("train", "eval") and v}
    table.add_row("pairs left out", str(left_out or "none"))
    memory = result.get("memory") or {}
    if memory.get("estimate_gb") is not None:
        table.add_row("memory", f"estimated {memory['estimate_gb']} GB of {memory['limit_gb']} GB; micro-batch "
                                f"{memory['batch_size']} x {memory['grad_accum']} accumulation")
    console.print(table)
    if memory.get("note"):
        console.print(f"[yellow]memory:[/yellow] {memory['note']}", highlight=False)


@app.command()
def score(
    db: DbOption,
    model: Annotated[str, typer.Option("--model", help="Run directory, checkpoint, exported or any "
                                       "sequence-classifier directory, or a model name.")],
    pool: Annotated[str, typer.Option(help="Pairs to score: a pool, 'all', or a source name.")] = "all",
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 16,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda if present).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="fp32, bf16 or fp16 (default fp32 on CPU).")] = None,
    shared_prefix: Annotated[str, typer.Option(
        help="on: a decoder runs each pair's shared history once and continues both responses from its KV "
             "cache; checked against plain scoring on the first batch.", metavar="on|off")] = "off",
    max_length: Annotated[Optional[int], typer.Option(
        help="Tokens per sequence (default: the model's own setting); longer histories are cut at the "
             "start.")] = None,
    chunk: Annotated[int, typer.Option(help="Pairs per process read, scored and stored at a time.")] = 4096,
    json_: JsonOption = False,
) -> None:
    """Score pairs with a reward model into the store: r_chosen, r_rejected, p = σ(r_chosen − r_rejected).

    Rewards are cached per model fingerprint: scoring again recomputes nothing. Runs data-parallel
    under `accelerate launch --num_processes N [--multi_gpu|--cpu] -m skyrm score ...` (rank 0 alone
    writes the store).

    Example: skyrm score --model runs/rm1 --pool unverified
    """
    from skyrm.rm.score import check_batch_size, score_pool

    check_batch_size(batch_size)
    if chunk < 1:
        raise ConfigError("--chunk must be at least 1")
    store = open_store(db)
    main = _is_main_process()
    with progress_bar("score", enabled=main and not json_) as progress:
        result = score_pool(store, model, pool=pool, batch_size=batch_size, progress=progress, device=device,
                            dtype=dtype, shared_prefix=shared_prefix, chunk=chunk, max_length=max_length)
    if not main:
        return
    if json_:
        print_json(result)
        return
    table = Table("metric", "value")
    for key, value in result.items():
        if value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


@app.command("export-model")
def export_model_cmd(
    run_or_dir: Annotated[str, typer.Argument(help="A run directory, checkpoint directory, or run id.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the standalone checkpoint.")],
    db: DbOption,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    json_: JsonOption = False,
) -> None:
    """Write a standard AutoModelForSequenceClassification directory (LoRA merged, safetensors, tokenizer).

    Example: skyrm export-model runs/rm1 --out exported/rm1
    """
    from skyrm.rm.export import export_model

    store = open_store(db) if run_or_dir.isdigit() else None
    result = export_model(run_or_dir, out, store=store, overwrite=overwrite)
    if json_:
        print_json(result)
        return
    console.print(f"exported [bold]{result['from']}[/bold] ({result['method']}, {result['params']:,} parameters) "
                  f"to [bold]{result['out']}[/bold]: {', '.join(result['files'])}")
