"""Curation at scale: memory of Stage 2's streaming parts at two pool sizes, and one Stage-1 iteration's time.

Scale mode (default, ``--sizes 100000 400000``): each size runs in a child process of its own
(so its peak memory is its own) that builds a fresh store of N synthetic pairs plus ``--gold``
human-labelled pairs, trains the head RM on the gold pairs (``--method head``, ``--base``),
then runs Stage 2's streaming parts over the whole pool: ``score_pool`` in chunks,
``embed_pool`` in chunks, and ``label_pairs`` on ``--judge-cap`` pairs with an in-process judge
(no model: the judging flow's bookkeeping, not a model's memory), and Stage 2's search of the
whole pool (``select_and_record``, every gold pair a query with k = k_max) on random unit vectors
of ``--dim`` written into a space of their own (the search's memory, not an encoder's);
``--phases`` picks among them. The child samples its own
RSS every 50 ms (psutil) and reports each phase's peak and ``ru_maxrss``; the table prints both
sizes and the ratio of the streaming phases' peaks. Target: the ratio near 1 (memory flat in
pool size).

``--tiny`` swaps MiniLM for a 2-layer, 64-wide BERT with MiniLM's tokenizer (random weights) as
both the RM base and the sentence encoder: the same code paths and tokenisation at a fraction of
the forward cost, so 400k pairs fit a 2-core CPU's hour. The memory of a model is a constant
of the run; what must not grow with the pool is the rest.

Loop mode (``--loop 10000``): a fresh store of N pool pairs and ``--gold`` gold pairs, then
``run_curation(stages=("stage1",))`` with one iteration, the head RM on ``--base`` and a judge
budget of 0 calls (everything but the judge calls), printing the per-step seconds of the
iteration table (target: at most 120 s in all on a 2-core CPU). ``--loop-iterations 2`` shows
the second iteration, which reuses the features and embeddings of the first.

    python benchmarks/bench_curate_scale.py [--sizes 100000 400000] [--tiny] [--max-length 32] [--json out.json]
    python benchmarks/bench_curate_scale.py --loop 10000 [--gold 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))  # fake_judge

WORDS = ("apple river stone cloud market engine garden silver paper window candle forest bridge planet "
         "signal number letter column matrix kernel vector random system memory record value simple "
         "careful honest quick gentle bright narrow yellow purple winter summer morning evening").split()
TOPICS = ("sorting a list", "the capital of France", "boiling water", "a reward model", "prime numbers",
          "writing a poem", "fixing a bug", "a safe alternative", "unit conversion", "counting letters")


# ------------------------------------------------------------------ data
def synthetic_pairs(n: int, *, seed: int = 0, start: int = 0, source: str = "synth") -> Iterator[Any]:
    """``n`` distinct pairs, made one at a time (nothing is held): the chosen answer is on topic and
    marked 'good', the rejected one is off topic; the pair number keeps every pair distinct."""
    from skyrm.records import Pair

    rng = random.Random(seed * 1_000_003 + start)
    for i in range(start, start + n):
        topic = TOPICS[i % len(TOPICS)]
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        history = [{"role": "user", "content": f"Question {i}: {words}. Tell me about {topic}?"}]
        chosen = [{"role": "assistant", "content": f"A good answer about {topic}: {' '.join(rng.sample(WORDS, 5))}."}]
        rejected = [{"role": "assistant", "content": f"No. {' '.join(rng.sample(WORDS, 3))} {i % 7}"}]
        yield Pair(history, chosen, rejected, source=source)


def build_store(path: Path, pool: int, gold: int, *, seed: int = 0, batch: int = 5000) -> dict[str, Any]:
    """A fresh store: ``pool`` unlabelled pairs and ``gold`` pairs with a human 'chosen' label."""
    from skyrm.records import Label, content_hash
    from skyrm.store import Store

    started = time.perf_counter()
    with Store(path) as store:
        made = 0
        it = synthetic_pairs(pool, seed=seed)
        while made < pool:
            block = [p for _, p in zip(range(batch), it)]
            store.add_pairs(block)
            made += len(block)
        golds = list(synthetic_pairs(gold, seed=seed + 1, start=10**7, source="gold"))
        store.add_pairs(golds)
        ids = [p.id for p in golds]
        store.add_labels([Label(pair_id=pid, kind="human", producer="bench:gold", verdict="chosen") for pid in ids],
                         dedup_keys=[f"bench:gold:{content_hash(pid, 12)}" for pid in ids])
        counts = store.pool_counts()
    return {"seconds": round(time.perf_counter() - started, 1), "pools": counts}


def tiny_base(path: Path) -> str:
    """A 2-layer, 64-wide BERT with MiniLM's tokenizer: a classifier (RM base) and an encoder directory."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from skyrm.shipped_models import minilm_dir

    if (path / "config.json").exists():
        return str(path)
    import torch

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ---------------------------------------------------------------- judge
def register_judge() -> None:
    from skyrm.judges import register_backend

    # the tests' model-free judge: it prefers the candidate that says 'good' (the synthetic data marks it)
    register_backend("bench", "fake_judge:FakeJudge")


