"""What every command shares: the app, the --db option, consoles, progress and JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from skyrm.store import Store, default_db_path

app = typer.Typer(
    name="skyrm",
    help="Curate preference data and train Bradley-Terry reward models on one machine.\n\n"
         "Example: skyrm init && skyrm import pairs.jsonl && skyrm status",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
# Output that is not a terminal (a pipe, a file) is not cut at 80 columns: tables keep whole
# paths on one line and long lines are not wrapped. $COLUMNS is not followed there: terminal
# libraries export it to child processes, so a command run from a script would inherit 80.
UNBOUNDED_WIDTH = 100_000


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=UNBOUNDED_WIDTH, soft_wrap=True)


console = _console()
console_err = _console(stderr=True)


def _db_before_command(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """`skyrm --db X status` as well as `skyrm status --db X`; a --db after the command wins."""
    given_first = ctx.find_root().params.get("db")
    source = ctx.get_parameter_source(param.name or "db")
    if given_first and (source is None or source.name != "COMMANDLINE"):
        return given_first
    return value


DbOption = Annotated[str, typer.Option(
    "--db", envvar="SKYRM_DB", help="SQLite store file (default: $SKYRM_DB or ./skyrm.db); also accepted "
    "before the command.", default_factory=default_db_path, show_default=False, callback=_db_before_command)]


def _show_version(value: bool) -> None:
    if value:
        from skyrm import __version__

        console.print(f"skyrm {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options_before_the_command(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    db: Annotated[str | None, typer.Option("--db", envvar="SKYRM_DB", show_default=False,
                                           help="SQLite store file for the command that follows "
                                                "(default: $SKYRM_DB or ./skyrm.db).")] = None,
) -> None:
    # No docstring: the app's help text stays the one given to typer.Typer above.
    pass
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def open_store(db: str, *, create: bool = False) -> Store:
    """Open an existing store (commands other than init/import do not create one by accident)."""
    return Store(db, create=create)


def discard_new_empty_store(store: Store) -> None:
    """Remove a store file this command created when it failed before writing anything into it."""
    if store.path == ":memory:" or not store.holds_nothing():
        store.close()
        return
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(store.path + suffix).unlink(missing_ok=True)


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str, ensure_ascii=False))


ProgressCallback = Callable[[int, int | None, str], None]


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[ProgressCallback]:
    """A rich progress bar driven by the library's ``progress(done, total, note)`` callback."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
               TimeRemainingColumn()]
    # Only on a terminal: piped or redirected, a bar's last frame would sit beside the one-line error.
    with Progress(*columns, console=console_err, transient=False,
                  disable=not enabled or not console_err.is_terminal) as bar:
        task = bar.add_task(description, total=None, note="")

        def update(done: int, total: int | None = None, note: str = "") -> None:
            bar.update(task, completed=done, total=total, note=note)

        yield update


def run_reported(description: str, work: Callable[[ProgressCallback], Any], *, json_: bool, main: bool = True,
                 as_json: Callable[[Any], Any] = lambda result: result) -> Any:
    """Run ``work(progress)`` under a progress bar, and print its result as JSON under ``--json``.

    Returns the result for the caller to render, or None when nothing is left to show: the JSON
    is printed, or this is not the main process of a data-parallel launch (which shows nothing).
    """
    with progress_bar(description, enabled=main and not json_) as progress:
        result = work(progress)
    if not main:
        return None
    if json_:
        print_json(as_json(result))
        return None
    return result
