"""Benchmark scoring rules as pure functions of rewards.

Every function here takes plain numbers (rewards, labels, subset accuracies)
and returns plain numbers; nothing reads files, models or the store. The rules
follow each benchmark's official scoring (``../shared/data/README.md``
"Official scoring rules" and the benchmarks' own code), and one convention
holds throughout: a comparison is won only with a strictly greater reward, so
a tie counts as wrong.

Deliberately not here: loading benchmarks (``tasks/``), grouping items
into subsets, and anything random except the seeded best-of-N subsampling,
whose generator is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from skyrm.formats.benchmarks import RM_BENCH_STYLES  # the three responses per side, in the rows' order


# ------------------------------------------------------------------ pairwise


def beats(a: float, b: float) -> bool:
    """True when ``a`` wins: strictly greater (a tie is a loss for the chosen side)."""
    return a > b


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """Share of pairs where r(chosen) > r(rejected)."""
    if len(chosen) != len(rejected):
        raise ValueError("chosen and rejected rewards differ in length")
    if not chosen:
        return float("nan")
    return sum(beats(c, r) for c, r in zip(chosen, rejected)) / len(chosen)


def best_beats_all(best: float, losers: Sequence[float]) -> bool:
    """Best-of-N (RMB): the list counts only if the best response beats every loser."""
    return all(beats(best, loser) for loser in losers)


def reciprocal_rank(chosen: float, others: Sequence[float]) -> float:
    """1 / rank of the chosen response, where an other response tied with it ranks above it."""
    return 1.0 / (1 + sum(other >= chosen for other in others))


def chosen_vs_rest(scores: Sequence[float], chosen_index: int) -> tuple[bool, float]:
    """(chosen beats every other response, reciprocal rank of the chosen one).

    The RewardMATH rule: accuracy = 1[r(chosen) > max r(rejected)], MRR = mean 1/rank.
    """
    chosen = scores[chosen_index]
    others = [s for i, s in enumerate(scores) if i != chosen_index]
    return best_beats_all(chosen, others), reciprocal_rank(chosen, others)


def top_share(scores: Sequence[float], correct: Sequence[bool]) -> float:
    """The expected correctness of picking a top-scored response at random among ties.

    With exactly one correct response this is RewardBench 2's rule: 1/(number
    tied at the top) if the correct one is at the top, else 0.
    """
    if len(scores) != len(correct) or not scores:
        raise ValueError("scores and correctness labels must be non-empty and the same length")
    top = max(scores)
    tied = [i for i, s in enumerate(scores) if s == top]
    return sum(bool(correct[i]) for i in tied) / len(tied)


def correct_incorrect_wins(scores: Sequence[float], correct: Sequence[bool]) -> tuple[int, int]:
    """(wins, pairs) over every (correct, incorrect) pair of one prompt's responses."""
    good = [s for s, c in zip(scores, correct) if c]
    bad = [s for s, c in zip(scores, correct) if not c]
    return sum(beats(g, b) for g in good for b in bad), len(good) * len(bad)


# ------------------------------------------------------------------ RM-Bench

def rm_bench_matrix(chosen: Sequence[Sequence[float]], rejected: Sequence[Sequence[float]]) -> list[list[float]]:
    """M[i][j] = mean over prompts of 1[r(chosen style i) > r(rejected style j)]."""
    if len(chosen) != len(rejected) or not chosen:
        raise ValueError("need the same, non-zero number of prompts for chosen and rejected")
    n = len(RM_BENCH_STYLES)
    matrix = [[0.0] * n for _ in range(n)]
    for c_row, r_row in zip(chosen, rejected):
        if len(c_row) != n or len(r_row) != n:
            raise ValueError("every RM-Bench prompt has exactly 3 chosen and 3 rejected rewards")
        for i in range(n):
            for j in range(n):
                matrix[i][j] += beats(c_row[i], r_row[j])
    return [[cell / len(chosen) for cell in row] for row in matrix]


