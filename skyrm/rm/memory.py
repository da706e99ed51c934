"""Training memory: estimate a step's peak before it runs, and fit the micro-batch to the machine.

Why: on a CPU, a step that does not fit is killed by the OOM killer with no
message (measured: SmolLM2-135M LoRA, 16 pairs x 256 tokens, fp32, peaked at
20.6 GB). The estimate is the model's weights and optimizer state plus the
activations a transformer keeps for backward, per token and layer, with
coefficients fitted to peaks measured by ``benchmarks/bench_memory.py``
(its table prints the estimate beside the measured peak). Chosen and rejected run
in one forward, so a micro-batch of ``b`` pairs is ``2b`` sequences.
Deliberately not here: the training loop (it only asks for a plan).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from skyrm.errors import ConfigError

GIB = 1 << 30
# Fitted with benchmarks/bench_memory.py (fp32 on CPU, sdpa attention; SmolLM2 LoRA at 4-16 pairs x
# 128-256 tokens measured 5.3-17.3 GB, and 20.6 GB inside a full `skyrm train` at 16 x 256), rounded up so
# the estimate errs high: activation bytes kept per token and layer =
# ACT_BYTES * (HIDDEN_COEF * hidden + FFN_COEF * intermediate) + attention probabilities.
HIDDEN_COEF = 10.0
FFN_COEF = 5.5
ATTENTION_COPIES = 2.5  # attention probabilities kept for backward, fp32, per head
RUNTIME_OVERHEAD = 0.8 * GIB  # the interpreter, torch, tokenizer, allocator slack
HEADROOM = 0.9  # plan to use at most this share of what is available


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a backbone (read from its config)."""

    params: int
    trainable: int
    hidden: int
    layers: int
    heads: int
    intermediate: int

    @classmethod
    def of(cls, model: Any) -> "ModelShape":
        config = getattr(model, "config", None)
        base = getattr(model, "base_model", None)
        if config is None and base is not None:
            config = getattr(base, "config", None)
        hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0) or 0)
        return cls(params=sum(p.numel() for p in model.parameters()),
                   trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                   hidden=hidden,
                   layers=int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 0),
                   heads=int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1),
                   intermediate=int(getattr(config, "intermediate_size", 0) or 4 * hidden))


def estimate_step_bytes(shape: ModelShape, *, pairs: int, seq_len: int, activation_bytes: int = 4,
                        weight_bytes: float = 4.0, checkpointing: bool = False, rows_per_pair: int = 2) -> int:
    """Peak process memory of one training step of ``pairs`` pairs padded to ``seq_len`` tokens.

    ``rows_per_pair`` is 2 (chosen and rejected rows) or 1 (a shared-prefix row).
    """
    tokens = rows_per_pair * pairs * seq_len
    per_token_layer = (activation_bytes * (HIDDEN_COEF * shape.hidden + FFN_COEF * shape.intermediate)
                       + 4 * ATTENTION_COPIES * shape.heads * seq_len)
    if checkpointing:  # each layer keeps its input; one layer's activations are live at a time
        activations = tokens * (shape.layers * activation_bytes * shape.hidden + per_token_layer)
    else:
        activations = tokens * shape.layers * per_token_layer
    # weights, plus fp32 gradient and two Adam moments for every trained parameter
    states = shape.params * weight_bytes + 12 * shape.trainable
    return int(RUNTIME_OVERHEAD + states + activations)


@dataclass(frozen=True)
class MemoryPlan:
    batch_size: int
    grad_accum: int
    estimate_bytes: int
    limit_bytes: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "grad_accum": self.grad_accum,
                "estimate_gb": round(self.estimate_bytes / GIB, 2), "limit_gb": round(self.limit_bytes / GIB, 2),
                "note": self.note}


def plan_micro_batch(shape: ModelShape, *, batch_size: int, grad_accum: int, seq_len: int, limit_bytes: int,
                     activation_bytes: int = 4, weight_bytes: float = 4.0, checkpointing: bool = False,
                     rows_per_pair: int = 2) -> MemoryPlan:
    """The largest micro-batch that fits ``limit_bytes``, with accumulation keeping the effective batch.

    The micro-batch is a divisor of ``batch_size`` so ``micro x accumulation`` equals the
    asked-for effective batch exactly. Raises ConfigError when even one pair does not fit.
    """
    def estimate(pairs: int) -> int:
        return estimate_step_bytes(shape, pairs=pairs, seq_len=seq_len, activation_bytes=activation_bytes,
                                   weight_bytes=weight_bytes, checkpointing=checkpointing,
                                   rows_per_pair=rows_per_pair)

    budget = int(limit_bytes * HEADROOM)
    asked = estimate(batch_size)
    if asked <= budget:
        return MemoryPlan(batch_size, grad_accum, asked, limit_bytes)
    for micro in sorted((d for d in range(1, batch_size) if batch_size % d == 0), reverse=True):
        needed = estimate(micro)
        if needed <= budget:
            accum = grad_accum * batch_size // micro
            return MemoryPlan(micro, accum, needed, limit_bytes,
                              f"batch {batch_size} x {seq_len} tokens needs about {asked / GIB:.1f} GB of "
                              f"{limit_bytes / GIB:.1f} GB: micro-batch {micro} with {accum} accumulation steps "
                              f"(same effective batch of {batch_size * grad_accum} pairs)")
    hint = "" if checkpointing else ", --gradient-checkpointing"
    raise ConfigError(f"one pair of {seq_len} tokens needs about {estimate(1) / GIB:.1f} GB but "
                      f"{limit_bytes / GIB:.1f} GB is available: lower --max-length{hint}, use --method lora, "
                      "qlora or head, a smaller --base, or raise --max-memory")


def parse_memory(text: str) -> int:
    """``16GB``, ``16G``, ``1500MB``, ``0.5TB`` or a plain number of GB, as bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        raise ConfigError(f"--max-memory {text!r}: give a size such as 16GB or 1500MB")
    value, unit = float(match.group(1)), match.group(2) or "G"
    return int(value * {"K": 1 << 10, "M": 1 << 20, "G": GIB, "T": 1 << 40}[unit])


def available_bytes(device: str) -> int:
    """Memory this process can still use on ``device``, counting what it already holds.

    CPU: MemAvailable (Linux) plus this process's resident set; elsewhere psutil's
    figure. CUDA: the device's free memory plus what torch already reserved.
    """
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        free, _ = torch.cuda.mem_get_info(index)
        return int(free + torch.cuda.memory_reserved(index))
    resident = 0
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            resident = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 + resident
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available + psutil.Process().memory_info().rss)
    except ImportError:
        return 1 << 62  # unknown: do not guess smaller batches


def activation_bytes_for(amp_dtype: Any) -> int:
    """Bytes per kept activation value: 2 under bf16/fp16 autocast, 4 in fp32."""
    return 2 if amp_dtype is not None else 4


def weight_bytes_for(method: str) -> float:
    """Bytes per stored weight: 4-bit base weights (plus scales) under QLoRA, fp32 otherwise."""
    return 0.6 if method == "qlora" else 4.0

