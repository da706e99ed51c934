"""Turn (history, response) items into token ids, and token ids into length-grouped padded batches.

Rendering: with a chat template, the conversation (history + response) is
rendered by the tokenizer's template with no system prompt (METHOD.md: "no
system prompt in the chat template"; a default system block that a template
injects on its own, as SmolLM2's and Qwen2.5's do, is detected and removed),
then tokenised without adding special tokens again, so the template's BOS is
the only one. A tokenizer without a template gets the documented plain
rendering ``skyrm.text.render_plain`` ("User: …\\n\\nAssistant: …") and its
usual special tokens ([CLS] … [SEP] for BERT).

Truncation keeps the response whole: it drops the oldest history turns first
(a leading system message is kept longest), then trims the start of the oldest
remaining message. An item whose response alone does not fit raises ``Skip``,
and callers count it; nothing is dropped silently.

Shared-prefix packing (decoders): a pair's chosen and rejected ids share
their rendered history, so ``pack_pairs`` lays a pair out as one row
``history | chosen end | rejected end`` where the rejected end attends to the
history but not to the chosen end, and restarts its positions where the
history stops. A causal model computes exactly what two separate rows would
give, with the history's tokens run once (HH-RLHF, SmolLM2: 1.5x fewer tokens).
Scoring uses the same idea for any number of responses to one history:
``pack_continuations`` lays out histories and response ends for a model that
runs each history once into a KV cache and continues every response from it.

Deliberately not here: models, losses, the store.
Why it is longer than 400 lines: rendering, truncation and the packed layouts decide the same
token ids for training and scoring; kept together, the two cannot disagree.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skyrm.errors import ModelError
from skyrm.records import Message
from skyrm.text import render_plain

if TYPE_CHECKING:  # pragma: no cover
    import torch

# A Jinja chat template that reproduces render_plain, written into exported tokenizers
# that have none, so `apply_chat_template(..., tokenize=False)` gives skyrm's exact text.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "{% if not loop.last %}{{ '\n\n' }}{% endif %}{% endfor %}"
)

_SYS_PROBE, _USER_PROBE = "\u27e6skyrm-system\u27e7", "\u27e6skyrm-user\u27e7"


class Skip(Exception):
    """An item or pair that cannot be used; ``reason`` is what the run report counts."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _common_prefix_len(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _default_system_block(tokenizer: Any) -> tuple[str, str] | None:
    """(text before it, block) of a system turn the template adds when the conversation has none."""
    user = [{"role": "user", "content": _USER_PROBE}]
    try:
        plain = tokenizer.apply_chat_template(user, tokenize=False)
        with_system = tokenizer.apply_chat_template(
            [{"role": "system", "content": _SYS_PROBE}] + user, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that rejects a system turn has no default one either
        return None
    if _SYS_PROBE not in with_system:
        return None
    start = _common_prefix_len(plain, with_system)
    end = _common_prefix_len(plain[start:][::-1], with_system[start:][::-1])
    default = plain[start:len(plain) - end]
    if with_system[start:len(with_system) - end] != _SYS_PROBE or not default.strip():
        return None  # no default system text, or one we cannot isolate exactly (left as is)
    try:
        block = tokenizer.apply_chat_template([{"role": "system", "content": default}], tokenize=False)
    except Exception:  # noqa: BLE001
        return None
    at = plain.find(block)
    if at < 0 or not block:
        # Some templates add their BOS to every rendering: strip it from the block and retry.
        bos = tokenizer.bos_token or ""
        if bos and block.startswith(bos):
            block = block[len(bos):]
            at = plain.find(block)
        if at < 0:
            return None
    return plain[:at], block


@dataclass
class Renderer:
    """Renders and tokenises items for one tokenizer and max length (see the module docstring)."""

    tokenizer: Any
    max_length: int
    use_template: bool
    system_block: tuple[str, str] | None = None
    prepend_bos: bool = False
    _bos_id: int | None = field(default=None, repr=False)

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, max_length: int, rendering: str = "auto") -> "Renderer":
        if max_length < 8:
            raise ModelError(f"max length {max_length} is too small: use at least 8 tokens")
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if rendering == "template" and not has_template:
            raise ModelError("the tokenizer has no chat template: use rendering 'plain'")
        use_template = has_template and rendering != "plain"
        renderer = cls(tokenizer, max_length, use_template)
        if use_template:
            renderer.system_block = _default_system_block(tokenizer)
            bos = tokenizer.bos_token_id
            # Prepend BOS only where the tokenizer itself would add one and the template does not.
            adds_bos = bos is not None and tokenizer("a").input_ids[:1] == [bos]
            renderer.prepend_bos = adds_bos
            renderer._bos_id = bos
        return renderer

    def describe(self) -> dict[str, Any]:
        """What determines the token ids (part of fingerprints and meta.json)."""
        return {"rendering": "template" if self.use_template else "plain", "max_length": self.max_length,
                "strip_default_system": self.system_block is not None,
                "chat_template": getattr(self.tokenizer, "chat_template", None) if self.use_template else None}

    # ------------------------------------------------------------ rendering
    def text(self, messages: list[Message]) -> str:
        if not self.use_template:
            return render_plain(messages)
        try:
            text = self.tokenizer.apply_chat_template(list(messages), tokenize=False)
        except Exception as exc:  # noqa: BLE001 - jinja raises its own exception types
            raise Skip(f"the chat template rejects the conversation ({str(exc).splitlines()[0][:80]})") from exc
        if self.system_block and not any(m.get("role") == "system" for m in messages):
            before, block = self.system_block
            if text.startswith(before + block):
                text = before + text[len(before) + len(block):]
        return text

    def ids_many(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=not self.use_template)["input_ids"]
        if self.use_template and self.prepend_bos:
            encoded = [ids if ids[:1] == [self._bos_id] else [self._bos_id, *ids] for ids in encoded]
        return [list(ids) for ids in encoded]

    def ids(self, text: str) -> list[int]:
        return self.ids_many([text])[0]

    # ----------------------------------------------------------- truncation
    def encode(self, history: list[Message], response: list[Message]) -> tuple[list[int], bool]:
        """Token ids of one item and whether its history was truncated; raises ``Skip``."""
        ids = self.ids(self.text([*history, *response]))
        if len(ids) <= self.max_length:
            return ids, False
        return self._truncate(list(history), list(response)), True

    def encode_many(self, items: Sequence[tuple[list[Message], list[Message]]]
                    ) -> list[tuple[list[int], bool] | Skip]:
        """``encode`` for many items, tokenising the common (fitting) case in one batched call."""
        texts: list[str | Skip] = []
        for history, response in items:
            try:
                texts.append(self.text([*history, *response]))
            except Skip as skip:
                texts.append(skip)
        good = [i for i, t in enumerate(texts) if not isinstance(t, Skip)]
        encoded = self.ids_many([texts[i] for i in good])  # type: ignore[misc]
        out: list[tuple[list[int], bool] | Skip] = list(texts)  # type: ignore[arg-type]
        for i, ids in zip(good, encoded):
            if len(ids) <= self.max_length:
                out[i] = (ids, False)
            else:
                history, response = items[i]
                try:
                    out[i] = (self._truncate(list(history), list(response)), True)
                except Skip as skip:
                    out[i] = skip
        return out

    def _fits(self, messages: list[Message]) -> tuple[bool, int, list[int]]:
        ids = self.ids(self.text(messages))
        return len(ids) <= self.max_length, len(ids) - self.max_length, ids

    def _truncate(self, history: list[Message], response: list[Message]) -> list[int]:
        system = []
        while history and history[0].get("role") == "system":
            system.append(history.pop(0))
        # 1. Drop the oldest turns, cutting only before a user turn so roles still alternate.
        cuts = [k for k in range(1, len(history)) if history[k].get("role") == "user"]
        if history and (not cuts or cuts[-1] != len(history) - 1):
            cuts.append(len(history) - 1)
        for cut in cuts:
            fits, _, ids = self._fits([*system, *history[cut:], *response])
            if fits:
                return ids
        kept = history[cuts[-1]:] if cuts else history
        # 2. Trim the start of the oldest remaining message; then 3. without the system turns.
        for prefix in ([*system], []):
            if kept:
                ids = self._trim_first(prefix, kept, response)
                if ids is not None:
                    return ids
            fits, _, ids = self._fits([*prefix, *response])
            if fits:
                return ids
        raise Skip("too long: the response alone does not fit in max length")

    def _trim_first(self, prefix: list[Message], kept: list[Message], response: list[Message]) -> list[int] | None:
        first = dict(kept[0])
        for _ in range(8):
            fits, over, ids = self._fits([*prefix, first, *kept[1:], *response])
            if fits:
                return ids
            content_ids = self.tokenizer(first["content"], add_special_tokens=False)["input_ids"]
            if over >= len(content_ids):
                return None
            # Cut a few extra tokens: decode/re-encode can merge tokens at the new start.
            first["content"] = self.tokenizer.decode(content_ids[over + 2:]).lstrip()
            if not first["content"]:
                return None
        return None


