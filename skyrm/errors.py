"""The one error path: the library raises these, the CLI prints one red line and exits 1.

Messages say what is wrong and, where it helps, what to do about it.
"""

from __future__ import annotations


class SkyrmError(Exception):
    """Base class for every error skyrm reports to a user."""


class InputError(SkyrmError):
    """A file or row that cannot be read: the message names file, line and field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None, element: int | None = None):
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if element is not None:  # index in a JSON array, from 0
                where += f": element {element}"
            if field:
                where += f": field '{field}'"
            where += ": "
        super().__init__(where + message)
        self.path, self.line, self.field, self.reason = path, line, field, message
        self.element = element


class StoreError(SkyrmError):
    """The SQLite store is missing, locked, or in an unexpected state."""


class ConfigError(SkyrmError):
    """A flag or config-file value is invalid."""


class ModelError(SkyrmError):
    """A model cannot be found, loaded or used as asked."""


class JudgeError(SkyrmError):
    """A judge backend failed in a way retrying will not fix."""
