"""Error-driven adaptive retrieval (METHOD.md Stage 1 step 2): ``skyrm retrieve`` as a library call.

For each gold pair the current reward model's confidence in the human label is
``p = σ(r(y_w) − r(y_l))``; the pair pulls ``k = adaptive_k(p, k_max)`` nearest
neighbours out of the unverified pool (all ``k_max`` where the RM is wrong, fewer the
surer it is right). Neighbours are by cosine similarity of the embeddings that
``skyrm embed`` stored (one (encoder fingerprint, recipe) space for queries and pool).

- ``adaptive_k`` is the rule as a pure function.
- ``exact_top_k`` is exact cosine top-k by chunked matrix products: the pool is walked
  in chunks of rows (each converted to float32 once), every query chunk is multiplied
  with it, and only entries at or above a query's current k-th best score are merged
  into its running top-k, so memory is one pool chunk and its products, never a full
  similarity matrix; ``streamed_top_k`` takes the chunks as they come, and ``retrieve``
  streams them from the store (the pool is never in memory at once). Ties go to the
  lower pool index. ``faiss_top_k`` gives the
  same neighbours with faiss-cpu's ``IndexFlatIP`` where it is installed (it needs a
  float32 copy of the pool; ties within float rounding may order differently).
- ``retrieve`` scores the gold pairs (a finished ``skyrm score`` run of the same model
  directory newer than its files is reused; otherwise ``rm.score.score_pool`` runs, whose
  rewards cache recomputes nothing already scored), searches the pool (pairs that are
  unverified, have no label of the kind the next step produces, and are not a query),
  and records every (gold, neighbour) link with similarity, rank, k, p, round and run
  in the ``retrievals`` table. A pool pair found by two gold pairs is one target and two
  links. ``skyrm judge --pool retrieved[:ROUND]`` labels the targets not yet labelled.

Deliberately not here: computing embeddings (embed.py), labelling (labelling/).
Why it is longer than 400 lines: the adaptive rule, the exact search streamed from the store
and the flow that records links share the pool's block layout; apart, each would re-read it.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skyrm.errors import ConfigError, InputError
from skyrm.runs import Progress, tracked_run

K_MAX = 8
BACKENDS = ("numpy", "faiss")
DTYPES = {"float32": np.float32, "float16": np.float16}
# Products of one query chunk and one pool chunk: 1024 x 16384 float32 = 64 MiB.
QUERY_CHUNK = 1024
POOL_CHUNK = 16384
SUB = 64  # columns per group in the candidate scan (POOL_CHUNK is a multiple)
# ceil() of a product that float rounding pushed just above an integer (8 * (1 - 0.75) is exact,
# but e.g. 5 * (1 - 0.8) = 1.0000000000000002) must not add a neighbour.
_K_EPS = 1e-9


# ------------------------------------------------------------------ the rule
def adaptive_k(p: float, k_max: int = K_MAX) -> int:
    """Neighbours a gold pair retrieves: ``k_max`` if ``p <= 0.5``, else ``ceil(k_max * (1 - p))``."""
    if not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability, got {p!r}")
    if k_max < 0:
        raise ValueError(f"k_max must be at least 0, got {k_max}")
    if p <= 0.5:
        return k_max
    return max(0, math.ceil(k_max * (1.0 - p) - _K_EPS))


def label_confidence(p_stored: float, verdict: str) -> float:
    """The RM's confidence in a gold label, from ``p`` in the pair's stored orientation."""
    if verdict == "chosen":
        return p_stored
    if verdict == "rejected":
        return 1.0 - p_stored
    raise ValueError(f"a gold verdict must be chosen or rejected, got {verdict!r}")


# ------------------------------------------------------------------ search
def _merge(best_s: np.ndarray, best_i: np.ndarray, rows: np.ndarray, scores: np.ndarray,
           index: np.ndarray) -> None:
    """Merge candidate (row, score, pool index) triples into each row's running top-k, in place."""
    m, k = best_s.shape
    all_rows = np.concatenate([np.repeat(np.arange(m), k), rows])
    all_s = np.concatenate([best_s.ravel(), scores])
    all_i = np.concatenate([best_i.ravel(), index])
    # Best first: higher score, then lower pool index (an empty slot, -1 at -inf, sorts last).
    order = np.lexsort((np.where(all_i < 0, np.iinfo(np.int64).max, all_i), -all_s, all_rows))
    sorted_rows = all_rows[order]
    starts = np.searchsorted(sorted_rows, np.arange(m))
    rank = np.arange(len(order)) - starts[sorted_rows]
    keep = rank < k
    best_s[sorted_rows[keep], rank[keep]] = all_s[order][keep]
    best_i[sorted_rows[keep], rank[keep]] = all_i[order][keep]


