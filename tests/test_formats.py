"""Readers: every shape from small fixtures and from the real files, streaming, bad-row reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyrm.errors import InputError
from skyrm.formats import MAX_FIELD_CHARS, PairWriter, detect_format, pair_to_row, read_pairs

FIXTURE_FORMATS = {
    "hf.jsonl": ("hf", 3),
    "trl_strings.jsonl.gz": ("trl", 2),
    "trl_messages.jsonl": ("trl", 1),
    "sharegpt.json": ("sharegpt", 2),
    "hh.jsonl": ("hh", 2),
    "rmb_pairwise.json": ("rmb", 1),
    "rmb_bon.json": ("rmb-bon", 2),
    "judgebench.jsonl": ("judgebench", 1),
    "rm_bench.json": ("rm-bench", 9),
}


def _pairs(path, **kw):
    results = list(read_pairs(path, **kw))
    assert all(r.bad is None for r in results), [r.bad for r in results if r.bad]
    return [p for r in results for p in r.pairs]


@pytest.mark.parametrize("name", sorted(FIXTURE_FORMATS))
def test_fixture_detected_and_read(test_data, name):
    fmt, count = FIXTURE_FORMATS[name]
    path = test_data / "formats" / name
    first = next(iter(_first_rows(path)))
    assert detect_format(first) == fmt
    pairs = _pairs(path)
    assert len(pairs) == count
    assert _pairs(path, fmt=fmt) == pairs  # explicit format gives the same as auto
    for pair in pairs:
        assert pair.prompt and pair.prompt[-1]["role"] in ("user", "system")
        assert pair.chosen[-1]["role"] == "assistant" and pair.chosen_text.strip()
        assert pair.chosen_text != pair.rejected_text


def _first_rows(path: Path):
    from skyrm.formats import iter_records

    for _, value, _, _ in iter_records(path):
        yield value


def test_hf_multi_turn_history_and_system(test_data):
    pairs = _pairs(test_data / "formats" / "hf.jsonl")
    assert [m["role"] for m in pairs[1].prompt] == ["user", "assistant", "user"]
    assert pairs[1].chosen == [{"role": "assistant", "content": "Blue."}]
    assert pairs[2].prompt[0] == {"role": "system", "content": "Be brief."}


def test_sharegpt_roles_normalised(test_data):
    pairs = _pairs(test_data / "formats" / "sharegpt.json")
    assert pairs[0].prompt == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2*3?"}]
    assert pairs[0].chosen_text == "6"


def test_hh_prompt_is_shared_prefix(test_data):
    pairs = _pairs(test_data / "formats" / "hh.jsonl")
    assert pairs[1].prompt == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                               {"role": "user", "content": "Tell me a fact."}]
    assert pairs[1].chosen_text == "Water boils at 100 C at sea level."


def test_hh_diverging_histories_keep_every_turn(tmp_path):
    row = {"chosen": "\n\nHuman: A?\n\nAssistant: one\n\nHuman: B?\n\nAssistant: two",
           "rejected": "\n\nHuman: A?\n\nAssistant: uno\n\nHuman: B?\n\nAssistant: dos"}
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (pair,) = _pairs(path)
    assert pair.prompt == [{"role": "user", "content": "A?"}]
    assert [m["content"] for m in pair.chosen] == ["one", "B?", "two"]
    assert [m["role"] for m in pair.rejected] == ["assistant", "user", "assistant"]


def test_rm_bench_matrix_styles_in_meta(test_data):
    pairs = _pairs(test_data / "formats" / "rm_bench.json")
    cells = {(p.meta["chosen_style"], p.meta["rejected_style"]) for p in pairs}
    assert len(cells) == 9
    hard = next(p for p in pairs if p.meta["chosen_style"] == "concise" and p.meta["rejected_style"] == "markdown")
    assert hard.chosen_text == "Red." and hard.rejected_text == "**Green** is a primary colour."


def test_rmb_bon_group_and_judgebench_label(test_data):
    bon = _pairs(test_data / "formats" / "rmb_bon.json")
    assert {p.meta["group"] for p in bon} == {"b1"} and [p.meta["loser_index"] for p in bon] == [0, 1]
    (jb,) = _pairs(test_data / "formats" / "judgebench.jsonl")
    assert jb.chosen_text == "The answer is 2." and jb.meta["category"] == "mmlu-pro-math"


def test_extra_scalar_fields_kept_in_meta(test_data):
    pairs = _pairs(test_data / "formats" / "trl_strings.jsonl.gz")
    assert pairs[0].meta == {"category": "reasoning"}


def _bad_lines(tmp_path) -> tuple[Path, dict[int, str]]:
    """A JSONL file with one row of every bad kind, and the message each must give."""
    good = {"prompt": "q", "chosen": "yes", "rejected": "no"}
    rows: list[bytes] = [json.dumps(good).encode()]
    expected: dict[int, str] = {}
    cases = [
        (b'{"prompt": "q", "chosen": "a"', "", "invalid JSON (Expecting ',' delimiter at column 30)"),
        (b'["not", "an", "object"]', "", "expected an object, got list"),
        (json.dumps({"prompt": "q", "chosen": "a"}).encode(), "rejected", "missing"),
        (json.dumps({"prompt": "q", "chosen": None, "rejected": "b"}).encode(), "chosen", "is null"),
        (json.dumps({"prompt": "q", "chosen": "   ", "rejected": "b"}).encode(), "chosen", "is empty"),
        (json.dumps({"prompt": "q", "chosen": "same", "rejected": "same"}).encode(), "rejected", "identical to chosen"),
        (json.dumps({"prompt": "q", "chosen": 5, "rejected": "b"}).encode(), "chosen",
         "expected a list of messages, got int"),
        (b'{"prompt": "q", "chosen": "caf\xe9", "rejected": "b"}', "", "invalid UTF-8 at byte 30"),
        (json.dumps({"prompt": "q", "chosen": "x" * (MAX_FIELD_CHARS + 1), "rejected": "b"}).encode(), "chosen",
         f"too long ({MAX_FIELD_CHARS + 1} characters, limit {MAX_FIELD_CHARS})"),
        (json.dumps({"prompt": " ", "chosen": "a", "rejected": "b"}).encode(), "prompt", "is empty"),
    ]
    for raw, field, reason in cases:
        rows.append(raw)
        path_line = len(rows)
        expected[path_line] = f"field '{field}': {reason}" if field else reason
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path, expected


def test_every_bad_row_kind_has_its_message(tmp_path):
    path, expected = _bad_lines(tmp_path)
    results = list(read_pairs(path))
    assert len(results[0].pairs) == 1 and results[0].bad is None
    bad = {r.line: r.bad for r in results if r.bad}
    assert sorted(bad) == sorted(expected)
    for line, message in expected.items():
        assert bad[line].message() == f"{path}:{line}: {message}"
        assert bad[line].raw  # the raw row is kept for the quarantine


def test_unknown_shape_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"foo": 1}\n')
    with pytest.raises(InputError, match=r"odd.jsonl:1: cannot tell the file's format .*keys: foo.*--format"):
        list(read_pairs(path))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported file type '.csv'"):
        list(read_pairs(path))


def test_json_array_streams_with_line_numbers(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(5)]
    rows[3]["rejected"] = "a"
    path = tmp_path / "arr.json"
    path.write_text(json.dumps(rows, indent=2))
    # tiny read blocks force the incremental decoder to refill mid-element
    from skyrm import formats

    values = list(formats._iter_json_array(path, chunk_chars=7))
    assert [v.value["prompt"] for v in values] == [f"q{i}" for i in range(5)]
    assert [v.line for v in values] == [2, 7, 12, 17, 22]
    assert [v.element for v in values] == [0, 1, 2, 3, 4]
    bad = [r for r in read_pairs(path) if r.bad]
    assert bad[0].bad.message() == f"{path}:17: element 3: field 'rejected': identical to chosen"


@pytest.mark.parametrize("shape", ["trl", "hf", "openrlhf", "sharegpt"])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_writer_round_trip(tmp_path, test_data, shape, suffix):
    from skyrm.formats import SHAPE_TO_FORMAT

    pairs = _pairs(test_data / "formats" / "hf.jsonl")
    out = tmp_path / f"out{suffix}"
    writer = PairWriter(out)
    for pair in pairs:
        writer.write(pair_to_row(pair, shape))
    writer.close()
    assert not out.with_name(out.name + ".part").exists()
    again = _pairs(out, fmt=SHAPE_TO_FORMAT[shape])
    assert [p.id for p in again] == [p.id for p in pairs]


# ------------------------------------------------------------ the real files
def test_real_hh(shared_data):
    results = list(read_pairs(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"))
    assert len(results) == 2312
    bad = [r.bad for r in results if r.bad]
    assert {b.reason for b in bad} <= {"final assistant turn is empty"}
    assert sum(len(r.pairs) for r in results) == 2312 - len(bad)


def test_real_sharegpt_has_system_turns(shared_data):
    pairs = _pairs(shared_data / "formats" / "sharegpt_dpo_demo.json")
    assert len(pairs) == 300
    assert any(p.prompt[0]["role"] == "system" for p in pairs)
    assert any(sum(m["role"] == "user" for m in p.prompt) > 1 for p in pairs)


def test_real_judgebench_and_rm_bench(shared_data):
    jb = list(read_pairs(shared_data / "judgebench" / "claude-3-5-sonnet-pairs.jsonl"))
    assert len(jb) == 270
    assert sum(len(r.pairs) for r in jb) + sum(1 for r in jb if r.bad) == 270
    rmb = list(read_pairs(shared_data / "rm-bench" / "chat_filtered.json"))
    assert len(rmb) == 129 and sum(len(r.pairs) for r in rmb) == 129 * 9


def test_real_rmb_pairwise_and_bon(shared_data):
    files = sorted((shared_data / "rmb" / "Pairwise_set").rglob("*.json"))
    rows = pairs = 0
    for path in files:
        for result in read_pairs(path):
            rows += 1
            pairs += len(result.pairs)
    assert rows == 14543 and pairs > 14500
    bon_file = sorted((shared_data / "rmb" / "BoN_set").rglob("*.json"))[0]
    bon = [p for r in read_pairs(bon_file) for p in r.pairs]
    assert all("group" in p.meta for p in bon)
