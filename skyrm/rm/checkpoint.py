"""The files of a reward-model run and of each checkpoint in it, and loading any of them back.

A run directory::

    OUT/meta.json          resolved config, data fingerprint, versions, metrics, "checkpoint": "best"
    OUT/best/              the checkpoint with the best eval accuracy
    OUT/last/              the latest checkpoint plus optimizer.safetensors and trainer_state.json (resume)

A checkpoint directory holds the tokenizer files, ``meta.json`` (method, base
model, rendering, step, metrics) and, by method:

- ``full``/``head`` exported or full runs: ``config.json`` + ``model.safetensors``
  (a standard ``AutoModelForSequenceClassification`` directory);
- ``lora``/``qlora``: ``adapter_config.json`` + ``adapter_model.safetensors``
  (the peft adapter; the reward head and any newly initialised pooler are
  saved in full through ``modules_to_save``);
- ``head``: ``head.safetensors``, the head modules' weights under the
  model's own names (the frozen backbone is the base model).

Everything is safetensors or JSON: nothing is unpickled. Deliberately not
here: training, scoring.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from skyrm.digests import file_digest
from skyrm.errors import ModelError
from skyrm.rm.backbone import ModelSource, head_modules, load_classifier, load_tokenizer, unwrap

META = "meta.json"
HEAD_FILE = "head.safetensors"


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(directory) / META
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (a kill mid-write leaves the old file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint a path names: a run directory points at its best checkpoint."""
    directory = Path(path)
    meta = read_meta(directory)
    if meta and "checkpoint" in meta and (directory / meta["checkpoint"]).is_dir():
        return directory / meta["checkpoint"]
    return directory


def save_checkpoint(model: Any, tokenizer: Any, directory: Path, *, method: str, meta: dict[str, Any],
                    extra: Any = None) -> None:
    """Write a checkpoint into ``directory`` (replaced atomically: a kill mid-save keeps the old one).

    ``extra(tmp_dir)`` writes more files (optimizer state) into the same atomic directory.
    """
    tmp = directory.with_name(directory.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    inner = getattr(model, "module", model)  # DDP
    if method in ("lora", "qlora"):
        inner.save_pretrained(tmp, safe_serialization=True)
    elif method == "head":
        save_head(inner, tmp / HEAD_FILE)
    else:
        unwrap(inner).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "README.md").unlink(missing_ok=True)  # peft's model-card stub
    write_json(tmp / META, dict(meta, method=method))
    if extra is not None:
        extra(tmp)
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def head_state(model: Any) -> dict[str, Any]:
    """The head modules' tensors under the plain model's parameter names."""
    inner = unwrap(model)
    state = {}
    for name in head_modules(inner):
        for key, tensor in inner.get_submodule(name).state_dict().items():
            state[f"{name}.{key}"] = tensor.detach().contiguous().cpu()
    return state


def save_head(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(head_state(model), str(path))


def load_head(model: Any, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    result = unwrap(model).load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ModelError(f"{path}: weights {result.unexpected_keys[:3]} do not fit the base model")


def base_source(meta: dict[str, Any]) -> ModelSource:
    base = meta.get("base") or {}
    if not base.get("path"):
        raise ModelError("checkpoint meta.json names no base model")
    return ModelSource(base["path"], base.get("gguf_file"), base.get("name", ""))


def load_checkpoint(path: str | os.PathLike[str], *, device: str, dtype: Any = None,
                    merge: bool = True) -> tuple[Any, Any, dict[str, Any], list[Path]]:
    """Load any reward model on disk: (model in eval mode, tokenizer, meta, files that define it).

    Accepts a skyrm run directory, one of its checkpoints, an exported or any
    other ``AutoModelForSequenceClassification`` directory, or a bare peft
    adapter directory whose base is reachable.
    """
    directory = checkpoint_dir(path)
    meta = read_meta(directory) or {}
    method = meta.get("method")
    if method is None and (directory / "adapter_config.json").exists():
        adapter = json.loads((directory / "adapter_config.json").read_text())
        method = "lora"
        meta = {"base": {"path": adapter.get("base_model_name_or_path", ""), "name": ""}}
    files = _weight_files(directory)
    if method in ("lora", "qlora", "head"):
        base = base_source(meta)
        if not Path(base.path).exists():
            raise ModelError(f"{directory}: its base model {base.path} is not on this machine; "
                             "export the run with 'skyrm export-model' to get a standalone directory")
        tokenizer = load_tokenizer(ModelSource(str(directory)))
        model, _ = load_classifier(base, tokenizer, dtype=dtype, device=device,
                                   seed=int(meta.get("init_seed", 0)))
        if method == "head":
            load_head(model, directory / HEAD_FILE)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(directory))
            if merge:
                model = model.merge_and_unload()
        files += _weight_files(Path(base.path), base.gguf_file)
    else:
        if not (directory / "config.json").exists() and Path(path).exists():
            raise ModelError(f"{path}: no config.json, meta.json or adapter_config.json: not a model directory")
        source = ModelSource(str(directory), name=str(path)) if directory.exists() else ModelSource(str(path))
        tokenizer = load_tokenizer(source)
        model, missing = load_classifier(source, tokenizer, dtype=dtype, device=device)
        if missing and directory.exists():
            meta = dict(meta, untrained_weights=missing)
    model.eval()
    return model, tokenizer, meta, files


def _weight_files(directory: Path, only: str | None = None) -> list[Path]:
    if not directory.is_dir():
        return []
    if only:
        return [directory / only]
    names = ("*.safetensors", "*.gguf", "*.bin", "config.json", "adapter_config.json", "tokenizer.json",
             "tokenizer_config.json", "chat_template.jinja", "vocab.txt")
    found: list[Path] = []
    for pattern in names:
        found.extend(sorted(directory.glob(pattern)))
    return found


# ------------------------------------------------------------------ hashing
def fingerprint(files: list[Path], settings: dict[str, Any]) -> str:
    """Identity of a scorer: the content of the files that define it plus what shapes its inputs."""
    from skyrm.records import content_hash

    return content_hash({"files": sorted(file_digest(f) for f in files if f.is_file()),
                         "settings": settings}, 24)
