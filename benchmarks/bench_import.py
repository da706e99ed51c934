"""Import throughput and memory: `skyrm import` vs `sqlite-utils insert --nl`, same file, same run.

Generates N HH-RLHF-like pairs (transcripts of a few turns, ~1.5 KB a row), then
times both tools as subprocesses on the same file. Memory is the peak of the sum
of the RSS of the tool's process and all its descendants (``skyrm import`` parses
in reader child processes), sampled every 10 ms; the largest single process's
peak (``os.wait4``, what a single-process reading would show) is kept in the JSON.
After each run the database's ``pairs`` row count must equal N (the file has no
duplicates), or the benchmark fails. Repeats with 4N rows to show that skyrm's
memory does not grow with the file. Target: skyrm >= 0.5x raw sqlite-utils speed
while validating, hashing and deduplicating.

    python benchmarks/bench_import.py [--n 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from rich.console import Console
from rich.table import Table

WORDS = ("the a to of and in is it you that for on with as was can be have this how what your are not "
         "do if would some more about people help want good know like could there think other way just "
         "time because should make use any really also need well work first get those thing maybe").split()


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def write_hh_like(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            turns = [f"\n\nHuman: {sentence(rng, 8, 30)} (#{i})"]
            for _ in range(rng.randint(0, 2)):
                turns.append(f"\n\nAssistant: {sentence(rng, 15, 50)}")
                turns.append(f"\n\nHuman: {sentence(rng, 5, 25)}")
            history = "".join(turns)
            chosen = history + f"\n\nAssistant: {sentence(rng, 20, 70)}"
            rejected = history + f"\n\nAssistant: {sentence(rng, 20, 70)} {i}"
            handle.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")


def tree_rss(root: psutil.Process) -> int:
    """Current RSS (bytes) of ``root`` plus all its descendants."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Wall seconds, peak summed RSS of the process tree and the largest single process's peak RSS (bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(root))
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    # ru_maxrss of a waited child is the largest of its own and its reaped descendants' peaks: never a sum
    single = usage.ru_maxrss * 1024
    return elapsed, max(peak[0], single), single


def pair_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]


def measure(n: int, workdir: Path, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` alternating runs of each tool (this machine is shared and noisy)."""
    data = workdir / f"hh_like_{n}.jsonl"
    write_hh_like(data, n)
    env = {**os.environ}
    bindir = Path(sys.executable).parent
    sqlite_utils = shutil.which("sqlite-utils", path=str(bindir)) or "sqlite-utils"
    raw_times, sky_times = [], []
    rss = {"raw": 0, "sky": 0, "raw_single": 0, "sky_single": 0}
    for attempt in range(repeat):
        raw_db, skyrm_db = workdir / f"raw_{n}_{attempt}.db", workdir / f"skyrm_{n}_{attempt}.db"
        runs = {
            "raw": [sqlite_utils, "insert", str(raw_db), "pairs", str(data), "--nl"],
            "sky": [sys.executable, "-m", "skyrm", "import", str(data), "--db", str(skyrm_db), "--json"],
        }
        for tool in (("raw", "sky") if attempt % 2 == 0 else ("sky", "raw")):
            seconds, total, single = run_timed(runs[tool], env)
            (raw_times if tool == "raw" else sky_times).append(seconds)
            rss[tool] = max(rss[tool], total)
            rss[f"{tool}_single"] = max(rss[f"{tool}_single"], single)
        counts = {"sqlite-utils": pair_rows(raw_db), "skyrm": pair_rows(skyrm_db)}
        if any(count != n for count in counts.values()):
            raise SystemExit(f"row counts after importing {n:,} distinct pairs: {counts}")
        raw_db.unlink()
        skyrm_db.unlink()
    raw_s, sky_s = min(raw_times), min(sky_times)
    return {"n": n, "file_mb": data.stat().st_size / 1e6, "repeat": repeat, "rows_checked": True,
            "sqlite_utils_pairs_s": n / raw_s, "skyrm_pairs_s": n / sky_s, "ratio": raw_s / sky_s,
            "sqlite_utils_rss_mb": rss["raw"] / 1e6, "skyrm_rss_mb": rss["sky"] / 1e6,
            "sqlite_utils_single_process_rss_mb": rss["raw_single"] / 1e6,
            "skyrm_single_process_rss_mb": rss["sky_single"] / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="pairs in the first file (the second has 4N)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-4n", action="store_true", help="measure N only")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per tool; the best counts")
    args = parser.parse_args()
    sizes = [args.n] if args.skip_4n else [args.n, 4 * args.n]
    with tempfile.TemporaryDirectory(prefix="skyrm-bench-") as tmp:
        rows = [measure(n, Path(tmp), args.repeat) for n in sizes]
    table = Table(title=f"import: skyrm vs sqlite-utils insert --nl (same file, same run, best of {args.repeat} "
                        "alternating; RSS summed over each tool's processes; row counts checked)")
    for column in ("pairs", "file MB", "sqlite-utils pairs/s", "skyrm pairs/s", "skyrm / sqlite-utils",
                   "sqlite-utils peak RSS MB", "skyrm peak RSS MB (all processes)", "skyrm largest process MB"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(f"{r['n']:,}", f"{r['file_mb']:.0f}", f"{r['sqlite_utils_pairs_s']:,.0f}",
                      f"{r['skyrm_pairs_s']:,.0f}", f"{r['ratio']:.2f}x", f"{r['sqlite_utils_rss_mb']:.0f}",
                      f"{r['skyrm_rss_mb']:.0f}", f"{r['skyrm_single_process_rss_mb']:.0f}")
    Console(width=200).print(table)
    if len(rows) == 2:
        growth = rows[1]["skyrm_rss_mb"] / rows[0]["skyrm_rss_mb"]
        Console().print(f"skyrm peak RSS at 4N / at N: {growth:.2f} (1.0 = constant memory)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
