"""Decontamination: mark pairs that share a 13-gram with a benchmark's first-turn prompt.

Marked pairs get a ``rule`` label (verdict 'skip', reason in ``detail``), which
moves them to the discarded pool; nothing is deleted (METHOD.md "Pre-processing").
A benchmark prompt shorter than n words is matched whole. Which field of a benchmark
row is its first-turn prompt is known by ``skyrm.formats`` (``first_turn_prompt``); a
directory stands for the data files below it, as for import and eval.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from skyrm.errors import InputError
from skyrm.formats import data_files, first_turn_prompt, iter_records
from skyrm.records import Label
from skyrm.runs import Progress
from skyrm.store import Store
from skyrm.text import ngrams, words

DEFAULT_N = 13
MIN_SHORT_PROMPT_WORDS = 5  # shorter prompts ("hi", "tell me a joke") would match everything


class NgramIndex:
    """The n-grams of benchmark prompts, with where each came from."""

    def __init__(self, n: int = DEFAULT_N):
        self.n = n
        self.grams: dict[str, str] = {}
        self.short: dict[int, dict[str, str]] = {}  # whole short prompts, by length in words
        self.prompts = 0

    def add(self, prompt: str, origin: str) -> None:
        tokens = words(prompt)
        self.prompts += 1
        if len(tokens) >= self.n:
            for gram in ngrams(tokens, self.n):
                self.grams.setdefault(gram, origin)
        elif len(tokens) >= MIN_SHORT_PROMPT_WORDS:
            self.short.setdefault(len(tokens), {}).setdefault(" ".join(tokens), origin)

    def match(self, text: str) -> tuple[str, str] | None:
        """The first shared n-gram and its origin, or None."""
        tokens = words(text)
        for gram in ngrams(tokens, self.n):
            if gram in self.grams:
                return gram, self.grams[gram]
        for length, table in self.short.items():
            for gram in ngrams(tokens, length):
                if gram in table:
                    return gram, table[gram]
        return None


def build_index(paths: Iterable[str | os.PathLike[str]], n: int = DEFAULT_N) -> NgramIndex:
    index = NgramIndex(n)
    for given in paths:
        found = 0
        for path in data_files(given) if Path(given).is_dir() else [Path(given)]:
            for line, row, error, _ in iter_records(path):
                if error is not None:
                    continue
                prompt = first_turn_prompt(row)
                if prompt:
                    index.add(prompt, f"{Path(path).name}:{line}")
                    found += 1
        if found == 0:
            raise InputError("no first-turn prompts found (expected a prompt, question, "
                             "conversation_input or messages field)", path=str(given))
    return index


def decontaminate(store: Store, against: Iterable[str | os.PathLike[str]], *, n: int = DEFAULT_N,
                  progress: Progress | None = None) -> dict[str, int]:
    """Label every stored pair that overlaps a benchmark prompt; returns counts."""
    index = build_index(against, n)
    total = store.count_pairs()
    checked = marked = 0
    labels: list[Label] = []
    keys: list[str] = []
    for pair_id, pair, _ in store.iter_pairs("all", oriented=False):
        checked += 1
        text = "\n".join([m["content"] for m in pair.prompt] + [pair.chosen_text, pair.rejected_text])
        hit = index.match(text)
        if hit:
            gram, origin = hit
            labels.append(Label(pair_id=pair_id, kind="rule", producer="decontam", verdict="skip",
                                detail={"reason": f"shares a {len(gram.split())}-gram with a benchmark prompt",
                                        "ngram": gram, "benchmark": origin}))
            keys.append(f"decontam:{pair_id}")
        if len(labels) >= 1000:
            marked += store.add_labels(labels, dedup_keys=keys)
            labels, keys = [], []
        if progress and checked % 1000 == 0:
            progress(checked, total, f"{marked + len(labels)} marked")
    marked += store.add_labels(labels, dedup_keys=keys)
    if progress:
        progress(checked, total, f"{marked} marked")
    return {"checked": checked, "marked": marked, "benchmark_prompts": index.prompts}
