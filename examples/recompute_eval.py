"""Recompute `skyrm eval` figures from its results.json, independently of skyrm's metric code.

`skyrm eval --out DIR` writes every item's rewards into DIR/results.json. This
script reads only that file and recomputes, with the rules of the benchmarks'
papers written out again here (no skyrm import), the headline figures of
RM-Bench, JudgeBench and RMB; it prints both and exits 1 on any mismatch.

    python examples/recompute_eval.py DIR/results.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from statistics import mean


def judgebench(items: list[dict]) -> dict[str, float]:
    wins = []
    for item in items:
        a, b = item["rewards"]
        wins.append(a > b if item["info"]["label"] == "A>B" else b > a)
    return {"JudgeBench": mean(wins)}


def rm_bench(items: list[dict]) -> dict[str, float]:
    """Per domain a 3x3 matrix over (chosen style i, rejected style j); levels by triangle; mean of domains."""
    by_domain = defaultdict(list)
    for item in items:
        by_domain[item["group"]].append(item["rewards"])
    levels: dict[str, list[float]] = {"easy": [], "normal": [], "hard": [], "average": []}
    for rows in by_domain.values():
        cell = {(i, j): mean(r[i] > r[3 + j] for r in rows) for i in range(3) for j in range(3)}
        levels["hard"].append(mean(v for (i, j), v in cell.items() if i < j))
        levels["normal"].append(mean(v for (i, j), v in cell.items() if i == j))
        levels["easy"].append(mean(v for (i, j), v in cell.items() if i > j))
        levels["average"].append(mean(cell.values()))
    return {"RM-Bench": mean(levels["average"]), **{f"RM-Bench {k}": mean(v) for k, v in levels.items()}}


def rmb(items: list[dict]) -> dict[str, float]:
    """Pairwise accuracy and best-of-N (best above every loser) per part; overall = mean of the parts."""
    parts = defaultdict(list)
    for item in items:
        best, *losers = item["rewards"]
        parts[item["group"]].append(all(best > x for x in losers))
    figures = {f"RMB {part}": mean(v) for part, v in sorted(parts.items())}
    return {"RMB": mean(mean(v) for v in parts.values()), **figures}


def reported(bench: dict) -> dict[str, float]:
    """The figures skyrm printed: the headline, RM-Bench's overall levels and RMB's parts."""
    out = dict(bench.get("headlines", {}))
    if "levels" in bench:
        out.update({f"RM-Bench {k}": v for k, v in bench["levels"]["overall"].items()})
    for table in bench.get("tables", []):
        if table.get("title") == "parts":
            out.update({f"RMB {row[0]}": row[2] for row in table["rows"] if not row[0].startswith("overall")})
    return out


RECOMPUTE = {"judgebench": judgebench, "rm-bench": rm_bench, "rmb": rmb}


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    failures = 0
    print(f"{'figure':32} {'skyrm eval':>11} {'recomputed':>11}  items")
    for key, bench in results["benchmarks"].items():
        task = bench.get("task", key)
        if task not in RECOMPUTE:
            print(f"{key}: no independent recomputation for '{task}', skipped")
            continue
        theirs = reported(bench)
        for name, value in RECOMPUTE[task](bench["per_item"]).items():
            shown = theirs.get(name)
            ok = shown is not None and abs(shown - value) < 1e-9
            failures += not ok
            shown_text = "missing" if shown is None else f"{100 * shown:.2f}"
            print(f"{name:32} {shown_text:>11} {100 * value:>11.2f}  {len(bench['per_item'])}"
                  f"{'' if ok else '   <-- MISMATCH'}")
    print("all figures match" if not failures else f"{failures} figure(s) differ")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
