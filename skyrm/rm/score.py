"""Scoring with a trained reward model: the contract that evaluation and curation build on.

- ``load_reward_model(path_or_name)`` loads any reward model on disk (a skyrm
  run directory or checkpoint, LoRA and head-only ones included, an
  ``export-model`` directory, any ``AutoModelForSequenceClassification``
  directory), a ``.gguf`` file, a short name or a hub name.
- ``RewardModel.rewards(items)`` scores ``(history, response)`` items in
  batches sorted by length with dynamic padding, returns them in input order,
  and does not depend on the batch size (fp32: 1 vs 8 vs 32 agree within 1e-4).
- ``shared_prefix="on"``: decoders score responses that share a history (a
  best-of-N list, a pair) with the history run once into a KV cache that
  every response continues from; the first such batch is checked against
  plain scoring. Opt-in for now (see ``load_reward_model``).
- ``score_items`` adds the store's ``rewards`` cache, keyed by the model's
  fingerprint and ``records.response_key``: nothing already scored is recomputed.
- ``score_pool`` is ``skyrm score``: a ``runs`` row of kind "score" and one
  ``scores`` row per pair, ``(r_chosen, r_rejected, p = σ(r_chosen − r_rejected))``
  in the pair's stored orientation (p is the model's confidence in the source's label).

An item whose response alone exceeds the max length is scored on its last
``max_length`` tokens (the response's end is what the reward reads) and
counted in ``RewardModel.stats["cut_response"]``; an item the chat template
rejects gets NaN and is counted in ``stats["failed"]``.
Deliberately not here: training, benchmark metrics.
Why it is longer than 400 lines: loading, the three ways of scoring (plain, shared prefix,
cached head features) and the cache in front of them share one ``RewardModel`` whose
internals each of them reads; split apart, they would pass those internals across modules.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyrm.errors import ConfigError, ModelError
from skyrm.records import Message, response_key
from skyrm.rm.data import Renderer, Skip, length_grouped_batches, pack_continuations, pad_batch
from skyrm.rm.backbone import RewardReader, default_device, resolve_model
from skyrm.runs import tracked_run

if TYPE_CHECKING:  # pragma: no cover
    from skyrm.store import Store

Progress = Callable[[int, "int | None", str], None]
Item = tuple[list[Message], list[Message]]
DEFAULT_MAX_LENGTH = 2048
# A history shorter than this is not worth a second forward call.
MIN_SHARED_TOKENS = 16


def resolve_dtype(dtype: Any, device: str) -> Any:
    """A torch dtype from None/str/dtype: fp32 on CPU by default, bf16 on a CUDA that supports it."""
    import torch

    if dtype is None:
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if str(dtype) not in names:
        raise ConfigError(f"unknown dtype '{dtype}': use fp32, bf16 or fp16")
    return names[str(dtype)]


class RewardModel:
    """A loaded reward model with its tokenizer, rendering and a stable fingerprint."""

    def __init__(self, model: Any, tokenizer: Any, renderer: Renderer, *, fingerprint: str, device: str,
                 path: str = "", meta: dict[str, Any] | None = None, shared_prefix: str = "off"):
        self.model = model
        self.tokenizer = tokenizer
        self.renderer = renderer
        self.fingerprint = fingerprint
        self.device = device
        self.path = path
        self.meta = meta or {}
        self.reader = RewardReader(model)
        self.stats: dict[str, Any] = {"cut_response": 0, "failed": 0, "truncated": 0, "shared_history_items": 0,
                                      "shared_history_tokens_saved": 0, "shared_history": "not used"}
        # "on": share histories, checking the first such batch; "checked": checked; "off": never
        self.shared_prefix = shared_prefix

    @property
    def padding_side(self) -> str:
        """The tokenizer's side for decoders; always right for encoders, which pool at position 0."""
        from skyrm.rm.backbone import head_name

        if head_name(self.model) != "score":
            return "right"
        return getattr(self.tokenizer, "padding_side", "right") or "right"

    @property
    def max_length(self) -> int:
        return self.renderer.max_length

    def encode(self, items: Sequence[Item]) -> list[list[int] | None]:
        """Token ids per item (None where the template rejects it); updates ``stats``."""
        out: list[list[int] | None] = []
        for item, result in zip(items, self.renderer.encode_many(items)):
            if isinstance(result, Skip):
                if result.reason.startswith("too long"):
                    out.append(self._cut_response(item))
                    self.stats["cut_response"] += 1
                else:
                    out.append(None)
                    self.stats["failed"] += 1
                continue
            ids, truncated = result
            self.stats["truncated"] += int(truncated)
            out.append(ids)
        return out

    def _cut_response(self, item: Item) -> list[int]:
        # No room for any history: keep the response's end, and a leading special token (BOS/CLS).
        ids = self.renderer.ids(self.renderer.text(list(item[1])))
        special = set(getattr(self.tokenizer, "all_special_ids", []))
        keep = ids[:1] if ids and ids[0] in special else []
        return keep + ids[len(ids) - (self.max_length - len(keep)):]

    def rewards(self, items: Sequence[Item], batch_size: int = 16, progress: Progress | None = None) -> list[float]:
        """r(x, y) per (history, response) item, in input order.

        With ``shared_prefix="on"``, decoders score responses that share a
        history by running the history once (``shared_chunks``); the first such
        batch is also scored the plain way, and a model whose two results
        differ is scored the plain way only.
        """
        import torch

        encoded = self.encode(items)
        valid = [i for i, ids in enumerate(encoded) if ids is not None]
        result = [math.nan] * len(items)
        chunks = self.shared_chunks(items, encoded, valid, batch_size)
        shared = {i for _, members in chunks for i in members}
        plain = [i for i in valid if i not in shared]
        done = 0
        side = self.padding_side
        with torch.inference_mode():
            for batch in _chunk_batches(chunks, batch_size):
                members = [i for _, chunk_members in batch for i in chunk_members]
                packed = pack_continuations([(encoded[m[0]][:prefix], [encoded[i][prefix:] for i in m])
                                             for prefix, m in batch], self.tokenizer.pad_token_id)
                values = self.reader.continuations(packed.to(self.device)).cpu().tolist()
                if self.shared_prefix == "on" and not self._check_shared(members, values, encoded, side):
                    plain = sorted(plain + [i for _, m in chunks for i in m if math.isnan(result[i])])
                    break
                for row, value in zip(members, values):
                    result[row] = value
                done += len(members)
                self.stats["shared_history_items"] += len(members)
                self.stats["shared_history_tokens_saved"] += sum(len(encoded[i]) for i in members) - packed.tokens
                if progress:
                    progress(done, len(valid), "scoring")
            lengths = [len(encoded[i]) for i in plain]  # type: ignore[arg-type]
            for batch in length_grouped_batches(lengths, batch_size):
                rows = [plain[b] for b in batch]
                values = self._plain([encoded[r] for r in rows], side)  # type: ignore[misc]
                for row, value in zip(rows, values):
                    result[row] = value
                done += len(rows)
                if progress:
                    progress(done, len(valid), "scoring")
        return result

    def _plain(self, sequences: list[list[int]], side: str) -> list[float]:
        ids, mask = pad_batch(sequences, self.tokenizer.pad_token_id, side=side)
        return self.reader(ids.to(self.device), mask.to(self.device)).float().cpu().tolist()

    def shared_chunks(self, items: Sequence[Item], encoded: Sequence[list[int] | None], valid: Sequence[int],
                      batch_size: int) -> list[tuple[int, list[int]]]:
        """(shared token count, item indices) for items with one history, where running it once pays.

        Items are grouped by their history messages; the shared part is the
        token prefix all of a group's ids have in common (a truncated item
        shares less), leaving each response at least one token. A group is
        split into chunks of at most ``batch_size`` responses; a chunk of one
        is scored the plain way.
        """
        if self.shared_prefix == "off" or not self.reader.continues_from_cache:
            return []
        groups: dict[str, list[int]] = {}
        for i in valid:
            groups.setdefault(json.dumps(items[i][0], sort_keys=True, ensure_ascii=False), []).append(i)
        chunks = []
        for members in groups.values():
            if len(members) < 2:
                continue
            rows = [encoded[i] for i in members]
            prefix = min(len(os.path.commonprefix(rows)), min(len(r) for r in rows) - 1)  # type: ignore[arg-type]
            if prefix < MIN_SHARED_TOKENS:
                continue
            members = sorted(members, key=lambda i: (-len(encoded[i]), i))  # type: ignore[arg-type]
            pieces = [members[k:k + batch_size] for k in range(0, len(members), batch_size)]
            chunks += [(prefix, piece) for piece in pieces if len(piece) > 1]  # one response: nothing shared
        chunks.sort(key=lambda c: (-(len(encoded[c[1][0]])), c[1][0]))  # type: ignore[arg-type]
        return chunks

    def _check_shared(self, members: list[int], values: list[float], encoded: Sequence[list[int] | None],
                      side: str) -> bool:
        """Compare one shared-history batch with plain scoring; turn sharing off on a mismatch."""
        reference = self._plain([encoded[i] for i in members], side)  # type: ignore[misc]
        diff = max(abs(a - b) for a, b in zip(values, reference))
        scale = 1.0 + max(abs(r) for r in reference)
        self.shared_prefix = "checked" if diff <= SHARED_PREFIX_TOLERANCE * scale else "off"
        self.stats["shared_history"] = f"{'on' if self.shared_prefix == 'checked' else 'off'} " \
                                       f"(checked: max difference {diff:.1e})"
        return self.shared_prefix == "checked"


