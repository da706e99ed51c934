"""What one training or evaluation step computes: schedules, rewards of a batch of pairs, accuracy.

Shared by the full/LoRA loop (train.py) and used by benchmarks; the head method
has its own feature path (head.py). Deliberately not here: the loop itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skyrm.rm.config import TrainConfig
from skyrm.rm.data import length_grouped_batches, pack_pairs, packed_length, pad_batch
from skyrm.rm.loss import bt_loss
from skyrm.rm.backbone import RewardReader, unwrap
from skyrm.rm.runtime import Runtime, autocast


def lr_lambda(config: TrainConfig, total: int) -> Callable[[int], float]:
    warmup = int(round(config.warmup_ratio * total))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def pair_lengths(encoded: list[tuple[list[int], list[int]]], packed: bool) -> list[int]:
    """What each pair costs in a batch: its packed row, or the longer of its two rows."""
    return [packed_length(c, r) if packed else max(len(c), len(r)) for c, r in encoded]


def pair_rewards(reader: RewardReader, pairs: list[tuple[list[int], list[int]]], pad_id: int, side: str,
                 device: str, packed: bool) -> tuple[Any, Any, int]:
    """(chosen rewards, rejected rewards, real tokens) of a batch of pairs, in one forward."""
    if packed:
        batch = pack_pairs(pairs, pad_id)
        chosen, rejected = reader.packed(batch.to(device))
        return chosen, rejected, batch.tokens
    ids, mask = pad_batch([c for c, _ in pairs] + [r for _, r in pairs], pad_id, side=side)
    rewards = reader(ids.to(device), mask.to(device))
    return rewards[:len(pairs)], rewards[len(pairs):], int(mask.sum())


def use_shared_prefix(config: TrainConfig, reader: RewardReader, pairs: list[tuple[list[int], list[int]]],
                      pad_id: int, side: str, device: str, amp: Any) -> tuple[bool, str]:
    """Whether to pack pairs: decoders only, and only if packed rewards match unpacked ones here.

    The check runs a few real pairs both ways (the model's attention must honour a
    4D mask and position ids; flash-attention 2 does not take such masks).
    """
    import torch

    if config.shared_prefix == "off":
        return False, "off (asked)"
    if not reader.per_position:
        return False, "off (encoder: the head pools the whole sequence)"
    attention = getattr(getattr(unwrap(reader.model), "config", None), "_attn_implementation", None)
    if attention == "flash_attention_2":
        return False, "off (flash_attention_2 takes no 4D mask)"
    sample = pairs[:4]
    if not sample:
        return False, "off (no pairs)"
    was_training = reader.model.training
    reader.model.eval()
    try:
        with torch.inference_mode(), autocast(device, amp):
            a_c, a_r, _ = pair_rewards(reader, sample, pad_id, side, device, packed=False)
            b_c, b_r, _ = pair_rewards(reader, sample, pad_id, side, device, packed=True)
        ref = torch.cat([a_c, a_r]).float()
        diff = float((torch.cat([b_c, b_r]).float() - ref).abs().max())
    except Exception as exc:  # noqa: BLE001 -- a model that rejects the layout trains unpacked
        return False, f"off (check failed: {type(exc).__name__})"
    finally:
        if was_training:
            reader.model.train()
    tolerance = (2e-2 if amp is not None else 1e-3) * (1.0 + float(ref.abs().max()))
    if diff > tolerance:
        return False, f"off (packed rewards differ by {diff:.2e})"
    return True, f"on (checked: max difference {diff:.1e})"


def evaluate_pairs(reader: RewardReader, encoded: list[tuple[list[int], list[int]]], pad_id: int, side: str,
             batch_size: int, device: str, amp: Any, rt: Runtime, packed: bool = False) -> dict[str, float]:
    """Accuracy and mean loss on the eval pairs (sharded across processes, then summed)."""
    import torch

    lengths = pair_lengths(encoded, packed)
    batches = length_grouped_batches(lengths, batch_size)[rt.rank::rt.world]
    correct = total = 0
    loss_sum = 0.0
    was_training = reader.model.training
    reader.model.eval()
    with torch.inference_mode(), autocast(device, amp):
        for batch in batches:
            chosen, rejected, _ = pair_rewards(reader, [encoded[i] for i in batch], pad_id, side, device, packed)
            chosen, rejected = chosen.float(), rejected.float()
            correct += int((chosen > rejected).sum())
            total += len(batch)
            loss_sum += float(bt_loss(chosen, rejected)) * len(batch)
    if was_training:
        reader.model.train()
    if rt.world > 1:
        import torch.distributed as dist

        sums = torch.tensor([correct, total, loss_sum], dtype=torch.float64)
        dist.all_reduce(sums)
        correct, total, loss_sum = int(sums[0]), int(sums[1]), float(sums[2])
    return {"accuracy": correct / total if total else 0.0, "loss": loss_sum / total if total else 0.0,
            "pairs": total}
