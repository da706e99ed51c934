"""The reward-model training configuration: one frozen dataclass, readable from TOML.

Precedence: dataclass defaults < ``--config FILE.toml`` (a flat table, or a
``[train]`` table) < flags given on the command line. The resolved config is
saved with the run (``runs.config`` and ``meta.json``).
Deliberately not here: validation of the data or model (train.py does that).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyrm.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

METHODS = ("full", "lora", "qlora", "head")
# Learning rates that worked for small backbones on CPU; the paper's 3e-6..4e-6 is for 0.6B-8B full runs.
DEFAULT_LR = {"full": 2e-5, "lora": 2e-4, "qlora": 2e-4, "head": 2e-3}


@dataclass(frozen=True)
class TrainConfig:
    base: str
    method: str = "lora"
    pool: str = "silver"
    eval_pool: str = "gold"      # a pool or source; "holdout" = a seeded share of training prompts
    holdout: float = 0.1         # share of prompts held out when the eval pool is empty or "holdout"
    out: str | None = None
    max_length: int = 512
    epochs: float = 1.0
    steps: int | None = None     # optimizer steps; overrides epochs
    lr: float | None = None      # default by method (DEFAULT_LR)
    batch_size: int = 16         # pairs per micro-batch (2× sequences: chosen and rejected in one forward)
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    schedule: str = "linear"     # linear (warm-up then decay to 0) or constant (after warm-up)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    margin: float = 0.0
    center_coef: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: str = "all-linear"  # or comma-separated module names
    eval_every: int = 50         # optimizer steps between evaluations (0: only at the end)
    save_every: int | None = None  # steps between resumable checkpoints (default: eval_every)
    precision: str = "auto"      # auto (bf16 autocast on CUDA/CPUs that support it), bf16, fp32
    gradient_checkpointing: bool = False
    shared_prefix: str = "auto"  # auto: decoders run each pair as one row, history once (checked); off
    rendering: str = "auto"      # auto (chat template if any), template, plain
    seed: int = 0
    device: str | None = None
    max_pairs: int | None = None       # cap on training pairs (a seeded sample), for quick runs
    max_eval_pairs: int | None = None
    head_batch_size: int = 256   # --method head: pairs per step on cached features
    head_epochs: int = 30        # --method head: passes over the cached features (unless --steps)
    resume: bool = False
    max_memory: str | None = None  # e.g. "16GB": the memory a step may use (default: what the machine has free)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.schedule not in ("linear", "constant"):
            raise ConfigError(f"--schedule must be linear or constant, got '{self.schedule}'")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"--precision must be auto, bf16 or fp32, got '{self.precision}'")
        if self.shared_prefix not in ("auto", "off"):
            raise ConfigError(f"--shared-prefix must be auto or off, got '{self.shared_prefix}'")
        if self.rendering not in ("auto", "template", "plain"):
            raise ConfigError(f"--rendering must be auto, template or plain, got '{self.rendering}'")
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "head_batch_size", "head_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")
        if self.epochs <= 0:
            raise ConfigError(f"--epochs must be positive, got {self.epochs}")
        if self.max_memory is not None:
            from skyrm.rm.memory import parse_memory

            parse_memory(self.max_memory)  # a bad size fails here, before anything loads

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def checkpoint_every(self) -> int:
        return self.save_every if self.save_every is not None else self.eval_every

    def as_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), learning_rate=self.learning_rate)


@dataclass(frozen=True)
class Flag:
    """How one ``TrainConfig`` field is given on the command line."""

    help: str
    decls: tuple[str, ...] = ()  # Typer's declarations when not the plain --field-name
    path: bool = False  # read as a path on the command line, stored as its text


# The fields `skyrm train` takes as flags, in the order its help lists them. The CLI builds
# its options from this table and the fields' types, so a new flag is a field and a line here;
# the fields left out (warm-up, schedule, decay, clipping, LoRA dropout and targets, rendering,
# head batch size) are set in the TOML file.
TRAIN_FLAGS: dict[str, Flag] = {
    "base": Flag("Backbone: a directory, .gguf file, hub name, or a short name: minilm, smollm2, gemma3-270m, "
                 "qwen2.5-0.5b."),
    "method": Flag("full, lora, qlora or head (frozen backbone, cached features, trains in seconds). Default lora."),
    "pool": Flag("Training pairs: silver, gold, curated, trainable, all, or a source name. Default silver."),
    "eval_pool": Flag("Evaluation pairs (best checkpoint by accuracy): a pool, a source, or 'holdout'. Default gold."),
    "holdout": Flag("Share of training prompts held out for evaluation when the eval pool is empty or 'holdout'."),
    "out": Flag("Run directory (default runs/rm-METHOD-BASE-DATA).", path=True),
    "max_length": Flag("Max tokens per (history, response)."),
    "epochs": Flag("Passes over the training pairs."),
    "steps": Flag("Optimizer steps (overrides --epochs)."),
    "lr": Flag("Peak learning rate (default by method)."),
    "batch_size": Flag("Pairs per micro-batch."),
    "grad_accum": Flag("Micro-batches per optimizer step."),
    "eval_every": Flag("Steps between evaluations."),
    "save_every": Flag("Steps between resumable checkpoints."),
    "precision": Flag("auto, bf16 or fp32."),
    "gradient_checkpointing": Flag("Trade compute for memory.",
                                   ("--gradient-checkpointing/--no-gradient-checkpointing",)),
    "shared_prefix": Flag("auto: decoders run each pair as one row with the history once (checked on real pairs "
                          "first); off: chosen and rejected as two rows."),
    "lora_r": Flag("LoRA rank."),
    "lora_alpha": Flag("LoRA alpha."),
    "margin": Flag("BT margin m in -log σ(r_w - r_l - m)."),
    "center_coef": Flag("Reward-centering coefficient."),
    "max_pairs": Flag("Train on a seeded sample of at most N pairs."),
    "max_eval_pairs": Flag("Evaluate on a seeded sample of at most N pairs."),
    "head_epochs": Flag("--method head: passes over the cached features."),
    "seed": Flag("Seed for data order, hold-out and new weights."),
    "device": Flag("cpu, cuda, cuda:1 … (default: cuda if present)."),
    "resume": Flag("Continue an interrupted run in --out.", ("--resume",)),
    "max_memory": Flag("Memory a training step may use, e.g. 16GB (default: what the machine has free). A batch "
                       "that would not fit runs as smaller micro-batches with gradient accumulation."),
}


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the TOML file, then the non-None overrides (the flags a user gave)."""
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"{file}: no such config file")
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML ({exc})") from exc
        data = data.get("train", data)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{file}: unknown keys {', '.join(unknown)}")
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "base" not in values:
        raise ConfigError("no base model: pass --base MODEL or set base in the config file")
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"invalid training config: {exc}") from exc
