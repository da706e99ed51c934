"""Settings of a curation run (METHOD.md Stage 1 and Stage 2), validated once, saved with every step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from skyrm.errors import ConfigError
from skyrm.judges import DEFAULT_JUDGE

RECYCLE = ("drop", "flip")
RM_METHODS = ("head", "lora", "full", "qlora")


@dataclass(frozen=True)
class CurateConfig:
    """Everything ``skyrm curate`` decides with. Defaults run on a CPU in minutes."""

    base: str = "minilm"           # RM backbone (a short name, directory or hub name)
    rm_method: str = "head"        # head trains in seconds on cached features; lora/full for real runs
    max_length: int = 256
    rm_batch_size: int = 16
    iterations: int = 2            # Stage 1 iterations (the paper ran 8)
    judges: tuple[str, ...] = (DEFAULT_JUDGE,)
    judge_mode: str = "logprob"    # logprob: both orders' next-token probabilities; sample: self-consistency votes
    votes: int = 5                 # sample mode: verdicts per model and pair
    shots: int = 8                 # similar gold examples in each judge prompt
    k_max: int = 8
    budget_judge_calls: int | None = None  # model calls over the whole run; None: no cap
    min_judge_gold_acc: float = 0.6  # a judge below this accuracy on gold does not vote
    judge_check_pairs: int = 40    # gold pairs each judge is measured on (never its own examples)
    low_confidence: float = 0.1    # |P(stored chosen better) - 0.5| below this sends a judged pair to a human
    # Stage 2: the pool RM is cross-fitted over K folds (1: it scores the pool it trained on). 1 is the
    # default because it measured as good or better with the head RM (bench_curation, 30% flips, F1 / (b)
    # test acc, folds 1 vs 3: RMB 0.550/64.5 vs 0.536/64.0, HH 0.458/52.0 vs 0.459/48.5, demo 0.513/61.7 vs
    # 0.516/60.7): a linear head on frozen features cannot memorise the flips, and 3 folds train on 2/3
    # of the pool. lora/full can memorise; try --folds 3 there (not measured yet).
    folds: int = 1
    recycle: str = "drop"          # Stage 2: discarded pairs are dropped, or kept flipped (recorded on the label)
    embed_model: str = "minilm"
    workdir: str = "curate"        # reward-model checkpoints and id files
    seed: int = 0
    device: str | None = None
    score_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.rm_method not in RM_METHODS:
            raise ConfigError(f"--rm-method must be one of {', '.join(RM_METHODS)}, got '{self.rm_method}'")
        if self.recycle not in RECYCLE:
            raise ConfigError(f"--recycle must be drop or flip, got '{self.recycle}'")
        if self.judge_mode not in ("logprob", "sample"):
            raise ConfigError(f"--judge-mode must be logprob or sample, got '{self.judge_mode}'")
        for name in ("iterations", "k_max", "folds", "votes", "max_length", "rm_batch_size", "score_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.budget_judge_calls is not None and self.budget_judge_calls < 0:
            raise ConfigError("--budget-judge-calls must be 0 or more")
        if not 0.0 <= self.min_judge_gold_acc <= 1.0:
            raise ConfigError("--min-judge-gold-acc must be between 0 and 1")
        if not 0.0 <= self.low_confidence <= 0.5:
            raise ConfigError("--low-confidence must be between 0 and 0.5")
        if not self.judges:
            raise ConfigError("give at least one --judge")

    @property
    def calls_per_pair(self) -> int:
        """Model calls one judge makes per pair: both candidate orders, or the sampled votes."""
        return 2 if self.judge_mode == "logprob" else self.votes

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
