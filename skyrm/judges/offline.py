"""Offline judge models by short name: the instruction-tuned GGUFs of ``skyrm.shipped_models``.

``smollm2`` is SmolLM2-135M-Instruct; ``qwen2.5-0.5b`` is Qwen2.5-Coder-0.5B-Instruct.
Base models make poor judges and are not offered. Deliberately not here: loading the
model (the backends do that) and where the files live (``skyrm.shipped_models``).
"""

from __future__ import annotations

from pathlib import Path

from skyrm.errors import ModelError
from skyrm.shipped_models import INSTRUCT_GGUFS, canonical_name, offline_gguf

OFFLINE_JUDGES = INSTRUCT_GGUFS


def resolve_gguf(name_or_path: str) -> Path:
    """A GGUF path for a short name or an existing file; ModelError says what to install."""
    if canonical_name(name_or_path) in OFFLINE_JUDGES:
        return offline_gguf(name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ModelError(f"no GGUF file at {path}: give a .gguf path or one of {', '.join(OFFLINE_JUDGES)}")
    return path
