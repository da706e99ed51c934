"""The bundled demo data: deterministic, distinct, checkable, importable."""

from __future__ import annotations

import collections
import hashlib
import re

from skyrm import demo_data
from skyrm.ingest import import_file


def test_generator_is_deterministic_and_distinct(tmp_path):
    a = demo_data.write(tmp_path / "a.jsonl.gz", n=400, seed=3)
    b = demo_data.write(tmp_path / "b.jsonl.gz", n=400, seed=3)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    rows = list(demo_data.generate(400, seed=3))
    assert len({(r["prompt"], r["chosen"], r["rejected"]) for r in rows}) == 400
    assert len(collections.Counter(r["category"] for r in rows)) >= 5


def test_arithmetic_answers_are_right_in_chosen():
    checked = 0
    for row in demo_data.generate(300, seed=1):
        match = re.match(r"^(?:\D*?)(\d+) ([+\-*]) (\d+)", row["prompt"].split(": ")[-1])
        if row["category"] == "math" and match and "=" in row["chosen"]:
            a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
            value = {"+": a + b, "-": a - b, "*": a * b}[op]
            assert row["chosen"].endswith(f"= {value}.") and not row["rejected"].endswith(f"= {value}.")
            checked += 1
    assert checked >= 10  # the pattern still matches the generator's arithmetic rows


def test_noise_flips_the_requested_share():
    rows = list(demo_data.generate(2000, seed=0, noise=0.25))
    flipped = sum(r["flipped"] for r in rows)
    assert 400 < flipped < 600
    clean = {r["id"]: r for r in demo_data.generate(2000, seed=0)}
    for row in rows[:200]:
        original = clean[row["id"]]
        assert (row["chosen"] == original["rejected"]) == row["flipped"]


def test_bundled_file_matches_generator_and_imports(store, tmp_path):
    from pathlib import Path

    bundled = Path(__file__).resolve().parents[1] / "data" / "demo_pairs.jsonl.gz"
    fresh = demo_data.write(tmp_path / "demo.jsonl.gz", n=3000, seed=0)
    assert bundled.read_bytes() == fresh.read_bytes()
    summary = import_file(store, bundled, source="demo")
    assert (summary.pairs_new, summary.bad_rows) == (3000, 0)
    (_, pair, _) = next(store.iter_pairs("demo"))
    assert set(pair.meta) == {"category", "objective", "id", "flipped"}


def test_demo_files_hold_out_clean_gold_and_noisy_pool(tmp_path, store):
    from skyrm.demo import DemoConfig, prepare_files

    config = DemoConfig()
    gold, pool, held_out = prepare_files(tmp_path, config)
    import_file(store, gold, source="g", as_="gold")
    import_file(store, pool, source="p")
    assert store.count_pairs("gold") == config.gold
    assert store.count_pairs("unverified") == config.pairs - config.gold
    assert not any(p.meta["flipped"] for _, p, _ in store.iter_pairs("gold"))
    flipped = sum(p.meta["flipped"] for _, p, _ in store.iter_pairs("unverified"))
    assert 0.2 < flipped / (config.pairs - config.gold) < 0.3
    # the held-out pairs come from another seed: none of them is a pool or gold pair
    summary = import_file(store, held_out, source="h")
    assert summary.pairs_new == config.held_out
