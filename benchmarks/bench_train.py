"""Reward-model training: `skyrm train` vs TRL's RewardTrainer, same data/backbone/length/batch, same run.

Both trainers get the same pairs from HH-RLHF harmless (split by prompt into
train and held-out), rendered and tokenised once by skyrm (pairs that would
need truncation are left out, so both see identical token ids: TRL drops
over-long pairs where skyrm truncates history), the same backbone loaded the
same way (one label, sdpa, seeded head), the same learning rate, batch size
and one epoch. TRL runs twice:

- ``trl`` -- RewardConfig's defaults for everything not named above, as a user
  gets it (``use_cpu=True`` is required on a machine without a GPU). TRL
  defaults to bf16 autocast and gradient checkpointing; skyrm's ``auto``
  precision measures its way to fp32 on CPUs without native bf16 (emulated bf16
  runs ~4x slower there) and checkpoints only when asked.
- ``trl-matched`` -- TRL given skyrm's choices (fp32, no gradient checkpointing,
  dropout off, the same warm-up and linear schedule), so the remaining
  difference is the loop itself (length-grouped batches, one forward per pair).

Both sides are timed over the same two spans. *Loop*: the optimizer steps
only -- skyrm's ``train_seconds`` (its loop less its evaluation and checkpoint
saving) and, for TRL, ``on_train_begin`` to ``on_train_end`` (its loop, after
the dataloader and optimizer are built); pairs/s, tokens/s and the speed ratio
use it. *Wall*: from the worker's start (before the trainer's imports) to the
trained model saved -- skyrm's store, encoding, loop, evaluation and
checkpoints; TRL's dataset, trainer set-up, ``train()`` and ``save_model()``;
the wall ratio uses it. With ``--repeat`` the trainers run that many times in
alternating order and each figure is the median.

Each trainer runs in its own process (peak RSS is per process); held-out
accuracy is computed for all with the same function on the same ids, and the
accuracy difference gets a paired-bootstrap 95% interval over the held-out
pairs (two trainers that see batches in different orders differ by a few
pairs at 128 held-out pairs: use --eval-pairs 400 and more --pairs to
resolve a point). Target: skyrm >= 2x TRL's pairs/s with held-out accuracy
within 1 point. The scoring
table of bench_score.py follows (target >= 3x).

    python benchmarks/bench_train.py [--pairs 512] [--eval-pairs 128] [--backbone minilm --backbone smollm2]
                                     [--method full --method lora] [--max-length 256] [--json out.json]
                                     [--trl defaults --trl matched] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from paired import paired_bootstrap  # benchmarks/ is the script's directory, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
LR = {"full": 2e-5, "lora": 2e-4}


# --------------------------------------------------------------- data
def prepare(backbone: str, n_train: int, n_eval: int, max_length: int, seed: int, path: Path) -> dict[str, Any]:
    """Pairs split by prompt, kept only where no side needs truncation; written to ``path`` as JSON."""
    from bench_score import hh_pairs

    from skyrm.records import content_hash
    from skyrm.rm.data import Renderer
    from skyrm.rm.backbone import load_tokenizer, resolve_model

    renderer = Renderer.for_tokenizer(load_tokenizer(resolve_model(backbone)), max_length)
    pairs = hh_pairs(10**9, seed)
    train, evals = [], []
    for pair in pairs:
        encoded = renderer.encode_many([(pair.prompt, pair.chosen), (pair.prompt, pair.rejected)])
        if any(not isinstance(e, tuple) or e[1] for e in encoded) or encoded[0][0] == encoded[1][0]:
            continue  # skipped or truncated: not the same input for both trainers
        held_out = int(content_hash({"seed": seed, "p": pair.prompt}, 8), 16) % 5 == 0
        target = evals if held_out else train
        limit = n_eval if held_out else n_train
        if len(target) < limit:
            target.append({"pair": {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected},
                           "ids": [encoded[0][0], encoded[1][0]]})
        if len(train) >= n_train and len(evals) >= n_eval:
            break
    data = {"backbone": backbone, "max_length": max_length, "train": train, "eval": evals}
    path.write_text(json.dumps(data))
    return {"train": len(train), "eval": len(evals),
            "mean_tokens": sum(len(c) + len(r) for c, r in (x["ids"] for x in train)) / max(1, 2 * len(train))}


# ------------------------------------------------------------ workers
def worker_skyrm(data: dict[str, Any], method: str, batch_size: int, seed: int, start: float) -> dict[str, Any]:
    from skyrm.records import Pair
    from skyrm.rm.config import load_config
    from skyrm.rm.train import train_reward_model
    from skyrm.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        for split in ("train", "eval"):
            store.add_pairs(Pair(x["pair"]["prompt"], x["pair"]["chosen"], x["pair"]["rejected"], source=split)
                            for x in data[split])
        cfg = load_config(None, base=data["backbone"], method=method, pool="train", eval_pool="eval",
                          max_length=data["max_length"], batch_size=batch_size, epochs=1, lr=LR[method],
                          eval_every=0, precision="fp32", seed=seed, device="cpu", out=str(Path(tmp) / "run"))
        result = train_reward_model(store, cfg)
        wall = time.perf_counter() - start
        from skyrm.rm.score import load_reward_model

        trained = load_reward_model(str(Path(tmp) / "run" / "last"), device="cpu")
        correct = held_out_correct(trained.reader, data, trained.tokenizer.pad_token_id, batch_size)
    return {"pairs": result["train_pairs"], "train_seconds": result["train_seconds"], "wall_seconds": round(wall, 2),
            "accuracy": sum(correct) / len(correct), "steps": result["steps"], "correct": correct,
            "settings": {"warmup_ratio": cfg.warmup_ratio, "schedule": cfg.schedule,
                         "max_grad_norm": cfg.max_grad_norm, "weight_decay": cfg.weight_decay}}


def held_out_correct(reader: Any, data: dict[str, Any], pad_id: int, batch_size: int) -> list[int]:
    """1 where the trained model ranks a held-out pair's chosen side higher: the same function for every trainer."""
    import torch

    from skyrm.rm.data import length_grouped_batches
    from skyrm.rm.steps import pair_rewards

    pairs = [tuple(x["ids"]) for x in data["eval"]]
    correct = [0] * len(pairs)
    reader.model.eval()
    with torch.inference_mode():
        for batch in length_grouped_batches([max(len(c), len(r)) for c, r in pairs], batch_size * 2):
            chosen, rejected, _ = pair_rewards(reader, [pairs[i] for i in batch], pad_id, "right", "cpu", False)
            for i, c, r in zip(batch, chosen.tolist(), rejected.tolist()):
                correct[i] = int(c > r)
    return correct


