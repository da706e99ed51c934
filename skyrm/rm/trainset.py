"""Which pairs a training run learns from and is judged on, and their token ids.

Pairs come from ``Store.iter_pairs`` oriented by their labels (``chosen`` is the
preferred side); the eval pool is a pool or source, or a seeded share of
training *prompts* held out (never a random share of pairs: a prompt's pairs
stay on one side). Deliberately not here: the loop, models, tokenisation rules
(data.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from skyrm.errors import ConfigError
from skyrm.records import Pair, content_hash
from skyrm.rm.config import TrainConfig
from skyrm.rm.data import Renderer, encode_pairs
from skyrm.store import Store


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
