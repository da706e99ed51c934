"""Vote aggregation: from answer probabilities or sampled answers to one verdict per pair.

All probabilities are "the stored chosen response is better" (``p_chosen``).

- logprob mode: in each candidate order, ``p = P(a) / (P(a) + P(b))`` for the two
  answer tokens (the rest of the vocabulary is ignored, its share is reported as
  ``1 - mass``); the pair's confidence is the mean over the two orders, which
  cancels a constant position bias. The pair is *contested* when the two orders
  point to different sides.
- sample mode: K sampled answers alternating between the orders; confidence is the
  share of valid votes for chosen (self-consistency, METHOD.md); contested when the
  majorities of the two orders differ.
- across models: the mean of the models' confidences; contested when any model is
  contested or two models point to different sides.

A contested pair gets the verdict 'tie' under the default policy, which keeps it
out of the silver pool (the pools view counts only chosen/rejected LLM verdicts);
``policy="average"`` keeps the averaged side instead. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

CONTESTED_POLICIES = ("tie", "average")


def two_way(logprobs: Mapping[str, float], first: str, second: str) -> tuple[float, float]:
    """(P(first) renormalised over the two answers, probability mass on the two answers)."""
    a, b = logprobs[first], logprobs[second]
    top = max(a, b)
    if top == -math.inf:
        return 0.5, 0.0
    ea, eb = math.exp(a - top), math.exp(b - top)
    return ea / (ea + eb), math.exp(top) * (ea + eb)


def side(p: float) -> int:
    """+1 chosen, -1 rejected, 0 undecided."""
    return (p > 0.5) - (p < 0.5)


def verdict_from(p: float, contested: bool, policy: str) -> str:
    if policy not in CONTESTED_POLICIES:
        raise ValueError(f"contested policy must be one of {CONTESTED_POLICIES}, got {policy!r}")
    if (contested and policy == "tie") or side(p) == 0:
        return "tie"
    return "chosen" if p > 0.5 else "rejected"


@dataclass(frozen=True)
class ModelVerdict:
    """One model's aggregated opinion of one pair."""

    confidence: float  # P(stored chosen is better)
    verdict: str  # chosen | rejected | tie
    contested: bool
    order: str  # "both", or the single order used
    p_orders: dict[str, float] = field(default_factory=dict)  # order -> p_chosen seen in that order
    mass: dict[str, float] = field(default_factory=dict)  # order -> probability on the two answers
    votes: list[dict[str, Any]] = field(default_factory=list)  # sample mode: each vote

    def as_detail(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k in ("contested", "confidence")}


def logprob_verdict(chosen_first: Mapping[str, float], rejected_first: Mapping[str, float],
                    choices: tuple[str, str] = ("1", "2"), policy: str = "tie") -> ModelVerdict:
    """Both-order logprob vote. ``chosen_first`` holds the answer logprobs when the stored
    chosen response was Candidate 1; ``rejected_first`` when it was Candidate 2."""
    first, second = choices
    p_a, mass_a = two_way(chosen_first, first, second)  # P(Candidate 1) = P(chosen)
    p_b1, mass_b = two_way(rejected_first, first, second)
    p_b = 1.0 - p_b1  # chosen was Candidate 2
    confidence = (p_a + p_b) / 2
    contested = side(p_a) * side(p_b) < 0
    return ModelVerdict(confidence, verdict_from(confidence, contested, policy), contested, "both",
                        {"chosen-first": p_a, "rejected-first": p_b},
                        {"chosen-first": mass_a, "rejected-first": mass_b})


def sample_verdict(votes: Sequence[dict[str, Any]], choices: tuple[str, str] = ("1", "2"),
                   policy: str = "tie") -> ModelVerdict | None:
    """Majority of sampled answers. Each vote: {"order": ..., "answer": "1"|"2"|None, ...}.

    Returns None when no vote was valid: an unreadable judge gives no label, not a guess.
    """
    first, _ = choices
    tallies: dict[str, list[int]] = {}  # order -> [for chosen, for rejected]
    recorded = []
    for vote in votes:
        answer, order = vote.get("answer"), vote["order"]
        prefers = None
        if answer is not None:
            chosen_is_first = order == "chosen-first"
            prefers = "chosen" if (answer == first) == chosen_is_first else "rejected"
            tally = tallies.setdefault(order, [0, 0])
            tally[0 if prefers == "chosen" else 1] += 1
        recorded.append({**vote, "prefers": prefers})
    valid = sum(a + b for a, b in tallies.values())
    if valid == 0:
        return None
    confidence = sum(a for a, _ in tallies.values()) / valid
    p_orders = {order: a / (a + b) for order, (a, b) in tallies.items()}
    sides = {side(p) for p in p_orders.values()}
    contested = len(p_orders) == 2 and 1 in sides and -1 in sides
    order = "both" if len(p_orders) == 2 else next(iter(p_orders))
    return ModelVerdict(confidence, verdict_from(confidence, contested, policy), contested, order, p_orders,
                        {}, recorded)


def merge_models(verdicts: Sequence[ModelVerdict], policy: str = "tie") -> ModelVerdict:
    """Cross-model merge: mean confidence; contested if any model is or two disagree."""
    if not verdicts:
        raise ValueError("merge_models needs at least one verdict")
    confidence = sum(v.confidence for v in verdicts) / len(verdicts)
    sides = {side(v.confidence) for v in verdicts}
    contested = any(v.contested for v in verdicts) or (1 in sides and -1 in sides)
    orders = {v.order for v in verdicts}
    return ModelVerdict(confidence, verdict_from(confidence, contested, policy), contested,
                        orders.pop() if len(orders) == 1 else "both")