def worker_trl(data: dict[str, Any], method: str, batch_size: int, seed: int, config: str,
               start: float) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from skyrm.rm.config import load_config
    from skyrm.rm.backbone import RewardReader, head_modules, load_classifier, load_tokenizer, resolve_model
    from skyrm.rm.build import lora_targets

    class LoopTimer(TrainerCallback):
        """The optimizer loop only: from on_train_begin (dataloader and optimizer built) to on_train_end."""

        began = ended = 0.0

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self.began = time.perf_counter()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            self.ended = time.perf_counter()

    source = resolve_model(data["backbone"])
    tokenizer = load_tokenizer(source)
    model, missing = load_classifier(source, tokenizer, device="cpu", seed=seed)
    cfg = load_config(None, base=data["backbone"], method=method)  # skyrm's defaults, as worker_skyrm gets them
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        heads = head_modules(model)
        new_modules = sorted({k.rsplit(".", 1)[0] for k in missing})
        peft_config = LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                 target_modules=lora_targets(model, cfg, skip=heads + new_modules),
                                 modules_to_save=sorted({n.split(".")[-1] for n in heads + new_modules}))
    train = Dataset.from_dict({"chosen_ids": [x["ids"][0] for x in data["train"]],
                               "rejected_ids": [x["ids"][1] for x in data["train"]]})
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(output_dir=tmp, use_cpu=True, per_device_train_batch_size=batch_size, num_train_epochs=1,
                      learning_rate=LR[method], max_length=None, logging_steps=10**6, save_strategy="no",
                      eval_strategy="no", report_to=[], seed=seed, data_seed=seed)
        if config == "matched":
            steps = -(-len(data["train"]) // batch_size)  # one epoch, as skyrm counts its optimizer steps
            common.update(lr_scheduler_type="linear" if cfg.schedule == "linear" else "constant_with_warmup",
                          max_grad_norm=cfg.max_grad_norm, weight_decay=cfg.weight_decay,
                          warmup_steps=int(round(cfg.warmup_ratio * steps)),  # = skyrm's (steps.lr_lambda)
                          bf16=False, fp16=False, gradient_checkpointing=False, dataloader_num_workers=0,
                          disable_dropout=True)
        args = RewardConfig(**common)
        timer = LoopTimer()
        trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                                peft_config=peft_config, callbacks=[timer])
        began = time.perf_counter()
        output = trainer.train()
        train_call_seconds = time.perf_counter() - began
        trainer.save_model(str(Path(tmp) / "final"))
        wall = time.perf_counter() - start
        train_seconds = timer.ended - timer.began
        trained = trainer.model
    trained.eval()
    reader = RewardReader(trained)
    correct = held_out_correct(reader, data, tokenizer.pad_token_id, batch_size)
    return {"pairs": len(data["train"]), "train_seconds": round(train_seconds, 2), "wall_seconds": round(wall, 2),
            "train_call_seconds": round(train_call_seconds, 2),
            "accuracy": sum(correct) / len(correct), "steps": output.global_step, "correct": correct,
            "settings": {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
                         "disable_dropout": args.disable_dropout, "lr_scheduler": str(args.lr_scheduler_type),
                         "warmup_steps": args.warmup_steps, "max_grad_norm": args.max_grad_norm,
                         "weight_decay": args.weight_decay}}


