"""The store: migrations, content identity, derived pools, append-only labels, caches."""

from __future__ import annotations

import sqlite3

import pytest

from skyrm.errors import InputError, StoreError
from skyrm.records import Attributes, Label, Pair, pair_id
from skyrm.store import Store


def make_pair(i: int, source: str = "s") -> Pair:
    return Pair(prompt=[{"role": "user", "content": f"question {i}"}],
                chosen=[{"role": "assistant", "content": f"good {i}"}],
                rejected=[{"role": "assistant", "content": f"bad {i}"}], source=source)


def test_open_creates_wal_store_with_all_tables(tmp_path):
    store = Store(tmp_path / "s.db")
    tables = set(store.db.table_names())
    assert {"pairs", "pair_sources", "attributes", "labels", "runs", "scores", "rewards", "features",
            "embeddings", "judge_cache", "quarantine", "steps"} <= tables
    assert "pair_status" in store.db.view_names()
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    applied = store.migrations_applied()
    assert applied[:2] == ["m001_initial", "m002_pair_status_view"]
    store.close()
    again = Store(tmp_path / "s.db")  # reopening applies nothing twice
    assert again.migrations_applied() == applied
    again.close()


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match=r"no store at .*missing.db: run 'skyrm init --db .*missing.db' first"):
        Store(tmp_path / "missing.db", create=False)


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable skyrm store"):
        Store(path)


def test_pair_id_is_content_hash_and_dedup_records_sources(store):
    a = make_pair(1, "first")
    b = make_pair(1, "second")  # same content, other source
    assert a.id == b.id == pair_id(a.prompt, a.chosen, a.rejected)
    assert store.add_pairs([a]) == (1, 0)
    assert store.add_pairs([b, a]) == (0, 2)
    assert store.count_pairs() == 1
    assert store.sources_of(a.id) == ["first", "second"]
    assert store.get_pair(a.id).source == "first"


def test_pools_are_derived_from_labels(store):
    pairs = [make_pair(i) for i in range(6)]
    store.add_pairs(pairs)
    ids = [p.id for p in pairs]
    store.add_labels([
        Label(ids[1], "human", "ann", "chosen"),
        Label(ids[2], "llm", "judge", "rejected"),
        Label(ids[3], "rule", "decontam", "skip"),
        Label(ids[4], "human", "ann", "skip"),
        Label(ids[5], "rule", "curate:stage2", "chosen"),
        Label(ids[5], "llm", "judge", "rejected"),  # curation outranks an LLM label
    ])
    pools = {pid: store.pair_status(pid)["pool"] for pid in ids}
    assert pools == {ids[0]: "unverified", ids[1]: "gold", ids[2]: "silver", ids[3]: "discarded",
                     ids[4]: "discarded", ids[5]: "curated"}
    assert store.pair_ids("silver") == [ids[2]]
    assert store.summary()["pools"] == {"unverified": 1, "gold": 1, "silver": 1, "discarded": 2, "curated": 1}


def test_latest_label_wins_and_rejected_flips_orientation(store):
    pair = make_pair(7)
    store.add_pairs([pair])
    store.add_labels([Label(pair.id, "human", "ann", "chosen")])
    store.add_labels([Label(pair.id, "human", "ann2", "rejected")])
    (stored_id, oriented, verdict), = list(store.iter_pairs("gold"))
    assert stored_id == pair.id and verdict == "rejected"
    assert oriented.chosen == pair.rejected and oriented.rejected == pair.chosen
    (_, raw, _), = list(store.iter_pairs("gold", oriented=False))
    assert raw.chosen == pair.chosen


