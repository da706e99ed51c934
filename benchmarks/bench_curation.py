"""The measured result of curation: flip detection and held-out accuracy, with injected label noise.

A dataset is split **by prompt** into a pool, a gold slice (a few hundred pairs whose
labels are taken as human-verified) and a test split. A seeded ``--noise`` share (30%)
of the pool's labels is flipped; which ones is recorded in ``flips.json`` next to the
``--json`` report and as the pool file the flipped pairs were imported from (source
``pool-flipped``; curation never reads sources). The files go through the project's
import path (``skyrm.ingest.import_file``) into a fresh store, and the real curation runs
on it (``skyrm.curate.run_curation``: Stage 1, then Stage 2 once per ``--folds`` value,
each on a copy of the store after Stage 1, with ``recycle = "flip"`` so that the kept and
the recycled sets come from the same decisions).

Reported, per ``--folds`` value:
- flip detection: precision, recall and F1 of the discarded set against the injected flips;
- held-out accuracy on the test split of RMs trained with the same backbone, method and
  optimizer steps on (a) the noisy pool, (b) the curated pool (kept pairs), (c) curated +
  recycled (discarded pairs flipped), (d) the clean pool before flipping.
Targets: F1 >= 0.9; (b) >= (a) + 3 points and within 1 point of (d).

The judge is measured, not trusted: the default offline judge (SmolLM2-135M GGUF) costs
seconds per pair on a CPU and is near chance on real pairs, so the benchmark checks it on
``--judge-check-pairs`` gold pairs with ``--shots`` examples and lets ``--min-judge-gold-acc``
keep it from voting; ``--budget-judge-calls`` caps what it may spend if it does vote.

    python benchmarks/bench_curation.py --data demo|rmb|hh [--pool-size 2000] [--gold 300] [--test 500]
        [--folds 1,3] [--rm-method head] [--base minilm] [--iterations 1] [--judge llamacpp:smollm2]
        [--shots 2] [--judge-check-pairs 10] [--budget-judge-calls 60] [--workdir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
console = Console(width=200)
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data
def load_rows(data: str, seed: int, demo_n: int) -> tuple[list[dict[str, Any]], str]:
    """Rows in the dataset's own layout, and the name of the field that holds the rejected response."""
    if data == "demo":
        from skyrm.demo_data import generate

        rows = []
        for row in generate(demo_n, seed=seed):
            row.pop("flipped", None)  # the truth travels in flips.json, not in the rows
            rows.append(row)
        return rows, "rejected"
    if data == "rmb":
        rows = []
        for file in sorted((SHARED / "rmb" / "Pairwise_set").rglob("*.json")):
            rows.extend(json.loads(file.read_text()))
        return rows, "reject"
    if data == "hh":
        with gzip.open(SHARED / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt") as handle:
            return [json.loads(line) for line in handle if line.strip()], "rejected"
    raise SystemExit(f"--data must be demo, rmb or hh, got {data!r}")


def response_text(row: dict[str, Any], field: str) -> str:
    value = row[field]
    if isinstance(value, dict):  # RMB: {"llm_name", "answer"}
        return str(value.get("answer", ""))
    if isinstance(value, str) and "\n\nAssistant:" in value:  # HH: the whole transcript; the last turn answers
        return value[value.rfind("\n\nAssistant:"):]
    return value if isinstance(value, str) else json.dumps(value)


def prompt_key(data: str, row: dict[str, Any]) -> str:
    if data == "rmb":
        return json.dumps(row["conversation_input"], sort_keys=True)
    if data == "hh":
        text = row["chosen"]
        return text[:text.rfind("\n\nAssistant:")]
    return row["prompt"] if isinstance(row["prompt"], str) else json.dumps(row["prompt"], sort_keys=True)


def split_by_prompt(data: str, rows: list[dict[str, Any]], *, gold: int, test: int, pool_size: int | None,
                    seed: int) -> dict[str, list[dict[str, Any]]]:
    """Whole prompt groups go to test, then gold, then the pool (cut to ``pool_size`` pairs)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(prompt_key(data, row), []).append(row)
    keys = sorted(groups)
    random.Random(f"split-{seed}").shuffle(keys)
    out: dict[str, list[dict[str, Any]]] = {"test": [], "gold": [], "pool": []}
    for key in keys:
        target = "test" if len(out["test"]) < test else "gold" if len(out["gold"]) < gold else "pool"
        if target == "pool" and pool_size is not None and len(out["pool"]) >= pool_size:
            break
        out[target].extend(groups[key])
    if pool_size is not None:
        out["pool"] = out["pool"][:pool_size]
    return out


def flip(row: dict[str, Any], rejected_field: str) -> dict[str, Any]:
    flipped = dict(row)
    flipped["chosen"], flipped[rejected_field] = row[rejected_field], row["chosen"]
    return flipped


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def copy_store(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (the backup API: the WAL is included)."""
    if target.exists():
        target.unlink()
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


# ------------------------------------------------------------ train and test
def ids_file(path: Path, ids: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{pid}\n" for pid in sorted(ids)))
    return str(path)


def train(store: Any, args: argparse.Namespace, name: str, pool: str, out: Path, steps: int) -> dict[str, Any]:
    """Train an RM on ``pool`` with the shared budget; the checkpoint is chosen on gold."""
    from skyrm.rm.config import TrainConfig
    from skyrm.rm.train import train_reward_model

    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    config = TrainConfig(base=args.base, method=args.rm_method, pool=pool, eval_pool="gold", out=str(out),
                         max_length=args.max_length, batch_size=args.rm_batch_size, seed=args.seed,
                         device=args.device, steps=steps)
    trained = train_reward_model(store, config)
    log(f"{name}: {trained['train_pairs']} train pairs, gold {trained['best_accuracy']:.3f} "
        f"({time.perf_counter() - started:.0f}s)")
    return {"train_pairs": trained["train_pairs"], "gold_accuracy": trained["best_accuracy"],
            "checkpoint": str(out / "best"), "train_seconds": round(time.perf_counter() - started, 1)}


def test_accuracy(store: Any, args: argparse.Namespace, name: str, checkpoint: str, test_pool: str) -> dict[str, Any]:
    """Share of test pairs whose stored (true) chosen response the RM prefers; a tie counts as wrong."""
    from skyrm.rm.score import score_pool

    scored = score_pool(store, checkpoint, pool=test_pool, batch_size=32, device=args.device)
    p = [v[2] for v in store.scores_for(scored["run_id"]).values()]
    accuracy = sum(1 for x in p if x > 0.5) / len(p) if p else None
    log(f"{name}: test {accuracy:.3f} on {len(p)} pairs")
    return {"test_accuracy": accuracy, "test_pairs": len(p)}


def budget_steps(args: argparse.Namespace, pool_pairs: int) -> int:
    """The same optimizer steps for all four RMs: what the noisy pool's training would take."""
    if args.rm_steps:
        return args.rm_steps
    from skyrm.rm.config import TrainConfig

    defaults = TrainConfig(base=args.base)
    train_pairs = int(pool_pairs * 0.9)  # less the share a pool without its own eval split would hold out
    if args.rm_method == "head":
        return math.ceil(train_pairs / defaults.head_batch_size) * defaults.head_epochs
    return math.ceil(train_pairs / args.rm_batch_size)


def detection(discarded: set[str], flipped: set[str]) -> dict[str, Any]:
    hit = len(discarded & flipped)
    precision = hit / len(discarded) if discarded else None
    recall = hit / len(flipped) if flipped else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"discarded": len(discarded), "flipped": len(flipped), "true_positives": hit,
            "precision": precision, "recall": recall, "f1": f1}


def rule_variants(rules: dict[str, Any], flipped: set[str], margin: float = 0.1) -> dict[str, dict[str, Any]]:
    """Flip detection under other keep rules, recomputed from the inputs each Stage 2 decision stored
    (p_gold, p_best, the judges' verdict): what a change of rule would do, without another run.

    The first row recomputes the rule as run (``rules.stage2_decision``) and must match the real
    decisions; the others are candidates: a gold-RM veto only when it is confident (within
    ``margin`` of 0.5 it defers to the best RM and the judges), discarding only when both RMs
    disagree, and each RM alone.
    """
    from skyrm.curate.rules import stage2_decision

    def agrees(p: float | None) -> bool | None:
        return None if p is None else p > 0.5

    def judges(d: dict[str, Any]) -> bool | None:
        return None if d.get("judges") not in ("chosen", "rejected") else d["judges"] == "chosen"

    def confident_gold(d: dict[str, Any]) -> bool:
        p_gold = d["p_gold"]
        if p_gold is None or p_gold <= 0.5 - margin:
            return False
        if p_gold > 0.5 + margin:
            return agrees(d["p_best"]) is True or judges(d) is True
        return agrees(d["p_best"]) is True and judges(d) is not False

    keeps = {
        "as run: gold RM and (judges or best RM) agree": lambda d: stage2_decision(
            agrees(d["p_gold"]), judges(d), agrees(d["p_best"]))[0] == "chosen",
        f"gold RM vetoes only beyond 0.5 ± {margin}": confident_gold,
        "discard only when both RMs disagree": lambda d: agrees(d["p_gold"]) is True or agrees(d["p_best"]) is True,
        "best RM alone": lambda d: agrees(d["p_best"]) is True,
        "gold RM alone": lambda d: agrees(d["p_gold"]) is True,
    }
    return {name: detection({pid for pid, label in rules.items() if not keep(label.detail)}, flipped)
            for name, keep in keeps.items()}


def judge_summary(spec: str, info: dict[str, Any]) -> str:
    acc = info.get("accuracy")
    decided, abstained = info.get("n", 0), info.get("abstained", 0)
    return (f"{spec}: {'n/a' if acc is None else f'{acc:.2f}'} on {decided} decided of {decided + abstained} "
            f"checked ({abstained} abstained: orders disagree){'' if info.get('votes') else ', not voting'}")


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["demo", "rmb", "hh"], default="rmb")
    parser.add_argument("--pool-size", type=int, default=2000, help="pool pairs (a prefix of the shuffled prompts)")
    parser.add_argument("--gold", type=int, default=300, help="gold pairs (whole prompts, so a few more)")
    parser.add_argument("--test", type=int, default=500, help="test pairs (whole prompts, so a few more)")
    parser.add_argument("--demo-n", type=int, default=3000, help="--data demo: pairs generated before the split")
    parser.add_argument("--noise", type=float, default=0.3, help="share of the pool's labels flipped")
    parser.add_argument("--max-response-chars", type=int, default=None,
                        help="keep only pairs whose responses are at most this long (so they fit --max-length)")
    parser.add_argument("--folds", default="1,3", help="Stage 2 cross-fitting folds to compare, comma-separated")
    parser.add_argument("--rm-method", default="head")
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--rm-batch-size", type=int, default=16)
    parser.add_argument("--rm-steps", type=int, default=None,
                        help="optimizer steps of the four compared RMs (default: one noisy-pool budget)")
    parser.add_argument("--iterations", type=int, default=1, help="Stage 1 iterations")
    parser.add_argument("--judge", action="append", default=None, help="judge spec (default llamacpp:smollm2)")
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--judge-check-pairs", type=int, default=10)
    parser.add_argument("--min-judge-gold-acc", type=float, default=0.6)
    parser.add_argument("--budget-judge-calls", type=int, default=60)
    parser.add_argument("--k-max", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="stores and checkpoints (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from skyrm.curate import CurateConfig, run_curation
    from skyrm.ingest import import_file
    from skyrm.judges import DEFAULT_JUDGE
    from skyrm.store import Store

    folds_list = [int(f) for f in args.folds.split(",") if f.strip()]
    judges = tuple(args.judge or (DEFAULT_JUDGE,))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_curation_"))
    work.mkdir(parents=True, exist_ok=True)
    files = work / "files"
    files.mkdir(exist_ok=True)

    # ---- data: split by prompt, flip a seeded share of the pool
    rows, rejected_field = load_rows(args.data, args.seed, args.demo_n)
    if args.max_response_chars:
        # a pair whose response alone does not fit in --max-length is skipped by training and left
        # unscored by Stage 2 (so discarded as "gold RM has no score"): keep the pairs that fit
        total = len(rows)
        rows = [r for r in rows if max(len(response_text(r, "chosen")), len(response_text(r, rejected_field)))
                <= args.max_response_chars]
        log(f"--max-response-chars {args.max_response_chars}: {len(rows)} of {total} rows kept")
    parts = split_by_prompt(args.data, rows, gold=args.gold, test=args.test, pool_size=args.pool_size,
                            seed=args.seed)
    pool = parts["pool"]
    flip_at = set(random.Random(f"flip-{args.seed}").sample(range(len(pool)), round(args.noise * len(pool))))
    kept_rows = [r for i, r in enumerate(pool) if i not in flip_at]
    flipped_rows = [flip(r, rejected_field) for i, r in enumerate(pool) if i in flip_at]
    clean_rows = [r for i, r in enumerate(pool) if i in flip_at]
    paths = {"gold": write_jsonl(files / "gold.jsonl", parts["gold"]),
             "test": write_jsonl(files / "test.jsonl", parts["test"]),
             "pool": write_jsonl(files / "pool.jsonl", kept_rows),
             "pool-flipped": write_jsonl(files / "pool-flipped.jsonl", flipped_rows),
             "clean-flipped": write_jsonl(files / "clean-flipped.jsonl", clean_rows)}
    log(f"{args.data}: {len(rows)} rows -> pool {len(pool)} ({len(flip_at)} flipped), gold {len(parts['gold'])}, "
        f"test {len(parts['test'])}; files in {files}")

    # ---- the curation store: gold + the noisy pool, through the import path
    base_db = work / "curate.db"
    store = Store(base_db)  # an existing one continues: imports and curation steps are resumable
    import_file(store, paths["gold"], source="gold", as_="gold")
    import_file(store, paths["pool"], source="pool")
    import_file(store, paths["pool-flipped"], source="pool-flipped")
    flipped_ids = set(store.pair_ids(source="pool-flipped")) - set(store.pair_ids(source="pool"))
    pool_ids = set(store.pair_ids(source="pool")) | flipped_ids
    gold_n = store.count_pairs("gold")
    log(f"imported: pool {len(pool_ids)} ({len(flipped_ids)} flipped), gold {gold_n}")
    flips_record = {"data": args.data, "seed": args.seed, "noise": args.noise,
                    "flipped_pair_ids": sorted(flipped_ids),
                    "flipped_rows": [r.get("pair_uid") or r.get("id") or i for i, r in
                                     zip(sorted(flip_at), clean_rows)]}

    def curate_config(folds: int) -> CurateConfig:
        return CurateConfig(base=args.base, rm_method=args.rm_method, max_length=args.max_length,
                            iterations=args.iterations, judges=judges, shots=args.shots, k_max=args.k_max,
                            budget_judge_calls=args.budget_judge_calls, min_judge_gold_acc=args.min_judge_gold_acc,
                            judge_check_pairs=args.judge_check_pairs, folds=folds, recycle="flip",
                            workdir=str(work / f"curate-folds{folds}"), seed=args.seed, device=args.device)

    # ---- (a): the noisy pool, trained first in this store so that the frozen backbone's features of the
    # pool are cached once and every copy below reuses them (a cache of the same numbers; no label changes)
    steps = budget_steps(args, len(pool_ids))
    noisy = ids_file(work / "ids" / "noisy.txt", list(pool_ids))
    rms: dict[str, dict[str, Any]] = {"a": train(store, args, "(a) noisy pool", noisy, work / "rm-a", steps)}

    # ---- Stage 1 once; Stage 2 per folds value on a copy of the store after Stage 1
    started = time.perf_counter()
    stage1 = run_curation(store, curate_config(folds_list[0]), ("stage1",))
    stage1_seconds = time.perf_counter() - started
    check = stage1["stage1"][0]["judge_check"] if stage1["stage1"] else {}
    log(f"stage 1: {stage1_seconds:.0f}s; judge check {check}")
    store.close()

    variants: dict[int, dict[str, Any]] = {}
    for folds in folds_list:
        db = work / f"curate-folds{folds}.db"
        copy_store(base_db, db)
        s = Store(db)
        started = time.perf_counter()
        report = run_curation(s, curate_config(folds), ("stage2",))["stage2"]
        stage2_seconds = time.perf_counter() - started
        rules = s.latest_labels(sorted(pool_ids), "rule")
        kept = {pid for pid, label in rules.items() if label.verdict == "chosen"}
        discarded = {pid for pid, label in rules.items() if label.verdict != "chosen"}
        det = detection(discarded, flipped_ids)
        variants_of_rule = rule_variants(rules, flipped_ids)
        as_run = next(iter(variants_of_rule.values()))
        assert as_run["discarded"] == det["discarded"] and as_run["true_positives"] == det["true_positives"], \
            "the recomputed keep rule does not match Stage 2's decisions"
        log(f"folds {folds}: stage 2 {stage2_seconds:.0f}s, kept {len(kept)}, discarded {len(discarded)}, "
            f"P {det['precision']} R {det['recall']} F1 {det['f1']:.3f}")
        rms[f"b{folds}"] = train(s, args, f"folds {folds} (b) curated",
                                 ids_file(work / "ids" / f"kept-folds{folds}.txt", list(kept)),
                                 work / f"rm-b-folds{folds}", steps)
        rms[f"c{folds}"] = train(s, args, f"folds {folds} (c) curated + recycled", "curated",
                                 work / f"rm-c-folds{folds}", steps)
        s.close()
        variants[folds] = {"detection": det, "rule_variants": variants_of_rule,
                           "stage2_seconds": round(stage2_seconds, 1),
                           "stage2": {k: report.get(k) for k in ("pairs", "folds", "best_rm_gold_accuracy",
                                                                 "gold_rm_held_out_accuracy", "disagreed",
                                                                 "judged", "kept", "discarded", "flipped",
                                                                 "reasons", "seconds")}}

    # ---- (d): the clean pool, then every RM on the test split, in a copy of the curation store: the clean
    # and test pairs must never enter the curation store, which a rerun with the same --workdir continues
    reference_db = work / "reference.db"
    copy_store(base_db, reference_db)
    store = Store(reference_db)
    import_file(store, paths["clean-flipped"], source="clean-flipped")
    import_file(store, paths["test"], source="test")
    kept_ids = pool_ids - flipped_ids
    clean = ids_file(work / "ids" / "clean.txt", list(kept_ids | set(store.pair_ids(source="clean-flipped"))))
    rms["d"] = train(store, args, "(d) clean pool", clean, work / "rm-d", steps)
    test_pool = ids_file(work / "ids" / "test.txt", store.pair_ids(source="test"))
    for name, rm in rms.items():
        rm.update(test_accuracy(store, args, name, rm["checkpoint"], test_pool))
    store.close()
    reference = {"a": rms["a"], "d": rms["d"]}
    for folds, v in variants.items():
        v["rms"] = {"b": rms[f"b{folds}"], "c": rms[f"c{folds}"]}

    # ---- report
    acc_a, acc_d = reference["a"]["test_accuracy"], reference["d"]["test_accuracy"]
    table = Table("folds", "discarded", "precision", "recall", "F1 (>= 0.90)", "(a) noisy", "(b) curated",
                  "(c) + recycled", "(d) clean", "(b)-(a) (>= +3)", "(d)-(b) (<= 1)", "stage 2 s",
                  title=f"curation on {args.data}: pool {len(pool_ids)} ({len(flipped_ids)} flipped), gold {gold_n}, "
                        f"test {reference['a']['test_pairs']}; {args.rm_method} RM on {args.base}, {steps} steps each")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}"

    for folds, v in variants.items():
        det, acc_b, acc_c = v["detection"], v["rms"]["b"]["test_accuracy"], v["rms"]["c"]["test_accuracy"]
        gain, gap = 100 * (acc_b - acc_a), 100 * (acc_d - acc_b)
        table.add_row(str(folds), str(det["discarded"]), pct(det["precision"]), pct(det["recall"]),
                      f"{det['f1']:.3f}" + ("" if det["f1"] >= 0.9 else " ✗"), pct(acc_a), pct(acc_b), pct(acc_c),
                      pct(acc_d), f"{gain:+.1f}" + ("" if gain >= 3 else " ✗"), f"{gap:+.1f}" + ("" if gap <= 1 else " ✗"),
                      f"{v['stage2_seconds']:.0f}")
    console.print(table)
    rule_table = Table("folds", "keep rule", "discarded", "precision", "recall", "F1",
                       title="the same decisions under other keep rules (recomputed from the stored p_gold, "
                             "p_best and judge verdicts)")
    for folds, v in variants.items():
        for name, det in v["rule_variants"].items():
            rule_table.add_row(str(folds), name, str(det["discarded"]), pct(det["precision"]), pct(det["recall"]),
                               f"{det['f1']:.3f}")
    console.print(rule_table)
    judge_line = ", ".join(judge_summary(spec, info) for spec, info in check.items())
    console.print(f"judge check on gold ({args.judge_check_pairs} pairs, {args.shots} shots; kept small so the "
                  f"offline judge is measured without dominating the time): {judge_line}", highlight=False)
    console.print(f"stage 1: {args.iterations} iteration(s), {stage1_seconds:.0f}s; flips recorded in flips.json "
                  f"(and as the pool-flipped import); work dir {work}", highlight=False)

    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "pool": len(pool_ids), "flipped": len(flipped_ids), "gold": gold_n,
              "test": reference["a"]["test_pairs"], "steps": steps, "judge_check": check,
              "stage1": stage1["stage1"], "stage1_seconds": round(stage1_seconds, 1),
              "reference": reference, "variants": {str(k): v for k, v in variants.items()},
              "targets": {"f1": 0.9, "b_minus_a_points": 3, "d_minus_b_points": 1},
              "seconds": round(time.perf_counter() - STARTED, 1)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        (args.json.parent / f"{args.json.stem}.flips.json").write_text(json.dumps(flips_record, indent=1))


if __name__ == "__main__":
    main()
