"""A judge backend for curation tests, registered through the real registry (``register_backend``).

It reads the target's two candidate blocks from the real prompt and prefers the one
that contains ``good`` (the test data marks its better responses so): a judge that is
right, to test the flow around judges without a model's cost or noise. Used in-process
and in subprocesses (``python -m fake_judge_cli ...``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from skyrm.judges.base import Generation, Prompt

_BLOCK = re.compile(r"<candidate_(\d)>\n(.*?)\n</candidate_\1>", re.S)


class FakeJudge:
    backend = "fake"
    supports_grammar = False
    context_length = None

    def __init__(self, target: str, **options: Any):
        self.model = f"fake-{target}"
        self.inverted = target == "inverted"  # fake:inverted prefers the poor answer: a judge worse than chance
        self.fingerprint = f"fake:{target}"
        self.calls = 0

    def render(self, prompt: Prompt) -> str:
        return "\n".join(m["content"] for m in prompt.messages) + prompt.prefill

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _p_first(self, prompt: Prompt) -> float:
        blocks = _BLOCK.findall(prompt.messages[-1]["content"])
        first, second = blocks[-2][1], blocks[-1][1]  # the target's blocks come last (after the examples)
        good_first, good_second = "good" in first, "good" in second
        p = 0.9 if good_first and not good_second else 0.1 if good_second and not good_first else 0.5
        return 1 - p if self.inverted else p

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        self.calls += len(prompts)
        out = []
        for prompt in prompts:
            p = self._p_first(prompt)
            out.append({choices[0]: math.log(p), choices[1]: math.log(1 - p)})
        return out

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int, temperature: float,
                 seeds: Sequence[int], json_schema: dict[str, Any] | None = None) -> list[Generation]:
        self.calls += len(prompts)
        return [Generation("1" if self._p_first(p) > 0.5 else "2", "stop") for p in prompts]

    def close(self) -> None:
        pass