def _candidates(products: np.ndarray, threshold: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, score) of the products that may enter their row's top-k: those at or above
    the row's current k-th best (``threshold``, -inf while a row has fewer than k).

    Columns are scanned in ``width / SUB`` groups of ``SUB`` columns each (group b holds the
    columns b, b + width/SUB, b + 2 width/SUB, …, so the maxima are elementwise maxima of
    contiguous rows, which numpy vectorises): one pass takes each group's maximum, and only
    groups whose maximum reaches the bar are looked into, so a chunk costs about one read
    of its products instead of a mask and a scan. A row without k neighbours yet takes as
    its bar the k-th largest group maximum (k groups hold an entry at least that high).
    """
    n_rows, width = products.shape
    open_rows = ~np.isfinite(threshold)
    if width % SUB or width // SUB < k:  # a ragged last chunk, or a large k: plain mask
        if open_rows.any():
            own = np.partition(products, width - k, axis=1)[:, width - k] if width >= k else products.min(axis=1)
            threshold = np.where(open_rows, own, threshold)
        rows, cols = np.nonzero(products >= threshold[:, None])
        return rows, cols.astype(np.int64), products[rows, cols]
    n_groups = width // SUB
    groups = products.reshape(n_rows, SUB, n_groups)
    block_max = groups.max(axis=1)
    if open_rows.any():
        own = np.partition(block_max, n_groups - k, axis=1)[:, n_groups - k]
        threshold = np.where(open_rows, own, threshold)
    block_rows, block_cols = np.nonzero(block_max >= threshold[:, None])
    if not len(block_rows):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=products.dtype)
    values = groups[block_rows, :, block_cols]  # (candidate groups, SUB)
    hit_block, hit_col = np.nonzero(values >= threshold[block_rows][:, None])
    rows = block_rows[hit_block]
    cols = hit_col.astype(np.int64) * n_groups + block_cols[hit_block]
    return rows, cols, values[hit_block, hit_col]


def exact_top_k(queries: np.ndarray, pool: np.ndarray, k: int, *, query_chunk: int = QUERY_CHUNK,
                pool_chunk: int = POOL_CHUNK, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of every query over the pool (cosine for normalised rows).

    Returns (indices, scores), each (len(queries), min(k, len(pool))), best first; ties go to
    the lower pool index. Any float dtype; products are float32.
    """
    n = len(pool)
    blocks = (pool[start:start + pool_chunk] for start in range(0, n, pool_chunk))
    return streamed_top_k(queries, blocks, k, query_chunk=query_chunk, total=n, progress=progress)