def encode_pairs(renderer: Renderer, pairs: Sequence[tuple[list[Message], list[Message], list[Message]]]
                 ) -> tuple[list[tuple[list[int], list[int]] | None], dict[str, int]]:
    """Token ids of (history, chosen, rejected) triples; None where a pair is skipped, with counts.

    Counts: ``truncated`` (pairs whose history was cut), ``too_long`` (a
    response alone does not fit), ``identical`` (the two sides give the same
    ids), ``template`` (the chat template rejects the conversation).
    """
    items: list[tuple[list[Message], list[Message]]] = []
    for history, chosen, rejected in pairs:
        items.append((history, chosen))
        items.append((history, rejected))
    encoded = renderer.encode_many(items)
    counts = {"truncated": 0, "too_long": 0, "identical": 0, "template": 0}
    out: list[tuple[list[int], list[int]] | None] = []
    for index in range(len(pairs)):
        chosen, rejected = encoded[2 * index], encoded[2 * index + 1]
        skip = chosen if isinstance(chosen, Skip) else rejected if isinstance(rejected, Skip) else None
        if skip is not None:
            counts["too_long" if skip.reason.startswith("too long") else "template"] += 1
            out.append(None)
            continue
        (chosen_ids, cut_c), (rejected_ids, cut_r) = chosen, rejected  # type: ignore[misc]
        if chosen_ids == rejected_ids:
            counts["identical"] += 1
            out.append(None)
            continue
        counts["truncated"] += int(cut_c or cut_r)
        out.append((chosen_ids, rejected_ids))
    return out, counts


