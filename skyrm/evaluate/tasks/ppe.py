"""PPE: human preference pairs, and correctness best-of-K lists with per-response labels."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from skyrm.errors import InputError
from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Loaded, Task, mean, read_rows, reply, row_conversation, \
    row_text, table
from skyrm.formats import data_files, strip_data_suffixes

PPE_TIES = ("tie", "tie (bothbad)")
PPE_FLAGS = ("hard_prompt", "easy_prompt", "if_prompt", "math_prompt", "is_code")
BON_NS = tuple(range(2, 33))


def ppe_domain(file: Path) -> str:
    """'mmlu-pro' for PPE-MMLU-Pro-Best-of-K.parquet or ppe_mmlu_pro_best_of_k.jsonl."""
    name = strip_data_suffixes(file.name).lower().replace("_", "-")
    name = re.sub(r"^ppe-", "", name)
    name = re.sub(r"-best-of-k.*$", "", name)
    name = re.sub(r"-(train|test)(-\d+-of-\d+)?$", "", name)
    return name or "correctness"


class PPETask(Task):
    """PPE: human preference pairs, and correctness best-of-K lists with per-response labels.

    Preference rows (lmarena-ai/PPE-Human-Preference-V1): prompt, response_1,
    response_2, winner ('model_a' prefers response_1, 'model_b' response_2;
    ties are left out). Correctness rows (lmarena-ai/PPE-*-Best-of-K): prompt,
    response_1..response_K and scores (K booleans); the domain comes from the
    file name. Correctness accuracy pools every (correct, incorrect) pair of a
    prompt; best-of-N curves subsample N of the K responses with a seed.
    """

    name, title = "ppe", "PPE"

    def load(self, path, *, limit=None):
        examples, ties = [], 0
        for file in data_files(path):
            domain = ppe_domain(file)
            for line, row in read_rows(file, limit):
                history = row_conversation(row.get("prompt"), file, line, "prompt")
                row_id = f"{file.name}:{row.get('question_id', line)}"
                if "winner" in row:
                    winner = row.get("winner")
                    if winner in PPE_TIES:
                        ties += 1
                        continue
                    if winner not in ("model_a", "model_b"):
                        raise InputError(f"expected model_a, model_b or a tie, got {winner!r}", path=str(file),
                                         line=line, field="winner")
                    items = ((history, reply(row_text(row, "response_1", file, line))),
                             (history, reply(row_text(row, "response_2", file, line))))
                    flags = [f for f in PPE_FLAGS if row.get(f) is True]
                    examples.append(Example(id=row_id, group="preference", items=items,
                                            info={"winner": 1 if winner == "model_a" else 2, "flags": flags}))
                elif "scores" in row:
                    labels = row["scores"]
                    if not isinstance(labels, list) or not labels:
                        raise InputError("expected a non-empty list of correctness labels", path=str(file),
                                         line=line, field="scores")
                    items = tuple((history, reply(row_text(row, f"response_{i + 1}", file, line)))
                                  for i in range(len(labels)))
                    examples.append(Example(id=f"{row_id}:{row.get('model_name', '')}", group=f"correctness:{domain}",
                                            items=items, info={"correct": [bool(x) for x in labels]}))
                else:
                    raise InputError("neither a preference row (winner) nor a correctness row (scores)",
                                     path=str(file), line=line)
        notes = [f"{ties} tied preference rows left out (no preferred response)"] if ties else []
        return Loaded(self.name, str(path), examples, notes)

    def units(self, group, info, rewards):
        if group == "preference":
            chosen, rejected = (rewards[0], rewards[1]) if info["winner"] == 1 else (rewards[1], rewards[0])
            win = float(M.beats(chosen, rejected))
            return [("preference", win, 1.0)] + [(f"preference|{flag}", win, 1.0) for flag in info.get("flags", [])]
        wins, pairs = M.correct_incorrect_wins(rewards, info["correct"])
        return [(group, float(wins), float(pairs))] if pairs else []

    def aggregate(self, means, sizes):
        headlines: dict[str, float] = {}
        tables = []
        if "preference" in means:
            headlines["PPE Preference"] = means["preference"]
            rows = [["all", int(sizes["preference"]), means["preference"]]]
            rows += [[k.split("|")[1], int(sizes[k]), means[k]] for k in sorted(means) if k.startswith("preference|")]
            tables.append(table("human preference", ["subset", "pairs", "accuracy"], rows))
        domains = [[k.split(":", 1)[1], int(sizes[k]), means[k]] for k in sorted(means) if k.startswith("correctness:")]
        if domains:
            headlines["PPE Correctness"] = mean([r[2] for r in domains])
            tables.append(table("correctness", ["domain", "correct-incorrect pairs", "accuracy"],
                                 domains + [["mean of domains", sum(r[1] for r in domains),
                                             headlines["PPE Correctness"]]]))
        score = mean(list(headlines.values()))
        return {"score": score, "headlines": headlines, "tables": tables,
                "bars": {"title": "accuracy", "items": [[r[0], r[2]] for r in domains] +
                         ([["preference", means["preference"]]] if "preference" in means else [])}}

    def extras(self, examples, *, seed, draws):
        per_domain: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for group, info, rewards in examples:
            if group.startswith("correctness:"):
                scores, labels = per_domain[group.split(":", 1)[1]]
                scores.append(list(rewards))
                labels.append(info["correct"])
        if not per_domain:
            return {}
        curves = {}
        for domain, (scores, labels) in sorted(per_domain.items()):
            rng = np.random.default_rng(seed)  # one seed per domain: adding a domain changes no other curve
            curves[domain] = M.best_of_n_curve(scores, labels, BON_NS, draws=draws, rng=rng)
        return {"best_of_n": curves, "best_of_n_seed": seed, "best_of_n_draws": draws}
