"""Versioned judge prompt templates and their rendering into ``Prompt`` objects.

The templates live in ``skyrm/prompts/*.toml`` (package data; ``data/prompts`` points
there). Each has a ``name`` and ``version``; the version recorded on every label is
``name@version#hash`` where the hash covers the file's bytes, so an edited template
can never be mistaken for the one that produced older labels or cache entries.

Untrusted text (conversations, responses) is clipped to a size budget and has our
block delimiters and common chat-control markers neutralised, so a response cannot
close its own block or open a new turn. Placeholders are ``string.Template``
``$name``s, substituted once: text inside a response is never expanded.
Deliberately not here: choosing examples, calling models, parsing answers.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

from skyrm.errors import ConfigError
from skyrm.judges.base import Prompt
from skyrm.records import CONTROVERSIALITY, OBJECTIVITY, TASK_CATEGORIES, Attributes, Message, Pair

ORDERS = ("chosen-first", "rejected-first")

# Our own block tags plus the turn markers of common chat templates (ChatML, Llama 2/3,
# Gemma, Mistral). A "<" or "[" that would start one of them gets a zero-width joiner.
_TAG = re.compile(r"<(?=/?(?:candidate_\d|conversation|example|attributes|response)\b)", re.IGNORECASE)
_CONTROL = re.compile(r"<(?=\|[^|<>\s]{1,40}\|>|/?s>|/?(?:start|end)_of_turn>)")
_INST = re.compile(r"\[(?=/?INST\])")
_JOINER = "\u2060"


@dataclass(frozen=True)
class PromptTemplate:
    """One loaded template file."""

    name: str
    version: str
    digest: str
    fields: dict[str, Any]

    @property
    def prompt_version(self) -> str:
        return f"{self.name}@{self.version}#{self.digest[:8]}"

    def text(self, key: str) -> str:
        value = self.fields.get(key)
        if not isinstance(value, str):
            raise ConfigError(f"prompt template {self.name!r} has no text field {key!r}")
        return value

    def fill(self, key: str, **values: str) -> str:
        try:
            return Template(self.text(key)).substitute(values)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"prompt template {self.name!r} field {key!r}: bad placeholder {exc}") from exc


@lru_cache(maxsize=None)
def load_template(name: str) -> PromptTemplate:
    """A template from ``skyrm/prompts/NAME.toml``."""
    resource = resources.files("skyrm") / "prompts" / f"{name}.toml"
    try:
        raw = resource.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"no prompt template {name!r} (expected skyrm/prompts/{name}.toml)") from exc
    fields = tomllib.loads(raw.decode("utf-8"))
    if fields.get("name") != name or "version" not in fields:
        raise ConfigError(f"prompt template {name}.toml must set name = {name!r} and a version")
    return PromptTemplate(name, str(fields["version"]), hashlib.sha256(raw).hexdigest(), fields)


def neutralise(text: str) -> str:
    """Make untrusted text unable to close our blocks or fake chat turns (visible text unchanged)."""
    text = _TAG.sub("<" + _JOINER, text)
    text = _CONTROL.sub("<" + _JOINER, text)
    return _INST.sub("[" + _JOINER, text)


def clip(text: str, max_chars: int | None) -> tuple[str, bool]:
    """Keep the head and tail of an over-long text with a visible cut marker."""
    if max_chars is None or len(text) <= max_chars:
        return text, False
    head = max_chars * 2 // 3
    tail = max_chars - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[len(text) - tail:]}", True


def untrusted(text: str, max_chars: int | None) -> tuple[str, bool]:
    clipped, was_cut = clip(text, max_chars)
    return neutralise(clipped), was_cut


def render_conversation(messages: list[Message], max_chars: int | None) -> tuple[str, bool]:
    """The history as ``Role: text`` turns; a long history keeps its latest part."""
    text = "\n\n".join(f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages)
    if max_chars is not None and len(text) > max_chars:
        cut = len(text) - max_chars
        text = f"[... {cut} earlier characters cut ...]\n" + text[cut:]
        return neutralise(text), True
    return neutralise(text), False


def render_attributes(template: PromptTemplate, attributes: Attributes | None, max_chars: int = 600) -> str:
    if attributes is None:
        return template.text("no_attributes")
    return template.fill(
        "attributes", task_category=attributes.task_category, objectivity=attributes.objectivity,
        controversiality=attributes.controversiality,
        desired_attributes=untrusted(attributes.desired_attributes, max_chars)[0],
        guideline=untrusted(attributes.guideline, max_chars)[0])


@dataclass(frozen=True)
class Budget:
    """Character budgets for untrusted text (token limits are enforced by the caller)."""

    response_chars: int = 4000
    conversation_chars: int = 4000
    example_response_chars: int = 800
    example_conversation_chars: int = 800


@dataclass(frozen=True)
class Shot:
    """A solved example for the few-shot block: a gold pair, its attributes, the better side."""

    pair: Pair
    attributes: Attributes | None
    verdict: str  # 'chosen' or 'rejected', relative to pair's stored orientation


def _shot_block(template: PromptTemplate, shots: list[Shot], budget: Budget) -> str:
    parts = [template.text("examples_header")] if shots else []
    for index, shot in enumerate(shots):
        better, worse = ((shot.pair.chosen_text, shot.pair.rejected_text) if shot.verdict == "chosen"
                         else (shot.pair.rejected_text, shot.pair.chosen_text))
        # Alternate where the better answer stands, so the examples teach no position.
        better_first = index % 2 == 0
        first, second = (better, worse) if better_first else (worse, better)
        parts.append(template.fill(
            "example",
            conversation=render_conversation(shot.pair.prompt, budget.example_conversation_chars)[0],
            candidate_1=untrusted(first, budget.example_response_chars)[0],
            candidate_2=untrusted(second, budget.example_response_chars)[0],
            attributes=render_attributes(template, shot.attributes),
            answer="1" if better_first else "2"))
    return "".join(parts)


@dataclass(frozen=True)
class PairwisePrompts:
    """Both candidate orders of one target pair, and what went into them."""

    prompts: dict[str, Prompt]  # order -> prompt
    prompt_version: str
    truncated: bool
    shared_chars: int  # length of the part every pair with the same shots shares


def pairwise_prompts(pair: Pair, attributes: Attributes | None, shots: list[Shot],
                     budget: Budget = Budget(), template_name: str = "pairwise") -> PairwisePrompts:
    """The verdict prompt in both orders: "chosen-first" shows the stored chosen as Candidate 1."""
    template = load_template(template_name)
    shared = template.text("guideline") + _shot_block(template, shots, budget)
    conversation, cut_conv = render_conversation(pair.prompt, budget.conversation_chars)
    chosen, cut_c = untrusted(pair.chosen_text, budget.response_chars)
    rejected, cut_r = untrusted(pair.rejected_text, budget.response_chars)
    attrs = render_attributes(template, attributes)
    prompts = {}
    for order in ORDERS:
        first, second = (chosen, rejected) if order == "chosen-first" else (rejected, chosen)
        body = template.fill("target", conversation=conversation, attributes=attrs, candidate_1=first,
                             candidate_2=second)
        content = shared + body + template.text("question")
        prompts[order] = Prompt(({"role": "user", "content": content},), template.text("prefill"))
    return PairwisePrompts(prompts, template.prompt_version, cut_conv or cut_c or cut_r, len(shared))


def pairwise_choices(template_name: str = "pairwise") -> tuple[str, str]:
    choices = load_template(template_name).fields.get("choices", ["1", "2"])
    return str(choices[0]), str(choices[1])


def attributes_prompt(pair: Pair, budget: Budget = Budget(), template_name: str = "attributes") -> Prompt:
    template = load_template(template_name)
    content = template.fill("instructions", categories=", ".join(f'"{c}"' for c in TASK_CATEGORIES))
    content += template.fill("conversation",
                             conversation=render_conversation(pair.prompt, budget.conversation_chars)[0])
    return Prompt(({"role": "user", "content": content},), template.text("prefill"))


def attributes_schema(max_chars: int = 400) -> dict[str, Any]:
    """JSON schema of the attributes object: enums for the closed fields, bounded free text."""
    return {
        "type": "object",
        "properties": {
            "task_category": {"enum": list(TASK_CATEGORIES)},
            "objectivity": {"enum": list(OBJECTIVITY)},
            "controversiality": {"enum": list(CONTROVERSIALITY)},
            "desired_attributes": {"type": "string", "minLength": 1, "maxLength": max_chars},
            "guideline": {"type": "string", "minLength": 1, "maxLength": max_chars},
        },
        "required": ["task_category", "objectivity", "controversiality", "desired_attributes", "guideline"],
        "additionalProperties": False,
    }


def preverify_prompt(pair: Pair, side: str, budget: Budget = Budget(),
                     template_name: str = "preverify") -> Prompt:
    """Is one response ('chosen' or 'rejected' side, stored orientation) correct?"""
    template = load_template(template_name)
    text = pair.chosen_text if side == "chosen" else pair.rejected_text
    content = (template.text("instructions")
               + template.fill("conversation",
                               conversation=render_conversation(pair.prompt, budget.conversation_chars)[0])
               + template.fill("response", response=untrusted(text, budget.response_chars)[0]))
    return Prompt(({"role": "user", "content": content},), template.text("prefill"))


def preverify_choices(template_name: str = "preverify") -> tuple[str, str]:
    choices = load_template(template_name).fields.get("choices", ["Yes", "No"])
    return str(choices[0]), str(choices[1])
