"""k-NN search and embedding throughput: skyrm against faiss-cpu and sentence-transformers, same run.

Search: synthetic unit vectors stored as float16 (pool sizes from ``--pools``, ``--queries``
queries, top ``--k``), searched by skyrm's exact chunked search (``retrieve.exact_top_k``
on the float16 matrix) and by faiss-cpu's exact ``IndexFlatIP`` (which needs a float32
copy). Each search runs in a fresh child process that builds the same vectors from the
same seed, so its peak resident memory is its own: the table gives the pool's float16
size and each method's peak above the process's size before the search (Linux
``VmHWM`` after resetting it through ``/proc/self/clear_refs``). Targets: the same
neighbours, skyrm's time <= 2x faiss, skyrm's extra memory bounded by one chunk.

Embedding: the MiniLM texts/s of ``embed.Encoder`` and of sentence-transformers'
``encode`` (normalised, same batch size) on the same conversations from RMB pairs in
``../shared/data`` (target >= 1x), with the largest difference between their vectors.

    python benchmarks/bench_retrieve.py [--pools 100000 1000000] [--queries 10000] [--k 8]
                                        [--texts 2000] [--skip-embed] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SKYRM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 100_000) -> np.ndarray:
    """``n`` random unit vectors as float16, built in chunks (no full float32 copy)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    return out


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(method: str, pool_size: int, queries: int, dim: int, k: int, out: str) -> None:
    """One search in this process: prints a JSON line with seconds and memory, saves the neighbours."""
    from skyrm.retrieve import exact_top_k, faiss_top_k

    pool = unit_vectors(pool_size, dim, seed=1)
    query = unit_vectors(queries, dim, seed=2)
    if method == "faiss":
        import faiss  # noqa: F401  (imported before the measurement: its libraries are not search memory)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _rss_kib("VmRSS")
    started = time.perf_counter()
    if method == "skyrm":
        indices, scores = exact_top_k(query, pool, k)
    else:
        indices, scores = faiss_top_k(query, pool, k)
    seconds = time.perf_counter() - started
    peak = _rss_kib("VmHWM")
    np.save(out + ".idx.npy", indices)
    np.save(out + ".score.npy", scores)
    print(json.dumps({"seconds": seconds, "extra_mib": (peak - before) / 1024 if reset else None,
                      "pool_mib": pool.nbytes / 2**20}))