# --------------------------------------------------------------- memory
class RssSampler:
    """This process's RSS every ``interval`` seconds, the peak kept per named phase."""

    def __init__(self, interval: float = 0.05, report_every: float = 30.0):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.report_every = report_every  # a line on stderr: phase, work done so far, RSS now and peak
        self.phase = "start"
        self.done = 0  # the phase's progress (pairs), set by its progress callback
        self.peaks: dict[str, float] = {}
        self.series: list[tuple[str, int, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        rss = self.process.memory_info().rss / 2**20
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            self._sample()
            if time.perf_counter() - last >= self.report_every:
                last = time.perf_counter()
                now = self.process.memory_info().rss / 2**20
                self.series.append((self.phase, self.done, round(now, 1), round(self.peaks[self.phase], 1)))
                print(json.dumps({"phase": self.phase, "done": self.done, "rss_mb": round(now, 1),
                                  "peak_mb": round(self.peaks[self.phase], 1)}), file=sys.stderr, flush=True)
            self._stop.wait(self.interval)

    def progress(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done = done

    def enter(self, phase: str) -> None:
        self._sample()
        self.phase, self.done = phase, 0
        self._sample()

    def stop(self) -> dict[str, float]:
        self._sample()
        self._stop.set()
        self._thread.join()
        return {k: round(v, 1) for k, v in self.peaks.items()}


def ru_maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20


# ---------------------------------------------------------------- scale
STREAMING = ("score", "embed", "judge", "retrieve")


def random_vectors(store: Any, dim: int, *, seed: int = 0, chunk: int = 20_000) -> tuple[str, str]:
    """Random unit vectors of ``dim`` for every pair, in a space of their own; returns the space."""
    import numpy as np

    space = ("bench-random", f"random{dim}@1")
    rng = np.random.default_rng(seed)
    pairs = store.iter_pairs("all", oriented=False)  # keyset pages: no list of the whole pool
    while True:
        ids = [pid for pid, _, _ in itertools.islice(pairs, chunk)]
        if not ids:
            return space
        block = rng.standard_normal((len(ids), dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        store.put_embeddings((pid, "random", space[1], space[0], None, dim, vec.astype("<f4").tobytes())
                             for pid, vec in zip(ids, block))


def retrieve_random(store: Any, space: tuple[str, str]) -> dict[str, Any]:
    """Stage 2's search over the whole pool in ``space`` (what is measured is the store streaming
    the pool through ``select_and_record``, not an encoder): every gold pair is a query the RM
    gets wrong (k = k_max)."""
    from skyrm.retrieve import RetrieveConfig, select_and_record

    gold = store.pair_ids("gold")
    run_id = store.start_run("retrieve", {"bench": "random vectors"})
    began = time.perf_counter()
    _, stats = select_and_record(store, run_id, RetrieveConfig(model="-", round=1000), dict.fromkeys(gold, 0.3),
                                 space)
    store.finish_run(run_id, metrics=stats)
    return {"queries": stats["queries"], "pool_searched": stats["pool_searched"], "links": stats["links"],
            "search_seconds": round(time.perf_counter() - began, 1)}


def scale_child(args: argparse.Namespace) -> dict[str, Any]:
    """One pool size, in this process: build, train, then the streaming phases, each timed and sampled."""
    # Every module the phases use is loaded now: a long run must not mix versions of the code when
    # the working tree changes under it.
    import skyrm.embed  # noqa: F401
    import skyrm.labelling.label  # noqa: F401
    import skyrm.retrieve  # noqa: F401
    import skyrm.rm.score  # noqa: F401
    import skyrm.rm.train  # noqa: F401
    from skyrm.store import Store

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base = tiny_base(workdir.parent / "tiny-base") if args.tiny else args.base
    sampler = RssSampler()
    seconds: dict[str, float] = {}

    def phase(name: str, action: Callable[[], Any]) -> Any:
        sampler.enter(name)
        began = time.perf_counter()
        out = action()
        seconds[name] = round(time.perf_counter() - began, 1)
        print(json.dumps({"phase_done": name, "seconds": seconds[name], "peak_mb": sampler.peaks.get(name)}),
              file=sys.stderr, flush=True)
        return out

    db = workdir / "scale.db"
    built = phase("build", lambda: build_store(db, args.child_size, args.gold, seed=args.seed))
    store = Store(db)

    def train() -> dict[str, Any]:
        from skyrm.rm.config import TrainConfig
        from skyrm.rm.train import train_reward_model

        return train_reward_model(store, TrainConfig(base=base, method="head", pool="gold", eval_pool="holdout",
                                                     holdout=0.2, out=str(workdir / "rm"), max_length=args.max_length,
                                                     batch_size=16, seed=args.seed, device="cpu"))

    trained = phase("train", train)

    def score() -> dict[str, Any]:
        from skyrm.rm.score import score_pool

        return score_pool(store, str(workdir / "rm" / "best"), pool="unverified", batch_size=args.batch_size,
                          device="cpu", chunk=args.chunk, max_length=args.max_length, progress=sampler.progress)

    scored = phase("score", score) if "score" in args.phases else {"scored": 0, "pairs_per_s": None}

    def embed() -> dict[str, Any]:
        from skyrm.embed import EmbedConfig, embed_pool

        return embed_pool(store, EmbedConfig(model=base if args.tiny else args.embed_model, pool="unverified",
                                             what="prompt", batch_size=64, chunk=args.chunk, device="cpu"),
                         progress=sampler.progress)

    embedded = phase("embed", embed) if "embed" in args.phases else {"embedded": 0, "texts_per_s": None}

    def judge() -> dict[str, Any]:
        from skyrm.labelling.label import JudgeConfig, label_pairs

        register_judge()
        summary = label_pairs(store, JudgeConfig(judges=("bench:a",), mode="logprob", shots=2, pool="unverified",
                                                 limit=args.judge_cap, seed=args.seed, round=1000))
        return {"labelled": summary.labelled, "model_calls": summary.model_calls}

    judged = phase("judge", judge) if "judge" in args.phases else {"labelled": 0, "model_calls": 0}

    searched = {}
    if "retrieve" in args.phases:
        space = phase("vectors", lambda: random_vectors(store, args.dim, seed=args.seed))
        searched = phase("retrieve", lambda: retrieve_random(store, space))
    peaks = sampler.stop()
    store.close()
    return {"pairs": args.child_size, "gold": args.gold, "base": "tiny" if args.tiny else args.base,
            "max_length": args.max_length, "chunk": args.chunk, "pools": built["pools"], "seconds": seconds,
            "peak_rss_mb": peaks, "ru_maxrss_mb": round(ru_maxrss_mb(), 1), "rss_series": sampler.series,
            "streaming_peak_mb": max(peaks.get(p, 0.0) for p in STREAMING), "retrieve": searched,
            "train_pairs": trained["train_pairs"], "gold_accuracy": trained["best_accuracy"],
            "scored": scored["scored"], "score_pairs_per_s": scored["pairs_per_s"],
            "embedded": embedded["embedded"], "embed_texts_per_s": embedded["texts_per_s"],
            "judged": judged["labelled"], "model_calls": judged["model_calls"]}


def run_scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="skyrm-scale-", dir=args.tmp) as tmp:
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--child-size", str(size), "--workdir", str(Path(tmp) / f"n{size}"),
                   "--gold", str(args.gold), "--base", args.base, "--embed-model", args.embed_model,
                   "--max-length", str(args.max_length), "--chunk", str(args.chunk), "--batch-size",
                   str(args.batch_size), "--judge-cap", str(args.judge_cap), "--seed", str(args.seed),
                   "--dim", str(args.dim), "--phases", *args.phases]
            if args.tiny:
                cmd.append("--tiny")
            began = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"child for {size} pairs failed:\n{done.stderr[-4000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["wall_seconds"] = round(time.perf_counter() - began, 1)
            row["children_maxrss_mb"] = round(ru_maxrss_mb(resource.RUSAGE_CHILDREN), 1)  # the largest child so far
            rows.append(row)
            print(f"{size} pairs: {json.dumps(row)}", file=sys.stderr, flush=True)
    return rows


def scale_table(rows: list[dict[str, Any]]) -> Table:
    out = Table("pairs", "base", "phase", "seconds", "peak RSS MB",
                title="Stage 2 streaming parts: memory by pool size")
    for row in rows:
        for name in ("build", "train", *STREAMING[:3], "vectors", STREAMING[3]):
            if name in row["seconds"]:
                out.add_row(f"{row['pairs']:,}", row["base"], name, str(row["seconds"].get(name)),
                            str(row["peak_rss_mb"].get(name)))
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        for name in STREAMING:
            if name not in small["peak_rss_mb"] or name not in large["peak_rss_mb"]:
                continue
            ratio = large["peak_rss_mb"][name] / small["peak_rss_mb"][name]
            out.add_row(f"{large['pairs']:,} / {small['pairs']:,}", "", name, "", f"ratio {ratio:.3f}")
        ratio = large["streaming_peak_mb"] / small["streaming_peak_mb"]
        out.add_row(f"{large['pairs']:,} / {small['pairs']:,}", "", "streaming (max)", "", f"ratio {ratio:.3f}")
    return out


# ----------------------------------------------------------------- loop
def run_loop(args: argparse.Namespace) -> dict[str, Any]:
    from skyrm.curate import run_curation
    from skyrm.curate.config import CurateConfig
    from skyrm.store import Store

    register_judge()
    with tempfile.TemporaryDirectory(prefix="skyrm-loop-", dir=args.tmp) as tmp:
        db = Path(tmp) / "loop.db"
        built = build_store(db, args.loop, args.gold, seed=args.seed)
        base = tiny_base(Path(tmp) / "tiny-base") if args.tiny else args.base
        config = CurateConfig(base=base, rm_method="head", max_length=args.max_length, iterations=args.loop_iterations,
                              judges=("bench:a",), budget_judge_calls=0, judge_check_pairs=0,
                              embed_model=base if args.tiny else args.embed_model, workdir=str(Path(tmp) / "work"),
                              seed=args.seed, device="cpu", score_batch_size=args.batch_size)
        began = time.perf_counter()
        with Store(db) as store, cpu_seconds_per_step() as cpu:
            report = run_curation(store, config, ("stage1",))
        wall = time.perf_counter() - began
    rows = report.get("stage1") or report.get("iterations") or []
    return {"pool": args.loop, "gold": args.gold, "base": "tiny" if args.tiny else args.base,
            "max_length": args.max_length, "build_seconds": built["seconds"], "wall_seconds": round(wall, 1),
            "torch_threads": torch_threads(), "load_average": os.getloadavg()[0],
            "iterations": [{"iteration": r["iteration"], "seconds": r["seconds"],
                            "cpu_seconds": {k: cpu.get(f"s1:i{r['iteration']}:{k}") for k in r["seconds"]},
                            "embedded": r.get("embedded"), "retrieved": r.get("retrieved"),
                            "gold_accuracy": r.get("gold_accuracy")} for r in rows]}


@contextmanager
def cpu_seconds_per_step() -> Iterator[dict[str, float]]:
    """This process's CPU seconds (all threads) per ``StepLog`` step, beside the wall seconds the
    iteration table shows: on a machine shared with other work, the CPU seconds are what the step
    would take on dedicated cores at the same thread count."""
    from skyrm.runs import StepLog

    seconds: dict[str, float] = {}
    original = StepLog.run

    def run(self: Any, name: str, action: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return original(self, name, action, **kwargs)
        finally:
            seconds[name] = round(time.process_time() - began, 1)

    StepLog.run = run  # type: ignore[method-assign]
    try:
        yield seconds
    finally:
        StepLog.run = original  # type: ignore[method-assign]


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def loop_table(result: dict[str, Any]) -> Table:
    out = Table("iteration", "step", "wall s", "CPU s", title=f"One Stage-1 iteration on {result['pool']:,} pairs "
                f"({result['gold']} gold, head RM on {result['base']}, no judge calls, "
                f"{result['torch_threads']} torch thread(s), load {result['load_average']:.1f})")
    for row in result["iterations"]:
        cpu = row["cpu_seconds"]
        for step, value in row["seconds"].items():
            out.add_row(str(row["iteration"]), step, f"{value:.1f}", f"{cpu.get(step) or 0:.1f}")
        out.add_row(str(row["iteration"]), "total", f"{sum(row['seconds'].values()):.1f}",
                    f"{sum(v or 0 for v in cpu.values()):.1f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--loop", type=int, help="pool size of the Stage-1 timing mode (e.g. 10000)")
    parser.add_argument("--loop-iterations", type=int, default=1)
    parser.add_argument("--gold", type=int, default=300)
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--embed-model", default="minilm")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer BERT for both models (see above)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--judge-cap", type=int, default=200, help="pairs judged in scale mode")
    parser.add_argument("--phases", nargs="+", choices=STREAMING, default=list(STREAMING),
                        help="streaming phases of scale mode (the store is built and the RM trained always)")
    parser.add_argument("--dim", type=int, default=384, help="dimension of the retrieve phase's random vectors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", help="directory for the temporary stores (default: the system's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.child_size:
        print(json.dumps(scale_child(args)), flush=True)
        return
    console = Console()
    if args.loop:
        result: Any = run_loop(args)
        console.print(loop_table(result))
    else:
        result = run_scale(args)
        console.print(scale_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
