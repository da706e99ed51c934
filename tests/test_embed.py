"""Embeddings with the real offline MiniLM: equal to sentence-transformers, incremental,
recipe- and attribute-aware, and safe to kill -9 mid-run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from skyrm.embed import Encoder, EmbedConfig, embed_pool, embedding_text, encoder_spec
from skyrm.records import Attributes, Pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm():
    try:
        spec = encoder_spec("minilm")
    except Exception as exc:  # the offline model package is the `models` extra
        pytest.skip(f"MiniLM not installed: {exc}")
    return Encoder(spec, device="cpu", batch_size=8)


def _pair(i: int, words: int = 6) -> Pair:
    topic = ["cooking", "python code", "tax law", "gardening", "chess", "poetry"][i % 6]
    text = f"Question {i} about {topic}: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(words))
    return Pair([{"role": "user", "content": text}], [{"role": "assistant", "content": f"answer {i}"}],
                [{"role": "assistant", "content": f"other {i}"}], source="t")


def _rows(store):
    return store.db.execute("SELECT pair_id, recipe, attributes_id, vector, created_at FROM embeddings "
                            "ORDER BY pair_id, recipe").fetchall()


def test_importing_skyrm_embed_and_retrieve_loads_no_torch():
    code = ("import sys, skyrm, skyrm.embed, skyrm.retrieve, skyrm.cli.retrieve, skyrm.labelling.examples\n"
            "print('HEAVY', [m for m in ('torch', 'transformers', 'sentence_transformers', 'faiss') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out


def test_texts_follow_the_documented_recipes():
    pair = Pair([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
                [{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}])
    attrs = Attributes("chat", "subjective", "low", "warm and short", "prefer the friendlier one")
    assert embedding_text(pair, attrs, "prompt") == "System: Be brief.\n\nUser: Hi?"
    assert embedding_text(pair, None, "prompt+attributes") == "System: Be brief.\n\nUser: Hi?"
    assert embedding_text(pair, attrs, "prompt+attributes") == (
        "System: Be brief.\n\nUser: Hi?\n\nTask: chat; subjective; controversiality: low.\n"
        "A good response: warm and short\nGuideline: prefer the friendlier one")


def test_vectors_equal_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    texts = [embedding_text(_pair(i), None, "prompt") for i in range(5)]
    texts += ["User: " + "a very long conversation turn " * 120,  # cut at 256 tokens by both
              "User: Ünïcödé — 日本語のテキスト 🙂", "User: x"]
    ours = minilm.encode(texts)
    theirs = st.SentenceTransformer(minilm.spec.path, device="cpu").encode(
        texts, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (8, 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_embedding_is_incremental_per_recipe_and_redone_after_new_attributes(store, minilm):
    pairs = [_pair(i) for i in range(6)]
    store.add_pairs(pairs)
    first = embed_pool(store, EmbedConfig(what="prompt", chunk=4), encoder=minilm)
    assert (first["todo"], first["embedded"], first["dim"]) == (6, 6, 384)
    before = {r[0]: r for r in _rows(store)}
    stored = np.stack([np.frombuffer(before[p.id][3], dtype="<f4") for p in pairs])
    direct = minilm.encode([embedding_text(p, None, "prompt") for p in pairs])
    assert np.allclose(stored, direct, atol=1e-6)

    again = embed_pool(store, EmbedConfig(what="prompt"), encoder=minilm)
    assert again["todo"] == 0 and again["run_id"] is None

    new = [_pair(i) for i in range(6, 9)]
    store.add_pairs(new)
    third = embed_pool(store, EmbedConfig(what="prompt"), encoder=minilm)
    assert third["todo"] == 3
    after = {r[0]: r for r in _rows(store)}
    assert len(after) == 9
    assert all(after[p.id] == before[p.id] for p in pairs)  # old rows untouched (same created_at)

    # A second recipe is its own space; attributes written later make that pair's row stale.
    both = embed_pool(store, EmbedConfig(what="prompt+attributes"), encoder=minilm)
    assert both["todo"] == 9
    store.add_attributes(pairs[0].id, Attributes("code", "objective", "low", "runs", "check the output"),
                         producer="test")
    redo = embed_pool(store, EmbedConfig(what="prompt+attributes"), encoder=minilm)
    assert redo["todo"] == 1
    assert embed_pool(store, EmbedConfig(what="prompt"), encoder=minilm)["todo"] == 0
    rows = store.db.execute("SELECT recipe, attributes_id, vector FROM embeddings WHERE pair_id = ?",
                            [pairs[0].id]).fetchall()
    by_recipe = {r[0]: r for r in rows}
    assert len(rows) == 2 and by_recipe["prompt+attributes@1"][1] is not None
    assert by_recipe["prompt@1"][1] is None
    assert by_recipe["prompt+attributes@1"][2] != by_recipe["prompt@1"][2]
    assert [r["status"] for r in store.list_runs("embed")] == ["done"] * 4  # runs with nothing to do record none


def test_a_plain_transformers_encoder_directory_works(store, tmp_path, minilm):
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(minilm.spec.path)
    tokenizer.save_pretrained(directory)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(directory)
    spec = encoder_spec(str(directory))
    assert spec.pooling == "mean" and spec.max_length == 128 and spec.fingerprint != minilm.spec.fingerprint
    store.add_pairs([_pair(i) for i in range(3)])
    result = embed_pool(store, EmbedConfig(model=str(directory), what="prompt"))
    assert (result["embedded"], result["dim"]) == (3, 32)
    assert len(store.embedding_spaces()) == 1 and store.embedding_spaces()[0]["fingerprint"] == spec.fingerprint


def test_kill_9_during_embed_then_rerun_stores_each_embedding_once(tmp_path, minilm):
    db = tmp_path / "kill.db"
    from skyrm.store import Store

    n = 300
    with Store(db) as store:
        store.add_pairs([_pair(i, words=60) for i in range(n)])
    cmd = [sys.executable, "-m", "skyrm", "embed", "--db", str(db), "--what", "prompt", "--chunk", "16",
           "--batch-size", "8", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    committed = 0
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    committed = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if committed >= 32:
                break
        assert proc.poll() is None, "embed finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    with Store(db) as store:
        kept = store.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        assert 32 <= kept < n and kept % 16 == 0  # whole chunks only
        assert [r["status"] for r in store.list_runs("embed")] == ["running"]  # the killed run
        result = embed_pool(store, EmbedConfig(what="prompt", chunk=64), encoder=minilm)
        assert result["todo"] == n - kept and result["embedded"] == n - kept
        total, distinct = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT pair_id) FROM embeddings").fetchone()
        assert total == distinct == n
        ids = store.pair_ids("all")[:5]
        vectors = store.get_embeddings(minilm.spec.fingerprint, "prompt@1", ids)
        pairs = store.get_pairs(ids)
        direct = minilm.encode([embedding_text(pairs[i], None, "prompt") for i in ids])
        assert np.allclose(np.stack([np.frombuffer(vectors[i], dtype="<f4") for i in ids]), direct, atol=1e-5)


def test_an_older_sentence_transformers_layout_with_cls_pooling_equals_sentence_transformers(tmp_path, minilm):
    st = pytest.importorskip("sentence_transformers")
    import json
    import shutil
    from pathlib import Path

    source = Path(minilm.spec.path)
    root = tmp_path / "st-cls"
    shutil.copytree(source, root / "0_Transformer", ignore=shutil.ignore_patterns("1_Pooling", "modules.json"))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    spec = encoder_spec(str(root))
    assert spec.pooling == "cls" and spec.path.endswith("0_Transformer") and spec.max_length == 256
    assert spec.fingerprint != minilm.spec.fingerprint  # same weights, other pooling: another space
    texts = [embedding_text(_pair(i), None, "prompt") for i in range(4)]
    ours = Encoder(spec, device="cpu").encode(texts)
    theirs = st.SentenceTransformer(str(root), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.abs(ours - minilm.encode(texts)).max() > 1e-2  # CLS is not mean pooling
