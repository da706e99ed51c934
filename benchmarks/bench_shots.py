"""What similarity-chosen few-shot examples cost in prefix reuse, measured with the llama.cpp judge.

On RMB pairs from ``../shared/data`` (gold: two Helpfulness files imported as human-labelled;
pool: five other files), embedded with the offline MiniLM: the targets are a seeded sample of
the pool pairs that retrieval selects (k_max neighbours of every gold pair). The same targets
are judged (logprob mode, both candidate orders, 8 shots) with a fresh copy of the store and
a fresh judge for each way of picking examples:

- ``tiers``: the fallback (same category, then source): one shared example block;
- ``nearest-first``: the nearest gold pairs by embedding, nearest first;
- ``nearest`` (skyrm's default): the same examples in one global order of the gold pairs.

The table gives the judge's own counters (tokens run through the model, tokens served from
its KV cache), wall time, and the mean cosine between each target and its examples.
``--count-only`` keeps the llama.cpp judge's tokenizer and its prefix rule (reuse the longest
prefix shared with the previous prompt) but evaluates nothing: the same counters in seconds,
for runs too long for a busy CPU (every verdict is then a tie); a small run with and without
it shows the counts agree.

    python benchmarks/bench_shots.py [--n 30] [--judge 'llamacpp:smollm2?n_ctx=8192'] [--count-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SKYRM_SHARED_DATA", ROOT.parent / "shared" / "data"))
GOLD = ["Brainstorming/Problem Solving.json", "Chat/Supportive Conversation.json"]
POOL = ["Chat/Casual Conversation.json", "Chat/Discussion.json", "Code/Documentation.json",
        "Open QA/Personal Opinion and Advice.json", "Reasoning/Critical Thinking.json"]
MODES = ("tiers", "nearest-first", "nearest")


def prepare(db: Path, n: int, seed: int) -> list[str]:
    """Import, embed, retrieve; returns the target ids."""
    from skyrm.embed import EmbedConfig, embed_pool
    from skyrm.ingest import import_files
    from skyrm.retrieve import RetrieveConfig, select_and_record
    from skyrm.store import Store

    folder = DATA / "rmb" / "Pairwise_set" / "Helpfulness"
    if not folder.is_dir():
        raise SystemExit(f"real data not found at {folder} (set SKYRM_SHARED_DATA)")
    with Store(db) as store:
        import_files(store, [folder / f for f in POOL], source="rmb-pool")
        import_files(store, [folder / f for f in GOLD], source="rmb-gold", as_="gold")
        embedded = embed_pool(store, EmbedConfig(what="prompt+attributes"))
        space = (embedded["fingerprint"], embedded["recipe"])
        gold = store.pair_ids("gold")
        run_id = store.start_run("retrieve", {"bench": "shots"})
        # Every gold pair as if the RM were unsure (p = 0.5): each pulls k_max neighbours.
        _, stats = select_and_record(store, run_id, RetrieveConfig(model="none"), {g: 0.5 for g in gold}, space)
        store.finish_run(run_id, metrics=stats)
        retrieved = store.retrieved_pair_ids(0)
        print(f"gold {len(gold)}, pool {store.count_pairs('unverified')}, retrieved {len(retrieved)}; "
              f"judging {n} of them", file=sys.stderr)
    return sorted(random.Random(seed).sample(retrieved, n))


def counting_judge(spec: str) -> Any:
    """The llama.cpp judge with evaluation replaced by counting what it would evaluate and reuse."""
    from skyrm.judges import load_judge
    from skyrm.judges.llamacpp import LlamaCppJudge, common_prefix_len

    judge = load_judge(spec)
    if not isinstance(judge, LlamaCppJudge):
        raise SystemExit("--count-only needs a llamacpp: judge")

    class Counting(type(judge)):  # type: ignore[misc]
        def _eval_reusing(self, tokens: list[int]) -> list[float]:
            previous = getattr(self, "_previous", [])
            keep = min(common_prefix_len(previous, tokens) if previous else 0, len(tokens) - 1)
            self.tokens_reused += keep
            self.tokens_evaluated += len(tokens) - keep
            self._previous = list(tokens)
            return [0.0] * self.llm.n_vocab()

    judge.__class__ = Counting
    return judge


def judge_once(db: Path, targets: list[str], mode: str, spec: str, shots: int, count_only: bool) -> dict[str, Any]:
    from skyrm.judges import load_judge
    from skyrm.labelling.label import JudgeConfig, label_pairs
    from skyrm.labelling.prompts import Budget
    from skyrm.store import Store

    judge = counting_judge(spec) if count_only else load_judge(spec)
    budget = Budget(response_chars=1500, conversation_chars=1500, example_response_chars=400,
                    example_conversation_chars=400)
    config = JudgeConfig(judges=(spec,), pool=",".join(targets), shots=shots, examples=mode, budget=budget)
    try:
        with Store(db) as store:
            started = time.perf_counter()
            summary = label_pairs(store, config, judges=[judge])
            seconds = time.perf_counter() - started
            similarity = _shot_similarity(store, targets)
    finally:
        judge.close()
    evaluated, reused = judge.tokens_evaluated, judge.tokens_reused
    return {"mode": mode, "pairs": summary.labelled, "tokens_evaluated": evaluated, "tokens_reused": reused,
            "reused_share": round(reused / (evaluated + reused), 3) if evaluated + reused else None,
            "seconds": round(seconds, 1), "pairs_per_s": round(summary.labelled / seconds, 3),
            "shot_cosine": similarity}


def _shot_similarity(store: Any, targets: list[str]) -> float | None:
    space = store.embedding_spaces()[0]
    values = []
    for pid in targets:
        labels = store.labels_for(pid, "llm")
        if not labels:
            continue
        shots = labels[-1].detail.get("shots", [])
        vectors = store.get_embeddings(space["fingerprint"], space["recipe"], [pid, *shots])
        target = np.frombuffer(vectors[pid], dtype="<f4")
        values += [float(np.frombuffer(vectors[s], dtype="<f4") @ target) for s in shots if s in vectors]
    return round(float(np.mean(values)), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge", default="llamacpp:smollm2?n_ctx=8192")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.db"
        targets = prepare(base, args.n, args.seed)
        for mode in args.modes:
            copy = Path(tmp) / f"{mode}.db"
            shutil.copy(base, copy)  # a fresh judge cache for each mode
            rows.append(judge_once(copy, targets, mode, args.judge, args.shots, args.count_only))
            print(json.dumps(rows[-1]), file=sys.stderr)
    table = Table("examples", "pairs", "tokens evaluated", "tokens reused", "reused share", "seconds", "pairs/s",
                  "target-example cosine", title=f"prefix reuse with {args.shots} shots ({args.judge}"
                  f"{', counted without evaluation' if args.count_only else ''})")
    for r in rows:
        table.add_row(r["mode"], str(r["pairs"]), f"{r['tokens_evaluated']:,}", f"{r['tokens_reused']:,}",
                      str(r["reused_share"]), str(r["seconds"]), str(r["pairs_per_s"]), str(r["shot_cosine"]))
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