# The largest difference from plain scoring that shared-history scoring may show (relative to
# 1 + the largest reward) before it turns itself off; tests assert against the same bound.
SHARED_PREFIX_TOLERANCE = 1e-3


def _chunk_batches(chunks: list[tuple[int, list[int]]], batch_size: int) -> list[list[tuple[int, list[int]]]]:
    """Consecutive chunks with at most ``batch_size`` responses per batch."""
    batches: list[list[tuple[int, list[int]]]] = []
    count = 0
    for chunk in chunks:
        if not batches or count + len(chunk[1]) > batch_size:
            batches.append([])
            count = 0
        batches[-1].append(chunk)
        count += len(chunk[1])
    return batches


def load_reward_model(path_or_name: str, *, device: str | None = None, dtype: Any = None,
                      max_length: int | None = None, shared_prefix: str = "off") -> RewardModel:
    """Load a reward model for scoring (see the module docstring for what it accepts).

    ``shared_prefix``: "on" runs a history shared by several responses once
    (decoders, checked on the first batch), "off" scores every item on its own.
    Off by default: on a 2-core test machine, 3 of about 20 fresh processes gave
    rewards up to 7e-4 away from plain scoring on their first batch, for the
    responses of its one right-padded history; not explained yet (every other
    run of the same batch agreed within 5e-6).
    """
    if shared_prefix not in ("on", "off"):
        raise ConfigError(f"shared prefix must be 'on' or 'off', got '{shared_prefix}'")
    from skyrm.rm.checkpoint import fingerprint, load_checkpoint

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        model, tokenizer, meta, files = load_checkpoint(path, device=device, dtype=torch_dtype)
        where = str(path.resolve())
    else:
        source = resolve_model(path_or_name)
        if source.gguf_file is None and Path(source.path).is_dir():
            model, tokenizer, meta, files = load_checkpoint(source.path, device=device, dtype=torch_dtype)
        else:
            from skyrm.rm.checkpoint import _weight_files
            from skyrm.rm.backbone import load_classifier, load_tokenizer

            tokenizer = load_tokenizer(source)
            model, _ = load_classifier(source, tokenizer, dtype=torch_dtype, device=device)
            model.eval()
            meta = {"base": source.as_dict()}
            files = _weight_files(Path(source.path), source.gguf_file) if source.is_local else []
        where = source.path
    render = meta.get("rendering", {})
    length = max_length or int(render.get("max_length") or min(
        DEFAULT_MAX_LENGTH, _model_max_length(model, tokenizer)))
    renderer = Renderer.for_tokenizer(tokenizer, length, render.get("rendering", "auto"))
    settings = {"renderer": renderer.describe(), "dtype": str(torch_dtype), "where": None if files else where}
    return RewardModel(model, tokenizer, renderer, fingerprint=fingerprint(files, settings), device=device,
                       path=where, meta=meta, shared_prefix=shared_prefix)


