"""Where and how a training run computes: processes, device, precision, versions, memory read-outs.

Deliberately not here: anything about models or data.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
from dataclasses import dataclass
from typing import Any

from skyrm.errors import ModelError
from skyrm.rm.config import TrainConfig
from skyrm.rm.backbone import default_device


@dataclass
class Runtime:
    """Process-group facts: one process, or one of several under accelerate/torchrun."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0


def runtime(config: TrainConfig) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = config.device or default_device()
    if world <= 1:
        return Runtime(0, 1, device)
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    if not dist.is_initialized():
        raise ModelError("WORLD_SIZE > 1 but no process group: launch with 'accelerate launch' or torchrun")
    return Runtime(state.process_index, state.num_processes,
                   str(state.device) if device != "cpu" else "cpu")


def autocast_dtype(config: TrainConfig, device: str) -> Any:
    """bf16 autocast where the device supports it (CUDA with bf16; CPUs where oneDNN runs bf16)."""
    import torch

    if config.precision == "fp32" or config.method == "qlora":
        return None  # qlora computes in bf16 inside the 4-bit layers already
    if config.precision == "bf16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() else None


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: where CPU bf16 autocast is faster than fp32.

    Measured here on an AVX2-only CPU: a MiniLM LoRA step under bf16 autocast
    took 260-356 s against 22-42 s in fp32 (emulated bf16 matmuls), so "auto"
    never picks bf16 on such a CPU; ``--precision bf16`` still forces it.
    """
    import torch

    checks = [getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)]
    return any(check() for check in checks if check is not None)


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from skyrm import __version__ as skyrm_version  # type: ignore[attr-defined]

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "skyrm": skyrm_version}


def peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def autocast(device: str, dtype: Any) -> Any:
    """bf16 autocast on the device's type, or nothing when ``dtype`` is None."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def no_sync(model: Any) -> Any:
    """Skip DDP's gradient all-reduce on a micro-batch that is not the last of its accumulation group."""
    return model.no_sync()