def length_grouped_batches(lengths: Sequence[int], batch_size: int, *, seed: int | None = None,
                           group: int = 64) -> list[list[int]]:
    """Indices in batches of similar length.

    Without a seed (scoring): longest first, so the largest batch runs first
    and memory problems show at once. With a seed (training): shuffle, sort
    within groups of ``group`` batches, then shuffle the batch order, so
    batches are both length-homogeneous and random.
    """
    if batch_size < 1:
        raise ModelError(f"batch size must be at least 1, got {batch_size}")
    order = list(range(len(lengths)))
    if seed is None:
        order.sort(key=lambda i: (-lengths[i], i))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = random.Random(seed)
    rng.shuffle(order)
    batches: list[list[int]] = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: -lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def shared_prefix_length(chosen: Sequence[int], rejected: Sequence[int]) -> int:
    """Tokens the two sides share at the start, leaving each side at least one token of its own."""
    limit = min(len(chosen), len(rejected)) - 1
    n = 0
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    return max(n, 0)


def packed_length(chosen: Sequence[int], rejected: Sequence[int]) -> int:
    """Row length of a pair under ``pack_pairs``."""
    return len(chosen) + len(rejected) - shared_prefix_length(chosen, rejected)


@dataclass
class PackedPairs:
    """A batch of pairs in shared-prefix layout (see the module docstring)."""

    input_ids: "torch.Tensor"       # [B, W]
    position_ids: "torch.Tensor"    # [B, W]
    attention_mask: "torch.Tensor"  # [B, 1, W, W] bool, True = may attend
    chosen_at: "torch.Tensor"       # [B] index of the chosen side's last token
    rejected_at: "torch.Tensor"     # [B] index of the rejected side's last token
    tokens: int                     # real tokens in the batch

    def to(self, device: str) -> "PackedPairs":
        return PackedPairs(self.input_ids.to(device), self.position_ids.to(device), self.attention_mask.to(device),
                           self.chosen_at.to(device), self.rejected_at.to(device), self.tokens)


PREFIX, CHOSEN_END, REJECTED_END, PAD = 0, 1, 2, 3