def test_labels_are_append_only_and_dedup_keys_idempotent(store):
    pair = make_pair(8)
    store.add_pairs([pair])
    label = Label(pair.id, "llm", "judge", "chosen", confidence=0.8, order="both", detail={"p": 0.8})
    assert store.add_labels([label], dedup_keys=["k1"]) == 1
    assert store.add_labels([label, label], dedup_keys=["k1", "k1"]) == 0
    assert store.has_label_keys(["k1", "k2"]) == {"k1"}
    assert store.labels_for(pair.id) == [label]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE labels SET verdict = 'rejected'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM labels")


def test_label_check_constraints(store):
    pair = make_pair(9)
    store.add_pairs([pair])
    with pytest.raises(sqlite3.IntegrityError):
        store.add_labels([Label(pair.id, "oracle", "x", "chosen")])
    with pytest.raises(sqlite3.IntegrityError):
        store.add_labels([Label(pair.id, "human", "x", "maybe")])
    assert store.labels_for(pair.id) == []  # the failed batch left nothing behind


def test_iter_pairs_streams_in_batches_and_limits(store):
    store.add_pairs([make_pair(i) for i in range(25)])
    ids = [pid for pid, _, _ in store.iter_pairs("all", batch=4)]
    assert len(ids) == 25 and ids == sorted(ids)
    assert len(list(store.iter_pairs("all", limit=7, batch=3))) == 7
    assert len(list(store.iter_pairs("s"))) == 25  # a source name is a pool
    assert list(store.iter_pairs("curated")) == []  # a known pool may be empty
    with pytest.raises(InputError) as error:  # an unknown name is a mistake, not an empty selection
        list(store.iter_pairs("nosuchsource"))
    assert str(error.value) == ("--pool 'nosuchsource' is neither a pool nor a source in the store; choose from "
                                "unverified, gold, silver, discarded, curated, all, trainable or a source (s 25)")


def test_attributes_latest_wins(store):
    pair = make_pair(10)
    store.add_pairs([pair])
    assert store.pairs_without_attributes() == [pair.id]
    store.add_attributes(pair.id, Attributes("math", "objective", "low", "correct", "check it"), producer="a")
    store.add_attributes(pair.id, Attributes("code", "objective", "low", "runs", "run it"), producer="b")
    assert store.get_attributes(pair.id).task_category == "code"
    assert store.pairs_without_attributes() == []


def test_runs_scores_and_caches(store):
    pair = make_pair(11)
    store.add_pairs([pair])
    run = store.start_run("score", {"model": "m"}, name="t")
    store.add_scores(run, [(pair.id, 1.0, -1.0, 0.88)])
    store.finish_run(run, metrics={"accuracy": 1.0})
    assert store.get_run(run)["status"] == "done" and store.get_run(run)["metrics"] == {"accuracy": 1.0}
    assert store.scores_for(run) == {pair.id: (1.0, -1.0, 0.88)}
    store.put_rewards("m", {"a": 0.5, "b": -1.5})
    assert store.get_rewards("m", ["a", "b", "c"]) == {"a": 0.5, "b": -1.5}
    assert store.get_rewards("other", ["a"]) == {}
    store.cache_put("key", {"text": "1"})
    assert store.cache_get("key") == {"text": "1"} and store.cache_get("nope") is None
    store.set_step("x", "running", {"line": 3})
    assert store.step_status("x") == {"status": "running", "detail": {"line": 3}}


def test_failed_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.add_pairs([make_pair(12)])
            raise RuntimeError("boom")
    assert store.count_pairs() == 0


def test_fast_canonical_messages_equal_generic_encoder():
    from skyrm.records import canonical_json, canonical_messages

    samples = [[], [{"role": "user", "content": "plain"}],
               [{"role": "user", "content": 'quotes " and \\ back\nslash\t\u0001 ünïcødé 😀'},
                {"role": "assistant", "content": ""}],
               [{"role": "tool", "content": "x", "name": "calc"}]]  # three keys: generic path
    for messages in samples:
        assert canonical_messages(messages) == canonical_json(messages)
    pair = make_pair(99)
    assert pair.id == pair_id(pair.prompt, pair.chosen, pair.rejected)
