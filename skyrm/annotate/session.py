"""The labelling state machine, independent of any terminal: show a pair, answer, undo, note, quit.

Each answer is stored at once as a ``human`` label (producer ``annotator:NAME``), its verdict
relative to the stored orientation (``chosen``: the stored chosen response is better; ``rejected``:
the stored rejected one is; ``tie``; ``skip``: the annotator cannot decide, so the protocol
discards the pair rather than guessing). The label's ``order`` and detail record which stored side
was shown as Candidate 1, the seconds the pair was on screen, the note, the protocol version and
that it came from the terminal.

Undo: labels are append-only, so an undo appends a withdrawal of the last label
(``Store.withdraw_label``; the pools ignore withdrawn labels) and shows its pair again, in the
same order. Storing at once (rather than holding the last answer back until the next one) means a
crash or a closed terminal loses nothing, and a restart continues after the last answer: the pairs
an annotator has labelled are never offered to them again. Undo reaches back through this
session's answers only.
Deliberately not here: keys, the screen, SQL.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from skyrm.annotate import AnnotationError
from skyrm.annotate.protocol import Protocol, load_protocol
from skyrm.annotate.queue import Clock, Queue
from skyrm.records import Attributes, Label, Message, Pair, content_hash

ANSWERS = {"1": "Candidate 1", "2": "Candidate 2", "t": "tie", "s": "cannot decide"}
SIDES = ("chosen", "rejected")


def first_side(seed: Any, annotator: str, pair_id: str) -> str:
    """Which stored side is shown as Candidate 1: a seeded coin per (seed, annotator, pair), so a
    pair shown again (undo, restart) keeps its order and two annotators see independent orders."""
    return SIDES[int(content_hash([seed, annotator, pair_id], length=8), 16) & 1]


def verdict_for(key: str, first: str) -> str:
    """The stored-orientation verdict of an answer key, given the side shown first."""
    if key == "1":
        return first
    if key == "2":
        return "rejected" if first == "chosen" else "chosen"
    if key == "t":
        return "tie"
    if key == "s":
        return "skip"
    raise AnnotationError(f"{key!r} is not an answer: use 1, 2, t or s")


@dataclass
class Shown:
    """The pair on screen and how it is shown."""

    pair_id: str
    pair: Pair
    attributes: Attributes | None
    first: str  # the stored side shown as Candidate 1
    hints: list[dict[str, Any]]  # per candidate number: {"candidate", "p", "producer"}
    rules: list[tuple[str, str]]
    reasons: list[str]
    round: int
    started: float
    note: str = ""

    def candidate(self, number: int) -> list[Message]:
        side = self.first if number == 1 else ("rejected" if self.first == "chosen" else "chosen")
        return self.pair.chosen if side == "chosen" else self.pair.rejected


@dataclass
class Answer:
    label_id: int
    pair_id: str
    key: str
    verdict: str
    note: str


@dataclass
class Session:
    """One annotator's sitting. ``current`` is the pair on screen (None when finished)."""

    queue: Queue
    protocol: Protocol = field(default_factory=load_protocol)
    seed: Any = 0
    limit: int | None = None
    clock: Clock = time.monotonic
    current: Shown | None = None
    answers: list[Answer] = field(default_factory=list)  # this session's standing answers, oldest first
    finished: str = ""  # why there is no current pair: "limit" or "empty"
    session_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def store(self):
        return self.queue.store

    @property
    def annotator(self) -> str:
        return self.queue.annotator

    def start(self) -> Shown | None:
        return self._advance()

    def _advance(self) -> Shown | None:
        if self.limit is not None and len(self.answers) >= self.limit:
            self.queue.release()
            self.current, self.finished = None, "limit"
            return None
        pair_id = self.queue.next()
        if pair_id is None:
            self.current, self.finished = None, "empty"
            return None
        self.current = self._show(pair_id)
        self.finished = ""
        return self.current

    def _show(self, pair_id: str, note: str = "") -> Shown:
        pair = self.store.get_pair(pair_id)
        if pair is None:  # claimed ids come from the store; a vanished pair is a broken store
            raise AnnotationError(f"pair {pair_id} is no longer in the store")
        attributes = self.store.get_attributes(pair_id)
        first = first_side(self.seed, self.annotator, pair_id)
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for hint in self.store.hints_for(pair_id):
            if hint.get("p") is not None:
                latest[(hint["side"], hint["producer"])] = hint
        hints = sorted(({"candidate": 1 if h["side"] == first else 2, "p": h["p"], "producer": h["producer"],
                         "kind": h["kind"]} for h in latest.values()), key=lambda h: (h["candidate"], h["producer"]))
        return Shown(pair_id, pair, attributes, first, hints, self.protocol.rules_for(attributes),
                     self.queue.candidates.reasons.get(pair_id, []), self.queue.candidates.rounds.get(pair_id, 0),
                     self.clock(), note)

    def set_note(self, text: str) -> None:
        """A note for the pair on screen, stored with its answer."""
        if self.current is None:
            raise AnnotationError("no pair on screen to note")
        self.current.note = text.strip()

    def answer(self, key: str) -> Answer:
        """Store the answer to the pair on screen at once and show the next pair."""
        shown = self.current
        if shown is None:
            raise AnnotationError("no pair on screen to answer")
        verdict = verdict_for(key, shown.first)
        seconds = round(max(0.0, self.clock() - shown.started), 3)
        detail = {"annotator": self.annotator, "via": "tui", "seconds": seconds, "candidate_1": shown.first,
                  "key": key, "note": shown.note, "protocol": self.protocol.version, "session": self.session_id,
                  "pool": self.queue.candidates.source, "reasons": shown.reasons,
                  "hints_shown": len(shown.hints)}
        label = Label(shown.pair_id, "human", self.queue.producer, verdict, None, self.protocol.version,
                      f"{shown.first}-first", shown.round, detail)
        label_id = self.store.add_label(label)
        assert label_id is not None  # no dedup key: every answer is a new label
        done = Answer(label_id, shown.pair_id, key, verdict, shown.note)
        self.answers.append(done)
        self._advance()
        return done

    def undo(self) -> Answer:
        """Withdraw this session's last standing answer and show its pair again."""
        if not self.answers:
            raise AnnotationError("nothing to undo in this session")
        last = self.answers.pop()
        # Claim before withdrawing: between the two, the standing label or the claim keeps the pair
        # from another annotator (withdrawing first let one take it in that gap).
        self.queue.take(last.pair_id)
        self.store.withdraw_label(last.label_id, by=self.queue.producer, reason="undo")
        self.current = self._show(last.pair_id, note=last.note)
        self.finished = ""
        return last

    def close(self) -> None:
        """Quit: release the pair on screen (its claim), so another annotator may take it."""
        self.queue.release()
        self.current = None
