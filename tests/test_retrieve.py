"""Adaptive retrieval: the k rule by hand, exact search on vectors with known neighbours,
exclusions, de-duplication, the judge's `retrieved` selector and similarity-chosen examples.

Vectors here are hand-built and stored under a made-up encoder fingerprint, so no model runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyrm.errors import ConfigError
from skyrm.labelling.examples import ExampleSelector, example_selector
from skyrm.labelling.label import resolve_targets
from skyrm.records import Label, Pair
from skyrm.retrieve import (RetrieveConfig, adaptive_k, exact_top_k, faiss_top_k, label_confidence,
                            retrieved_round, select_and_record, streamed_top_k)

SPACE = ("test-fingerprint", "prompt@1")


# ------------------------------------------------------------------ the rule
@pytest.mark.parametrize("p, k", [(0.2, 8), (0.5, 8), (0.75, 2), (0.99, 1), (0.0, 8), (1.0, 0),
                                  (0.51, 4), (0.876, 1), (0.625, 3)])
def test_adaptive_k_hand_computed(p, k):
    # p <= 0.5: k_max; else ceil(8 (1 - p)): 8*0.25 = 2, 8*0.01 = 0.08 -> 1, 8*0.49 = 3.92 -> 4,
    # 8*0.124 = 0.992 -> 1, 8*0.375 = 3 exactly -> 3.
    assert adaptive_k(p) == k


def test_adaptive_k_other_k_max_and_float_rounding():
    assert adaptive_k(0.8, 5) == 1  # 5 * (1 - 0.8) is 1.0000000000000002 in floats: still 1
    assert adaptive_k(0.7, 10) == 3  # 10 * 0.30000000000000004
    assert adaptive_k(0.3, 3) == 3
    assert adaptive_k(0.9, 16) == 2  # 16 * 0.1 = 1.6 -> 2
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError):
            adaptive_k(bad)


def test_label_confidence_follows_the_gold_orientation():
    assert label_confidence(0.9, "chosen") == 0.9
    assert label_confidence(0.9, "rejected") == pytest.approx(0.1)
    with pytest.raises(ValueError):
        label_confidence(0.5, "tie")


# ------------------------------------------------------------------ search
def _unit(angles_deg):
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_exact_top_k_on_vectors_with_known_neighbours():
    pool = _unit([0, 10, 20, 90, 180, 270, 45, 5])  # indices 0..7
    queries = _unit([3, 110, 200])
    # query 3°: 5° (2° away), 0° (3°), 10° (7°), 20° (17°)
    # query 110°: 90° (20°), 45° (65°), 180° (70°), 20° (90°)
    # query 200°: 180° (20°), 270° (70°), 90° (110°), 45° (155°), then 0° (160°)
    indices, scores = exact_top_k(queries, pool, 4, pool_chunk=3, query_chunk=2)
    assert indices.tolist() == [[7, 0, 1, 2], [3, 6, 4, 2], [4, 5, 3, 6]]
    assert scores[0].tolist() == pytest.approx([math.cos(math.radians(d)) for d in (2, 3, 7, 17)], abs=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_exact_top_k_ties_go_to_the_lower_index_in_every_code_path():
    pool = np.repeat(np.eye(4, dtype=np.float32), 200, axis=0)  # 800 rows, 4 runs of identical vectors
    queries = np.eye(4, dtype=np.float32)[[2, 0]]
    for chunk in (7, 320, 640, 5000):  # plain mask (ragged or < 5 groups of 64) and the grouped scan
        indices, scores = exact_top_k(queries, pool, 5, pool_chunk=chunk)
        assert indices.tolist() == [list(range(400, 405)), list(range(0, 5))], chunk
        assert scores.tolist() == [[1.0] * 5] * 2


@pytest.mark.parametrize("n, m, k, pool_chunk, query_chunk", [
    (1000, 37, 8, 128, 16), (1000, 37, 8, 100, 1000), (5, 3, 8, 64, 2), (4096, 50, 20, 1024, 7),
    (5000, 37, 8, 512, 16), (20000, 20, 3, 16384, 1024)])
def test_exact_top_k_equals_brute_force(n, m, k, pool_chunk, query_chunk):
    rng = np.random.default_rng(n + m)
    pool = rng.standard_normal((n, 24)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    queries = rng.standard_normal((m, 24)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    indices, scores = exact_top_k(queries, pool, k, pool_chunk=pool_chunk, query_chunk=query_chunk)
    brute = queries @ pool.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :min(k, n)]
    assert indices.shape == (m, min(k, n))
    assert (indices == expected).all()
    assert np.allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-6)


def test_streamed_top_k_over_uneven_blocks_equals_the_whole_pool():
    rng = np.random.default_rng(7)
    pool = rng.standard_normal((3000, 16)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    queries = pool[[5, 1700, 2999]] + 0.01
    expected = exact_top_k(queries, pool, 9)
    cuts = [0, 640, 645, 1999, 2048, 3000]  # blocks of 640 (the fast scan), 5, 1354, 49 and 952 rows
    got = streamed_top_k(queries, (pool[a:b] for a, b in zip(cuts, cuts[1:])), 9, query_chunk=2)
    assert (got[0] == expected[0]).all() and np.allclose(got[1], expected[1], atol=1e-6)  # BLAS block order
    few = streamed_top_k(queries, iter([pool[:3]]), 9)  # a pool smaller than k
    assert few[0].shape == (3, 3) and (few[0] == exact_top_k(queries, pool[:3], 9)[0]).all()


def test_exact_top_k_on_float16_pool_and_empty_inputs():
    rng = np.random.default_rng(3)
    pool = rng.standard_normal((300, 16)).astype(np.float16)
    queries = rng.standard_normal((4, 16)).astype(np.float32)
    indices, _ = exact_top_k(queries, pool, 3, pool_chunk=64)
    expected = np.argsort(-(queries @ pool.astype(np.float32).T), axis=1, kind="stable")[:, :3]
    assert (indices == expected).all()
    empty_i, empty_s = exact_top_k(queries, pool[:0], 3)
    assert empty_i.shape == (4, 0) and empty_s.shape == (4, 0)


def test_faiss_backend_finds_the_same_neighbours():
    pytest.importorskip("faiss", reason="optional: faiss-cpu comes with the bench extra")
    rng = np.random.default_rng(7)
    pool = rng.standard_normal((5000, 32)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    queries = pool[rng.choice(5000, 40, replace=False)] + 0.05 * rng.standard_normal((40, 32)).astype(np.float32)
    ours, our_scores = exact_top_k(queries, pool, 8, pool_chunk=1024)
    theirs, their_scores = faiss_top_k(queries, pool, 8)
    assert (ours == theirs).all()
    assert np.allclose(our_scores, their_scores, atol=1e-5)


# --------------------------------------------------------- store and rules
def _pair(i: int, source: str = "s") -> Pair:
    return Pair([{"role": "user", "content": f"question {i}"}], [{"role": "assistant", "content": f"good {i}"}],
                [{"role": "assistant", "content": f"bad {i}"}], source=source)


def _seed_space(store, vectors: dict[str, list[float]]) -> None:
    rows = []
    for pid, vec in vectors.items():
        v = np.asarray(vec, dtype=np.float32)
        v /= np.linalg.norm(v)
        rows.append((pid, "hand", SPACE[1], SPACE[0], None, len(v), v.astype("<f4").tobytes()))
    store.put_embeddings(rows)


@pytest.fixture
def world(store):
    """Two gold pairs (directions 0° and 90°) and seven pool pairs at known angles."""
    gold = [_pair(i, "gold") for i in range(2)]
    pool = [_pair(10 + i) for i in range(7)]
    store.add_pairs(gold + pool)
    store.add_labels([Label(gold[0].id, "human", "ann", "chosen"), Label(gold[1].id, "human", "ann", "rejected")])
    angles = {gold[0].id: 0, gold[1].id: 90}
    # pool angles: 2, 4, 6 near gold 0; 88, 86 near gold 1; 45 between; 180 far from both
    for pair, angle in zip(pool, [2, 4, 6, 88, 86, 45, 180]):
        angles[pair.id] = angle
    _seed_space(store, {pid: [math.cos(math.radians(a)), math.sin(math.radians(a))] for pid, a in angles.items()})
    return store, gold, pool


def _run(store, confidences, **config):
    run_id = store.start_run("retrieve", {})
    cfg = RetrieveConfig(model="unused", **config)
    return select_and_record(store, run_id, cfg, confidences, SPACE)


def test_rule_selects_k_nearest_per_gold_pair_and_records_links(world):
    store, gold, pool = world
    # gold 0: p = 0.2 (RM wrong) -> k = 3 of k_max 3; gold 1: p = 0.75 -> ceil(3 * 0.25) = 1
    links, stats = _run(store, {gold[0].id: 0.2, gold[1].id: 0.75}, k_max=3, round=2)
    got = sorted((l.gold_id, l.pair_id, l.rank, l.k) for l in links)
    assert got == sorted([(gold[0].id, pool[0].id, 1, 3), (gold[0].id, pool[1].id, 2, 3),
                          (gold[0].id, pool[2].id, 3, 3), (gold[1].id, pool[3].id, 1, 1)])
    nearest = next(l for l in links if l.pair_id == pool[0].id)
    assert nearest.similarity == pytest.approx(math.cos(math.radians(2)), abs=1e-6)
    assert nearest.p == pytest.approx(0.2)
    assert stats["selected"] == 4 and stats["k_histogram"] == {"1": 1, "3": 1} and stats["rm_wrong"] == 1
    recorded = store.retrievals(round_=2)
    assert sorted((r["gold_id"], r["pair_id"], r["rank"], r["k"]) for r in recorded) == got
    assert {r["pair_id"]: r["p"] for r in recorded}[pool[3].id] == pytest.approx(0.75)
    assert sorted(store.retrieved_pair_ids(2)) == sorted(p.id for p in pool[:4])


def test_labelled_pool_pairs_and_queries_are_excluded(world):
    store, gold, pool = world
    # A contested LLM verdict leaves pool[0] unverified, but it is labelled: not retrieved again.
    store.add_labels([Label(pool[0].id, "llm", "judge", "tie")])
    assert store.pair_status(pool[0].id)["pool"] == "unverified"
    links, stats = _run(store, {gold[0].id: 0.1}, k_max=2, pool="all")
    assert [l.pair_id for l in links] == [pool[1].id, pool[2].id]  # not pool[0], not gold[0] itself (0°)
    assert stats["pool_searched"] == 7  # all 9 pairs less the labelled one and the query
    # With label_kind 'human' the LLM-labelled pair is eligible again.
    links, _ = _run(store, {gold[0].id: 0.1}, k_max=1, label_kind="human", round=5)
    assert [l.pair_id for l in links] == [pool[0].id]


def test_a_pair_found_by_two_gold_pairs_is_one_target_and_two_links(world):
    store, gold, pool = world
    # k_max 6 for both: gold 0 reaches 2,4,6,45,86,88; gold 1 reaches 88,86,45,6,4,2: all shared
    links, stats = _run(store, {gold[0].id: 0.3, gold[1].id: 0.6}, k_max=6, round=1)
    k1 = adaptive_k(0.6, 6)  # ceil(6 * 0.4) = 3
    assert k1 == 3
    assert len(links) == 6 + 3
    assert stats["selected"] == 6  # 88, 86, 45 found by both
    shared = {l.pair_id for l in links if l.gold_id == gold[0].id} & {l.pair_id for l in links if l.gold_id == gold[1].id}
    assert shared == {pool[3].id, pool[4].id, pool[5].id}
    assert len(store.retrievals(round_=1)) == 9
    targets = resolve_targets(store, "retrieved:1")
    assert len(targets) == len(set(targets)) == 6
    # Re-running the same round records no new link.
    _, again = _run(store, {gold[0].id: 0.3, gold[1].id: 0.6}, k_max=6, round=1)
    assert again["new_links"] == 0 and len(store.retrievals(round_=1)) == 9


def test_judge_selector_yields_retrieved_pairs_not_yet_labelled(world):
    store, gold, pool = world
    _run(store, {gold[0].id: 0.2}, k_max=2, round=1)
    _run(store, {gold[1].id: 0.2}, k_max=1, round=2)
    assert resolve_targets(store, "retrieved:1") == [pool[0].id, pool[1].id]  # nearest first
    assert resolve_targets(store, "retrieved:2") == [pool[3].id]
    assert resolve_targets(store, "retrieved") == [pool[0].id, pool[1].id, pool[3].id]  # in recorded order
    assert resolve_targets(store, "retrieved", limit=1) == [pool[0].id]
    store.add_labels([Label(pool[0].id, "llm", "judge", "chosen")])
    assert resolve_targets(store, "retrieved") == [pool[1].id, pool[3].id]
    assert retrieved_round("unverified") == (False, None)
    with pytest.raises(ConfigError, match="whole round number"):
        resolve_targets(store, "retrieved:one")


# ------------------------------------------------------ few-shot examples
def test_examples_are_the_nearest_gold_pairs(store):
    gold = [_pair(i, "gold") for i in range(5)]
    target, lonely = _pair(50), _pair(51)
    store.add_pairs(gold + [target, lonely])
    store.add_labels([Label(g.id, "human", "ann", "chosen") for g in gold])
    angles = {g.id: a for g, a in zip(gold, [0, 30, 60, 90, 120])}
    angles[target.id] = 50  # nearest: 60 (10°), 30 (20°), 90 (40°), 0 (50°) ...
    _seed_space(store, {pid: [math.cos(math.radians(a)), math.sin(math.radians(a))] for pid, a in angles.items()})

    selector = ExampleSelector(store)
    assert selector.space == SPACE
    shots = selector.select(target.id, target, None, 3)
    assert [s.pair.id for s in shots] == [gold[2].id, gold[1].id, gold[3].id]  # nearest first
    by_similarity = ExampleSelector(store, order="selected")
    assert by_similarity.arrange([shots]) == [shots]

    # The shared order puts the gold pair chosen for most targets first (ties by id), so
    # both targets below start with the same example.
    other = _pair(52)
    store.add_pairs([other])
    _seed_space(store, {other.id: [math.cos(math.radians(70)), math.sin(math.radians(70))]})  # 60, 90, 30
    second = selector.select(other.id, other, None, 3)
    assert [s.pair.id for s in second] == [gold[2].id, gold[3].id, gold[1].id]
    arranged = selector.arrange([shots, second])
    common = sorted([gold[1].id, gold[2].id, gold[3].id])  # each chosen twice: ties by id
    assert [[s.pair.id for s in shots_] for shots_ in arranged] == [common, common]

    # A gold target never gets itself; a target without a vector falls back to the tiers.
    assert gold[2].id not in [s.pair.id for s in by_similarity.select(gold[2].id, gold[2], None, 4)]
    fallback = [s.pair.id for s in by_similarity.select(lonely.id, lonely, None, 3)]
    tiers_only = [s.pair.id for s in ExampleSelector(store, embedding=None).select(lonely.id, lonely, None, 3)]
    assert fallback == tiers_only and len(fallback) == 3


def test_examples_fill_from_the_tiers_when_few_gold_pairs_have_vectors(store):
    gold = [_pair(i, "gold") for i in range(4)]
    target = _pair(60)
    store.add_pairs(gold + [target])
    store.add_labels([Label(g.id, "human", "ann", "chosen") for g in gold])
    _seed_space(store, {gold[0].id: [1.0, 0.0], target.id: [1.0, 0.1]})
    shots = [s.pair.id for s in ExampleSelector(store).select(target.id, target, None, 3)]
    assert shots[0] == gold[0].id and len(shots) == 3 and len(set(shots)) == 3
    with pytest.raises(ConfigError):
        ExampleSelector(store, order="random")
    with pytest.raises(ConfigError, match="--examples"):
        example_selector(store, "closest")
