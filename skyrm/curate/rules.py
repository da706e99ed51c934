"""The decisions curation makes, as pure functions with hand-checked tests.

- ``stage2_decision``: METHOD.md Stage 2 step 2, keep a pair's original label only
  when the gold RM agrees with it **and** either the judges or the best RM do;
  otherwise discard it, or, with ``recycle="flip"``, keep it flipped (step 3).
- ``human_reason``: why a judged pair needs a human (Stage 1 step 3), or None.
- ``judge_votes``: whether a judge's measured accuracy lets it vote.
- ``judge_accuracy``: a judge's verdicts on gold pairs against the human labels, over the pairs
  it decided (contested pairs and ties are abstentions, counted apart).
Deliberately not here: reading or writing the store.
"""

from __future__ import annotations

from collections.abc import Mapping

from skyrm.records import Label


def stage2_decision(gold_agrees: bool | None, judges_agree: bool | None, best_agrees: bool | None,
                    recycle: str = "drop") -> tuple[str, str]:
    """The verdict of the pair's rule label (relative to its stored orientation) and why.

    Each argument says whether that signal agrees with the original label: True, False,
    or None when it has no opinion (the judges did not label the pair, or tied). Returns
    ``("chosen", ...)`` to keep the label, ``("skip", ...)`` to discard the pair, or
    ``("rejected", ...)`` to keep it flipped when ``recycle == "flip"``.
    """
    second = judges_agree is True or best_agrees is True
    if gold_agrees is True and second:
        return "chosen", "gold RM and " + ("judges" if judges_agree is True else "best RM") + " agree"
    if gold_agrees is not True:
        reason = "gold RM disagrees" if gold_agrees is False else "gold RM has no score"
    else:
        reason = "gold RM agrees but neither the judges nor the best RM do"
    return ("rejected", reason + "; recycled by flipping") if recycle == "flip" else ("skip", reason)


def human_reason(label: Label, low_confidence: float, objective_hint: bool = False) -> str | None:
    """Why a judge's label should go to a human: the two orders or the judges disagree, the
    confidence is near 0.5, or the pair is objective and has pre-verification hints."""
    if label.detail.get("contested"):
        return "judges split" if label.producer.startswith("merge:") else "orders disagree"
    if label.confidence is not None and abs(label.confidence - 0.5) < low_confidence:
        return "low confidence"
    if label.verdict == "tie":
        return "tie"
    if objective_hint:
        return "objective, pre-verified"
    return None


def judge_accuracy(verdicts: Mapping[str, str], truth: Mapping[str, str]) -> tuple[float | None, int, int]:
    """A judge's accuracy on gold pairs over the pairs it decided, how many it decided, how many it abstained on.

    A verdict other than chosen/rejected (a contested pair, whose two orders disagree, or a
    tie) is an abstention, not a wrong answer: such a label never votes in curation (Stage 2
    reads it as "no opinion"), so counting it as wrong would measure a position-biased judge
    at 0.0 instead of at its real accuracy on the pairs where it does speak. How often it
    abstains is returned separately. ``(None, 0, abstained)`` when it decided nothing.
    """
    judged = [pid for pid in truth if pid in verdicts]
    decided = [pid for pid in judged if verdicts[pid] in ("chosen", "rejected")]
    abstained = len(judged) - len(decided)
    if not decided:
        return None, 0, abstained
    right = sum(1 for pid in decided if verdicts[pid] == truth[pid])
    return right / len(decided), len(decided), abstained


MIN_DECIDED = 5  # gold pairs a judge must decide before its accuracy counts (1 of 1 right is not 100%)


def judge_votes(accuracy: float | None, decided: int, checked: int, threshold: float) -> bool:
    """Whether a judge votes: it decided at least ``MIN_DECIDED`` of the checked gold pairs (all of
    them when fewer were checked) and its accuracy on those reaches ``threshold``."""
    return accuracy is not None and decided >= min(MIN_DECIDED, checked) and accuracy >= threshold
