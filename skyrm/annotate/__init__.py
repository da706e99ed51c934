"""Human verification (METHOD.md Stage 1 "Human protocol", issue 15).

- ``protocol``: the verification protocol (``protocol.md``) and the sections that apply to a pair;
- ``queue``: which pairs annotators see, in what priority, and claims so two annotators on one
  store never see the same pair at once;
- ``session``: the labelling state machine (show, answer, undo, note, quit), independent of any
  terminal, so it is tested without one;
- ``tui``: the terminal UI over a session (rich rendering, raw single-key input);
- ``roundtrip``: CSV / JSONL / Label Studio export and validated import;
- ``agreement``: Cohen's kappa and the human section of ``skyrm status``.

Human labels are kind ``human``, producer ``annotator:NAME``, their verdict relative to the
stored orientation. Deliberately not here: SQL (``skyrm.store``), printing or exiting (the CLI),
except in ``tui``, whose job is the terminal.
"""

from __future__ import annotations

PRODUCER_PREFIX = "annotator:"


def producer_for(annotator: str) -> str:
    return PRODUCER_PREFIX + annotator


def check_annotator(name: str) -> str:
    """An annotator name as labels record it: no spaces, at most 64 characters."""
    from skyrm.errors import InputError

    if not name or any(c.isspace() for c in name) or len(name) > 64:
        raise InputError(f"--annotator must be a name without spaces (at most 64 characters), not {name!r}")
    return name


def annotator_of(producer: str) -> str:
    return producer.removeprefix(PRODUCER_PREFIX)


from skyrm.errors import SkyrmError  # noqa: E402


class AnnotationError(SkyrmError):
    """An annotation session or round trip cannot do what was asked (nothing to undo, no pairs...)."""
