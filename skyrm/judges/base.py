"""What every judge backend offers: the ``Judge`` protocol and the ``Prompt`` it consumes.

A backend turns a ``Prompt`` (chat messages plus the start of the assistant's
reply) into text with its model's chat template, and answers two questions:
the next-token log-probabilities of a few fixed answers, and sampled
continuations. Backends know nothing of the store, of pairs or of votes; the
labelling flow (``skyrm.labelling.label``) builds prompts and interprets answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from skyrm.errors import JudgeError
from skyrm.records import Message


class LogprobsUnsupported(JudgeError):
    """The backend cannot return next-token probabilities; use sampled verdicts instead."""


@dataclass(frozen=True)
class Prompt:
    """A rendered-to-be judge prompt.

    ``prefill`` is the beginning of the assistant's reply, written by us, so the
    model's next token is the answer (e.g. "Better answer: " then "1" or "2").
    Backends without a way to prefill (a chat endpoint) send the messages only.
    """

    messages: tuple[Message, ...]
    prefill: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"messages": [dict(m) for m in self.messages], "prefill": self.prefill}


@dataclass(frozen=True)
class Generation:
    """One sampled continuation and how the backend produced it."""

    text: str
    finish_reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Judge(Protocol):
    """A judge backend. Implementations: llamacpp, hf, openai (see ``skyrm.judges.BACKENDS``)."""

    backend: str  # registry name, e.g. "llamacpp"
    model: str  # what produced the output: a file name, hub name or server model name
    fingerprint: str  # model identity for cache keys (name plus size/hash or URL)
    context_length: int | None  # tokens the model accepts, None when unknown (a server)
    supports_grammar: bool  # generate() honours json_schema as a hard constraint

    def render(self, prompt: Prompt) -> str:
        """The exact text the model continues (chat template applied, prefill appended)."""
        ...

    def count_tokens(self, text: str) -> int | None:
        """Token count of rendered text; None when the backend cannot tell."""
        ...

    def choice_logprobs(self, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[dict[str, float]]:
        """For each prompt, log P(choice is the next token) over the full vocabulary.

        A choice that is not a single next token is read from its first token.
        Raises ``LogprobsUnsupported`` when the backend has no probabilities.
        """
        ...

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int, temperature: float,
                 seeds: Sequence[int], json_schema: dict[str, Any] | None = None) -> list[Generation]:
        """One continuation per prompt (``seeds[i]`` seeds prompt i)."""
        ...

    def close(self) -> None:
        ...