def pack_pairs(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> PackedPairs:
    """Pairs as rows ``history | chosen end | rejected end | padding`` with a 4D attention mask.

    Allowed attention: causal in row order, except that rejected-end tokens never
    see chosen-end tokens; padding sees only itself (a fully masked row would
    give NaN in scaled-dot-product attention). Positions of the rejected end
    continue from the history, as in its own unpacked row.
    """
    import torch

    shares = [shared_prefix_length(c, r) for c, r in pairs]
    width = max(len(c) + len(r) - shared for (c, r), shared in zip(pairs, shares))
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(pairs), width), dtype=torch.long)
    segment = torch.full((len(pairs), width), PAD, dtype=torch.long)
    chosen_at, rejected_at, tokens = [], [], 0
    for row, ((chosen, rejected), shared) in enumerate(zip(pairs, shares)):
        c_end, r_end = len(chosen) - shared, len(rejected) - shared
        total = shared + c_end + r_end
        ids[row, :total] = torch.tensor([*chosen, *rejected[shared:]], dtype=torch.long)
        positions[row, :shared + c_end] = torch.arange(shared + c_end)
        positions[row, shared + c_end:total] = torch.arange(shared, shared + r_end)
        segment[row, :shared] = PREFIX
        segment[row, shared:shared + c_end] = CHOSEN_END
        segment[row, shared + c_end:total] = REJECTED_END
        chosen_at.append(shared + c_end - 1)
        rejected_at.append(total - 1)
        tokens += total
    index = torch.arange(width)
    causal = index[None, :] <= index[:, None]                                   # [W, W]: key <= query
    query, key = segment[:, :, None], segment[:, None, :]                        # [B, W, 1], [B, 1, W]
    mask = causal[None] & (key != PAD) & (query != PAD) & ~((query == REJECTED_END) & (key == CHOSEN_END))
    mask |= torch.eye(width, dtype=torch.bool)[None] & (query == PAD)
    return PackedPairs(ids, positions, mask[:, None], torch.tensor(chosen_at), torch.tensor(rejected_at), tokens)


@dataclass
class PrefixBatch:
    """Responses that continue shared histories (see ``pack_continuations``)."""

    prefix_ids: "torch.Tensor"   # [G, P] histories, right-padded
    prefix_mask: "torch.Tensor"  # [G, P]
    end_ids: "torch.Tensor"      # [N, R] response ends, right-padded
    end_mask: "torch.Tensor"     # [N, R]
    rows: "torch.Tensor"         # [N] the history row each end continues
    starts: "torch.Tensor"       # [N] position of each end's first token (its history's length)
    last: "torch.Tensor"         # [N] index of each end's last token in end_ids
    tokens: int                  # real tokens run

    def to(self, device: str) -> "PrefixBatch":
        return PrefixBatch(*(t.to(device) for t in (self.prefix_ids, self.prefix_mask, self.end_ids, self.end_mask,
                                                     self.rows, self.starts, self.last)), self.tokens)


def pack_continuations(chunks: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], pad_id: int) -> PrefixBatch:
    """Chunks of (history ids, [end ids, ...]) as one batch: row g of the histories, its ends after it.

    An item's ids are ``history + end``; the history is right-padded so every
    end's positions continue from its own history's length.
    """
    import torch

    prefixes = [list(prefix) for prefix, _ in chunks]
    ends = [list(end) for _, chunk_ends in chunks for end in chunk_ends]
    if any(not end for end in ends) or any(not prefix for prefix in prefixes):
        raise ModelError("a shared history and each response end need at least one token")
    prefix_ids, prefix_mask = pad_batch(prefixes, pad_id, side="right")
    end_ids, end_mask = pad_batch(ends, pad_id, side="right")
    rows = [g for g, (_, chunk_ends) in enumerate(chunks) for _ in chunk_ends]
    return PrefixBatch(prefix_ids, prefix_mask, end_ids, end_mask, torch.tensor(rows),
                       torch.tensor([len(prefixes[g]) for g in rows]), torch.tensor([len(e) - 1 for e in ends]),
                       sum(map(len, prefixes)) + sum(map(len, ends)))


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, *, side: str = "right",
              multiple_of: int | None = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(input_ids, attention_mask) padded to the longest sequence in the batch (dynamic padding)."""
    import torch

    width = max(len(s) for s in sequences)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if side == "left":
            ids[row, width - n:] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - n:] = 1
        else:
            ids[row, :n] = torch.tensor(seq, dtype=torch.long)
            mask[row, :n] = 1
    return ids, mask
