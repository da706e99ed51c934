"""The `skyrm` command: a Typer app whose commands are thin layers over library calls.

Each submodule registers the commands of one area on ``app``; ``main`` is the
one place where a ``SkyrmError`` becomes one red line and exit code 1.
Importing this module loads no torch, transformers or llama_cpp.
"""

from __future__ import annotations

import importlib
import signal
import sys

from skyrm.cli._common import app, console_err
from skyrm.errors import SkyrmError

# Registering commands: each module adds its commands to `app` on import, in the order
# `skyrm --help` lists them. A module that fails to import fails the command line loudly:
# none imports an optional extra at load time (the commands that need one import it when
# they run, and a missing one is reported there by name).
COMMAND_MODULES = ("data", "rm", "judge", "evaluate", "demo", "retrieve", "annotate", "curate")
for _name in COMMAND_MODULES:
    importlib.import_module(f"skyrm.cli.{_name}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a `kill` (SIGTERM) stops a run like Ctrl-C: its run row ends 'interrupted'


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(args=argv)
    except SkyrmError as exc:
        console_err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(1)
