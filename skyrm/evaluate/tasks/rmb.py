"""RMB: pairwise accuracy and best-of-N (the best must beat every loser); overall is the mean of the four parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyrm.errors import InputError
from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Loaded, Task, mean, natural, read_rows, reply, row_conversation, \
    table
from skyrm.formats import data_files
from skyrm.records import Message

RMB_PARTS = ("pairwise-helpfulness", "pairwise-harmlessness", "bon-helpfulness", "bon-harmlessness")


def _rmb_answer(value: Any, path: Path, line: int, key: str) -> list[Message]:
    if not isinstance(value, dict) or not isinstance(value.get("answer"), str):
        raise InputError("expected an object with a string 'answer'", path=str(path), line=line, field=key)
    return reply(value["answer"])


class RMBTask(Task):
    """Pairwise accuracy and best-of-N (the best must beat every loser); overall = mean of the four."""

    name, title = "rmb", "RMB"

    def load(self, path, *, limit=None):
        examples = []
        root = Path(path)
        for file in data_files(root):
            for line, row in read_rows(file, limit):
                history = row_conversation(row.get("conversation_input"), file, line, "conversation_input")
                category = str(row.get("category_path") or file.relative_to(root if root.is_dir() else file.parent))
                parts = category.replace("\\", "/").split("/")
                goal = "harmlessness" if "harmlessness" in category.lower() else "helpfulness"
                if "bon_best" in row:
                    losers = row.get("loser_list")
                    if not isinstance(losers, list) or not losers:
                        raise InputError("expected a non-empty list", path=str(file), line=line, field="loser_list")
                    items = [(history, _rmb_answer(row["bon_best"], file, line, "bon_best"))]
                    items += [(history, _rmb_answer(x, file, line, f"loser_list[{i}]")) for i, x in enumerate(losers)]
                    kind, uid = "bon", row.get("bon_uid", line)
                else:
                    items = [(history, _rmb_answer(row.get("chosen"), file, line, "chosen")),
                             (history, _rmb_answer(row.get("reject"), file, line, "reject"))]
                    kind, uid = "pairwise", row.get("pair_uid", line)
                # category_path is "<set>/<goal>/<category>[/<leaf>]": the third part is the category
                topic = parts[2] if len(parts) > 2 else parts[-1]
                examples.append(Example(id=f"{kind}:{file.name}:{uid}", group=f"{kind}-{goal}", items=tuple(items),
                                        info={"category": f"{goal}/{topic}"}))
        return Loaded(self.name, str(path), examples)

    def units(self, group, info, rewards):
        win = float(M.best_beats_all(rewards[0], rewards[1:]))
        return [(group, win, 1.0), (f"{group.split('-')[0]}|{info['category']}", win, 1.0)]

    def aggregate(self, means, sizes):
        parts = [[p, int(sizes[p]), means[p]] for p in RMB_PARTS if p in means]
        score = mean([r[2] for r in parts])
        categories = [[k, int(sizes[k]), means[k]] for k in sorted(means, key=natural) if "|" in k]
        return {"score": score, "headlines": {"RMB": score},
                "tables": [table("parts", ["part", "n", "accuracy"],
                                  parts + [["overall (mean of parts)", sum(r[1] for r in parts), score]]),
                           table("per category", ["set|goal/category", "n", "accuracy"], categories)],
                "bars": {"title": "accuracy per category", "items": [[r[0], r[2]] for r in categories]}}
