"""Agreement figures for ``skyrm status``: Cohen's kappa between annotators, human vs judge, human vs RM.

- Cohen's kappa on the pairs two annotators both labelled (their standing labels), over the
  verdicts chosen / rejected / tie / skip: ``(p_o - p_e) / (1 - p_e)``; undefined (None) when
  both always gave the same single verdict (``p_e = 1``).
- Human vs judge: on pairs whose latest human label and latest LLM label both say chosen or
  rejected, the share that agree. Human vs RM: on pairs whose latest human label says chosen or
  rejected and that the latest ``skyrm score`` run scored, the share where ``p > 0.5`` matches
  the human verdict (``p`` is P(stored chosen is better)). Both per task category.
- Throughput per annotator from the terminal labels' timestamps: the active time is the sum of
  the gaps between an annotator's consecutive labels, a gap over ``BREAK_SECONDS`` counting as a
  break (the first label of a stretch counts its own time on screen).
Deliberately not here: SQL (the store's queries) and printing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from itertools import combinations
from typing import Any

from skyrm.annotate import annotator_of
from skyrm.store import Store

BREAK_SECONDS = 600.0
DECIDED = ("chosen", "rejected")


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (equal-length sequences).

    None when there are no items or chance agreement is 1 (kappa is undefined).
    """
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second)) / n
    count_a, count_b = Counter(first), Counter(second)
    expected = sum(count_a[c] * count_b[c] for c in count_a.keys() | count_b.keys()) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def throughput(stamps: Sequence[str], first_seconds: float | None = None) -> tuple[float, float | None]:
    """(active hours, labels per hour) of one annotator's label timestamps (ISO, any order)."""
    times = sorted(_parse(s) for s in stamps)
    active = first_seconds or 0.0
    for before, after in zip(times, times[1:]):
        gap = (after - before).total_seconds()
        active += gap if gap <= BREAK_SECONDS else 0.0
    hours = active / 3600.0
    return hours, (len(times) / hours if hours > 0 else None)


def human_status(store: Store) -> dict[str, Any]:
    """The ``human`` section of ``skyrm status``."""
    labels = store.human_labels()
    latest: dict[tuple[str, str], str] = {}  # (pair, annotator) -> verdict of the latest standing label
    per_annotator: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label in labels:
        name = annotator_of(label["producer"])
        latest[(label["pair_id"], name)] = label["verdict"]
        per_annotator[name].append(label)
    annotators = []
    for name, rows in sorted(per_annotator.items()):
        terminal = [r for r in rows if r["detail"].get("via") == "tui"]
        seconds = [float(r["detail"]["seconds"]) for r in terminal if r["detail"].get("seconds") is not None]
        hours, rate = throughput([r["created_at"] for r in terminal], seconds[0] if seconds else None)
        verdicts = Counter(r["verdict"] for r in rows)
        annotators.append({
            "annotator": name, "labels": len(rows), "in_terminal": len(terminal), "imported": len(rows) - len(terminal),
            "verdicts": {v: verdicts.get(v, 0) for v in ("chosen", "rejected", "tie", "skip")},
            "active_hours": round(hours, 3), "labels_per_hour": round(rate, 1) if rate is not None else None,
            "median_seconds": round(sorted(seconds)[len(seconds) // 2], 1) if seconds else None,
            "last": rows[-1]["created_at"]})
    by_pair: dict[str, dict[str, str]] = defaultdict(dict)
    for (pair_id, name), verdict in latest.items():
        by_pair[pair_id][name] = verdict
    kappas = []
    for a, b in combinations(sorted(per_annotator), 2):
        both = [(v[a], v[b]) for v in by_pair.values() if a in v and b in v]
        kappa = cohen_kappa([x for x, _ in both], [y for _, y in both])
        kappas.append({"annotators": [a, b], "pairs": len(both),
                       "agreement": round(sum(x == y for x, y in both) / len(both), 4) if both else None,
                       "kappa": round(kappa, 4) if kappa is not None else None})
    # The pair's human verdict is what the gold pool uses: the latest standing human label.
    human_verdict = {}
    for label in labels:
        human_verdict[label["pair_id"]] = label["verdict"]
    judge: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rm: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in store.human_comparisons():
        verdict = human_verdict.get(row["pair_id"])
        if verdict not in DECIDED:
            continue
        category = row["task_category"] or "(no attributes)"
        if row["llm_verdict"] in DECIDED:
            judge[category][0] += row["llm_verdict"] == verdict
            judge[category][1] += 1
        if row["rm_p"] is not None:
            rm[category][0] += (row["rm_p"] > 0.5) == (verdict == "chosen")
            rm[category][1] += 1

    def shares(table: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
        out = {c: {"pairs": n, "agree": k, "agreement": round(k / n, 4)} for c, (k, n) in sorted(table.items())}
        total_k, total_n = sum(k for k, _ in table.values()), sum(n for _, n in table.values())
        if total_n:
            out["all"] = {"pairs": total_n, "agree": total_k, "agreement": round(total_k / total_n, 4)}
        return out

    queue = store.human_queue(waiting=False)
    waiting = store.human_queue(waiting=True)
    return {"labels": len(labels), "pairs": len(by_pair), "annotators": annotators, "kappa": kappas,
            "vs_judge": shares(judge), "vs_rm": shares(rm),
            "queue": {"queued": len(queue), "waiting": len(waiting)},
            "claims": len(store.claims())}
