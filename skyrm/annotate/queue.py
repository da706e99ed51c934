"""Which pairs annotators see, in what order, and who holds which pair.

Source (``pool``): ``queue`` (default) is the ``human_queue`` table that other stages fill
(``Store.queue_for_human``: contested or low-confidence pairs), its pairs without a human label;
when nothing is waiting there, the ``unverified`` pool. Any other value is a pool name, ``all``,
a source, comma-separated pair ids or a file of ids (``skyrm.selection``).

Priority (METHOD.md Stage 1, as the paper did): objective before subjective, low before medium
before high controversiality (pairs without attributes last); within that, the pairs the current
RM is least sure of (``|p - 0.5|`` of the latest score) or the judges were contested on (a
contested LLM label counts as 0) come first; ties by pair id.

Claims (``Store.claim_next``): a pair shown to one annotator is claimed in an immediate
transaction, so another annotator on the same store never gets it while the claim stands; a
claim expires after ``claim_minutes`` (a terminal left open, a killed process). ``overlap`` is
the share of pairs deliberately shown to a second annotator after the first has labelled them
(selected by a seeded hash of the pair id, the same for every annotator), for Cohen's kappa;
they come first so agreement can be measured early.
Deliberately not here: SQL, the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skyrm.annotate import AnnotationError, check_annotator, producer_for
from skyrm.errors import InputError
from skyrm.records import content_hash
from skyrm.selection import parse_selection
from skyrm.store import Store

QUEUE = "queue"
_OBJECTIVITY = {"objective": 0, "subjective": 1}
_CONTROVERSIALITY = {"low": 0, "medium": 1, "high": 2}


def priority_key(pair_id: str, facts: dict[str, Any] | None) -> tuple:
    """Sort key: objectivity and controversiality tier, then the RM's or judges' uncertainty."""
    facts = facts or {}
    objective = _OBJECTIVITY.get((facts.get("objectivity") or "").lower(), 2)
    controversial = _CONTROVERSIALITY.get((facts.get("controversiality") or "").lower(), 2)
    margins = []
    if facts.get("rm_p") is not None:
        margins.append(abs(float(facts["rm_p"]) - 0.5))
    if facts.get("llm_contested"):
        margins.append(0.0)
    elif facts.get("llm_confidence") is not None:
        margins.append(abs(float(facts["llm_confidence"]) - 0.5))
    return (objective * 3 + controversial, min(margins) if margins else 0.5, pair_id)


def in_overlap(pair_id: str, share: float, seed: int = 0) -> bool:
    """Whether a pair belongs to the overlap share (the same answer for every annotator)."""
    if share <= 0:
        return False
    return int(content_hash([seed, "overlap", pair_id], length=8), 16) / 2 ** 32 < share


@dataclass
class QueueConfig:
    pool: str = QUEUE
    overlap: float = 0.0
    seed: int = 0
    claim_minutes: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap <= 1.0:
            raise InputError(f"--overlap must be a share between 0 and 1, not {self.overlap}")
        if self.claim_minutes <= 0:
            raise InputError("--claim-minutes must be positive")


@dataclass
class Candidates:
    ids: list[str]
    source: str  # what the pairs came from, for the screen
    reasons: dict[str, list[str]] = field(default_factory=dict)  # queued pairs: why
    rounds: dict[str, int] = field(default_factory=dict)


def select_candidates(store: Store, pool: str = QUEUE) -> Candidates:
    """The pairs a pool choice offers to annotators, in priority order."""
    reasons: dict[str, list[str]] = {}
    rounds: dict[str, int] = {}
    if pool == QUEUE:
        waiting = store.human_queue(waiting=True)
        if waiting:
            ids = [row["pair_id"] for row in waiting]
            reasons = {row["pair_id"]: row["reasons"] for row in waiting}
            rounds = {row["pair_id"]: row["round"] for row in waiting}
            source = "human queue"
        else:
            ids, source = store.pair_ids("unverified"), "unverified pool (the human queue is empty)"
    else:
        choice = parse_selection(pool)
        if choice.kind == "ids":
            wanted = list(dict.fromkeys(choice.ids))
            found = store.get_pairs(wanted)
            unknown = [i for i in wanted if i not in found]
            if unknown:
                raise InputError(f"{len(unknown)} pair id(s) not in the store, e.g. {unknown[0]}: check --pool")
            ids, source = wanted, str(choice)
        else:
            ids, source = store.pair_ids(pool), str(choice)
    facts = store.annotation_facts(ids)
    ids.sort(key=lambda i: priority_key(i, facts.get(i)))
    return Candidates(ids, source, reasons, rounds)


class Queue:
    """One annotator's view of the candidates: claims the next pair, releases it, takes one back."""

    def __init__(self, store: Store, annotator: str, config: QueueConfig | None = None, *,
                 candidates: Candidates | None = None):
        check_annotator(annotator)
        self.store, self.annotator = store, annotator
        self.producer = producer_for(annotator)
        self.config = config or QueueConfig()
        self.candidates = candidates if candidates is not None else select_candidates(store, self.config.pool)
        self.held: str | None = None
        self._held_since = 0.0

    @property
    def ttl_seconds(self) -> float:
        return self.config.claim_minutes * 60.0

    def overlap_ids(self) -> list[str]:
        if self.config.overlap <= 0:
            return []
        return [i for i in self.store.annotated_once_by_others(self.producer)
                if in_overlap(i, self.config.overlap, self.config.seed)]

    def next(self) -> str | None:
        """Release the pair held, claim the next free one (None when none is left)."""
        self.release()
        overlap = self.overlap_ids()
        if overlap:
            first = set(overlap)
            order = overlap + [i for i in self.candidates.ids if i not in first]
        else:
            order = self.candidates.ids
        self.held = self.store.claim_next(self.producer, order, overlap=frozenset(overlap),
                                          ttl_seconds=self.ttl_seconds)
        self._held_since = time.monotonic()
        return self.held

    def take(self, pair_id: str) -> None:
        """Hold a pair again whatever its state (an undo brings its pair back)."""
        self.release()
        self.store.claim(pair_id, self.producer, ttl_seconds=self.ttl_seconds)
        self.held = pair_id
        self._held_since = time.monotonic()

    def keep(self) -> None:
        """Extend the claim on the pair held once half its time has passed: the annotator is
        still at it (a key was pressed), so another annotator must not take it."""
        if self.held is not None and time.monotonic() - self._held_since > self.ttl_seconds / 2:
            self.take(self.held)

    def release(self) -> None:
        if self.held is not None:
            self.store.release_claims(self.producer, self.held)
            self.held = None



Clock = Callable[[], float]
__all__ = ["QUEUE", "Queue", "QueueConfig", "Candidates", "select_candidates", "priority_key", "in_overlap",
           "AnnotationError", "Clock"]
