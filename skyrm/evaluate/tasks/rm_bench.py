"""RM-Bench: the 3x3 chosen-style x rejected-style matrix per domain; easy, normal and hard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyrm.errors import InputError
from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Loaded, Task, mean, read_rows, reply, row_strings, row_text, table
from skyrm.formats import data_files, strip_data_suffixes


def rm_bench_domain(file: Path, row: dict[str, Any]) -> str:
    """chat, math, code or safety: from a 'domain' field, else from the file name."""
    name = str(row.get("domain") or strip_data_suffixes(file.name)).lower()
    for domain in ("chat", "math", "code", "safety"):
        if name.startswith(domain):
            return domain
    raise InputError("cannot tell the RM-Bench domain: name the file chat_*, math_*, code_*, "
                     "safety-refuse_* or safety-response_*", path=str(file))


class RMBenchTask(Task):
    """The 3x3 chosen-style x rejected-style matrix per domain; easy/normal/hard; mean over domains."""

    name, title = "rm-bench", "RM-Bench"
    n = len(M.RM_BENCH_STYLES)

    def load(self, path, *, limit=None):
        examples = []
        for file in data_files(path):
            for line, row in read_rows(file, limit):
                domain = rm_bench_domain(file, row)
                history = [{"role": "user", "content": row_text(row, "prompt", file, line)}]
                chosen, rejected = row_strings(row, "chosen", file, line), row_strings(row, "rejected", file, line)
                if len(chosen) != self.n or len(rejected) != self.n:
                    raise InputError("expected 3 responses (concise, detailed, markdown)", path=str(file),
                                     line=line, field="chosen" if len(chosen) != self.n else "rejected")
                items = tuple((history, reply(t)) for t in chosen + rejected)
                examples.append(Example(id=f"{file.name}:{row.get('id', line)}", group=domain, items=items))
        return Loaded(self.name, str(path), examples)

    def units(self, group, info, rewards):
        chosen, rejected = rewards[:self.n], rewards[self.n:]
        return [(f"{group}|{i}{j}", float(M.beats(chosen[i], rejected[j])), 1.0)
                for i in range(self.n) for j in range(self.n)]

    def aggregate(self, means, sizes):
        order = ["chat", "math", "code", "safety"]
        domains = sorted({k.split("|")[0] for k in means}, key=lambda d: (order.index(d) if d in order else 9, d))
        matrices, levels, rows = {}, {}, []
        for d in domains:
            matrix = [[means[f"{d}|{i}{j}"] for j in range(self.n)] for i in range(self.n)]
            matrices[d], levels[d] = matrix, M.rm_bench_levels(matrix)
            lv = levels[d]
            rows.append([d, int(sizes[f"{d}|00"]), lv["easy"], lv["normal"], lv["hard"], lv["average"]])
        overall = {k: mean([levels[d][k] for d in domains]) for k in ("easy", "normal", "hard", "average")}
        rows.append(["overall (mean of domains)", sum(r[1] for r in rows), overall["easy"], overall["normal"],
                     overall["hard"], overall["average"]])
        return {"score": overall["average"], "headlines": {"RM-Bench": overall["average"]},
                "tables": [table("per domain", ["domain", "prompts", "easy", "normal", "hard", "average"], rows)],
                "matrices": matrices, "levels": levels | {"overall": overall},
                "bars": {"title": "average per domain", "items": [[d, levels[d]["average"]] for d in domains]}}
