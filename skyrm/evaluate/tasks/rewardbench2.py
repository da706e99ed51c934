"""RewardBench 2: best-of-4 with 1/(number tied at the top), and the Ties subset's own score."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from skyrm.errors import InputError
from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Item, Loaded, Task, read_rows, reply, row_conversation, \
    row_strings, row_text, table
from skyrm.formats import data_files

_TIES_ID = re.compile(r"^(ref|tied):(.+)$")


class RewardBench2Task(Task):
    """RewardBench 2: best-of-4 with 1/(number tied at the top); the Ties subset's own score.

    Published layout (allenai/reward-bench-2): id, prompt, chosen (list: the
    correct answers), rejected (list), num_correct, subset. Ties rows have ids
    'ref:<n>' (one correct answer) and 'tied:<n>' (several) for the same <n>;
    the two variants of a prompt are scored together as one example.

    A tie at the top shares the point (1/k for k tied responses), as the issue
    and the data README state; reward-bench's script takes ``argmax == 0``,
    which gives a tie to the correct answer because it is listed first.
    """

    name, title = "rewardbench2", "RewardBench 2"

    def load(self, path, *, limit=None):
        examples: list[Example] = []
        ties: dict[str, dict[str, Any]] = defaultdict(dict)
        for file in data_files(path):
            for line, row in read_rows(file, limit):
                subset = row_text(row, "subset", file, line)
                history = row_conversation(row.get("prompt"), file, line, "prompt")
                chosen, rejected = row_strings(row, "chosen", file, line), row_strings(row, "rejected", file, line)
                n_correct = row.get("num_correct", len(chosen))
                if not isinstance(n_correct, int) or n_correct != len(chosen):
                    raise InputError(f"num_correct ({n_correct!r}) differs from the {len(chosen)} chosen answers",
                                     path=str(file), line=line, field="num_correct")
                items = tuple((history, reply(t)) for t in chosen + rejected)
                row_id = str(row.get("id", f"{file.name}:{line}"))
                if subset.lower() == "ties":
                    match = _TIES_ID.match(row_id)
                    if not match:
                        raise InputError(f"Ties ids look like 'ref:<n>' or 'tied:<n>', got {row_id!r}",
                                         path=str(file), line=line, field="id")
                    kind, pid = match.groups()
                    if kind in ties[pid]:
                        raise InputError(f"duplicate Ties id {row_id!r}", path=str(file), line=line, field="id")
                    ties[pid][kind] = (items, n_correct)
                    continue
                examples.append(Example(id=row_id, group=subset, items=items, info={"correct": n_correct}))
        for pid, variants in ties.items():
            items: tuple[Item, ...] = ()
            info: dict[str, Any] = {}
            for kind in ("ref", "tied"):
                if kind in variants:
                    part, n_correct = variants[kind]
                    info[kind] = [len(part), n_correct]  # [responses, correct ones first]
                    items += part
            examples.append(Example(id=f"ties:{pid}", group="Ties", items=items, info=info))
        return Loaded(self.name, str(path), examples)

    def units(self, group, info, rewards):
        if group != "Ties":
            k = int(info["correct"])
            return [(group, M.top_share(rewards, [i < k for i in range(len(rewards))]), 1.0)]
        stats, start = {}, 0
        for kind in ("ref", "tied"):
            if kind in info:
                size, n_correct = info[kind]
                stats[kind] = M.tie_stats(rewards[start:start + size], n_correct)
                start += size
        parts = M.ties_parts(stats.get("ref"), stats.get("tied"))
        return [(f"Ties|{part}", value, 1.0) for part, value in parts.items()]

    def aggregate(self, means, sizes):
        subsets = {s: means[s] for s in M.RB2_SUBSETS if s != "Ties" and s in means}
        subsets |= {s: means[s] for s in sorted(means) if "|" not in s and s not in subsets}
        ties_means = {k.split("|", 1)[1]: v for k, v in means.items() if k.startswith("Ties|")}
        if ties_means:
            subsets["Ties"] = M.ties_score(ties_means)
        score = M.rewardbench2_score(subsets)
        ties_n = max((int(v) for k, v in sizes.items() if k.startswith("Ties|")), default=0)
        rows = [[s, ties_n if s == "Ties" else int(sizes[s]), v] for s, v in subsets.items()]
        rows.append(["score (mean of subsets)", sum(r[1] for r in rows), score])
        tables = [table("subsets", ["subset", "prompts", "score"], rows)]
        if ties_means:
            tables.append(table("Ties parts", ["part", "prompts", "mean", "weight"],
                                 [[p, int(sizes[f"Ties|{p}"]), ties_means[p], f"{w:g}"]
                                  for p, w in M.TIES_PARTS.items() if p in ties_means]))
        return {"score": score, "headlines": {"RewardBench 2": score}, "tables": tables,
                "bars": {"title": "score per subset", "items": [[k, v] for k, v in subsets.items()]}}
