"""Benchmark: skyrm's both-order logprob judge with prefix reuse vs a naive sampling judge.

On pairs from ../shared/data (JudgeBench, RM-Bench chat concise-vs-concise, hh-rlhf
harmless), for each offline instruct GGUF, in the same run:

  (a) naive: a completion per vote of the same rendered chat prompt with the same
      answer prefill as (b) ("Better answer: "), 5 sampled votes alternating the
      candidate order, a fresh prompt each time (KV cache reset), verdict by
      majority; votes that do not parse as 1 or 2 are invalid (their rate is shown);
  (b) skyrm: P("1") vs P("2") read from the next-token logits in both orders,
      averaged, with the KV cache kept across prompts (shared guideline and
      few-shot block, shared conversation between the two orders).

Both see the same prompt text, prefill included (guideline, the same gold
examples from the same data set, the target pair). Reported per model and data set: accuracy against the
known labels, position consistency (both orders agree), pairs/s, and the ratio
(b)/(a), and a paired-bootstrap 95% interval on (b) - (a) accuracy over (a)'s pairs;
plus the "prefer the longer response" baseline. Tiny models are weak
judges: the point is the machinery and its speed, quality comes with larger GGUFs.

  python benchmarks/bench_judge.py --n 100 --naive-n 20 --json out/bench_judge.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paired import paired_bootstrap  # benchmarks/ is the script's directory, first on sys.path

from skyrm.formats import read_pairs
from skyrm.judges.llamacpp import LlamaCppJudge
from skyrm.labelling.parsing import parse_choice
from skyrm.labelling.prompts import ORDERS, Budget, Shot, pairwise_prompts
from skyrm.labelling.votes import logprob_verdict, side
from skyrm.records import Pair

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "judgebench": DATA / "judgebench" / "claude-3-5-sonnet-pairs.jsonl",
    "rm-bench": DATA / "rm-bench" / "chat_filtered.json",
    "hh-rlhf": DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz",
}


def load_dataset(name: str) -> list[Pair]:
    pairs = []
    for result in read_pairs(DATASETS[name]):
        for pair in result.pairs:
            if name == "rm-bench" and (pair.meta.get("chosen_style"), pair.meta.get("rejected_style")) != (
                    "concise", "concise"):
                continue
            pairs.append(pair)
    return pairs


def split(pairs: list[Pair], n: int, shots: int, seed: int) -> tuple[list[Pair], list[Shot]]:
    """Seeded targets plus ``shots`` other pairs of the same data set as the gold examples."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    examples = [Shot(pairs[i], None, "chosen") for i in order[:shots]]
    targets = [pairs[i] for i in order[shots:shots + n]]
    return targets, examples


