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
