"""RewardBench v1: per-subset accuracy, sections by the official weights, prior sets at half weight."""

from __future__ import annotations

from skyrm.errors import InputError
from skyrm.evaluate import metrics as M
from skyrm.evaluate.task import Example, Loaded, Task, read_rows, reply, row_conversation, \
    row_text, table
from skyrm.formats import data_files, strip_data_suffixes


class RewardBenchTask(Task):
    """RewardBench v1: per-subset accuracy, sections by official weights, prior sets at half weight.

    Published layout (allenai/reward-bench, split 'filtered'): prompt (string),
    chosen, rejected (strings), subset, id. Prior sets (allenai/pref-test-sets)
    come one file per split named after it (anthropic_helpful.jsonl, shp.parquet
    ...), with prompt as a list of messages; the split name is the subset.
    """

    name, title = "rewardbench", "RewardBench"
    PRIOR = set(M.PRIOR_SETS) | set(M.PRIOR_SETS_REPORTED)

    def load(self, path, *, limit=None):
        examples, unknown = [], set()
        for file in data_files(path):
            stem = strip_data_suffixes(file.name).lower()
            for line, row in read_rows(file, limit):
                subset = stem if stem in self.PRIOR else str(row.get("subset") or "")
                if not subset:
                    raise InputError("no subset: rows need a 'subset' field, or name a prior-set file after "
                                     "its split", path=str(file), line=line, field="subset")
                if subset not in M.REWARDBENCH_WEIGHTS and subset not in self.PRIOR:
                    unknown.add(subset)
                history = row_conversation(row.get("prompt"), file, line, "prompt")
                items = ((history, reply(row_text(row, "chosen", file, line))),
                         (history, reply(row_text(row, "rejected", file, line))))
                examples.append(Example(id=f"{subset}:{row.get('id', f'{file.name}:{line}')}", group=subset,
                                        items=items))
        notes = [f"subsets outside the score (reported only): {', '.join(sorted(unknown))}"] if unknown else []
        return Loaded(self.name, str(path), examples, notes)

    def units(self, group, info, rewards):
        return [(group, float(M.beats(rewards[0], rewards[1])), 1.0)]

    def aggregate(self, means, sizes):
        sections = M.rewardbench_sections(means)
        prior = M.prior_sets_score(means)
        score = M.rewardbench_score(sections, prior)
        rows = []
        for section, subsets in M.REWARDBENCH_SECTIONS.items():
            rows += [[section, s, int(sizes[s]), M.REWARDBENCH_WEIGHTS[s], means[s]] for s in subsets if s in means]
        rows += [["Prior Sets" if s in M.PRIOR_SETS else "(reported)", s, int(sizes[s]), "", means[s]]
                 for s in (*M.PRIOR_SETS, *M.PRIOR_SETS_REPORTED) if s in means]
        known = set(M.REWARDBENCH_WEIGHTS) | self.PRIOR
        rows += [["(not scored)", s, int(sizes[s]), "", means[s]] for s in sorted(means) if s not in known]
        section_rows = [[name, value] for name, value in sections.items()]
        if prior is not None:
            section_rows.append(["Prior Sets (0.5 weight)", prior])
        section_rows.append(["score", score])
        return {"score": score, "headlines": {"RewardBench": score},
                "tables": [table("sections", ["section", "accuracy"], section_rows),
                           table("subsets", ["section", "subset", "n", "weight", "accuracy"], rows)],
                "bars": {"title": "accuracy per section", "items": [[k, v] for k, v in sections.items()]}}
