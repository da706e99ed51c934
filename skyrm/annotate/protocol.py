"""The verification protocol annotators follow: ``protocol.md`` and the parts that apply to a pair.

The file is Markdown: a ``version: N`` line, then ``## `` sections: ``Always``, ``Tools``,
``category: NAME``, ``objectivity: objective|subjective``, ``controversiality: low|medium|high``.
A pair is shown "Always", its category's, objectivity's and controversiality's sections (a pair
without attributes: "Always" and "Tools"). The version every label records is
``protocol@VERSION#HASH`` (the hash of the file's bytes), so an edit without a version bump is
still told apart. Deliberately not here: any judgement about a pair.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from skyrm.errors import ConfigError
from skyrm.records import Attributes

DEFAULT_PATH = Path(__file__).with_name("protocol.md")
_VERSION = re.compile(r"^version:\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Protocol:
    version: str  # protocol@N#hash8
    sections: dict[str, str]  # heading (lower case) -> body text
    path: str

    def rules_for(self, attributes: Attributes | None) -> list[tuple[str, str]]:
        """(title, text) of the sections that apply to a pair with these attributes, in reading order."""
        keys = ["always"]
        if attributes is not None:
            keys += [f"category: {attributes.task_category.lower()}",
                     f"objectivity: {attributes.objectivity.lower()}",
                     f"controversiality: {attributes.controversiality.lower()}"]
            if keys[1] not in self.sections and "category: other" in self.sections:
                keys[1] = "category: other"
        keys.append("tools")
        return [(key[0].upper() + key[1:], self.sections[key]) for key in keys if key in self.sections]


def reflow(body: str) -> str:
    """Markdown's hard-wrapped lines joined: one line per bullet or paragraph (the screen wraps them)."""
    items: list[str] = []
    for line in body.strip().splitlines():
        stripped = line.strip()
        if not stripped:
            items.append("")
        elif stripped.startswith(("- ", "* ")) or not items or not items[-1]:
            items.append(stripped)
        else:
            items[-1] += " " + stripped
    return "\n".join(item for item in items if item)


def load_protocol(path: str | Path | None = None) -> Protocol:
    where = Path(path) if path is not None else DEFAULT_PATH
    try:
        raw = where.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the protocol ({exc.strerror or exc})") from exc
    text = raw.decode("utf-8", errors="replace")
    version = _VERSION.search(text)
    if version is None:
        raise ConfigError(f"{where}: the protocol has no 'version: N' line")
    sections: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    sections = {key: reflow(body) for key, body in sections.items()}
    if "always" not in sections:
        raise ConfigError(f"{where}: the protocol has no '## Always' section")
    return Protocol(f"protocol@{version.group(1)}#{hashlib.sha256(raw).hexdigest()[:8]}", sections, str(where))
