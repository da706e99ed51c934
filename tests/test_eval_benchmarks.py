"""Benchmark loaders and rules end to end: fixtures in the published schemas, and the real files.

Fixture responses carry their reward in a leading "[r=0.7]" tag, read by
``tag_scorer``, so every figure below is computed by hand. On the real data a
deterministic text-hash reward stands in for a model, and an independent
recomputation straight from the raw JSON must give the same figures.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest

from skyrm.errors import ConfigError, InputError
from skyrm.evaluate.benchmarks import load_benchmark
from skyrm.evaluate.tasks.ppe import ppe_domain
from skyrm.evaluate.run import EvalConfig, bench_keys, evaluate, parse_bench

EVAL_DATA = Path(__file__).resolve().parent / "data" / "eval"
TAG = re.compile(r"^\[r=([0-9.]+)\]")


def tag_scorer(items, progress=None):
    return [float(TAG.match(response[-1]["content"]).group(1)) for _, response in items]


def hash_reward(text: str) -> float:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) / 2 ** 32


def hash_scorer(items, progress=None):
    return [hash_reward(response[-1]["content"]) for _, response in items]


def run(name: str, path: Path, scorer=tag_scorer, **config):
    loaded = [load_benchmark(name, path, limit=config.get("limit"))]
    cfg = EvalConfig(benches=((name, str(path)),), **config)
    return evaluate(loaded, scorer, cfg)


# ----------------------------------------------------------- RewardBench v1


def test_rewardbench_v1_fixture_sections_and_prior_sets():
    bench = run("rewardbench", EVAL_DATA / "rewardbench")["benchmarks"]["rewardbench"]
    assert bench["examples"] == 14
    subsets = {r[1]: r[4] for r in next(t for t in bench["tables"] if t["title"] == "subsets")["rows"]}
    assert subsets == {"alpacaeval-easy": 1.0, "mt-bench-easy": 0.0, "llmbar-natural": 0.5,
                       "xstest-should-respond": 0.5, "donotanswer": 1.0, "math-prm": 0.5, "hep-python": 0.5,
                       "anthropic_helpful": 0.5}
    chat, chat_hard = 100 / 128, 0.5
    safety = (154 * 0.5 + 136 * 1.0) / (154 + 136)
    reasoning = (984 * 0.5 + 164 * 0.5) / (984 + 164)
    sections = {r[0]: r[1] for r in next(t for t in bench["tables"] if t["title"] == "sections")["rows"]}
    assert sections["Chat"] == pytest.approx(chat) and sections["Chat Hard"] == pytest.approx(chat_hard)
    assert sections["Safety"] == pytest.approx(safety) and sections["Reasoning"] == pytest.approx(reasoning)
    assert sections["Prior Sets (0.5 weight)"] == pytest.approx(0.5)
    expected = (2 * (chat + chat_hard + safety + reasoning) + 0.5) / 9
    assert bench["score"] == pytest.approx(expected)
    assert bench["headlines"] == {"RewardBench": pytest.approx(expected)}


def test_rewardbench_v1_without_prior_sets_is_the_mean_of_sections():
    bench = run("rewardbench", EVAL_DATA / "rewardbench" / "filtered.jsonl")["benchmarks"]["rewardbench"]
    chat, safety = 100 / 128, (154 * 0.5 + 136) / 290
    assert bench["score"] == pytest.approx((chat + 0.5 + safety + 0.5) / 4)


def test_rewardbench_v1_multi_turn_prior_prompt_is_the_history():
    loaded = load_benchmark("rewardbench", EVAL_DATA / "rewardbench" / "anthropic_helpful.jsonl")
    history, response = loaded.examples[0].items[0]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert response[0]["role"] == "assistant" and loaded.examples[0].group == "anthropic_helpful"


# ------------------------------------------------------------ RewardBench 2


def test_rewardbench2_fixture_best_of_4_and_ties():
    bench = run("rewardbench2", EVAL_DATA / "rewardbench2")["benchmarks"]["rewardbench2"]
    subsets = {r[0]: r[2] for r in next(t for t in bench["tables"] if t["title"] == "subsets")["rows"]}
    ties = 0.3 * 2 / 3 + 0.3 * 0.5 + 0.2 * 1.0 + 0.2 * 0.5 + 0.01 * math.tanh((0.7 - 0.3) / (0.9 - 0.7) - 1)
    expected = {"Factuality": 0.75, "Precise IF": 1 / 3, "Math": 0.0, "Safety": 1.0, "Focus": 0.25, "Ties": ties}
    for name, value in expected.items():
        assert subsets[name] == pytest.approx(value), name
    assert bench["score"] == pytest.approx(sum(expected.values()) / 6)
    parts = {r[0]: (r[1], r[2]) for r in next(t for t in bench["tables"] if t["title"] == "Ties parts")["rows"]}
    assert parts["ref_accuracy"] == (2, 0.5) and parts["tied_accuracy"] == (3, pytest.approx(2 / 3))
    assert parts["correctness_preferred_hard"] == (2, 0.5) and parts["margin_score"][0] == 1


def test_rewardbench2_ties_ids_must_name_their_variant(tmp_path):
    row = {"id": "7", "prompt": "p", "chosen": ["a"], "rejected": ["b"], "num_correct": 1, "subset": "Ties"}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError) as info:
        load_benchmark("rewardbench2", tmp_path / "t.jsonl")
    assert str(info.value) == f"{tmp_path / 't.jsonl'}:1: field 'id': Ties ids look like 'ref:<n>' or 'tied:<n>', got '7'"


def test_rewardbench2_num_correct_must_match_chosen(tmp_path):
    row = {"id": "1", "prompt": "p", "chosen": ["a"], "rejected": ["b", "c"], "num_correct": 2, "subset": "Math"}
    (tmp_path / "t.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match="num_correct"):
        load_benchmark("rewardbench2", tmp_path / "t.jsonl")


# --------------------------------------------------------------------- PPE


def test_ppe_fixture_preference_and_correctness():
    result = run("ppe", EVAL_DATA / "ppe", seed=3, bon_draws=4)
    bench = result["benchmarks"]["ppe"]
    assert bench["notes"] == ["2 tied preference rows left out (no preferred response)"]
    assert bench["headlines"]["PPE Preference"] == pytest.approx(2 / 3)
    assert bench["headlines"]["PPE Correctness"] == pytest.approx(15 / 39)  # (11 + 0 + 4) / (15 + 12 + 12)
    assert bench["score"] == pytest.approx((2 / 3 + 15 / 39) / 2)
    pref = {r[0]: r[2] for r in next(t for t in bench["tables"] if t["title"] == "human preference")["rows"]}
    assert pref == {"all": pytest.approx(2 / 3), "hard_prompt": 1.0, "math_prompt": 1.0}
    curve = bench["extras"]["best_of_n"]["math"]
    assert sorted(curve) == list(range(2, 33))
    # N >= 8 uses all 8 responses: picks 1, 0, 1/4 (four tied at the top, one correct) and 1
    for n in (8, 16, 32):
        assert curve[n] == {"reward_model": pytest.approx(2.25 / 4), "random": pytest.approx(0.46875), "oracle": 1.0}
    again = run("ppe", EVAL_DATA / "ppe", seed=3, bon_draws=4)["benchmarks"]["ppe"]["extras"]["best_of_n"]
    assert again == bench["extras"]["best_of_n"]


def test_ppe_reads_the_published_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (EVAL_DATA / "ppe" / "ppe-math-best-of-k.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "PPE-MATH-Best-of-K.parquet")
    bench = run("ppe", tmp_path)["benchmarks"]["ppe"]
    assert bench["headlines"] == {"PPE Correctness": pytest.approx(15 / 39)}
    assert ppe_domain(Path("train-00000-of-00001.parquet")) == "train-00000-of-00001"
    assert ppe_domain(Path("ppe_mmlu_pro_best_of_k.jsonl")) == "mmlu-pro"


# -------------------------------------------------------------- real files


def test_rm_bench_real_file_matches_an_independent_recomputation(shared_data):
    bench = run("rm-bench", shared_data / "rm-bench", hash_scorer)["benchmarks"]["rm-bench"]
    rows_ = json.loads((shared_data / "rm-bench" / "chat_filtered.json").read_text())
    assert bench["examples"] == 129
    cells = [[0] * 3 for _ in range(3)]
    for row in rows_:
        for i in range(3):
            for j in range(3):
                cells[i][j] += hash_reward(row["chosen"][i]) > hash_reward(row["rejected"][j])
    matrix = [[c / len(rows_) for c in r] for r in cells]
    assert bench["matrices"]["chat"] == [[pytest.approx(v) for v in r] for r in matrix]
    hard = (matrix[0][1] + matrix[0][2] + matrix[1][2]) / 3
    easy = (matrix[1][0] + matrix[2][0] + matrix[2][1]) / 3
    assert bench["levels"]["chat"]["hard"] == pytest.approx(hard)
    assert bench["levels"]["chat"]["easy"] == pytest.approx(easy)
    assert bench["score"] == pytest.approx(sum(map(sum, matrix)) / 9)


def test_rm_bench_domain_comes_from_the_file_name_and_safety_pools(tmp_path, shared_data):
    rows_ = json.loads((shared_data / "rm-bench" / "chat_filtered.json").read_text())[:6]
    (tmp_path / "safety-refuse_filtered.json").write_text(json.dumps(rows_[:3]))
    (tmp_path / "safety-response_filtered.json").write_text(json.dumps(rows_[3:]))
    (tmp_path / "code_filtered.json").write_text(json.dumps(rows_[:2]))
    bench = run("rm-bench", tmp_path, hash_scorer)["benchmarks"]["rm-bench"]
    assert sorted(bench["matrices"]) == ["code", "safety"]
    per_domain = {r[0]: r[1] for r in bench["tables"][0]["rows"]}
    assert per_domain["safety"] == 6 and per_domain["code"] == 2
    assert bench["score"] == pytest.approx((bench["levels"]["code"]["average"] +
                                            bench["levels"]["safety"]["average"]) / 2)
    (tmp_path / "other.json").write_text(json.dumps(rows_[:1]))
    with pytest.raises(InputError, match="cannot tell the RM-Bench domain"):
        load_benchmark("rm-bench", tmp_path / "other.json")


def test_judgebench_real_file_matches_an_independent_recomputation(shared_data):
    file = shared_data / "judgebench" / "claude-3-5-sonnet-pairs.jsonl"
    bench = run("judgebench", file, hash_scorer)["benchmarks"]["judgebench"]
    per_source: dict[str, list[bool]] = {}
    for line in file.read_text().splitlines():
        row = json.loads(line)
        a, b = hash_reward(row["response_A"]), hash_reward(row["response_B"])
        per_source.setdefault(row["source"], []).append(a > b if row["label"] == "A>B" else b > a)
    everything = [w for ws in per_source.values() for w in ws]
    assert bench["examples"] == len(everything) == 270
    assert bench["score"] == pytest.approx(sum(everything) / 270)
    table = {r[0]: r[2] for r in next(t for t in bench["tables"] if t["title"] == "per source")["rows"]}
    assert table == {s: pytest.approx(sum(ws) / len(ws)) for s, ws in per_source.items()}


def test_rmb_real_tree_matches_an_independent_recomputation(shared_data):
    root = shared_data / "rmb"
    bench = run("rmb", root, hash_scorer)["benchmarks"]["rmb"]
    parts: dict[str, list[bool]] = {}
    for file in sorted(root.rglob("*.json")):
        goal = "helpfulness" if "Helpfulness" in file.parts else "harmlessness"
        for row in json.loads(file.read_text()):
            if "bon_best" in row:
                best = hash_reward(row["bon_best"]["answer"])
                won = all(best > hash_reward(x["answer"]) for x in row["loser_list"])
                parts.setdefault(f"bon-{goal}", []).append(won)
            else:
                won = hash_reward(row["chosen"]["answer"]) > hash_reward(row["reject"]["answer"])
                parts.setdefault(f"pairwise-{goal}", []).append(won)
    expected = {k: sum(v) / len(v) for k, v in parts.items()}
    assert {k: len(v) for k, v in parts.items()} == {"pairwise-helpfulness": 8456, "pairwise-harmlessness": 6087,
                                                      "bon-helpfulness": 2109, "bon-harmlessness": 1677}
    table = {r[0]: r[2] for r in next(t for t in bench["tables"] if t["title"] == "parts")["rows"]}
    for key, value in expected.items():
        assert table[key] == pytest.approx(value)
    assert bench["score"] == pytest.approx(sum(expected.values()) / 4)


def test_pairs_bench_reads_any_import_format(shared_data):
    file = shared_data / "judgebench" / "claude-3-5-sonnet-pairs.jsonl"
    bench = run("pairs", file, hash_scorer)["benchmarks"]["pairs"]
    # one JudgeBench row has identical responses: 'skyrm import' refuses it, and the pairs bench says so
    # (the judgebench bench keeps it and, the rewards being equal, counts it as wrong)
    assert bench["examples"] == 269
    assert bench["notes"] == [f"{file}: 1 unreadable rows not scored (see 'skyrm import' for reasons)"]
    wins = []
    for line in file.read_text().splitlines():
        row = json.loads(line)
        if row["response_A"] != row["response_B"]:
            a, b = hash_reward(row["response_A"]), hash_reward(row["response_B"])
            wins.append(a > b if row["label"] == "A>B" else b > a)
    assert bench["score"] == pytest.approx(sum(wins) / len(wins))
    categories = {r[0] for r in next(t for t in bench["tables"] if t["title"] == "per category")["rows"]}
    assert "livecodebench" in categories


def test_each_distinct_response_is_scored_once(shared_data):
    seen: list[int] = []

    def counting(items, progress=None):
        seen.append(len(items))
        return hash_scorer(items)

    loaded = [load_benchmark("rm-bench", shared_data / "rm-bench"),
              load_benchmark("pairs", shared_data / "rm-bench" / "chat_filtered.json")]
    result = evaluate(loaded, counting, EvalConfig())
    # the pairs view of RM-Bench reuses the same 3 + 3 responses per prompt: nothing new to score
    assert seen == [result["distinct_items"]] and result["distinct_items"] <= 129 * 6
    assert result["benchmarks"]["pairs"]["items"] == 129 * 9 * 2


def test_limit_takes_the_first_examples_of_each_file(shared_data):
    bench = run("rmb", shared_data / "rmb", hash_scorer, limit=2)["benchmarks"]["rmb"]
    assert bench["examples"] == 2 * len(list((shared_data / "rmb").rglob("*.json")))


def test_bench_specs_and_keys():
    assert parse_bench("rm-bench=data/x") == ("rm-bench", "data/x")
    with pytest.raises(ConfigError, match="NAME=PATH"):
        parse_bench("rm-bench")
    with pytest.raises(InputError, match="unknown benchmark 'foo'"):
        parse_bench("foo=bar")
    assert bench_keys([("pairs", "a/x.jsonl"), ("pairs", "b/y.jsonl"), ("rmb", "r")]) == \
        ["pairs:x.jsonl", "pairs:y.jsonl", "rmb"]


def test_missing_and_empty_inputs_fail_loudly(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        load_benchmark("rmb", tmp_path / "nope")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="no judgebench examples found"):
        load_benchmark("judgebench", tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q", "response_A": "a", "response_B": "b",
                                                    "label": "A=B"}) + "\n")
    with pytest.raises(InputError) as info:
        load_benchmark("judgebench", tmp_path / "bad.jsonl")
    assert str(info.value) == f"{tmp_path / 'bad.jsonl'}:1: field 'label': expected 'A>B' or 'B>A', got 'A=B'"
