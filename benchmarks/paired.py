"""Paired bootstrap: how far apart two methods' accuracies on the same items can honestly be said to be."""

from __future__ import annotations

import random


def paired_bootstrap(a: list[int], b: list[int], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b) over the same items (1 = correct), in points.

    Resampling items, not each method's results separately, keeps the pairing: on a small set
    the two methods share most of their easy and hard items, which a two-sample interval ignores.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_bootstrap needs two equally long non-empty lists, got {len(a)} and {len(b)}")
    rng = random.Random(seed)
    n = len(a)
    deltas = sorted(sum(a[j] - b[j] for j in (rng.randrange(n) for _ in range(n))) / n for _ in range(draws))
    return round(100 * deltas[int(0.025 * draws)], 1), round(100 * deltas[int(0.975 * draws) - 1], 1)
