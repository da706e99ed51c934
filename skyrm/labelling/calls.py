"""Judge calls through the store's ``judge_cache``: a re-run recomputes nothing.

The key is a hash of (backend, model fingerprint, template version, call
parameters, prompt). Outputs are written as soon as a batch returns, so a run
killed mid-way loses at most the batch in flight. Deliberately not here: what
the outputs mean (votes) or which labels to write (the flows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skyrm.judges.base import Generation, Judge, Prompt
from skyrm.records import content_hash
from skyrm.store import Store


class CachedJudge:
    """One judge's calls, memoised in ``judge_cache``."""

    def __init__(self, store: Store, judge: Judge, prompt_version: str):
        self.store, self.judge, self.prompt_version = store, judge, prompt_version
        self.hits = 0
        self.calls = 0

    @property
    def producer(self) -> str:
        return f"{self.judge.backend}:{self.judge.model}"

    def key(self, call: str, params: dict[str, Any], prompt: Prompt) -> str:
        return content_hash({"backend": self.judge.backend, "model": self.judge.fingerprint,
                             "template": self.prompt_version, "call": call, "params": params,
                             "prompt": prompt.as_dict()}, length=40)

    def _cached(self, keys: list[str]) -> list[Any]:
        return [self.store.cache_get(key) for key in keys]

    def _store(self, keys: list[str], values: list[Any]) -> None:
        with self.store.transaction():
            for key, value in zip(keys, values):
                self.store.cache_put(key, value)

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        params = {"choices": list(choices)}
        keys = [self.key("choice_logprobs", params, p) for p in prompts]
        found = self._cached(keys)
        missing = [i for i, value in enumerate(found) if value is None]
        self.hits += len(prompts) - len(missing)
        if missing:
            fresh = self.judge.choice_logprobs([prompts[i] for i in missing], choices)
            self.calls += len(missing)
            self._store([keys[i] for i in missing], fresh)
            for i, value in zip(missing, fresh):
                found[i] = value
        return found

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int, temperature: float, seeds: Sequence[int],
                 json_schema: dict[str, Any] | None = None) -> list[Generation]:
        keys = [self.key("generate", {"max_tokens": max_tokens, "temperature": temperature, "seed": int(seed),
                                      "json_schema": json_schema}, p) for p, seed in zip(prompts, seeds, strict=True)]
        found = self._cached(keys)
        missing = [i for i, value in enumerate(found) if value is None]
        self.hits += len(prompts) - len(missing)
        if missing:
            fresh = self.judge.generate([prompts[i] for i in missing], max_tokens=max_tokens,
                                        temperature=temperature, seeds=[seeds[i] for i in missing],
                                        json_schema=json_schema)
            self.calls += len(missing)
            values = [{"text": g.text, "finish_reason": g.finish_reason, "meta": g.meta} for g in fresh]
            self._store([keys[i] for i in missing], values)
            for i, value in zip(missing, values):
                found[i] = value
        return [Generation(v["text"], v.get("finish_reason", ""), v.get("meta", {})) for v in found]