def rm_bench_levels(matrix: Sequence[Sequence[float]]) -> dict[str, float]:
    """Hard (i < j: rejected more styled), Normal (diagonal), Easy (i > j) and the mean of all nine."""
    n = len(matrix)
    hard = [matrix[i][j] for i in range(n) for j in range(n) if i < j]
    normal = [matrix[i][i] for i in range(n)]
    easy = [matrix[i][j] for i in range(n) for j in range(n) if i > j]
    cells = [matrix[i][j] for i in range(n) for j in range(n)]
    return {"easy": sum(easy) / len(easy), "normal": sum(normal) / len(normal),
            "hard": sum(hard) / len(hard), "average": sum(cells) / len(cells)}


# ----------------------------------------------------------- RewardBench v1

# Sections and their subsets, as in the official reward-bench code.
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}

# Subset weights inside a section, as in the official code. They are the
# subsets' sizes except two deliberate departures kept for parity with the
# leaderboard: math-prm (447 rows) counts as 984 so that math weighs as much as
# the six code subsets together (6 x 164), and the official table gives
# xstest-should-refuse 250 and xstest-should-respond 154 (the released subsets
# hold 154 and 250 rows).
REWARDBENCH_WEIGHTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
    "mt-bench-med": 40, "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46,
    "refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 250,
    "xstest-should-respond": 154, "donotanswer": 136, "math-prm": 984, "hep-cpp": 164, "hep-go": 164,
    "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}

# The prior preference test sets that enter the leaderboard score ("Prior Sets
# (0.5 weight)"): the plain mean of these four subsets' accuracies, where present.
PRIOR_SETS: tuple[str, ...] = ("anthropic_helpful", "anthropic_hhh", "shp", "summarize")
# The other subsets of allenai/pref-test-sets: reported, not part of the score.
PRIOR_SETS_REPORTED: tuple[str, ...] = ("anthropic_harmless", "mtbench_gpt4", "mtbench_human")
SECTION_WEIGHT, PRIOR_WEIGHT = 2.0, 1.0


def rewardbench_sections(subset_accuracy: Mapping[str, float],
                         weights: Mapping[str, float] = REWARDBENCH_WEIGHTS) -> dict[str, float]:
    """Each section's accuracy: the weighted mean of its subsets present in ``subset_accuracy``.

    Sections with none of their subsets present are left out (the official
    helper reports 0 for them, which would silently drag the mean down).
    """
    sections: dict[str, float] = {}
    for section, subsets in REWARDBENCH_SECTIONS.items():
        present = [s for s in subsets if s in subset_accuracy]
        total = sum(weights[s] for s in present)
        if total > 0:
            sections[section] = sum(subset_accuracy[s] * weights[s] for s in present) / total
    return sections


def prior_sets_score(subset_accuracy: Mapping[str, float]) -> float | None:
    """Mean accuracy over the prior sets present (None when none is)."""
    present = [subset_accuracy[s] for s in PRIOR_SETS if s in subset_accuracy]
    return sum(present) / len(present) if present else None


def rewardbench_score(sections: Mapping[str, float], prior: float | None = None) -> float:
    """The leaderboard score: sections weighted 2 each and the prior sets 1, over those present.

    Without prior sets this is the plain mean of the sections.
    """
    if not sections and prior is None:
        return float("nan")
    total = SECTION_WEIGHT * sum(sections.values()) + (PRIOR_WEIGHT * prior if prior is not None else 0.0)
    weight = SECTION_WEIGHT * len(sections) + (PRIOR_WEIGHT if prior is not None else 0.0)
    return total / weight


# ------------------------------------------------------------ RewardBench 2

RB2_SUBSETS: tuple[str, ...] = ("Factuality", "Precise IF", "Math", "Safety", "Focus", "Ties")


@dataclass(frozen=True)
class TieStats:
    """One Ties prompt under one model: is every correct answer above every incorrect one, and margins.

    ``correct_gap`` is best correct minus worst correct (None with fewer than two
    correct answers); ``margin`` is worst correct minus best incorrect.
    """

    accurate: bool
    correct_gap: float | None
    margin: float