def worker(kind: str, data_path: Path, method: str, batch_size: int, seed: int) -> None:
    start = time.perf_counter()  # the wall span starts before either trainer's imports
    import torch

    torch.manual_seed(seed)
    data = json.loads(data_path.read_text())
    if kind == "skyrm":
        result = worker_skyrm(data, method, batch_size, seed, start)
    else:
        result = worker_trl(data, method, batch_size, seed, "matched" if kind == "trl-matched" else "defaults", start)
    tokens = sum(len(c) + len(r) for c, r in (x["ids"] for x in data["train"]))
    result.update(kind=kind, method=method, backbone=data["backbone"],
                  pairs_per_s=round(result["pairs"] / result["train_seconds"], 3),
                  tokens_per_s=round(tokens / result["train_seconds"], 1),
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    print("RESULT " + json.dumps(result))


def run_worker(kind: str, data_path: Path, method: str, batch_size: int, seed: int) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data_path), "--method", method,
           "--batch-size", str(batch_size), "--seed", str(seed)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One trainer's runs: the first run's record (accuracy, per-pair results) with median timings and memory."""
    out = dict(runs[0])
    for key in ("train_seconds", "wall_seconds", "pairs_per_s", "tokens_per_s", "peak_rss_mb", "train_call_seconds"):
        if key in out:
            out[key] = statistics.median(r[key] for r in runs)
    out["runs"] = [{k: r.get(k) for k in ("train_seconds", "wall_seconds", "pairs_per_s", "peak_rss_mb", "accuracy")}
                   for r in runs]
    return out


# -------------------------------------------------------------- report
TRL_KINDS = {"defaults": "trl", "matched": "trl-matched"}


def train_table(rows: list[dict[str, Any]]) -> Table:
    out = Table("backbone", "method", "trainer", "pairs", "loop pairs/s", "loop tokens/s", "wall s", "peak RSS MB",
                "held-out acc", "skyrm loop ratio", "skyrm wall ratio", "skyrm acc Δ (pts) [95% CI]",
                title="Training: skyrm train vs TRL RewardTrainer (trl: TRL's defaults; trl-matched: TRL with skyrm's "
                "precision, schedule and no checkpointing; loop = optimizer steps only, wall = start to saved model)")
    for row in rows:
        for kind in ["skyrm", *row["peers"]]:
            r = row[kind]
            ratio = f"{row[f'speedup_vs_{kind}']:.2f}x" if kind != "skyrm" else ""
            wall_ratio = f"{row[f'wall_speedup_vs_{kind}']:.2f}x" if kind != "skyrm" else ""
            delta = ""
            if kind != "skyrm":
                low, high = row[f"accuracy_delta_ci_vs_{kind}"]
                delta = f"{row[f'accuracy_delta_points_vs_{kind}']:+.1f} [{low:+.1f}, {high:+.1f}]"
            out.add_row(row["backbone"], row["method"], kind, str(r["pairs"]), f"{r['pairs_per_s']:.2f}",
                        f"{r['tokens_per_s']:.0f}", f"{r['wall_seconds']:.1f}", f"{r['peak_rss_mb']:.0f}",
                        f"{r['accuracy']:.3f}", ratio, wall_ratio, delta)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--eval-pairs", type=int, default=128)
    parser.add_argument("--backbone", action="append")
    parser.add_argument("--method", action="append", choices=["full", "lora"])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-pairs", type=int, default=256, help="pairs for the scoring table (0: skip it)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trl", action="append", choices=["defaults", "matched"],
                        help="TRL configurations to run (default: both)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per trainer, in alternating order; figures are medians")
    parser.add_argument("--worker", choices=["skyrm", "trl", "trl-matched"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.worker:
        worker(args.worker, args.data, args.method[0], args.batch_size, args.seed)
        return
    console = Console(width=200)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbone or ["minilm", "smollm2"]:
            data_path = Path(tmp) / f"{backbone}.json"
            info = prepare(backbone, args.pairs, args.eval_pairs, args.max_length, args.seed, data_path)
            console.print(f"{backbone}: {info['train']} train / {info['eval']} held-out pairs, "
                          f"mean {info['mean_tokens']:.0f} tokens per sequence")
            for method in args.method or ["full", "lora"]:
                kinds = ["skyrm"] + [TRL_KINDS[c] for c in (args.trl or ["defaults", "matched"])]
                runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
                for round_ in range(max(1, args.repeat)):
                    for kind in (kinds if round_ % 2 == 0 else kinds[::-1]):
                        runs[kind].append(run_worker(kind, data_path, method, args.batch_size, args.seed))
                result = {k: median_run(v) for k, v in runs.items()}
                row = {"backbone": backbone, "method": method, "peers": kinds[1:], "repeat": max(1, args.repeat),
                       **result, **info}
                for peer in kinds[1:]:
                    row[f"speedup_vs_{peer}"] = round(statistics.median(
                        s["pairs_per_s"] / p["pairs_per_s"] for s, p in zip(runs["skyrm"], runs[peer])), 2)
                    row[f"wall_speedup_vs_{peer}"] = round(statistics.median(
                        p["wall_seconds"] / s["wall_seconds"] for s, p in zip(runs["skyrm"], runs[peer])), 2)
                    row[f"accuracy_delta_points_vs_{peer}"] = round(
                        100 * (result["skyrm"]["accuracy"] - result[peer]["accuracy"]), 1)
                    row[f"accuracy_delta_ci_vs_{peer}"] = paired_bootstrap(result["skyrm"]["correct"],
                                                                           result[peer]["correct"], seed=args.seed)
                rows.append(row)
                console.print(f"  {method}: skyrm {result['skyrm']['pairs_per_s']:.2f} pairs/s in the loop, "
                              f"{result['skyrm']['wall_seconds']:.1f} s wall; " + ", ".join(
                                  f"{peer} {result[peer]['pairs_per_s']:.2f} pairs/s "
                                  f"({row[f'speedup_vs_{peer}']:.2f}x), {result[peer]['wall_seconds']:.1f} s wall "
                                  f"({row[f'wall_speedup_vs_{peer}']:.2f}x)" for peer in kinds[1:]))
    console.print(train_table(rows))
    score_rows = []
    if args.score_pairs:
        from bench_score import run as run_score, table as score_table

        score_rows = [run_score(b, args.score_pairs, args.batch_size, 512) for b in args.backbone or ["minilm"]]
        console.print(score_table(score_rows))
    if args.json:
        args.json.write_text(json.dumps({"train": rows, "score": score_rows}, indent=2))


if __name__ == "__main__":
    main()
