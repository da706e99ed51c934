"""In-process llama-cpp-python judge (``llamacpp:PATH.gguf`` or an offline short name).

Why it looks like this (ASSETS.md, measured on this project's machines):
- next-token probabilities come from ``llama_get_logits_ith`` right after ``eval``;
  ``create_completion(logprobs=...)`` would need ``logits_all=True``, which keeps
  n_ctx x vocab floats;
- consecutive prompts share a long prefix (guideline, few-shot block, the target's
  conversation), so we keep the KV cache and evaluate only the tokens after the
  longest common prefix with what is already in it. ``LlamaRAMCache`` is not
  used: on interleaved work it was 2x slower than this;
- the answer token ids are read from how the tokenizer splits the prompt's ending
  plus each answer (a trailing space may merge into " Yes" or stay its own token);
- weight repacking (llama.cpp's "extra buffer types") is decided per CPU: on CPUs
  with AMX the repacked AMX buffer segfaults on the first decode (a known llama.cpp
  bug), so it is off there and on elsewhere, where it is safe and faster.
  ``?repack=on|off`` overrides; the choice and its reason are in ``runtime``.
Deliberately not here: prompt wording, votes, the store.
"""

from __future__ import annotations

import json
import math
import threading

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skyrm.digests import file_fingerprint
from skyrm.errors import JudgeError, ModelError
from skyrm.judges.base import Generation, Prompt
from skyrm.judges.chat import render_chat
from skyrm.judges.offline import resolve_gguf

DEFAULT_N_CTX = 4096

# /proc/cpuinfo flags of CPUs on which llama.cpp's AMX weight repacking crashes.
AMX_FLAGS = frozenset({"amx_int8", "amx_tile", "amx_bf16"})
_PARAMS_LOCK = threading.Lock()


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports; empty where there is no /proc/cpuinfo."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def choose_repack(option: str | None, flags: frozenset[str], system_info: str = "") -> tuple[bool, str]:
    """Whether llama.cpp may repack weights into its extra (AMX, AVX) buffer types, and why.

    ``option`` is the judge spec's ``repack`` value: ``on``/``off`` force it, ``auto``
    (or nothing) turns it off when the CPU or the llama.cpp build reports AMX.
    """
    value = (option or "auto").strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True, "repack=on was asked for"
    if value in ("off", "0", "false", "no"):
        return False, "repack=off was asked for"
    if value != "auto":
        raise ModelError(f"repack={option!r} in the judge spec: use repack=on, repack=off or repack=auto")
    amx = sorted(flags & AMX_FLAGS)
    if amx:
        return False, f"the CPU has AMX ({' '.join(amx)}): llama.cpp's AMX repacking crashes on decode"
    if "AMX_INT8 = 1" in system_info:
        return False, "the llama.cpp build uses AMX: its repacking crashes on decode"
    return True, "no AMX on this CPU: repacking is safe"


@contextmanager
def model_params_override(**fields: Any) -> Iterator[None]:
    """Load models with some ``llama_model_params`` fields changed (e.g. ``use_extra_bufts``).

    ``Llama(...)`` exposes no argument for these fields; it builds its parameters from
    ``llama_model_default_params()``, so the defaults are changed while a model loads.
    """
    import llama_cpp.llama_cpp as low

    unknown = [name for name in fields if name not in dict(low.llama_model_params._fields_)]
    if unknown:
        raise ModelError(f"this llama-cpp-python has no model parameter {', '.join(unknown)}: "
                         "upgrade it (pip install -U llama-cpp-python)")
    with _PARAMS_LOCK:
        original = low.llama_model_default_params

        def defaults() -> Any:
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        low.llama_model_default_params = defaults
        try:
            yield
        finally:
            low.llama_model_default_params = original


