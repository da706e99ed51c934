"""Reward-model commands: train, score, export-model."""

from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, print_json, run_reported
from skyrm.errors import ConfigError


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _train_options() -> list[inspect.Parameter]:
    """One option per ``TRAIN_FLAGS`` entry, typed by its ``TrainConfig`` field; each defaults to None,
    so a flag not given leaves the TOML file's value or the dataclass default (rm/config.py)."""
    from skyrm.rm.config import TRAIN_FLAGS, TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    options = []
    for name, flag in TRAIN_FLAGS.items():
        kind = Path if flag.path else next(t for t in typing.get_args(hints[name]) or (hints[name],)
                                           if t is not type(None))
        annotation = Annotated[Optional[kind], typer.Option(*flag.decls, help=flag.help)]
        options.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return options


def train(db: DbOption, config: Optional[Path] = None, json_: JsonOption = False, **flags: Any) -> None:
    """Train a Bradley-Terry reward model on a pool; keep the checkpoint with the best eval accuracy.

    Runs data-parallel under `accelerate launch --num_processes N [--cpu] -m skyrm train ...`.

    Example: skyrm train --base minilm --method lora --pool silver --eval-pool gold --out runs/rm1
    """
    from skyrm.rm.config import TRAIN_FLAGS, load_config

    settings = {}
    for name, value in flags.items():
        flag = TRAIN_FLAGS[name]
        if value is False and flag.decls and "/" not in flag.decls[0]:
            value = None  # an on-only flag not given (--resume) leaves the config file's value
        settings[name] = str(value) if flag.path and value is not None else value
    cfg = load_config(config, **settings)  # a bad setting is reported before torch loads
    from skyrm.rm.train import train_reward_model

    store = open_store(db)
    result = run_reported(f"train {cfg.method}", lambda progress: train_reward_model(store, cfg, progress=progress),
                          json_=json_, main=_is_main_process())
    if result is None:
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


_options = _train_options()
_config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    Optional[Path], typer.Option("--config", help="TOML file with any of these settings.")])
_at = [p.name for p in _options].index("resume")  # --config is listed before --resume
train.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter("db", inspect.Parameter.KEYWORD_ONLY, annotation=DbOption),
    *_options[:_at], _config, *_options[_at:],
    inspect.Parameter("json_", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption),
])
app.command()(train)


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
    result = run_reported("score", lambda progress: score_pool(
        store, model, pool=pool, batch_size=batch_size, progress=progress, device=device, dtype=dtype,
        shared_prefix=shared_prefix, chunk=chunk, max_length=max_length), json_=json_, main=_is_main_process())
    if result is None:
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
