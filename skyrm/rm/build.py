"""The model a training run updates: the backbone for its method (full, LoRA, QLoRA), and its state files.

Deliberately not here: the loop (train.py), loading backbones (backbone.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyrm.errors import ConfigError, ModelError
from skyrm.rm.config import TrainConfig
from skyrm.rm.backbone import ModelSource, head_modules, load_classifier, unwrap


def lora_targets(model: Any, config: TrainConfig, skip: list[str]) -> list[str]:
    """Full names of the backbone's linear layers to adapt (never the head or pooler)."""
    import torch

    wanted = None if config.lora_targets == "all-linear" else {t.strip() for t in config.lora_targets.split(",")}
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) and type(module).__name__ not in ("Linear4bit", "Linear8bitLt"):
            continue
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if wanted is None or name.split(".")[-1] in wanted:
            names.append(name)
    if not names:
        raise ConfigError(f"--lora-targets '{config.lora_targets}' matches no linear layer")
    return names


def build_model(config: TrainConfig, source: ModelSource, tokenizer: Any, device: str) -> tuple[Any, dict[str, Any]]:
    """The model to train, and facts about it for meta.json."""
    import torch

    quant = None
    if config.method == "qlora":
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ModelError("--method qlora needs bitsandbytes: pip install bitsandbytes") from exc
        # The reward head must stay in float: quantising a new 1-output head breaks it (BERT's
        # classifier in particular); decoders skip their `score` head themselves.
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=torch.bfloat16,
                                   llm_int8_skip_modules=["classifier", "score", "pooler"])
    model, missing = load_classifier(source, tokenizer, device=device, quantization_config=quant,
                                     seed=config.seed)
    heads = head_modules(model)
    new_modules = sorted({k.rsplit(".", 1)[0] for k in missing})
    info = {"head_modules": heads, "new_weights": missing,
            "params": sum(p.numel() for p in model.parameters())}
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        if config.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=config.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        save = sorted({n.split(".")[-1] for n in heads} | {n.split(".")[-1] for n in new_modules})
        targets = lora_targets(model, config, skip=heads + new_modules)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=targets, modules_to_save=save, bias="none")
        model = get_peft_model(model, lora)
        info["modules_to_save"] = save
        info["lora_targets"] = len(targets)
    if config.gradient_checkpointing and config.method != "qlora":
        unwrap(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    info["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, info


def trainable_state(model: Any) -> dict[str, Any]:
    """Tensors of the trainable parameters (what a resume must restore)."""
    inner = getattr(model, "module", model)
    return {n: p.detach().cpu().contiguous() for n, p in inner.named_parameters() if p.requires_grad}


def save_optimizer(optimizer: Any, model: Any, path: Path) -> None:
    """AdamW state as safetensors, keyed by parameter name (no pickle)."""
    from safetensors.torch import save_file

    inner = getattr(model, "module", model)
    names = {id(p): n for n, p in inner.named_parameters()}
    tensors = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                tensors[f"{names[id(param)]}::{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
    save_file(tensors, str(path))


def load_optimizer(optimizer: Any, model: Any, path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    inner = getattr(model, "module", model)
    params = dict(inner.named_parameters())
    for key, value in load_file(str(path)).items():
        name, slot = key.rsplit("::", 1)
        param = params[name]
        optimizer.state.setdefault(param, {})[slot] = value.to(param.device) if value.dim() else \
            torch.tensor(float(value), dtype=torch.float32)


def load_trainable(model: Any, directory: Path, method: str) -> None:
    """Restore trainable weights from a ``last`` checkpoint."""
    from safetensors.torch import load_file

    inner = getattr(model, "module", model)
    if method in ("lora", "qlora"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(inner, load_file(str(directory / "adapter_model.safetensors")))
    else:
        state = load_file(str(directory / "model.safetensors"))
        missing = unwrap(inner).load_state_dict(state, strict=False)
        if missing.unexpected_keys:
            raise ModelError(f"{directory}: checkpoint does not fit the model ({missing.unexpected_keys[:3]})")
