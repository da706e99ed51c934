"""`skyrm eval` with a real (tiny, random) reward model: tables, outputs, cache, batch-size invariance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from skyrm.cli import app  # noqa: E402
from skyrm.evaluate.run import EvalConfig, run_eval  # noqa: E402
from skyrm.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL_DATA = ROOT / "tests" / "data" / "eval"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
WORDS = ["the reward model reads a question and an answer", "What is the capital of France? Paris.",
         "def f(n): return n * n", "I cannot help with that request.", "0 1 2 3 4 5 6 7 8 9 = + - * / ^ %",
         "[r=0.5] Name a prime number between 10 and 20: 11, 13, 17, 19."]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer Llama sequence classifier (random weights) with a byte-level BPE and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-rm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(WORDS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + eos_token }}"
                               "{% endfor %}")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         num_labels=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def fixture_benches(shared: Path | None = None) -> list[str]:
    specs = [f"rewardbench={EVAL_DATA / 'rewardbench'}", f"rewardbench2={EVAL_DATA / 'rewardbench2'}",
             f"ppe={EVAL_DATA / 'ppe'}"]
    if shared is not None:
        specs += [f"rm-bench={shared / 'rm-bench'}", f"judgebench={shared / 'judgebench'}", f"rmb={shared / 'rmb'}"]
    return specs


def test_eval_help_has_an_example_and_importing_loads_no_torch():
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0 and "Example: skyrm eval --model" in result.output
    code = "import sys, skyrm.cli, skyrm.evaluate.run, skyrm.evaluate.report; " \
           "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_eval_end_to_end_matches_an_independent_recomputation(tiny_model, tmp_path, shared_data):
    """Tables from `skyrm eval` against figures recomputed from the exported per-item rewards."""
    db = tmp_path / "eval.db"
    args = ["eval", "--db", str(db), "--model", str(tiny_model), "--limit", "1", "--out", str(tmp_path / "out"),
            "--batch-size", "8", "--max-length", "64"]
    for spec in fixture_benches(shared_data):
        args += ["--bench", spec]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "RM-Bench: chat style matrix" in result.output and "overall" in result.output
    out = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {
        "results.json", "report.md", "rm-bench_levels.png", "ppe_best_of_n.png", "rmb_categories.png"}

    # independent recomputation from per-item rewards (not the task code): RMB, JudgeBench, RM-Bench
    rmb = out["benchmarks"]["rmb"]
    parts: dict[str, list[bool]] = {}
    for item in rmb["per_item"]:
        r = item["rewards"]
        parts.setdefault(item["group"], []).append(all(r[0] > x for x in r[1:]))
    assert rmb["score"] == pytest.approx(sum(sum(v) / len(v) for v in parts.values()) / 4)
    judge = out["benchmarks"]["judgebench"]
    wins = [(i["rewards"][0] > i["rewards"][1]) if i["info"]["label"] == "A>B" else (i["rewards"][1] > i["rewards"][0])
            for i in judge["per_item"]]
    assert judge["score"] == pytest.approx(sum(wins) / len(wins))
    rm = out["benchmarks"]["rm-bench"]
    cells = [sum(i["rewards"][a] > i["rewards"][3 + b] for i in rm["per_item"]) / len(rm["per_item"])
             for a in range(3) for b in range(3)]
    assert rm["score"] == pytest.approx(sum(cells) / 9)
    # the shipped recomputation script agrees too (and fails loudly when it does not)
    script = Path(__file__).resolve().parents[1] / "examples" / "recompute_eval.py"
    check = subprocess.run([sys.executable, str(script), str(tmp_path / "out" / "results.json")],
                           capture_output=True, text=True)
    assert check.returncode == 0 and "all figures match" in check.stdout, check.stdout + check.stderr
    tampered = json.loads((tmp_path / "out" / "results.json").read_text())
    tampered["benchmarks"]["judgebench"]["headlines"]["JudgeBench"] += 0.01
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "tampered.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout
    # and the rewards are the model's own, as scored outside skyrm eval
    from skyrm.rm.score import load_reward_model

    model = load_reward_model(str(tiny_model), max_length=64)
    first = json.loads((shared_data / "judgebench" / "claude-3-5-sonnet-pairs.jsonl").open().readline())
    history = [{"role": "user", "content": first["question"]}]
    expected = model.rewards([(history, [{"role": "assistant", "content": first["response_A"]}])])[0]
    assert judge["per_item"][0]["rewards"][0] == pytest.approx(expected, abs=1e-5)

    with Store(db) as store:
        assert store.count_pairs() == 0  # benchmark items never become pairs
        assert store.list_runs("eval")[0]["status"] == "done"


class Counting:
    """A real reward model that records how many items each scoring call received."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.fingerprint, self.path, self.max_length, self.stats = model.fingerprint, model.path, 0, model.stats

    def rewards(self, items, batch_size=16, progress=None):
        self.calls.append(len(items))
        return self.model.rewards(items, batch_size=batch_size, progress=progress)


