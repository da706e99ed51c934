"""Scoring throughput of `skyrm eval` vs a reward-bench-style scorer, same model, same files, same run.

The peer does what reward-bench's pipeline scripts (and RM-Bench's and RMB's,
which follow them) do: every example's responses are scored as the benchmark
lays them out (no sharing between examples), chosen and rejected sides in
separate passes, in file order (unsorted), each batch padded to its own
longest sequence (reward-bench's pipeline is called with ``padding=True``;
``--peer-padding max_length`` pads every batch to the max length instead), with
right truncation. The text and the reward read are skyrm's own (same
rendering, same token ids, same head), so only batching differs and the
rewards of items that fit must agree. skyrm scores each distinct
(history, response) once, in length-sorted batches with dynamic padding.

Both scorers are warmed up on a few examples first, then timed ``--repeat``
times in alternating order; the reported times are medians and the speedup is
the median of the per-round ratios.

Also checked: the benchmark figures are identical for batch sizes 1, 8 and 32.
Target: skyrm >= 3x the peer's throughput (benchmark files per second).

    python benchmarks/bench_eval.py [--model minilm] [--max-length 512] [--bench NAME[@LIMIT]=PATH ...]
                                    [--batch-size 16] [--repeat 3] [--limit N] [--json out.json]

``NAME@LIMIT=PATH`` keeps the first LIMIT examples of each file of that benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
# RMB's pairwise and best-of-N sets share most responses; these three categories keep that
# structure (2.3x items per distinct response, as the whole of RMB) at a size a CPU can time.
RMB_CATEGORIES = ("Harmlessness/S6", "Helpfulness/Classification", "Helpfulness/Rewrite")


def rmb_subset(target: Path) -> Path:
    """A copy of RMB's files for RMB_CATEGORIES, in RMB's own tree layout."""
    for kind in ("Pairwise_set", "BoN_set"):
        for category in RMB_CATEGORIES:
            goal, name = category.split("/")
            source = SHARED / "rmb" / kind / goal
            for file in sorted(source.glob(f"{name}.json")) + sorted((source / name).glob("*.json")):
                dest = target / file.relative_to(SHARED / "rmb")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(file, dest)
    return target


def parse_spec(spec: str) -> tuple[str, int | None, str]:
    name, _, path = spec.partition("=")
    name, _, limit = name.partition("@")
    return name, int(limit) if limit else None, path


def sides(task: str, example) -> tuple[list, list]:
    """(chosen-side items, rejected-side items) of one example, for the peer's two passes."""
    items = list(example.items)
    if task == "rm-bench":
        return items[:3], items[3:]
    if task == "judgebench" and example.info.get("label") == "B>A":
        return items[1:], items[:1]
    if task == "rewardbench2" and "correct" in example.info:
        return items[:example.info["correct"]], items[example.info["correct"]:]
    return items[:1], items[1:]


