"""LLM judges: the ``Judge`` protocol and a lazy registry of backends.

A judge spec names a backend and a model:

- ``llamacpp:PATH.gguf`` or ``llamacpp:smollm2`` / ``llamacpp:qwen2.5-0.5b`` (offline
  GGUFs shipped on PyPI) -- in-process llama-cpp-python, the default;
- ``hf:MODEL`` -- a transformers causal LM (local dir, hub name, or ``DIR/FILE.gguf``);
- ``openai:URL#MODEL`` -- any OpenAI-compatible server (llama.cpp, vLLM, SGLang).

Options follow the target as a query string, e.g.
``llamacpp:model.gguf?n_ctx=8192&threads=4`` or
``openai:http://127.0.0.1:8080/v1?concurrency=8&timeout=120#qwen``.

Backends are imported on first use, so importing this package loads no
llama_cpp, torch or transformers. Deliberately not here: prompts, votes and
anything that touches the store (the labelling flows in ``skyrm.labelling`` use
the judges; the judges know nothing of them).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from skyrm.errors import ConfigError
from skyrm.judges.base import Generation, Judge, LogprobsUnsupported, Prompt

__all__ = ["BACKENDS", "DEFAULT_JUDGE", "Generation", "Judge", "JudgeSpec", "LogprobsUnsupported", "Prompt",
           "load_judge", "parse_spec", "register_backend"]

DEFAULT_JUDGE = "llamacpp:smollm2"

# name -> "module:factory"; the factory takes (target, **options) and returns a Judge.
BACKENDS: dict[str, str] = {
    "llamacpp": "skyrm.judges.llamacpp:LlamaCppJudge",
    "hf": "skyrm.judges.hf:HFJudge",
    "openai": "skyrm.judges.openai_compat:OpenAIJudge",
}


def register_backend(name: str, factory: str) -> None:
    """Add a backend by import path ("package.module:Class"); imported only when used."""
    BACKENDS[name] = factory


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed ``--judge`` value."""

    backend: str
    target: str  # path, model name or URL
    model: str = ""  # openai: the served model name (after '#')
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        return self.text


def parse_spec(text: str) -> JudgeSpec:
    """Split ``backend:target[?k=v&...][#model]``; raise ConfigError with the accepted forms."""
    backend, sep, rest = text.partition(":")
    if not sep or not rest:
        raise ConfigError(f"judge spec {text!r} has no backend: use one of "
                          f"{', '.join(b + ':...' for b in BACKENDS)} (e.g. {DEFAULT_JUDGE})")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown judge backend {backend!r} in {text!r}: use one of {', '.join(BACKENDS)}")
    model = ""
    if backend == "openai":
        rest, hash_, model = rest.partition("#")
        if not hash_ or not model:
            raise ConfigError(f"judge spec {text!r}: the openai backend needs the served model after '#', "
                              "e.g. openai:http://127.0.0.1:8080/v1#my-model")
    target, q, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True)) if q else {}
    if not target:
        raise ConfigError(f"judge spec {text!r} names no model")
    return JudgeSpec(backend, target, model, options, text)


def load_judge(spec: str | JudgeSpec) -> Judge:
    """Instantiate the backend a spec names (imports it now)."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    module_name, _, attr = BACKENDS[parsed.backend].partition(":")
    module = importlib.import_module(module_name)
    factory = getattr(module, attr)
    judge = factory.from_spec(parsed) if hasattr(factory, "from_spec") else factory(parsed.target, **parsed.options)
    return judge