def streamed_top_k(queries: np.ndarray, blocks: Iterable[np.ndarray], k: int, *, query_chunk: int = QUERY_CHUNK,
                   total: int | None = None, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``exact_top_k`` over a pool that arrives as consecutive row blocks (indices count across
    blocks), so the pool never needs to be in memory at once. Blocks of a multiple of ``SUB``
    rows take the fast candidate scan."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    m = len(queries)
    best_s = np.full((m, max(k, 0)), -np.inf, dtype=np.float32)
    best_i = np.full((m, max(k, 0)), -1, dtype=np.int64)
    seen = 0
    if k > 0 and m > 0:
        for pool_block in blocks:
            block = np.ascontiguousarray(pool_block, dtype=np.float32)
            for q_start in range(0, m, query_chunk):
                q_end = min(m, q_start + query_chunk)
                products = queries[q_start:q_end] @ block.T
                rows, cols, values = _candidates(products, best_s[q_start:q_end, k - 1], min(k, len(block)))
                if len(rows):
                    _merge(best_s[q_start:q_end], best_i[q_start:q_end], rows, values, cols + seen)
            seen += len(block)
            if progress:
                progress(seen, total, "pool rows searched")
    else:
        seen = total if total is not None else sum(len(b) for b in blocks)
    found = min(k, seen)  # a pool smaller than k: its size
    return best_i[:, :found], best_s[:, :found]


def faiss_top_k(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same search with faiss-cpu's exact ``IndexFlatIP`` (a float32 copy of the pool)."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError("the faiss backend needs faiss-cpu: pip install faiss-cpu (or 'skyrm[bench]')") from exc
    k = min(k, len(pool))
    if k == 0 or len(queries) == 0:
        return np.full((len(queries), k), -1, dtype=np.int64), np.full((len(queries), k), -np.inf, np.float32)
    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(np.ascontiguousarray(pool, dtype=np.float32))
    scores, indices = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return indices.astype(np.int64), scores


def top_k(queries: np.ndarray, pool: np.ndarray, k: int, *, backend: str = "numpy",
          progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    if backend == "numpy":
        return exact_top_k(queries, pool, k, progress=progress)
    if backend == "faiss":
        return faiss_top_k(queries, pool, k)
    raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


# --------------------------------------------------------------- selection
@dataclass(frozen=True)
class Link:
    gold_id: str
    pair_id: str
    similarity: float
    rank: int  # 1 = nearest
    k: int
    p: float


def select_neighbours(query_ids: Sequence[str], ks: Sequence[int], ps: Sequence[float],
                      indices: np.ndarray, scores: np.ndarray, pool_ids: Sequence[str]) -> list[Link]:
    """Each query's first ``k`` neighbours as links (a pool pair may appear under several queries)."""
    links = []
    for row, (gold_id, k, p) in enumerate(zip(query_ids, ks, ps)):
        rank = 0
        for index, score in zip(indices[row], scores[row]):
            if rank >= k or index < 0:
                break
            rank += 1
            links.append(Link(gold_id, pool_ids[index], float(score), rank, k, p))
    return links


# ----------------------------------------------------------------- the run
@dataclass(frozen=True)
class RetrieveConfig:
    model: str  # the reward model: run directory, checkpoint, exported model or name
    k_max: int = K_MAX
    round: int = 0
    embed_model: str = "minilm"
    what: str = "prompt+attributes"
    pool: str = "unverified"
    label_kind: str = "llm"  # pool pairs with a label of this kind are not retrieved again
    backend: str = "numpy"
    dtype: str = "float32"  # pool vectors in the search (float16 rounds them; faiss holds the pool whole)
    batch_size: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if self.k_max < 1:
            raise ConfigError("--k-max must be at least 1")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


def cached_gold_scores(store: Any, model: str, gold_ids: Sequence[str]) -> tuple[int, dict[str, float]] | None:
    """(run id, stored-orientation p per gold pair) from a finished score run of this model
    directory that covers every gold pair and started after its newest file, else None."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return None  # a name: its files cannot be dated without loading it
    resolved = str(path.resolve())
    newest = max((f.stat().st_mtime for f in path.rglob("*") if f.is_file()), default=0.0)
    for run in reversed(store.list_runs("score")):
        if run["status"] != "done" or run["config"].get("model_path") != resolved:
            continue
        if datetime.fromisoformat(run["started_at"]).timestamp() < newest:
            continue
        scores = store.scores_for(run["id"])
        if all(g in scores for g in gold_ids):
            return run["id"], {g: scores[g][2] for g in gold_ids}
    return None


class _BlockIds(Sequence[str]):
    """The pool's pair ids in search order, one compact bytes array per block (a 32-hex id costs
    33 bytes instead of a Python string's 81: 13 MiB for 400k pairs)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.starts: list[int] = []
        self.count = 0

    def extend(self, ids: list[str]) -> None:
        self.starts.append(self.count)
        self.blocks.append(np.array([pid.encode() for pid in ids], dtype=np.bytes_))
        self.count += len(ids)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        block = bisect.bisect_right(self.starts, index) - 1
        return bytes(self.blocks[block][index - self.starts[block]]).decode()


def _pool_blocks(batches: Iterable[list[tuple[str, bytes]]], skip: set[str], ids: _BlockIds, dtype: Any,
                 rows: int = POOL_CHUNK) -> Iterator[np.ndarray]:
    """The store's (pair id, vector) batches as blocks of ``rows`` vectors (the last one shorter),
    leaving out ``skip``; each block's ids go to ``ids`` as it is handed out. Held in ``dtype``
    (float16 rounds the vectors as a float16 pool matrix would)."""
    block_ids: list[str] = []
    blobs: list[bytes] = []

    def block() -> np.ndarray:
        ids.extend(block_ids)
        matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(dtype)
        block_ids.clear()
        blobs.clear()
        return matrix

    for batch in batches:
        for pid, blob in batch:
            if pid in skip:
                continue
            block_ids.append(pid)
            blobs.append(blob)
            if len(blobs) == rows:
                yield block()
    if blobs:
        yield block()


def retrieve(store: Any, config: RetrieveConfig, *, progress: Progress | None = None,
             include_links: bool = False) -> dict[str, Any]:
    """Score the gold pairs, apply the adaptive rule to each and record the selected pool pairs."""
    from skyrm.embed import RECIPES, encoder_spec

    started = time.perf_counter()
    gold = {pid: verdict for pid, _, verdict in store.iter_pairs("gold", oriented=False)
            if verdict in ("chosen", "rejected")}
    if not gold:
        raise InputError("the store has no gold pairs with a chosen/rejected label: import or annotate some "
                         "(skyrm import FILE --as gold)")
    gold_ids = sorted(gold)
    recipe = RECIPES.get(config.what)
    if recipe is None:
        raise ConfigError(f"--what must be one of {', '.join(RECIPES)}, got {config.what!r}")
    spec = encoder_spec(config.embed_model)
    if not store.get_embeddings(spec.fingerprint, recipe, gold_ids):
        raise InputError(f"no gold pair has an embedding for {config.embed_model} ({recipe}): run "
                         f"'skyrm embed --model {config.embed_model} --what {config.what}' first")
    run_config = {**asdict(config), "recipe": recipe, "embed_fingerprint": spec.fingerprint}
    with tracked_run(store, "retrieve", run_config) as run:
        summary: dict[str, Any] = {"run_id": run.id, "round": config.round, "k_max": config.k_max,
                                   "embed_model": config.embed_model, "recipe": recipe, "gold": len(gold_ids)}
        try:
            cached = cached_gold_scores(store, config.model, gold_ids)
            if cached is not None:
                score_run, p_stored = cached
                summary["scores"] = f"cached (score run {score_run})"
            else:
                from skyrm.rm.score import score_pool

                scored = score_pool(store, config.model, pool="gold", batch_size=config.batch_size,
                                    device=config.device, progress=progress)
                score_run = scored["run_id"]
                p_stored = {g: v[2] for g, v in store.scores_for(score_run).items() if g in gold}
                summary["scores"] = f"scored (score run {score_run})"
            summary["score_run"] = score_run
            confidences = {g: label_confidence(p_stored[g], gold[g]) for g in gold_ids
                           if g in p_stored and math.isfinite(p_stored[g])}
            summary["gold_unscored"] = len(gold_ids) - len(confidences)
            links, stats = select_and_record(store, run.id, config, confidences, (spec.fingerprint, recipe),
                                             progress=progress)
            summary.update(stats, seconds=round(time.perf_counter() - started, 3))
        finally:  # a failed or interrupted run keeps what it measured
            run.metrics = {k: v for k, v in summary.items() if k != "run_id"}
    if include_links:
        summary["links_detail"] = [asdict(link) for link in links]
    return summary


def select_and_record(store: Any, run_id: int, config: RetrieveConfig, confidences: dict[str, float],
                      space: tuple[str, str], *, progress: Progress | None = None
                      ) -> tuple[list[Link], dict[str, Any]]:
    """The rule and the search for gold pairs with known confidence ``p``; links go to ``retrievals``.

    ``space`` is the (encoder fingerprint, recipe) whose stored vectors are searched. The pool
    is ``config.pool`` less pairs with a ``config.label_kind`` label and less the queries.
    """
    queries = sorted(confidences)
    vectors = store.get_embeddings(space[0], space[1], queries)
    ks = {g: adaptive_k(confidences[g], config.k_max) for g in queries}
    active = [g for g in queries if g in vectors and ks[g] > 0]
    # The pool streams block by block through the exact search (memory: one block and the ids,
    # whatever the pool's size); faiss needs the whole matrix. A query is never its own neighbour.
    pool_ids = _BlockIds()
    blocks = _pool_blocks(store.iter_embeddings(space[0], space[1], config.pool, without_label_kind=config.label_kind),
                          set(queries), pool_ids, DTYPES[config.dtype])
    links: list[Link] = []
    if active:
        query_matrix = np.frombuffer(b"".join(vectors[g] for g in active), dtype="<f4").reshape(len(active), -1)
        k = max(ks[g] for g in active)
        if config.backend == "numpy":
            indices, scores = streamed_top_k(query_matrix, blocks, k, progress=progress)
        else:
            parts = list(blocks)
            pool = np.concatenate(parts) if parts else np.zeros((0, query_matrix.shape[1]), np.float32)
            indices, scores = top_k(query_matrix, pool, k, backend=config.backend, progress=progress)
        links = select_neighbours(active, [ks[g] for g in active], [confidences[g] for g in active],
                                  indices, scores, pool_ids)
    for _ in blocks:  # nothing to search for: the pool is still counted
        pass
    new = store.add_retrievals(run_id, config.round, [(link.gold_id, link.pair_id, link.similarity, link.rank,
                                                       link.k, link.p) for link in links])
    histogram: dict[str, int] = {}
    for g in queries:
        if g in vectors:
            histogram[str(ks[g])] = histogram.get(str(ks[g]), 0) + 1
    searched = [confidences[g] for g in queries if g in vectors]
    stats = {"queries": len(searched), "gold_without_embedding": len(queries) - len(searched),
             "rm_wrong": sum(p <= 0.5 for p in searched),
             "mean_p": round(sum(searched) / len(searched), 4) if searched else None,
             "k_histogram": dict(sorted(histogram.items(), key=lambda kv: int(kv[0]))),
             "k_requested": sum(ks[g] for g in active), "pool": config.pool, "pool_searched": len(pool_ids),
             "pool_unsearched": max(0, store.count_pairs(config.pool) - len(pool_ids)),
             "links": len(links), "new_links": new, "selected": len({link.pair_id for link in links}),
             "backend": config.backend}
    return links, stats


# ------------------------------------------------------- judge's selector
def retrieved_round(pool: str) -> tuple[bool, int | None]:
    """Whether a ``--pool`` value names retrieved pairs ('retrieved' or 'retrieved:ROUND'), and the round."""
    if pool == "retrieved":
        return True, None
    if pool.startswith("retrieved:"):
        value = pool.split(":", 1)[1]
        if not value.lstrip("-").isdigit():
            raise ConfigError(f"--pool retrieved:ROUND needs a whole round number, got {value!r}")
        return True, int(value)
    return False, None


def retrieved_targets(store: Any, pool: str, label_kind: str = "llm") -> list[str] | None:
    """Recorded retrieval targets not yet labelled (of one round or all), or None when ``pool`` names none."""
    named, round_ = retrieved_round(pool)
    if not named:
        return None
    return store.retrieved_pair_ids(round_, unlabelled_kind=label_kind)