def repack_decision(option: str | None = None) -> tuple[bool, str]:
    """``choose_repack`` for this machine (its CPU flags and the installed llama.cpp build)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    info = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return choose_repack(option, cpu_flags(), info)


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def split_choice_tokens(prompt_tokens: list[int], with_choice: Sequence[list[int]]) -> tuple[int, list[int]]:
    """Where the answers start and which token each one begins with.

    ``with_choice[i]`` is the tokenisation of prompt text + answer i. When the
    prompt ends in a space that the tokenizer merges into the answer (" Yes"),
    the context is the prompt minus that token. Raises JudgeError when the
    answers do not begin with distinct tokens after a common context.
    """
    cut = min(common_prefix_len(prompt_tokens, t) for t in with_choice)
    ids = []
    for tokens in with_choice:
        if len(tokens) <= cut:
            raise JudgeError("an answer adds no token to the prompt: end the prompt so the answer follows")
        ids.append(tokens[cut])
    if len(set(ids)) != len(ids):
        raise JudgeError(f"the answers start with the same token after the prompt ({ids}): change the "
                         "template's prefill so each answer begins with its own token")
    return cut, ids


class LlamaCppJudge:
    """A GGUF model run in-process with prefix-reusing evaluation."""

    backend = "llamacpp"
    supports_grammar = True

    def __init__(self, target: str, *, n_ctx: int | str = DEFAULT_N_CTX, threads: int | str | None = None,
                 n_batch: int | str = 512, seed: int | str = 0, verbose: bool | str = False,
                 repack: str | None = None, n_gpu_layers: int | str = 0):
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - llama-cpp-python is a core dependency
            raise ModelError("llama-cpp-python is not installed: pip install llama-cpp-python") from exc
        path = resolve_gguf(target)
        self.path = path
        self.model = path.name
        self.fingerprint = file_fingerprint(path)
        n_threads = int(threads) if threads not in (None, "") else None
        use_repack, reason = repack_decision(repack)
        self.runtime = {"repack": use_repack, "repack_reason": reason}
        try:
            with model_params_override(use_extra_bufts=use_repack):
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=int(n_ctx), n_batch=int(n_batch),
                                           n_threads=n_threads, n_threads_batch=n_threads, seed=int(seed),
                                           n_gpu_layers=int(n_gpu_layers),
                                           logits_all=False, verbose=str(verbose).lower() in ("1", "true"))
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
        self._llama_cpp = llama_cpp
        self.context_length = self.llm.n_ctx()
        self.template = self.llm.metadata.get("tokenizer.chat_template")
        self.eos_text = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "replace")
        self._grammars: dict[str, Any] = {}
        self.tokens_evaluated = 0  # tokens actually run through the model
        self.tokens_reused = 0  # tokens served from the KV cache

    @classmethod
    def from_spec(cls, spec: Any) -> "LlamaCppJudge":
        return cls(spec.target, **spec.options)

    # ------------------------------------------------------------ rendering
    def render(self, prompt: Prompt) -> str:
        return render_chat(prompt.messages, prompt.prefill, template=self.template, eos_token=self.eos_text)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    # ----------------------------------------------------------- evaluation
    def _eval_reusing(self, tokens: list[int]) -> list[float]:
        """Evaluate ``tokens`` keeping the longest cached prefix; the last token's logits."""
        import numpy as np

        llm = self.llm
        if len(tokens) > self.context_length:
            raise JudgeError(f"prompt of {len(tokens)} tokens exceeds the context of {self.context_length}: "
                             "raise n_ctx in the judge spec (e.g. ?n_ctx=8192) or use fewer shots")
        cached = llm.input_ids[:llm.n_tokens]
        keep = common_prefix_len(cached.tolist(), tokens) if llm.n_tokens else 0
        keep = min(keep, len(tokens) - 1)  # at least one token must run to produce logits
        llm.n_tokens = keep  # eval() drops the KV cells after n_tokens before decoding
        llm.eval(tokens[keep:])
        self.tokens_reused += keep
        self.tokens_evaluated += len(tokens) - keep
        pointer = self._llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype("float64").tolist()

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        results = []
        for prompt in prompts:
            text = self.render(prompt)
            tokens = self.tokenize(text)
            cut, ids = split_choice_tokens(tokens, [self.tokenize(text + c) for c in choices])
            logits = self._eval_reusing(tokens[:cut])
            top = max(logits)
            log_norm = top + math.log(sum(math.exp(x - top) for x in logits))
            results.append({c: logits[i] - log_norm for c, i in zip(choices, ids)})
        return results

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = self._llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int, temperature: float,
                 seeds: Sequence[int], json_schema: dict[str, Any] | None = None) -> list[Generation]:
        grammar = self._grammar(json_schema) if json_schema else None
        out = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            tokens = self.tokenize(self.render(prompt))
            if len(tokens) + max_tokens > self.context_length:
                raise JudgeError(f"prompt of {len(tokens)} tokens plus {max_tokens} to generate exceeds the "
                                 f"context of {self.context_length}: raise n_ctx in the judge spec")
            before = self.llm.n_tokens
            cached = common_prefix_len(self.llm.input_ids[:before].tolist(), tokens) if before else 0
            response = self.llm.create_completion(prompt=tokens, max_tokens=max_tokens, temperature=temperature,
                                                  seed=int(seed), grammar=grammar)
            self.tokens_reused += cached
            self.tokens_evaluated += len(tokens) - cached
            choice = response["choices"][0]
            out.append(Generation(choice["text"], choice.get("finish_reason") or "",
                                  {"completion_tokens": response["usage"]["completion_tokens"]}))
        return out

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