def _model_max_length(model: Any, tokenizer: Any) -> int:
    limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7]
    return min(usable) if usable else DEFAULT_MAX_LENGTH


def score_items(store: "Store | None", model: RewardModel, items: Sequence[Item], *, batch_size: int = 16,
                progress: Progress | None = None) -> list[float]:
    """``model.rewards`` through the store's rewards cache (keyed by fingerprint and item)."""
    keys = [response_key(history, response) for history, response in items]
    cached = store.get_rewards(model.fingerprint, set(keys)) if store is not None else {}
    todo: dict[str, Item] = {}
    for key, item in zip(keys, items):
        if key not in cached and key not in todo:
            todo[key] = item
    if todo:
        fresh = head_rewards(store, model, list(todo))
        rest = [key for key in todo if key not in fresh]
        if rest:
            values = model.rewards([todo[key] for key in rest], batch_size=batch_size, progress=progress)
            fresh.update(zip(rest, values))
        if store is not None:
            store.put_rewards(model.fingerprint, {k: v for k, v in fresh.items() if math.isfinite(v)})
        cached = {**cached, **fresh}
    elif progress:
        progress(len(items), len(items), "all cached")
    return [cached[key] for key in keys]


def head_rewards(store: "Store | None", model: RewardModel, keys: Sequence[str]) -> dict[str, float]:
    """Rewards of a ``--method head`` checkpoint read from its frozen backbone's cached features.

    The head trained on features in the store's ``features`` table (rm/head.py); an item found
    there needs no forward pass, only the head (the same maths as the full forward, within float
    rounding). Used only where the features were made as this model scores: same rendering, fp32
    weights, no autocast (a head trained on a CPU under ``--precision auto``; one trained under
    bf16 scores the plain way). Items not found are left to ``RewardModel.rewards``.
    """
    meta = getattr(model, "meta", None) or {}  # a model built in code, not loaded from a run, has none
    info = meta.get("model") or {}
    if store is None or not info.get("feature_key") or info.get("feature_amp") != "None" \
            or meta.get("rendering") != model.renderer.describe():
        return {}
    import numpy as np
    import torch

    from skyrm.rm.head import apply_head, feature_spec, one_thread

    if next(model.model.parameters()).dtype != torch.float32:
        return {}
    found = store.get_features(info["feature_key"], set(keys))
    if not found:
        return {}
    names = list(found)
    features = torch.from_numpy(np.stack([np.frombuffer(found[k], dtype=np.float32) for k in names]))
    with torch.inference_mode(), one_thread():
        values = apply_head(model.model, feature_spec(model.model), features.to(model.device)).cpu().tolist()
    model.stats["from_features"] = model.stats.get("from_features", 0) + len(names)
    return dict(zip(names, values))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def score_pool(store: "Store", model_path: str, *, pool: str = "all", batch_size: int = 16,
               progress: Progress | None = None, device: str | None = None, dtype: Any = None,
               shared_prefix: str = "off", chunk: int = 4096, max_length: int | None = None) -> dict[str, Any]:
    """Score every pair of a pool into ``scores`` under a new "score" run; returns the run's summary.

    The pool streams through in blocks of ``chunk`` pairs per process (read, scored, stored), so
    memory does not grow with the pool. Under ``accelerate launch`` every process scores its slice
    of each block and rank 0 alone reads and writes the store (``skyrm.parallel``); the other
    ranks return None.
    """
    from skyrm.parallel import process_group

    started = time.perf_counter()
    group = process_group(device)
    model = load_reward_model(model_path, device=group.device or device, dtype=dtype,
                              shared_prefix=shared_prefix, max_length=max_length)
    if not group.main:
        _score_worker(group, model, batch_size)
        return None  # type: ignore[return-value]
    config = {"model": model_path, "model_path": model.path, "fingerprint": model.fingerprint, "pool": pool,
              "batch_size": batch_size, "max_length": model.max_length}
    if group.world > 1:
        config["world_size"] = group.world
    total = store.count_pairs(pool)
    if not total:
        group.scatter([None] * group.world)  # release the other ranks before failing
        raise ConfigError(f"pool '{pool}' has no pairs: see 'skyrm status' for pools and sources")
    counts = dict.fromkeys(("pairs", "scored", "failed", "agree", "labelled", "agree_labels", "items",
                            "items_cached"), 0)
    p_sum = 0.0
    released = False
    try:
        with tracked_run(store, "score", config, path=model.path) as run:
            pairs = store.iter_pairs(pool, oriented=False)
            while True:
                block = list(itertools.islice(pairs, chunk * group.world))
                if not block:
                    break
                items = [item for _, pair, _ in block
                         for item in ((pair.prompt, pair.chosen), (pair.prompt, pair.rejected))]
                done = counts["pairs"]

                def report(n: int, _total: int | None = None, note: str = "") -> None:
                    if progress:
                        progress(done + n * group.world // 2, total, note)

                rewards, cached = _block_rewards(store, model, items, group, batch_size, report)
                counts["items_cached"] += cached
                rows = []
                for index, (pair_id, _, verdict) in enumerate(block):
                    r_chosen, r_rejected = rewards[2 * index], rewards[2 * index + 1]
                    if not (math.isfinite(r_chosen) and math.isfinite(r_rejected)):
                        counts["failed"] += 1
                        continue
                    rows.append((pair_id, r_chosen, r_rejected, sigmoid(r_chosen - r_rejected)))
                    counts["agree"] += r_chosen > r_rejected
                    if verdict in ("chosen", "rejected"):
                        counts["labelled"] += 1
                        counts["agree_labels"] += (r_chosen > r_rejected) == (verdict == "chosen")
                store.add_scores(run.id, rows)
                p_sum += sum(row[3] for row in rows)
                counts["pairs"] += len(block)
                counts["scored"] += len(rows)
                counts["items"] += len(items)
                if progress:
                    progress(counts["pairs"], total, "")
            group.scatter([None] * group.world)  # the end of the work
            released = True
            seconds = time.perf_counter() - started
            scored, labelled = counts["scored"], counts["labelled"]
            run.metrics = metrics = {
                "pairs": counts["pairs"], "scored": scored, "failed": counts["failed"],
                "accuracy_stored": counts["agree"] / scored if scored else None,
                "labelled": labelled, "accuracy_labels": counts["agree_labels"] / labelled if labelled else None,
                "mean_p": p_sum / scored if scored else None,
                "items": counts["items"], "items_cached": counts["items_cached"],
                "cut_response": model.stats["cut_response"],
                "truncated": model.stats["truncated"], "shared_history": model.stats["shared_history"],
                "seconds": round(seconds, 3),
                "pairs_per_s": round(counts["pairs"] / seconds, 3) if seconds else None,
            }
            if group.world > 1:
                metrics["world_size"] = group.world
    finally:
        if not released and group.world > 1:
            group.scatter([None] * group.world)  # an error on rank 0 must not leave the others waiting
    return {"run_id": run.id, "model": model_path, "fingerprint": model.fingerprint, "pool": pool, **metrics}


def _block_rewards(store: "Store", model: RewardModel, items: list[Item], group: Any, batch_size: int,
                   report: Progress) -> tuple[list[float], int]:
    """Rewards of one block's items through the rewards cache (rank 0), and how many were cached.

    One process: ``score_items``. Several: rank 0 looks the items up in the cache, scatters the
    rest in contiguous slices, scores its own slice, gathers the others' and writes the cache.
    """
    keys = [response_key(history, response) for history, response in items]
    cached = store.get_rewards(model.fingerprint, set(keys))
    if group.world == 1:
        return score_items(store, model, items, batch_size=batch_size, progress=report), len(cached)
    from skyrm.parallel import split

    todo: dict[str, Item] = {}
    for key, item in zip(keys, items):
        if key not in cached and key not in todo:
            todo[key] = item
    parts = split(list(todo.items()), group.world)
    mine = group.scatter(parts)
    values = model.rewards([item for _, item in mine], batch_size=batch_size, progress=report) if mine else []
    fresh: dict[str, float] = {}
    for part, part_values in zip(parts, group.gather(values)):
        fresh.update(zip((key for key, _ in part), part_values))
    store.put_rewards(model.fingerprint, {k: v for k, v in fresh.items() if math.isfinite(v)})
    found = {**cached, **fresh}
    return [found[key] for key in keys], len(cached)


def _score_worker(group: Any, model: RewardModel, batch_size: int) -> None:
    """A rank other than 0: score each slice rank 0 sends until it sends None."""
    while True:
        mine = group.scatter(None)
        if mine is None:
            return
        group.gather(model.rewards([item for _, item in mine], batch_size=batch_size) if mine else [])


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ModelError(f"batch size must be at least 1, got {batch_size}")
