"""Decontamination by word n-grams against benchmark first-turn prompts."""

from __future__ import annotations

import json

from skyrm.decontam import NgramIndex, decontaminate, first_turn_prompt
from skyrm.ingest import import_file
from skyrm.text import ngrams, words


def test_words_and_ngrams_normalise():
    assert words("Héllo, WORLD! it's 2") == ["héllo", "world", "it", "s", "2"]
    assert list(ngrams(["a", "b", "c"], 2)) == ["a b", "b c"]
    assert list(ngrams(["a"], 2)) == []


def test_first_turn_prompt_from_each_shape():
    assert first_turn_prompt({"prompt": "p"}) == "p"
    assert first_turn_prompt({"question": "q"}) == "q"
    assert first_turn_prompt({"conversation_input": [{"role": "user", "content": "c"}]}) == "c"
    assert first_turn_prompt({"conversations": [{"from": "system", "content": "s"},
                                                {"from": "human", "value": "h"}]}) == "h"
    assert first_turn_prompt({"chosen": "\n\nHuman: hh?\n\nAssistant: a"}) == "hh?"
    assert first_turn_prompt({"unrelated": 1}) is None


def test_index_exact_13_gram_boundary():
    index = NgramIndex(13)
    prompt = " ".join(f"w{i}" for i in range(20))
    index.add(prompt, "bench:1")
    twelve = " ".join(f"w{i}" for i in range(12))
    thirteen = " ".join(f"w{i}" for i in range(5, 18))
    assert index.match(f"text {twelve} more") is None
    assert index.match(f"text {thirteen} more") == (thirteen, "bench:1")


def test_short_prompts_match_whole_and_tiny_ones_are_ignored():
    index = NgramIndex(13)
    index.add("what is the capital of france", "b:1")
    index.add("hi there", "b:2")
    assert index.match("Q: What is the capital of France? A: Paris")[1] == "b:1"
    assert index.match("hi there friend") is None


def test_decontaminate_marks_rule_label_and_keeps_pair(store, tmp_path):
    leak = "describe the process of photosynthesis in green plants and explain why chlorophyll matters so much"
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": leak.upper(), "chosen": "light", "rejected": "dark"}) + "\n")
    import_file(store, data)
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps([{"prompt": leak, "chosen": ["a"] * 3, "rejected": ["b"] * 3}]))
    assert decontaminate(store, [bench])["marked"] == 1
    (pid,) = store.pair_ids()
    (label,) = store.labels_for(pid)
    assert (label.kind, label.producer, label.verdict) == ("rule", "decontam", "skip")
    assert label.detail["benchmark"] == "b.json:1" and len(label.detail["ngram"].split()) == 13
    assert store.get_pair(pid) is not None and store.pair_status(pid)["pool"] == "discarded"


def test_a_directory_of_benchmark_files_is_read_like_its_files(tmp_path):
    """As for import and eval, --against a directory reads every data file below it."""
    from skyrm.decontam import build_index

    folder = tmp_path / "bench" / "sub"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text(json.dumps({"prompt": "one two three four five six"}) + "\n")
    (tmp_path / "bench" / "b.json").write_text(json.dumps([{"question": "seven eight nine ten eleven"}]))
    (tmp_path / "bench" / "notes.txt").write_text("not data")
    index = build_index([tmp_path / "bench"], n=13)
    assert index.prompts == 2
    assert index.match("say one two three four five six now") == ("one two three four five six", "a.jsonl:1")
