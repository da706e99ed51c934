"""Strict parsers for judge output: a verdict digit, Yes/No, the attributes JSON.

A parser reads only the model's own continuation, anchored at its start: the
prompt's prefill puts the answer first, so text the model writes afterwards (or
that a response tried to plant) cannot change what is read. Anything that is not
plainly one of the allowed answers is ``None`` or a ``ParseError`` -- never a
guess. Deliberately not here: retries (the attributes flow) and votes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from skyrm.errors import SkyrmError
from skyrm.records import CONTROVERSIALITY, OBJECTIVITY, TASK_CATEGORIES, Attributes

ATTRIBUTE_KEYS = ("task_category", "objectivity", "controversiality", "desired_attributes", "guideline")
MAX_FREE_TEXT = 2000

# Optional decoration a chat reply may put before the number: quotes, markdown
# emphasis, "Candidate", "Answer:", "Better answer is", "#".
_LEAD = r"^\s*[*_\"'(\[]*\s*(?:(?:the\s+)?(?:better\s+)?(?:answer|candidate|response)\s*(?:is\s*)?[:#]?\s*)?[*_\"'(\[]*\s*"


class ParseError(SkyrmError):
    """Model output that is not a valid answer; the message says why."""


def parse_choice(text: str, choices: tuple[str, ...] = ("1", "2")) -> str | None:
    """Which of ``choices`` the continuation starts with, or None.

    Digits must stand alone ("1", "Candidate 2", "**1**"; not "12" or "1.5");
    words must be whole words ("Yes", "no."; not "Yesterday").
    """
    for choice in choices:
        boundary = r"(?![0-9.,]?[0-9])" if choice.isdigit() else r"(?![A-Za-z])"
        if re.match(_LEAD + re.escape(choice) + boundary, text, flags=re.IGNORECASE):
            return choice
    return None


def _strip_fence(text: str) -> str:
    text = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match.group(1) if match else text


def parse_attributes(text: str) -> Attributes:
    """The 5-tuple from exactly one JSON object (a ```json fence is allowed); ParseError otherwise."""
    body = _strip_fence(text)
    try:
        value: Any = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not one JSON object ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise ParseError(f"expected a JSON object, got {type(value).__name__}")
    missing = [k for k in ATTRIBUTE_KEYS if k not in value]
    if missing:
        raise ParseError(f"missing keys: {', '.join(missing)}")
    extra = sorted(set(value) - set(ATTRIBUTE_KEYS))
    if extra:
        raise ParseError(f"unexpected keys: {', '.join(extra)}")
    fields: dict[str, str] = {}
    for key in ATTRIBUTE_KEYS:
        item = value[key]
        if not isinstance(item, str):
            raise ParseError(f"{key} must be a string, got {type(item).__name__}")
        fields[key] = item.strip()
    for key, allowed in (("task_category", TASK_CATEGORIES), ("objectivity", OBJECTIVITY),
                         ("controversiality", CONTROVERSIALITY)):
        fields[key] = fields[key].lower()
        if fields[key] not in allowed:
            raise ParseError(f"{key} {value[key]!r} is not one of {', '.join(allowed)}")
    for key in ("desired_attributes", "guideline"):
        if not fields[key]:
            raise ParseError(f"{key} is empty")
        if len(fields[key]) > MAX_FREE_TEXT:
            raise ParseError(f"{key} is longer than {MAX_FREE_TEXT} characters")
    return Attributes(**fields)
