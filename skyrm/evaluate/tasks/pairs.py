"""Plain pairs: any file ``skyrm import`` reads, scored as pairwise accuracy overall, per source and category."""

from __future__ import annotations

from typing import Any

from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Loaded, Task, natural, table
from skyrm.formats import data_files, read_pairs


class PairsTask(Task):
    """Any file ``skyrm import`` reads: pairwise accuracy overall, per source and per category."""

    name, title = "pairs", "Pairs"

    def load(self, path, *, limit=None):
        examples: list[Example] = []
        notes: list[str] = []
        for file in data_files(path):
            bad = taken = 0
            for result in read_pairs(file):
                if result.bad is not None:
                    bad += 1
                    continue
                for pair in result.pairs:
                    category = pair.meta.get("category") or pair.meta.get("subset") or ""
                    examples.append(Example(
                        id=f"{file.name}:{pair.id}", group=pair.source,
                        items=((pair.prompt, pair.chosen), (pair.prompt, pair.rejected)),
                        info={"category": str(category)}))
                taken += 1
                if limit is not None and taken >= limit:
                    break
            if bad:
                notes.append(f"{file}: {bad} unreadable rows not scored (see 'skyrm import' for reasons)")
        return Loaded(self.name, str(path), examples, notes)

    def units(self, group, info, rewards):
        win = float(M.beats(rewards[0], rewards[1]))
        units = [("all", win, 1.0), (f"source:{group}", win, 1.0)]
        if info.get("category"):
            units.append((f"category:{info['category']}", win, 1.0))
        return units

    def aggregate(self, means, sizes):
        def rows(prefix: str) -> list[list[Any]]:
            return [[k[len(prefix):], int(sizes[k]), means[k]] for k in sorted(means, key=natural)
                    if k.startswith(prefix)]

        tables = [table("per source", ["source", "pairs", "accuracy"], rows("source:"))]
        if any(k.startswith("category:") for k in means):
            tables.append(table("per category", ["category", "pairs", "accuracy"], rows("category:")))
        score = means.get("all", float("nan"))
        bars = rows("category:") or rows("source:")
        return {"score": score, "headlines": {"Pairs": score}, "tables": tables,
                "bars": {"title": "pairwise accuracy", "items": [[r[0], r[2]] for r in bars]}}