def tie_stats(scores: Sequence[float], n_correct: int) -> TieStats:
    """Statistics of one Ties prompt; the first ``n_correct`` scores belong to correct answers."""
    correct, incorrect = list(scores[:n_correct]), list(scores[n_correct:])
    if not correct or not incorrect:
        return TieStats(False, None, 0.0)
    gap = max(correct) - min(correct) if len(correct) > 1 else None
    margin = min(correct) - max(incorrect)
    return TieStats(min(correct) > max(incorrect), gap, margin)


# Weights of the Ties score's parts, as in the official code.
TIES_PARTS: dict[str, float] = {"tied_accuracy": 0.3, "ref_accuracy": 0.3, "correctness_preferred": 0.2,
                                "correctness_preferred_hard": 0.2, "margin_score": 0.01}


def ties_parts(ref: TieStats | None, tied: TieStats | None) -> dict[str, float]:
    """The per-prompt values that the Ties score averages, each present only where it applies.

    ``ref_accuracy`` over prompts with a reference (single-answer) variant,
    ``tied_accuracy`` over prompts with a tied (many-answer) variant; the
    preference parts over prompts with both whose tied variant has two or more
    correct answers, and ``margin_score`` only where those answers' gap is > 0.
    """
    parts: dict[str, float] = {}
    if ref is not None:
        parts["ref_accuracy"] = float(ref.accurate)
    if tied is not None:
        parts["tied_accuracy"] = float(tied.accurate)
    if ref is not None and tied is not None and tied.correct_gap is not None:
        gap = tied.correct_gap
        parts["correctness_preferred"] = float(tied.margin > gap)
        parts["correctness_preferred_hard"] = float(min(ref.margin, tied.margin) > gap)
        if gap > 0:
            parts["margin_score"] = math.tanh(min(ref.margin, tied.margin) / gap - 1)
    return parts


def ties_score(part_means: Mapping[str, float]) -> float:
    """0.3 tied accuracy + 0.3 reference accuracy + 0.2 preferred + 0.2 preferred-hard + 0.01 margin.

    A part with no applicable prompt counts as 0, as in the official code.
    """
    return sum(weight * part_means.get(part, 0.0) for part, weight in TIES_PARTS.items())


def rewardbench2_score(subset_scores: Mapping[str, float]) -> float:
    """The RewardBench 2 score: the plain mean of the subsets present."""
    return sum(subset_scores.values()) / len(subset_scores) if subset_scores else float("nan")


# --------------------------------------------------------------------- PPE

def best_of_n_curve(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], ns: Sequence[int],
                    *, draws: int, rng: np.random.Generator) -> dict[int, dict[str, float]]:
    """Best-of-N by seeded subsampling: for each N, ``draws`` random N-subsets per prompt.

    Returns for each N the mean correctness of the reward model's pick
    (``top_share`` inside the subset), of a random pick (the subset's mean
    correctness) and of an oracle (any correct response in the subset). N
    larger than a prompt's response count uses all its responses once.
    """
    curve: dict[int, dict[str, float]] = {}
    rows = [(np.asarray(s, dtype=float), np.asarray(c, dtype=bool)) for s, c in zip(scores, correct)]
    if not rows:
        return curve
    for n in ns:
        totals = np.zeros(3)
        for row_s, row_c in rows:
            size = len(row_s)
            subsets = ([np.arange(size)] if n >= size
                       else [rng.choice(size, size=n, replace=False) for _ in range(draws)])
            per_prompt = np.zeros(3)
            for idx in subsets:
                sub_s, sub_c = row_s[idx], row_c[idx]
                per_prompt += (sub_c[sub_s == sub_s.max()].mean(), sub_c.mean(), float(sub_c.any()))
            totals += per_prompt / len(subsets)  # every prompt weighs the same, whatever its draws
        means = totals / len(rows)
        curve[int(n)] = {"reward_model": float(means[0]), "random": float(means[1]), "oracle": float(means[2])}
    return curve
