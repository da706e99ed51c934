"""Rendering, BOS handling, truncation that keeps responses whole, and length-grouped batches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from skyrm.rm.data import Renderer, Skip, encode_pairs, length_grouped_batches, pad_batch  # noqa: E402
from test_rm_tiny import BOS_TEMPLATE, CHATML, SMOL_TEMPLATE, tiny_tokenizer  # noqa: E402

USER = [{"role": "user", "content": "what is the capital of France?"}]
ANSWER = [{"role": "assistant", "content": "Paris is the capital."}]


def test_plain_rendering_for_a_tokenizer_without_template():
    tok = tiny_tokenizer(template=None, bert=True)
    renderer = Renderer.for_tokenizer(tok, 128)
    assert renderer.text(USER + ANSWER) == "User: what is the capital of France?\n\nAssistant: Paris is the capital."
    ids = renderer.ids(renderer.text(USER + ANSWER))
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id  # the tokenizer's usual specials


def test_template_rendering_drops_a_default_system_prompt_only():
    tok = tiny_tokenizer(template=SMOL_TEMPLATE)
    renderer = Renderer.for_tokenizer(tok, 128)
    assert renderer.text(USER + ANSWER) == ("<|im_start|>user\nwhat is the capital of France?<|im_end|>\n"
                                            "<|im_start|>assistant\nParis is the capital.<|im_end|>\n")
    with_system = [{"role": "system", "content": "Be brief."}] + USER + ANSWER
    assert renderer.text(with_system).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")  # the data's own


def test_template_without_default_system_is_left_alone():
    tok = tiny_tokenizer(template=CHATML)
    renderer = Renderer.for_tokenizer(tok, 128)
    assert renderer.system_block is None
    assert renderer.text(USER) == tok.apply_chat_template(USER, tokenize=False)


@pytest.mark.parametrize("template", [BOS_TEMPLATE, CHATML])
def test_exactly_one_bos_whether_or_not_the_template_writes_it(template):
    tok = tiny_tokenizer(template=template, add_bos=True)
    renderer = Renderer.for_tokenizer(tok, 128)
    ids = renderer.ids(renderer.text(USER + ANSWER))
    assert ids[0] == tok.bos_token_id
    assert ids.count(tok.bos_token_id) == 1


def test_no_bos_added_where_the_tokenizer_adds_none():
    tok = tiny_tokenizer(template=CHATML)
    renderer = Renderer.for_tokenizer(tok, 128)
    text = renderer.text(USER + ANSWER)
    assert renderer.ids(text) == tok(text, add_special_tokens=False)["input_ids"]


def _long_history(turns: int) -> list[dict[str, str]]:
    history = []
    for i in range(turns):
        history += [{"role": "user", "content": f"old question number {i} about the lazy dog " * 3},
                    {"role": "assistant", "content": f"old answer {i} about the quick brown fox " * 3}]
    return history + [{"role": "user", "content": "and the final question about France?"}]


@pytest.mark.parametrize("bert", [False, True])
def test_truncation_drops_oldest_turns_and_keeps_the_response_whole(bert):
    tok = tiny_tokenizer(template=None, bert=True) if bert else tiny_tokenizer(template=CHATML)
    history = _long_history(6)
    full = Renderer.for_tokenizer(tok, 4096)
    whole, cut = full.encode(history, ANSWER)
    assert not cut
    limit = len(whole) // 2
    renderer = Renderer.for_tokenizer(tok, limit)
    ids, cut = renderer.encode(history, ANSWER)
    assert cut and len(ids) <= limit
    text = tok.decode(ids, skip_special_tokens=True)
    assert text.rstrip().endswith("Paris is the capital.") or "Paris is the capital." in text[-60:]
    assert "final question about France" in text  # the newest turn survives
    assert "old question number 0 " not in text  # the oldest turn went first
    response_ids = full.encode([], ANSWER)[0]
    suffix = response_ids[-4:]  # the end of the response (and template tail) is intact
    assert ids[-len(suffix):] == suffix


def test_truncation_trims_the_start_of_a_single_long_turn():
    tok = tiny_tokenizer(template=CHATML)
    history = [{"role": "user", "content": "the lazy dog " * 40 + "FINAL WORDS about France?"}]
    renderer = Renderer.for_tokenizer(tok, 40)
    ids, cut = renderer.encode(history, ANSWER)
    text = tok.decode(ids)
    assert cut and len(ids) <= 40
    assert "France?" in text and text.endswith("Paris is the capital.<|im_end|>\n")


def test_a_response_that_cannot_fit_is_skipped_not_cut():
    tok = tiny_tokenizer(template=CHATML)
    renderer = Renderer.for_tokenizer(tok, 16)
    with pytest.raises(Skip, match="too long"):
        renderer.encode(USER, [{"role": "assistant", "content": "Paris is the capital. " * 20}])


def test_encode_pairs_counts_every_skip_and_truncation():
    tok = tiny_tokenizer(template=CHATML)
    renderer = Renderer.for_tokenizer(tok, 48)
    long_answer = [{"role": "assistant", "content": "Paris is the capital. " * 30}]
    same = [{"role": "assistant", "content": "same"}]
    pairs = [
        (USER, ANSWER, [{"role": "assistant", "content": "no"}]),           # kept
        (USER, long_answer, ANSWER),                                           # too long
        (USER, same, same),                                                    # identical
        (_long_history(3), ANSWER, [{"role": "assistant", "content": "no"}]),  # kept, truncated
    ]
    encoded, counts = encode_pairs(renderer, pairs)
    assert [e is not None for e in encoded] == [True, False, False, True]
    assert counts == {"truncated": 1, "too_long": 1, "identical": 1, "template": 0}


def test_length_grouped_batches_cover_every_index_once():
    lengths = [5, 100, 7, 60, 61, 3, 99, 42, 8, 1]
    scoring = length_grouped_batches(lengths, 3)
    assert [lengths[i] for i in scoring[0]] == [100, 99, 61]  # longest first
    assert sorted(i for b in scoring for i in b) == list(range(10))
    training = length_grouped_batches(lengths, 3, seed=1, group=2)
    assert sorted(i for b in training for i in b) == list(range(10))
    assert training == length_grouped_batches(lengths, 3, seed=1, group=2)  # seeded: resumable
    assert training != length_grouped_batches(lengths, 3, seed=2, group=2)


def test_pad_batch_left_and_right():
    ids, mask = pad_batch([[1, 2, 3], [4]], 0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[1, 2, 3], [4]], 0, side="left")
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_shared_prefix_layout_positions_and_mask():
    from skyrm.rm.data import pack_pairs, packed_length, shared_prefix_length

    chosen, rejected = [1, 2, 3, 4, 5], [1, 2, 3, 9]
    assert shared_prefix_length(chosen, rejected) == 3
    assert shared_prefix_length([1, 2], [1, 2, 3]) == 1  # each side keeps a token of its own
    assert packed_length(chosen, rejected) == 3 + 2 + 1
    batch = pack_pairs([(chosen, rejected), ([7, 8], [7, 6])], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 9], [7, 8, 6, 0, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 3], [0, 1, 1, 0, 0, 0]]
    assert batch.chosen_at.tolist() == [4, 1] and batch.rejected_at.tolist() == [5, 2]
    assert batch.tokens == 6 + 3
    mask = batch.attention_mask[0, 0].int().tolist()
    assert mask[5] == [1, 1, 1, 0, 0, 1]  # the rejected end sees the history and itself, not the chosen end
    assert mask[4] == [1, 1, 1, 1, 1, 0]  # the chosen end is causal as usual
    pad_rows = batch.attention_mask[1, 0, 3:].int().tolist()
    assert pad_rows == [[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]]  # padding sees only itself
