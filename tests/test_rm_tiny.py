"""Tiny random reward-model backbones for the rm tests (built in milliseconds, no network).

``tiny_decoder`` is a 2-layer Llama sequence classifier with a byte-level BPE
tokenizer and a ChatML-style chat template; ``tiny_encoder`` is a 2-layer BERT
with a WordPiece-free BPE tokenizer, [CLS]/[SEP] post-processing and no chat
template. The tests in this file check the builders themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "a reward model reads the last token",
    "user: how do I sort a list in python? assistant: use sorted(values)",
    "Human: what is the capital of France? Assistant: Paris is the capital.",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation . , ! ? : ; ' \" ( ) [ ] { }",
    "safety: I cannot help with that request, but here is a safer alternative",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz",
]

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")
# Ends every turn with EOS itself: the case where pad == EOS misleads pooling by pad id.
EOS_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ message['role'] + ': ' + message['content'] "
                "+ eos_token }}{% endfor %}")


SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}"
                 "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
                 "{% endfor %}")
BOS_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
                "message['content'] + '<|im_end|>\n' }}{% endfor %}")


def tiny_tokenizer(*, template: str | None = CHATML, bert: bool = False, pad_is_eos: bool = False,
                   add_bos: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES, trainer)
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                       cls_token="[CLS]", sep_token="[SEP]")
    else:
        if add_bos:  # like Llama/Gemma tokenizers: BOS added to every encoded text
            tok.post_processor = processors.TemplateProcessing(
                single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       unk_token="<unk>", pad_token="</s>" if pad_is_eos else "<pad>")
    if template:
        fast.chat_template = template
    return fast


def tiny_decoder(path: Path, *, template: str | None = CHATML, pad_is_eos: bool = False, seed: int = 0) -> Path:
    """Save a tiny Llama sequence classifier (head included) with its tokenizer into ``path``."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = tiny_tokenizer(template=template, pad_is_eos=pad_is_eos)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         num_labels=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_encoder(path: Path, *, seed: int = 0) -> Path:
    """Save a tiny BERT sequence classifier with a [CLS]/[SEP] tokenizer and no chat template."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = tiny_tokenizer(template=None, bert=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512, num_labels=1,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_tiny_decoder_loads_as_a_one_label_classifier(tmp_path):
    from skyrm.rm.backbone import ModelSource, head_name, load_classifier, load_tokenizer

    directory = tiny_decoder(tmp_path / "dec")
    source = ModelSource(str(directory))
    tokenizer = load_tokenizer(source)
    model, missing = load_classifier(source, tokenizer, device="cpu")
    assert missing == []
    assert head_name(model) == "score"
    assert model.config.num_labels == 1


def test_pad_token_moves_off_eos_when_another_special_token_exists(tmp_path):
    from skyrm.rm.backbone import ModelSource, load_tokenizer

    directory = tiny_decoder(tmp_path / "dec", pad_is_eos=True)
    tokenizer = load_tokenizer(ModelSource(str(directory)))
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.pad_token == "<unk>"


def synthetic_pairs(n: int = 40, *, source: str = "synth"):
    """Pairs a tiny model can learn: the chosen answer is polite and on topic, the rejected one is not."""
    from skyrm.records import Pair

    topics = ["the capital of France", "sorting a list in python", "the lazy dog", "a reward model",
              "punctuation", "the quick brown fox", "numbers 0 to 9", "a safer alternative"]
    pairs = []
    for i in range(n):
        topic = topics[i % len(topics)]
        history = [{"role": "user", "content": f"question {i}: tell me about {topic}?"}]
        if i % 3 == 0:  # some multi-turn histories
            history = [{"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": "hi!"},
                       *history]
        chosen = [{"role": "assistant", "content": f"Here is a short answer about {topic}. " * (1 + i % 2)}]
        rejected = [{"role": "assistant", "content": f"no {i % 5} ! ? ; ( ) [ ]"}]
        pairs.append(Pair(history, chosen, rejected, source=source))
    return pairs


def make_store(path: Path, n: int = 40):
    from skyrm.store import Store

    store = Store(path)
    store.add_pairs(synthetic_pairs(n))
    return store
