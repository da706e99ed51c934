"""Scoring throughput: skyrm's scorer vs a reward-bench-style scorer, same model, same pairs, same run.

skyrm (``RewardModel.rewards``): chosen and rejected items together, sorted by
length, dynamic padding. The peer does what reward-bench's sequence-classifier
path does (scripts/run_rm.py calling its pipeline with ``padding=True,
truncation=True``): pairs in input order, unsorted, chosen and rejected scored
in separate passes, each batch padded to its own longest sequence
(``--peer-padding max_length`` pads every batch to the max length instead).
Both render the same text with the same tokenizer and read the same model, so
their rewards agree wherever the peer's right-truncation does not cut a
sequence. Both are warmed up, then timed ``--repeat`` times in alternating
order; the figures are medians. Target: skyrm >= 3x the peer.

    python benchmarks/bench_score.py [--model minilm] [--pairs 256] [--max-length 512] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SKYRM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def hh_pairs(n: int, seed: int = 0) -> list[Any]:
    """``n`` distinct pairs from HH-RLHF harmless (the real data beside the project)."""
    from skyrm.formats import read_pairs

    path = DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    if not path.exists():
        raise SystemExit(f"real data not found at {path} (set SKYRM_SHARED_DATA)")
    pairs = [p for result in read_pairs(path, source="hh") for p in result.pairs]
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def rewardbench_style(model: Any, pairs: list[Any], batch_size: int, max_length: int,
                      padding: str = "longest") -> list[tuple[float, float]]:
    """Chosen and rejected in separate passes, input order, each batch padded to its longest sequence
    (reward-bench's ``padding=True``) or, with ``padding="max_length"``, to ``max_length``."""
    import torch

    renderer, tokenizer = model.renderer, model.tokenizer
    out: list[tuple[float, float]] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            sides = []
            for side in ("chosen", "rejected"):
                texts = [renderer.text(p.prompt + getattr(p, side)) for p in chunk]
                batch = tokenizer(texts, padding=padding, truncation=True, max_length=max_length,
                                  add_special_tokens=not renderer.use_template, return_tensors="pt")
                logits = model.model(input_ids=batch["input_ids"].to(model.device),
                                     attention_mask=batch["attention_mask"].to(model.device)).logits
                sides.append(logits[:, 0].float().cpu().tolist())
            out.extend(zip(*sides))
    return out


def run(model_name: str, pairs_n: int, batch_size: int, max_length: int, seed: int = 0, repeat: int = 3,
        padding: str = "longest") -> dict[str, Any]:
    from skyrm.rm.score import load_reward_model

    pairs = hh_pairs(pairs_n, seed)
    model = load_reward_model(model_name, device="cpu", max_length=max_length)
    items = [item for p in pairs for item in ((p.prompt, p.chosen), (p.prompt, p.rejected))]
    # Warm-up both paths on a few pairs (first-call allocations, thread pools).
    model.rewards(items[:8], batch_size=batch_size)
    rewardbench_style(model, pairs[:4], batch_size, max_length, padding)

    # Alternate which side runs first (this machine is shared and noisy): medians of each side's
    # times, and the median of the per-round ratios.
    # Process CPU seconds (all threads) are kept too: they swing much less than wall time with other load.
    skyrm_times, peer_times, skyrm_cpu, peer_cpu = [], [], [], []
    for round_ in range(max(1, repeat)):
        for side in (("skyrm", "peer") if round_ % 2 == 0 else ("peer", "skyrm")):
            start, cpu = time.perf_counter(), time.process_time()
            if side == "skyrm":
                rewards = model.rewards(items, batch_size=batch_size)
                skyrm_times.append(time.perf_counter() - start)
                skyrm_cpu.append(time.process_time() - cpu)
            else:
                peer = rewardbench_style(model, pairs, batch_size, max_length, padding)
                peer_times.append(time.perf_counter() - start)
                peer_cpu.append(time.process_time() - cpu)
    skyrm_s, peer_s = statistics.median(skyrm_times), statistics.median(peer_times)
    ratios = [p / s for p, s in zip(peer_times, skyrm_times)]
    cpu_ratios = [p / s for p, s in zip(peer_cpu, skyrm_cpu)]

    ours = list(zip(rewards[0::2], rewards[1::2]))
    tokens = [len(ids) for ids in model.encode(items) if ids is not None]
    # Untruncated by either scorer: the full rendering fits (skyrm would cut history, the peer the end).
    full = [len(ids) for ids in model.renderer.ids_many([model.renderer.text(h + r) for h, r in items])]
    fits = [i for i in range(len(pairs)) if max(full[2 * i], full[2 * i + 1]) <= max_length]
    agree = sum((ours[i][0] > ours[i][1]) == (peer[i][0] > peer[i][1]) for i in range(len(pairs)))
    diff = max((abs(ours[i][k] - peer[i][k]) for i in fits for k in (0, 1)), default=0.0)
    return {
        "model": model_name, "pairs": len(pairs), "batch_size": batch_size, "max_length": max_length,
        "peer_padding": padding, "repeat": len(ratios),
        "skyrm_times": [round(t, 2) for t in skyrm_times], "peer_times": [round(t, 2) for t in peer_times],
        "skyrm_cpu_times": [round(t, 2) for t in skyrm_cpu], "peer_cpu_times": [round(t, 2) for t in peer_cpu],
        "speedup_cpu": round(statistics.median(cpu_ratios), 2), "speedups_cpu": [round(r, 2) for r in cpu_ratios],
        "mean_tokens": round(sum(tokens) / len(tokens), 1),
        "skyrm_seconds": round(skyrm_s, 2), "peer_seconds": round(peer_s, 2),
        "skyrm_pairs_per_s": round(len(pairs) / skyrm_s, 2), "peer_pairs_per_s": round(len(pairs) / peer_s, 2),
        "speedup": round(statistics.median(ratios), 2), "speedups": [round(r, 2) for r in ratios],
        "skyrm_accuracy": sum(c > r for c, r in ours) / len(ours),
        "peer_accuracy": sum(c > r for c, r in peer) / len(peer),
        "same_preference": agree / len(pairs), "max_abs_diff_untruncated": diff, "untruncated_pairs": len(fits),
    }


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table("model", "pairs", "max len", "mean tok", "peer padding", "skyrm pairs/s", "reward-bench-style pairs/s",
                "speedup (median)", "CPU-time speedup", "same preference", "max |Δr| (untruncated)",
                title="Scoring: skyrm vs reward-bench style (medians of alternating runs)")
    for r in rows:
        out.add_row(r["model"], str(r["pairs"]), str(r["max_length"]), str(r["mean_tokens"]),
                    f"{r.get('peer_padding', 'max_length')} x{r.get('repeat', 1)}",
                    f"{r['skyrm_pairs_per_s']:.2f}", f"{r['peer_pairs_per_s']:.2f}", f"{r['speedup']:.2f}x",
                    f"{r['speedup_cpu']:.2f}x" if "speedup_cpu" in r else "",
                    f"{r['same_preference']:.1%}", f"{r['max_abs_diff_untruncated']:.1e}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model(s) to score with (default minilm)")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per side, alternating the order")
    parser.add_argument("--peer-padding", choices=["longest", "max_length"], default="longest",
                        help="longest: each batch to its longest sequence, as reward-bench (default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    rows = [run(m, args.pairs, args.batch_size, args.max_length, repeat=args.repeat, padding=args.peer_padding)
            for m in (args.model or ["minilm"])]
    Console(width=200).print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
