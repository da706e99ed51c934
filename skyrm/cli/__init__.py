"""The `skyrm` command: a Typer app whose commands are thin layers over library calls.

Each submodule registers the commands of one area on ``app``; ``main`` is the
one place where a ``SkyrmError`` becomes one red line and exit code 1.
Importing this module loads no torch, transformers or llama_cpp.
"""

from __future__ import annotations

import signal
import sys

from skyrm.cli._common import app, console_err
from skyrm.errors import SkyrmError

# Registering commands: each module adds its commands to `app` on import.
from skyrm.cli import data as _data  # noqa: E402,F401

for _optional in ("skyrm.cli.rm", "skyrm.cli.judge", "skyrm.cli.evaluate", "skyrm.cli.demo",
                  "skyrm.cli.retrieve", "skyrm.cli.annotate", "skyrm.cli.curate"):
    try:
        __import__(_optional)
    except ModuleNotFoundError as _exc:  # an area not built yet must not break the others
        if _exc.name != _optional:
            raise


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a `kill` (SIGTERM) stops a run like Ctrl-C: its run row ends 'interrupted'


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(args=argv)
    except SkyrmError as exc:
        console_err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(1)