class Meter:
    """Wall and process CPU seconds (all llama.cpp threads) spent on one method.

    This machine is shared: wall time swings with other load, CPU time much less.
    (a) and (b) run interleaved pair by pair on two contexts of the same model, so
    both see the same conditions and each keeps its own KV cache."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.pairs = 0

    def __enter__(self) -> "Meter":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu
        self.pairs += 1

    def as_dict(self) -> dict[str, float]:
        return {"seconds": self.wall, "cpu_seconds": self.cpu, "pairs_per_s": self.pairs / self.wall,
                "cpu_s_per_pair": self.cpu / self.pairs}


def skyrm_vote(judge: LlamaCppJudge, pair: Pair, shots: list[Shot], budget: Budget) -> tuple[bool, bool]:
    """(correct, position-consistent) from the both-order logprob vote, KV cache kept."""
    prompts = pairwise_prompts(pair, None, shots, budget)
    lp = judge.choice_logprobs([prompts.prompts[o] for o in ORDERS], ("1", "2"))
    verdict = logprob_verdict(lp[0], lp[1])
    return verdict.confidence > 0.5, not verdict.contested and side(verdict.p_orders["chosen-first"]) != 0


def naive_vote(judge: LlamaCppJudge, pair: Pair, shots: list[Shot], budget: Budget, votes: int, seed: int,
               index: int) -> tuple[bool, bool | None, int]:
    """(correct, consistent or None when an order got no valid vote, valid votes) from sampled votes."""
    llm = judge.llm
    prompts = pairwise_prompts(pair, None, shots, budget)
    # The text (b) reads its logits after: chat template, then the template's answer prefill.
    rendered = {o: judge.tokenize(judge.render(prompts.prompts[o])) for o in ORDERS}
    tally: dict[str, Counter] = {o: Counter() for o in ORDERS}
    valid = 0
    for v in range(votes):
        order = ORDERS[(index + v) % 2]
        llm.reset()  # a fresh prompt each time: no KV reuse
        reply = llm.create_completion(prompt=rendered[order], temperature=0.7, max_tokens=8, seed=seed * 1000 + v)
        answer = parse_choice(reply["choices"][0]["text"] or "")
        if answer is None:
            continue
        valid += 1
        prefers_chosen = (answer == "1") == (order == "chosen-first")
        tally[order]["chosen" if prefers_chosen else "rejected"] += 1
    total = tally[ORDERS[0]] + tally[ORDERS[1]]
    consistent = None
    if all(sum(t.values()) for t in tally.values()):
        majority = [(t["chosen"] > t["rejected"]) - (t["chosen"] < t["rejected"]) for t in tally.values()]
        consistent = majority[0] == majority[1] != 0
    return total["chosen"] > total["rejected"], consistent, valid


def run_dataset(fast_judge: LlamaCppJudge, naive_judge: LlamaCppJudge, targets: list[Pair], shots: list[Shot],
                budget: Budget, naive_n: int, votes: int, seed: int) -> dict[str, Any]:
    step = max(1, len(targets) // max(1, naive_n))
    naive_at = set(range(0, len(targets), step)[:naive_n])
    fast, naive = Meter(), Meter()
    evaluated0, reused0 = fast_judge.tokens_evaluated, fast_judge.tokens_reused
    per_pair: list[dict[str, Any]] = []  # every figure below is a mean over these records
    for index, pair in enumerate(targets):
        with fast:
            correct, consistent = skyrm_vote(fast_judge, pair, shots, budget)
        record: dict[str, Any] = {"index": index, "b_correct": int(correct), "b_consistent": int(consistent)}
        if index in naive_at:
            # The order that gets the odd vote alternates over (a)'s pairs (not over all pairs: with an
            # even step every (a) pair would give it to the same order, and a judge that always
            # answers "1" would score 100% or 0%).
            with naive:
                ok, agree, valid = naive_vote(naive_judge, pair, shots, budget, votes, seed, naive.pairs)
            record.update(a_correct=int(ok), a_consistent=agree, a_valid_votes=valid)
        per_pair.append(record)
        print(f"  pair {index + 1}/{len(targets)}: (b) {sum(r['b_correct'] for r in per_pair)}/{index + 1} correct, "
              f"{fast.wall:.0f} s; (a) {sum(r.get('a_correct', 0) for r in per_pair)}/{naive.pairs} correct, "
              f"{naive.wall:.0f} s", file=sys.stderr, flush=True)
    on_naive = [r for r in per_pair if "a_correct" in r]
    both_orders = [r["a_consistent"] for r in on_naive if r["a_consistent"] is not None]

    def mean(records: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in records) / len(records)

    return {
        "per_pair": per_pair,
        "accuracy_delta_ci": paired_bootstrap([r["b_correct"] for r in on_naive], [r["a_correct"] for r in on_naive]),
        "skyrm": {"pairs": len(per_pair), "accuracy": mean(per_pair, "b_correct"),
                  "consistency": mean(per_pair, "b_consistent"), **fast.as_dict(),
                  "tokens_evaluated": fast_judge.tokens_evaluated - evaluated0,
                  "tokens_reused": fast_judge.tokens_reused - reused0},
        "skyrm_on_naive_pairs": {"pairs": len(on_naive), "accuracy": mean(on_naive, "b_correct"),
                                 "consistency": mean(on_naive, "b_consistent")},
        "naive": {"pairs": len(on_naive), "accuracy": mean(on_naive, "a_correct"),
                  "consistency": sum(both_orders) / len(both_orders) if both_orders else 0.0,
                  "valid_vote_rate": sum(r["a_valid_votes"] for r in on_naive) / (votes * len(on_naive)),
                  **naive.as_dict()},
    }


def longer_baseline(targets: list[Pair]) -> float:
    return sum(len(p.chosen_text) > len(p.rejected_text) for p in targets) / len(targets)


def render(rows: list[dict[str, Any]]) -> Table:
    """Per model and data set: (a), (b) on the same pairs as (a), (b) on all pairs (its speed:
    the steady state of a labelling run), the length baseline; ratios in wall and CPU time."""
    table = Table(title="judge benchmark: (a) naive 5-vote sampling vs (b) skyrm both-order logprob + prefix reuse")
    for column in ("model", "dataset", "method", "pairs", "accuracy", "position consistency", "valid votes", "pairs/s",
                   "CPU s/pair", "(b)/(a) wall", "(b)/(a) CPU", "(b)−(a) acc, pts [95% CI]"):
        table.add_column(column)
    for row in rows:
        s, h, a = row["skyrm"], row["skyrm_on_naive_pairs"], row["naive"]
        valid = f"{a['valid_vote_rate']:.1%}" if "valid_vote_rate" in a else ""
        table.add_row(row["model"], row["dataset"], "(a) naive sampled x5", str(a["pairs"]), f"{a['accuracy']:.3f}",
                      f"{a['consistency']:.3f}", valid, f"{a['pairs_per_s']:.4f}", f"{a['cpu_s_per_pair']:.1f}", "", "", "")
        ci = row.get("accuracy_delta_ci")  # absent in files written before it was recorded
        delta = f"{100 * (h['accuracy'] - a['accuracy']):+.1f} [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else ""
        table.add_row("", "", "(b) skyrm, (a)'s pairs", str(h["pairs"]), f"{h['accuracy']:.3f}",
                      f"{h['consistency']:.3f}", "", "", "", "", "", delta)
        table.add_row("", "", "(b) skyrm, all pairs", str(s["pairs"]), f"{s['accuracy']:.3f}",
                      f"{s['consistency']:.3f}", "", f"{s['pairs_per_s']:.4f}", f"{s['cpu_s_per_pair']:.1f}",
                      f"{row['speedup']:.1f}x", f"{row['speedup_cpu']:.1f}x", "")
        table.add_row("", "", "prefer longer", str(row["n"]), f"{row['longer_baseline']:.3f}", "", "", "", "", "", "",
                      "")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="target pairs per data set for (b)")
    parser.add_argument("--naive-n", type=int, default=None, help="pairs per data set for (a) (default: --n); "
                        "its pairs are the first of (b)'s, and both are compared on them")
    parser.add_argument("--models", default="smollm2,qwen2.5-0.5b")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--votes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--response-chars", type=int, default=800)
    parser.add_argument("--example-chars", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="print the table of a saved --json file and exit")
    args = parser.parse_args(argv)
    naive_n = args.naive_n if args.naive_n is not None else args.n
    console = Console(width=180)
    if args.report:
        console.print(render(json.loads(args.report.read_text())["rows"]))
        return 0
    if not DATA.is_dir():
        console.print(f"[red]no data at {DATA}[/red]")
        return 1
    budget = Budget(args.response_chars, args.response_chars, args.example_chars, args.example_chars)
    rows: list[dict[str, Any]] = []
    for model in args.models.split(","):
        fast_judge = LlamaCppJudge(model, n_ctx=args.n_ctx, threads=args.threads)
        naive_judge = LlamaCppJudge(model, n_ctx=args.n_ctx, threads=args.threads)
        for name in args.datasets.split(","):
            targets, shots = split(load_dataset(name), args.n, args.shots, args.seed)
            result = run_dataset(fast_judge, naive_judge, targets, shots, budget, naive_n, args.votes, args.seed)
            row = {"model": model, "dataset": name, "n": len(targets), **result,
                   "speedup": result["skyrm"]["pairs_per_s"] / result["naive"]["pairs_per_s"],
                   "speedup_cpu": result["naive"]["cpu_s_per_pair"] / result["skyrm"]["cpu_s_per_pair"],
                   "longer_baseline": longer_baseline(targets)}
            rows.append(row)
            console.print(f"{model} {name}: (b)/(a) {row['speedup']:.1f}x wall, {row['speedup_cpu']:.1f}x CPU",
                          highlight=False)
            if args.json:  # keep what is done if a long run is stopped
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                                indent=2))
        fast_judge.close()
        naive_judge.close()

    console.print(render(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