def peer_rewards(model, items, *, batch_size: int, max_length: int,
                 padding: str = "longest") -> tuple[list[float], int]:
    """Reward-bench style: file order, each batch padded to its longest sequence (or, with
    ``padding="max_length"``, to max_length), truncation from the right."""
    import torch

    rewards: list[float] = []
    tokens = 0
    pad = model.tokenizer.pad_token_id
    left = model.padding_side == "left"
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            ids = model.renderer.ids_many([model.renderer.text([*h, *r]) for h, r in batch])
            ids = [row[:max_length] for row in ids]
            width = max_length if padding == "max_length" else max(len(row) for row in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, row in enumerate(ids):
                if left:
                    input_ids[i, width - len(row):] = torch.tensor(row)
                    mask[i, width - len(row):] = 1
                else:
                    input_ids[i, :len(row)] = torch.tensor(row)
                    mask[i, :len(row)] = 1
            rewards.extend(model.reader(input_ids.to(model.device), mask.to(model.device)).float().cpu().tolist())
            tokens += input_ids.numel()
    return rewards, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bench", action="append", default=None,
                        help="NAME[@LIMIT]=PATH (default: RM-Bench, JudgeBench and three RMB categories)")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N examples of each file of the default benchmarks (a shorter run)")
    parser.add_argument("--invariance", default="1,8,32", help="batch sizes whose figures must be identical ('' to skip)")
    parser.add_argument("--invariance-limit", type=int, default=40,
                        help="first N examples of each benchmark for the batch-size check (0: all)")
    parser.add_argument("--shared-prefix", choices=["on", "off"], default="off",
                        help="skyrm eval runs a history shared by several responses once (decoders)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per scorer, alternating the order")
    parser.add_argument("--peer-padding", choices=["longest", "max_length"], default="longest",
                        help="longest: each batch to its longest sequence, as reward-bench (default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from skyrm.evaluate.benchmarks import get_task, load_benchmark
    from skyrm.evaluate.run import EvalConfig, evaluate, pool_units
    from skyrm.rm.score import load_reward_model, score_items

    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    try:
        specs = [parse_spec(s) for s in args.bench] if args.bench else [
            ("rm-bench", args.limit, str(SHARED / "rm-bench")), ("judgebench", args.limit, str(SHARED / "judgebench")),
            ("rmb", args.limit, str(rmb_subset(tmp / "rmb")))]
        loaded = [load_benchmark(name, path, limit=limit) for name, limit, path in specs]
        model = load_reward_model(args.model, max_length=args.max_length)
        skyrm_model = model if args.shared_prefix == "off" else load_reward_model(
            args.model, max_length=args.max_length, shared_prefix=args.shared_prefix)
        config = EvalConfig(model=args.model, benches=tuple((n, p) for n, _, p in specs), batch_size=args.batch_size)

        # --- peer: every example's items, chosen pass then rejected pass, padded to max length
        chosen, rejected = [], []
        for bench in loaded:
            for example in bench.examples:
                c, r = sides(bench.name, example)
                chosen += c
                rejected += r

        def run_peer(c_items, r_items):
            peer_c, tokens_c = peer_rewards(model, c_items, batch_size=args.batch_size, max_length=args.max_length,
                                            padding=args.peer_padding)
            peer_r, tokens_r = peer_rewards(model, r_items, batch_size=args.batch_size, max_length=args.max_length,
                                            padding=args.peer_padding)
            return peer_c, peer_r, tokens_c + tokens_r

        # --- skyrm eval: distinct items once, length-sorted batches, dynamic padding (no cache: a fresh run)
        calls: list[int] = []

        def scorer(items, progress=None):
            calls.append(len(items))
            return score_items(None, skyrm_model, items, batch_size=args.batch_size)

        # Warm both (first-call allocations, thread pools) on a few examples of each benchmark, then time
        # them in alternating order: this machine is shared and noisy, so medians are reported.
        warm = [type(b)(b.name, b.path, b.examples[:4], b.notes) for b in loaded]
        evaluate(warm, lambda items, p=None: score_items(None, skyrm_model, items, batch_size=args.batch_size),
                 EvalConfig(benches=config.benches, batch_size=args.batch_size))
        run_peer(chosen[:2 * args.batch_size], rejected[:2 * args.batch_size])
        # Process CPU seconds (all threads) too: they swing much less than wall time with other load.
        peer_times, skyrm_times, peer_cpu, skyrm_cpu = [], [], [], []
        for round_ in range(max(1, args.repeat)):
            for side in (("peer", "skyrm") if round_ % 2 == 0 else ("skyrm", "peer")):
                start, cpu = time.perf_counter(), time.process_time()
                if side == "peer":
                    peer_c, peer_r, peer_tokens = run_peer(chosen, rejected)
                    peer_times.append(time.perf_counter() - start)
                    peer_cpu.append(time.process_time() - cpu)
                else:
                    calls.clear()
                    result = evaluate(loaded, scorer, config)
                    skyrm_times.append(time.perf_counter() - start)
                    skyrm_cpu.append(time.process_time() - cpu)
        peer_s, skyrm_s = statistics.median(peer_times), statistics.median(skyrm_times)
        ratios = [p / s for p, s in zip(peer_times, skyrm_times)]
        speedup = statistics.median(ratios)
        speedup_cpu = statistics.median(p / s for p, s in zip(peer_cpu, skyrm_cpu))
        distinct = result["distinct_items"]

        # --- agreement: the same item's reward from both scorers (items that fit in max_length)
        from skyrm.records import response_key

        mine = {}
        for bench in loaded:
            per_item = result["benchmarks"][bench_key(result, bench)]["per_item"]
            for example, row in zip(bench.examples, per_item):
                for item, value in zip(example.items, row["rewards"]):
                    mine[response_key(*item)] = value
        lengths = {response_key(*it): len(ids) for it, ids in zip(chosen + rejected,
                                                                   model.renderer.ids_many(
                                                                       [model.renderer.text([*h, *r])
                                                                        for h, r in chosen + rejected]))}
        diffs = [abs(p - mine[response_key(*it)]) for it, p in zip(chosen + rejected, peer_c + peer_r)
                 if lengths[response_key(*it)] <= args.max_length]
        peer_items = len(chosen) + len(rejected)

        # peer figures: the same rules on the peer's rewards
        peer_by_key = {response_key(*it): p for it, p in zip(chosen + rejected, peer_c + peer_r)}
        figure_rows = []
        for bench in loaded:
            key = bench_key(result, bench)
            task = get_task(bench.name)
            records = [(ex.group, ex.info, [peer_by_key[response_key(*it)] for it in ex.items]) for ex in bench.examples]
            peer_headlines = task.aggregate(*pool_units(task, records))["headlines"]
            for label, value in result["benchmarks"][key]["headlines"].items():
                figure_rows.append([key, label, value, peer_headlines[label]])

        # --- batch-size invariance of the figures
        invariance = []
        sizes = [int(s) for s in args.invariance.split(",") if s.strip()]
        if sizes:
            runs = {}
            cut = args.invariance_limit or None
            subset = [type(b)(b.name, b.path, b.examples[:cut], b.notes) for b in loaded]
            for size in sizes:
                cfg = EvalConfig(benches=config.benches, batch_size=size)
                runs[size] = evaluate(subset, lambda items, p=None, s=size: score_items(None, skyrm_model, items,
                                                                                        batch_size=s), cfg)
            base = runs[sizes[0]]
            for size in sizes[1:]:
                other = runs[size]
                same_tables = all(other["benchmarks"][k]["tables"] == b["tables"] for k, b in base["benchmarks"].items())
                max_diff = max(abs(x - y) for k, b in base["benchmarks"].items()
                               for a, o in zip(b["per_item"], other["benchmarks"][k]["per_item"])
                               for x, y in zip(a["rewards"], o["rewards"]))
                invariance.append({"batch_sizes": [sizes[0], size], "examples_per_benchmark": cut,
                                   "identical_figures": same_tables,
                                   "max_reward_diff": max_diff,
                                   "headlines": {k: [b["headlines"], other["benchmarks"][k]["headlines"]]
                                                 for k, b in base["benchmarks"].items()}})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    files = {bench_key(result, b): {"examples": len(b.examples), "items": result["benchmarks"][bench_key(result, b)]["items"],
                                    "distinct": result["benchmarks"][bench_key(result, b)]["distinct_items"]}
             for b in loaded}
    report = {
        "model": args.model, "max_length": args.max_length, "batch_size": args.batch_size, "benchmarks": files,
        "peer_padding": args.peer_padding, "repeat": len(ratios),
        "peer": {"sequences": peer_items, "tokens": peer_tokens, "seconds": peer_s, "times": peer_times,
                 "cpu_times": peer_cpu},
        "skyrm": {"sequences": distinct, "scoring_calls": calls, "seconds": skyrm_s, "times": skyrm_times,
                  "cpu_times": skyrm_cpu},
        "speedup": speedup, "speedups": ratios, "speedup_cpu": speedup_cpu,
        "reward_agreement": {"items_compared": len(diffs), "max_abs_diff": max(diffs) if diffs else None},
        "figures": figure_rows, "batch_size_invariance": invariance,
    }

    table = Table("benchmark", "examples", "responses", "distinct", title="benchmark files", title_justify="left")
    for key, f in files.items():
        table.add_row(key, str(f["examples"]), str(f["items"]), str(f["distinct"]))
    console.print(table)
    table = Table("scorer", "sequences run", "seconds (median)", "benchmark responses / s", "vs peer (median ratio)",
                  "vs peer, CPU time",
                  title=f"{args.model}, max length {args.max_length}, batch {args.batch_size}, peer padding "
                        f"{args.peer_padding}, {len(ratios)} alternating rounds", title_justify="left")
    total = sum(f["items"] for f in files.values())
    table.add_row("reward-bench style (peer)", str(peer_items), f"{peer_s:.1f}", f"{total / peer_s:.1f}", "1.00x",
                  "1.00x")
    table.add_row("skyrm eval", str(distinct), f"{skyrm_s:.1f}", f"{total / skyrm_s:.1f}",
                  f"[bold]{speedup:.2f}x[/bold]", f"{speedup_cpu:.2f}x")
    console.print(table)
    console.print(f"rewards of the {len(diffs)} peer items that fit in {args.max_length} tokens: max |difference| "
                  f"{report['reward_agreement']['max_abs_diff']:.2e}")
    table = Table("benchmark", "headline", "skyrm eval", "peer (right-truncated)", title="figures", title_justify="left")
    for key, label, a, b in figure_rows:
        table.add_row(key, label, f"{100 * a:.2f}", f"{100 * b:.2f}")
    console.print(table)
    for row in invariance:
        console.print(f"batch sizes {row['batch_sizes'][0]} vs {row['batch_sizes'][1]} (first "
                      f"{row['examples_per_benchmark'] or 'all'} examples of each benchmark): figures identical: "
                      f"{row['identical_figures']}; max reward difference {row['max_reward_diff']:.2e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))


def bench_key(result, bench) -> str:
    for key, value in result["benchmarks"].items():
        if value["path"] == bench.path and value["task"] == bench.name:
            return key
    raise KeyError(bench.path)


if __name__ == "__main__":
    main()
