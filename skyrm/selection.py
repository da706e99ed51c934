"""Which pairs a command works on: every ``--pool`` choice is parsed here.

A choice is one of

- a pool derived from the labels (``POOLS``: unverified, gold, silver, discarded,
  curated), or ``all`` / ``trainable`` (every pair with a chosen or rejected verdict);
- a list of pair ids: comma-separated, or a single 32-hex-digit id;
- a file of pair ids, one per line (an existing file's path);
- anything else names a source (what ``skyrm import`` recorded as ``--source``).

Parsing needs no store. Whether a source exists is the store's question (its
pool query refuses an unknown name with ``unknown_choice_error``, which lists the
valid names), and so is what an empty selection holds (``empty_selection_error``).

Deliberately not here: SQL (``skyrm.store``) and ordering or limiting the pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from skyrm.errors import InputError
from skyrm.records import POOLS

# Rule labels whose producer starts with this put a pair in the 'curated' pool (a 'skip'
# verdict discards it instead). Migration m002's pair_status view matches the same prefix
# in SQL; migrations are never edited, so this constant must stay 'curate'.
CURATED_PRODUCER_PREFIX = "curate"
# Selections that are not a single derived pool.
ALL, TRAINABLE = "all", "trainable"
POOL_CHOICES: tuple[str, ...] = (*POOLS, ALL, TRAINABLE)

_HEX_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Selection:
    """A parsed ``--pool`` choice. ``kind`` is 'pool', 'all', 'trainable', 'source' or 'ids'."""

    kind: str
    name: str = ""  # the pool or source name
    ids: tuple[str, ...] = ()
    path: str | None = None  # the file the ids were read from

    def __str__(self) -> str:
        if self.kind == "ids":
            return f"ids from {self.path}" if self.path else f"{len(self.ids)} pair id(s)"
        if self.kind == "source":
            return f"source '{self.name}'"
        return f"pool '{self.name}'"


def parse_selection(choice: str, *, ids: bool = True) -> Selection:
    """A ``--pool`` value as a Selection; with ``ids=False`` lists and files of ids are not recognised
    (the value then names a source)."""
    choice = choice.strip()
    if not choice:
        raise InputError(f"an empty --pool: choose one of {', '.join(POOL_CHOICES)} or a source name")
    if choice in POOLS:
        return Selection("pool", choice)
    if choice in (ALL, TRAINABLE):
        return Selection(choice, choice)
    if ids:
        if _is_file(choice):
            found = [line.strip() for line in Path(choice).read_text(encoding="utf-8").splitlines() if line.strip()]
            return Selection("ids", ids=tuple(found), path=choice)
        if "," in choice or _HEX_ID.fullmatch(choice):
            return Selection("ids", ids=tuple(part.strip() for part in choice.split(",") if part.strip()))
    return Selection("source", choice)


def _is_file(name: str) -> bool:
    """True for an existing file; a long list of ids is no file name (the OS refuses to stat it)."""
    try:
        return Path(name).is_file()
    except OSError:
        return False


def describe_counts(pools: dict[str, int], sources: dict[str, int]) -> str:
    """'pools: unverified 3, gold 0, ...; sources: hf 3' (what a selection could have named)."""
    pool_text = ", ".join(f"{name} {pools.get(name, 0)}" for name in POOLS)
    source_text = ", ".join(f"{name} {count}" for name, count in sorted(sources.items())) or "none"
    return f"pools: {pool_text}; sources: {source_text}"


def unknown_choice_error(choice: str, pools: dict[str, int], sources: dict[str, int]) -> InputError:
    """The error for a --pool that is neither a pool nor a stored source, listing the valid names."""
    close = [name for name in (*POOL_CHOICES, *sources) if _close(choice, name)]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"--pool '{choice}' is neither a pool nor a source in the store{hint}; "
                      f"choose from {', '.join(POOL_CHOICES)} or a source "
                      f"({', '.join(f'{n} {c}' for n, c in sorted(sources.items())) or 'none stored yet'})")


def empty_selection_error(choice: str, pools: dict[str, int], sources: dict[str, int]) -> InputError:
    """The error for a selection with no pairs, saying what the store does hold."""
    return InputError(f"--pool '{choice}' has no pairs; the store holds {describe_counts(pools, sources)}")


def _close(typed: str, name: str) -> bool:
    """A likely typo: same length give or take one, and at most two characters differ."""
    a, b = typed.lower(), name.lower()
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    # edit distance, small strings only
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] <= 2