def test_rerun_and_added_benchmark_score_only_new_responses(tiny_model, tmp_path):
    from skyrm.rm.score import load_reward_model

    model = Counting(load_reward_model(str(tiny_model)))
    first = EvalConfig(benches=(("rewardbench2", str(EVAL_DATA / "rewardbench2")),))
    both = EvalConfig(benches=first.benches + (("ppe", str(EVAL_DATA / "ppe")),))
    with Store(tmp_path / "cache.db") as store:
        a = run_eval(store, first, model=model)
        b = run_eval(store, first, model=model)
        c = run_eval(store, both, model=model)
    assert model.calls == [a["distinct_items"], c["distinct_items"] - a["distinct_items"]]  # second run: nothing
    assert b["benchmarks"]["rewardbench2"]["per_item"] == a["benchmarks"]["rewardbench2"]["per_item"]
    assert c["benchmarks"]["rewardbench2"]["score"] == a["benchmarks"]["rewardbench2"]["score"]


def same_tables(a: list[dict], b: list[dict]) -> bool:
    """Equal tables, floats within 1e-6 (rewards from different batch shapes differ in the last bits)."""
    if [t["columns"] for t in a] != [t["columns"] for t in b]:
        return False
    for ta, tb in zip(a, b):
        for ra, rb in zip(ta["rows"], tb["rows"], strict=True):
            for x, y in zip(ra, rb, strict=True):
                if (x != pytest.approx(y, rel=1e-6, abs=1e-9)) if isinstance(x, float) else x != y:
                    return False
    return True


def test_figures_do_not_depend_on_the_batch_size(tiny_model):
    from skyrm.rm.score import load_reward_model

    model = load_reward_model(str(tiny_model))
    benches = (("rewardbench", str(EVAL_DATA / "rewardbench")), ("rewardbench2", str(EVAL_DATA / "rewardbench2")),
               ("ppe", str(EVAL_DATA / "ppe")))
    runs = [run_eval(None, EvalConfig(benches=benches, batch_size=size), model=model) for size in (1, 8, 32)]
    for other in runs[1:]:
        for key, bench in runs[0]["benchmarks"].items():
            assert same_tables(other["benchmarks"][key]["tables"], bench["tables"])
            assert other["benchmarks"][key]["headlines"] == pytest.approx(bench["headlines"], rel=1e-6)
            for x, y in zip(bench["per_item"], other["benchmarks"][key]["per_item"]):
                assert x["rewards"] == pytest.approx(y["rewards"], abs=1e-5)


def test_compare_two_runs_from_the_command_line(tiny_model, tmp_path):
    from skyrm.evaluate.report import write_outputs
    from skyrm.rm.score import load_reward_model

    benches = (("rewardbench2", str(EVAL_DATA / "rewardbench2")), ("ppe", str(EVAL_DATA / "ppe")))
    model = load_reward_model(str(tiny_model))
    write_outputs(run_eval(None, EvalConfig(model="tiny", benches=benches), model=model), tmp_path / "a")
    result = CliRunner().invoke(app, ["eval", "--compare", str(tmp_path / "a"), str(tmp_path / "a" / "results.json"),
                                      "--resamples", "50", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert {r["headline"] for r in rows} == {"RewardBench 2", "PPE Preference", "PPE Correctness"}
    assert all(r["delta"] == 0.0 for r in rows)
    table = CliRunner().invoke(app, ["eval", "--compare", str(tmp_path / "a"), str(tmp_path / "a"),
                                     "--resamples", "50"])
    assert "B - A" in table.output and "+0.00" in table.output


def test_bad_bench_spec_is_one_red_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "skyrm", "eval", "--db", str(tmp_path / "x.db"), "--model", "m",
                          "--bench", "rm-bench"], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: --bench takes NAME=PATH, got 'rm-bench' (e.g. --bench rmb=data/rmb)"
    out = subprocess.run([sys.executable, "-m", "skyrm", "eval", "--db", str(tmp_path / "x.db"), "--model", "m",
                          "--bench", f"rmb={tmp_path / 'none'}"], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert out.returncode == 1 and out.stderr.strip() == f"error: {tmp_path / 'none'}: no such file or directory"


def test_shared_prefix_scoring_gives_the_same_figures(tiny_model, tmp_path):
    """Best-of-N lists share their prompt: `--shared-prefix on` runs it once, and nothing else changes."""
    benches = [f"rewardbench2={EVAL_DATA / 'rewardbench2'}", f"ppe={EVAL_DATA / 'ppe'}"]
    results = {}
    for setting in ("off", "on"):
        args = ["eval", "--db", str(tmp_path / f"{setting}.db"), "--model", str(tiny_model), "--json",
                "--batch-size", "4", "--shared-prefix", setting]
        for spec in benches:
            args += ["--bench", spec]
        outcome = CliRunner().invoke(app, args)
        assert outcome.exit_code == 0, outcome.output
        results[setting] = json.loads(outcome.stdout)
    assert results["off"]["model"]["stats"]["shared_history_items"] == 0
    assert results["on"]["model"]["stats"]["shared_history_items"] > 0
    assert results["on"]["model"]["stats"]["shared_history"].startswith("on (checked")
    for key, bench in results["off"]["benchmarks"].items():
        assert same_tables(results["on"]["benchmarks"][key]["tables"], bench["tables"])
        assert results["on"]["benchmarks"][key]["headlines"] == pytest.approx(bench["headlines"], rel=1e-6)