def run_child(method: str, pool_size: int, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    out = os.path.join(tmp, f"{method}-{pool_size}")
    cmd = [sys.executable, __file__, "--child", method, "--pools", str(pool_size), "--queries", str(args.queries),
           "--dim", str(args.dim), "--k", str(args.k), "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} search failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["indices"] = np.load(out + ".idx.npy")
    result["scores"] = np.load(out + ".score.npy")
    return result


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Rows whose neighbour lists are identical; where not, whether the differences are float-rounding ties."""
    same_rows = (a["indices"] == b["indices"]).all(axis=1)
    same_sets = np.array([set(x) == set(y) for x, y in zip(a["indices"], b["indices"])])
    gap = float(np.abs(a["scores"] - b["scores"]).max())
    return {"identical_rows": float(same_rows.mean()), "identical_sets": float(same_sets.mean()),
            "max_score_diff": gap}


def search_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pool_size in args.pools:
            sky = run_child("skyrm", pool_size, args, tmp)
            fai = run_child("faiss", pool_size, args, tmp)
            rows.append({"pool": pool_size, "queries": args.queries, "k": args.k,
                         "pool_f16_mib": round(sky["pool_mib"], 1),
                         "skyrm_s": round(sky["seconds"], 2), "faiss_s": round(fai["seconds"], 2),
                         "time_ratio": round(sky["seconds"] / fai["seconds"], 2),
                         "skyrm_extra_mib": None if sky["extra_mib"] is None else round(sky["extra_mib"], 1),
                         "faiss_extra_mib": None if fai["extra_mib"] is None else round(fai["extra_mib"], 1),
                         **compare(sky, fai)})
    return rows


def rmb_texts(n: int) -> list[str]:
    from skyrm.embed import embedding_text
    from skyrm.formats import read_pairs

    folder = DATA / "rmb" / "Pairwise_set"
    if not folder.is_dir():
        raise SystemExit(f"real data not found at {folder} (set SKYRM_SHARED_DATA)")
    texts: list[str] = []
    seen: set[str] = set()
    for path in sorted(folder.rglob("*.json")):
        for result in read_pairs(path, source="rmb"):
            for pair in result.pairs:
                text = embedding_text(pair, None, "prompt")
                if text not in seen:
                    seen.add(text)
                    texts.append(text)
        if len(texts) >= n:
            break
    return texts[:n]


def embed_table(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from skyrm.embed import Encoder, encoder_spec

    texts = rmb_texts(args.texts)
    spec = encoder_spec("minilm")
    ours = Encoder(spec, device="cpu", batch_size=args.batch_size)
    peer = SentenceTransformer(spec.path, device="cpu")
    ours.encode(texts[:64])  # warm both up on the same few texts
    peer.encode(texts[:64], batch_size=args.batch_size, normalize_embeddings=True)
    result: dict[str, Any] = {"texts": len(texts), "batch_size": args.batch_size, "threads": torch.get_num_threads()}
    timings: dict[str, list[float]] = {"skyrm": [], "sentence-transformers": []}
    vectors: dict[str, Any] = {}
    for _ in range(args.repeats):  # alternate, so background load falls on both
        started = time.perf_counter()
        vectors["skyrm"] = ours.encode(texts)
        timings["skyrm"].append(time.perf_counter() - started)
        started = time.perf_counter()
        vectors["sentence-transformers"] = peer.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                                       convert_to_numpy=True)
        timings["sentence-transformers"].append(time.perf_counter() - started)
    for name, values in timings.items():
        result[f"{name}_texts_per_s"] = round(len(texts) / min(values), 1)
    result["ratio"] = round(result["skyrm_texts_per_s"] / result["sentence-transformers_texts_per_s"], 3)
    result["max_abs_diff"] = float(np.abs(vectors["skyrm"] - vectors["sentence-transformers"]).max())
    result["truncated_texts"] = ours.truncated // (args.repeats + 1) if ours.truncated else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=["skyrm", "faiss"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.pools[0], args.queries, args.dim, args.k, args.out)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=220)
    report: dict[str, Any] = {}
    if not args.skip_search:
        rows = search_table(args)
        report["search"] = rows
        table = Table("pool", "queries", "k", "pool f16 MiB", "skyrm s", "faiss s", "skyrm/faiss",
                      "skyrm extra MiB", "faiss extra MiB", "identical rows", "identical sets", "max |Δscore|",
                      title="exact top-k search (skyrm exact_top_k vs faiss IndexFlatIP)")
        for r in rows:
            table.add_row(f"{r['pool']:,}", f"{r['queries']:,}", str(r["k"]), str(r["pool_f16_mib"]),
                          str(r["skyrm_s"]), str(r["faiss_s"]), f"{r['time_ratio']:.2f}x", str(r["skyrm_extra_mib"]),
                          str(r["faiss_extra_mib"]), f"{r['identical_rows']:.4f}", f"{r['identical_sets']:.4f}",
                          f"{r['max_score_diff']:.1e}")
        console.print(table)
    if not args.skip_embed:
        emb = embed_table(args)
        report["embed"] = emb
        table = Table("texts", "batch", "threads", "skyrm texts/s", "sentence-transformers texts/s", "ratio",
                      "max |Δ|", "cut at 256 tokens", title="MiniLM embedding throughput on RMB conversations")
        table.add_row(str(emb["texts"]), str(emb["batch_size"]), str(emb["threads"]), str(emb["skyrm_texts_per_s"]),
                      str(emb["sentence-transformers_texts_per_s"]), f"{emb['ratio']:.2f}x",
                      f"{emb['max_abs_diff']:.1e}", str(emb["truncated_texts"]))
        console.print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
