"""Peak memory of one training step, measured in a fresh process, beside skyrm's estimate.

    python benchmarks/bench_memory.py                      # the default grid
    python benchmarks/bench_memory.py --base smollm2 --method lora --batch 2 4 --length 256 --json out.json

Each configuration runs in its own process (peak RSS is per process): load the
backbone as `skyrm train` does, run one step (forward of 2·batch sequences of
exactly `length` tokens, Bradley-Terry loss, backward, AdamW step) and report the
peak resident set. The estimate is `skyrm.rm.memory.estimate_step_bytes`, which
`skyrm train` uses to fit its micro-batch; the ratio shows how far it is off.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any

GRID = [("minilm", "full", 16, 256), ("minilm", "lora", 32, 256), ("smollm2", "lora", 4, 256),
        ("smollm2", "lora", 8, 256), ("smollm2", "lora", 16, 256), ("smollm2", "lora", 16, 128),
        ("smollm2", "full", 8, 256)]


def probe(base: str, method: str, batch: int, length: int, precision: str) -> dict[str, Any]:
    """Runs in the child: one real step; returns measured and estimated peaks in GB."""
    import torch

    from skyrm.rm.config import TrainConfig
    from skyrm.rm.loss import bt_loss
    from skyrm.rm.memory import GIB, ModelShape, activation_bytes_for, estimate_step_bytes, weight_bytes_for
    from skyrm.rm.backbone import RewardReader, load_tokenizer, resolve_model
    from skyrm.rm.build import build_model
    from skyrm.rm.runtime import autocast_dtype

    config = TrainConfig(base=base, method=method, precision=precision, batch_size=batch, max_length=length)
    source = resolve_model(base)
    tokenizer = load_tokenizer(source)
    model, _ = build_model(config, source, tokenizer, "cpu")
    model.train()
    shape = ModelShape.of(model)
    amp = autocast_dtype(config, "cpu")
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    reader = RewardReader(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, min(tokenizer.vocab_size, 30000), (2 * batch, length), generator=generator)
    mask = torch.ones_like(ids)
    with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
        rewards = reader(ids, mask).float()
    loss = bt_loss(rewards[:batch], rewards[batch:])
    loss = loss[0] if isinstance(loss, tuple) else loss
    loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    estimate = estimate_step_bytes(shape, pairs=batch, seq_len=length, activation_bytes=activation_bytes_for(amp),
                                   weight_bytes=weight_bytes_for(method)) / GIB
    return {"base": base, "method": method, "batch": batch, "length": length,
            "precision": "bf16" if amp is not None else "fp32", "load_gb": round(loaded, 2),
            "peak_gb": round(peak, 2), "estimate_gb": round(estimate, 2), "ratio": round(estimate / peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", nargs="*")
    parser.add_argument("--method", default=None)
    parser.add_argument("--batch", type=int, nargs="*")
    parser.add_argument("--length", type=int, nargs="*")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"])
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(probe(*json.loads(args.child))))
        return
    grid = GRID
    if args.base:
        grid = [(b, args.method or "lora", n, L) for b in args.base for n in (args.batch or [4])
                for L in (args.length or [256])]
    rows = []
    for base, method, batch, length in grid:
        child = json.dumps([base, method, batch, length, args.precision])
        done = subprocess.run([sys.executable, __file__, "--child", child], capture_output=True, text=True)
        if done.returncode != 0:
            rows.append({"base": base, "method": method, "batch": batch, "length": length,
                         "error": done.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"{'base':<9}{'method':<7}{'batch':>6}{'length':>7}{'prec':>6}{'load GB':>9}{'peak GB':>9}"
          f"{'estimate GB':>13}{'est/peak':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['base']:<9}{r['method']:<7}{r['batch']:>6}{r['length']:>7}  error: {r['error']}")
            continue
        print(f"{r['base']:<9}{r['method']:<7}{r['batch']:>6}{r['length']:>7}{r['precision']:>6}{r['load_gb']:>9}"
              f"{r['peak_gb']:>9}{r['estimate_gb']:>13}{r['ratio']:>10}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
