"""JudgeBench: accuracy of r(A) > r(B) against its label, per source and per category of sources."""

from __future__ import annotations

from skyrm.errors import InputError
from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Loaded, Task, mean, read_rows, reply, row_text, table
from skyrm.formats import JUDGEBENCH_LABELS, data_files

JUDGEBENCH_CATEGORIES = (("mmlu-pro", "knowledge"), ("livebench-reasoning", "reasoning"),
                         ("livebench-math", "math"), ("livecodebench", "coding"))


def judgebench_category(source: str) -> str:
    """knowledge (mmlu-pro-*), reasoning, math or coding, as the paper groups JudgeBench sources."""
    for prefix, category in JUDGEBENCH_CATEGORIES:
        if source.startswith(prefix):
            return category
    return "other"


class JudgeBenchTask(Task):
    """Accuracy of r(A) > r(B) against the 'A>B'/'B>A' label, per source and overall."""

    name, title = "judgebench", "JudgeBench"

    def load(self, path, *, limit=None):
        examples = []
        for file in data_files(path):
            for line, row in read_rows(file, limit):
                question = row_text(row, "question", file, line)
                a, b = row_text(row, "response_A", file, line), row_text(row, "response_B", file, line)
                label = row.get("label")
                if label not in JUDGEBENCH_LABELS:
                    raise InputError(f"expected 'A>B' or 'B>A', got {label!r}", path=str(file), line=line,
                                     field="label")
                history = [{"role": "user", "content": question}]
                examples.append(Example(
                    id=f"{file.name}:{row.get('pair_id', line)}", group=str(row.get("source", "unknown")),
                    items=((history, reply(a)), (history, reply(b))), info={"label": label}))
        return Loaded(self.name, str(path), examples)

    def units(self, group, info, rewards):
        chosen, rejected = (rewards[0], rewards[1]) if info["label"] == "A>B" else (rewards[1], rewards[0])
        win = float(M.beats(chosen, rejected))
        return [("all", win, 1.0), (f"source:{group}", win, 1.0),
                (f"category:{judgebench_category(group)}", win, 1.0)]

    def aggregate(self, means, sizes):
        sources = [[k[7:], int(sizes[k]), means[k]] for k in sorted(means) if k.startswith("source:")]
        order = [c for _, c in JUDGEBENCH_CATEGORIES] + ["other"]
        categories = [[c, int(sizes[f"category:{c}"]), means[f"category:{c}"]] for c in order
                      if f"category:{c}" in means]
        score = means.get("all", float("nan"))
        category_mean = mean([r[2] for r in categories if r[0] != "other"])
        return {"score": score, "headlines": {"JudgeBench": score},
                "tables": [table("per category", ["category", "pairs", "accuracy"],
                                  categories + [["mean of categories", int(sizes.get("all", 0)), category_mean]]),
                           table("per source", ["source", "pairs", "accuracy"], sources)],
                "bars": {"title": "accuracy per source", "items": [[r[0], r[2]] for r in sources]}}
