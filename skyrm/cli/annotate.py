"""Human verification commands: ``skyrm annotate`` (the terminal UI), ``annotate export``, ``annotate import``."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from skyrm.cli._common import DbOption, JsonOption, app, console, console_err, open_store, print_json

annotate_app = typer.Typer(add_completion=False, rich_markup_mode="rich")
app.add_typer(annotate_app, name="annotate")


def _default_annotator() -> str:
    try:
        return os.environ.get("SKYRM_ANNOTATOR") or getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return ""


AnnotatorOption = Annotated[str, typer.Option(
    "--annotator", help="Who is labelling (default: $SKYRM_ANNOTATOR or your user name); recorded on every label.",
    default_factory=_default_annotator, show_default=False)]
PoolOption = Annotated[str, typer.Option(
    help="queue (the human queue, or the unverified pool when it is empty), a pool name, all, a source, "
         "comma-separated pair ids or a file of ids.")]
ProtocolOption = Annotated[Optional[Path], typer.Option(
    "--protocol", help="A protocol file to show and record instead of the bundled data/protocol.md.")]


def _db(ctx: typer.Context, db: str) -> str:
    """`skyrm annotate --db X export` as well as `skyrm annotate export --db X` (the latter wins)."""
    parent = ctx.parent
    own = ctx.get_parameter_source("db")
    if parent is not None and (own is None or own.name != "COMMANDLINE"):
        given = parent.get_parameter_source("db")
        if given is not None and given.name == "COMMANDLINE":
            return parent.params["db"]
    return db


@annotate_app.callback(invoke_without_command=True)
def annotate(
    ctx: typer.Context,
    db: DbOption,
    annotator: AnnotatorOption,
    pool: PoolOption = "queue",
    limit: Annotated[Optional[int], typer.Option(help="Stop after this many answers.")] = None,
    overlap: Annotated[float, typer.Option(
        help="Share of pairs also shown to a second annotator after the first, for Cohen's kappa (e.g. 0.1).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the candidate order and of the overlap share.")] = 0,
    claim_minutes: Annotated[float, typer.Option(
        help="A pair on screen is held for you this long; then another annotator may take it.")] = 30.0,
    protocol: ProtocolOption = None,
) -> None:
    """Label pairs in the terminal under the verification protocol (1 / 2 / t / s / u / n / q).

    Shows the conversation, the two responses as Candidate 1 and Candidate 2 in a seeded random
    order, the pair's attributes, any pre-verification hint and the protocol's rules; each answer
    is stored at once as a human label. Quit and run it again to continue where you stopped.
    Subcommands move batches through files for labelling elsewhere.

    Example: skyrm annotate --annotator alice --limit 50   (or: skyrm annotate export --n 200 --to batch.csv)
    """
    if ctx.invoked_subcommand is not None:
        return
    from skyrm.annotate import AnnotationError
    from skyrm.annotate.protocol import load_protocol
    from skyrm.annotate.queue import Queue, QueueConfig
    from skyrm.annotate.session import Session
    from skyrm.annotate.tui import MIN_COLUMNS, MIN_ROWS, run_tui

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise AnnotationError("skyrm annotate needs a terminal (standard input and output are not one); "
                              "to label elsewhere use 'skyrm annotate export --to batch.csv'")
    columns, rows = os.get_terminal_size(sys.stdout.fileno())
    if columns < MIN_COLUMNS or rows < MIN_ROWS:
        raise AnnotationError(f"the terminal is {columns}x{rows}: skyrm annotate needs at least "
                              f"{MIN_COLUMNS}x{MIN_ROWS} (80x24 is comfortable)")
    if limit is not None and limit < 1:
        raise AnnotationError("--limit must be at least 1")
    store = open_store(db)
    queue = Queue(store, annotator, QueueConfig(pool=pool, overlap=overlap, seed=seed, claim_minutes=claim_minutes))
    if not queue.candidates.ids and not queue.overlap_ids():
        raise AnnotationError(f"nothing to annotate in {queue.candidates.source}: choose another --pool")
    session = Session(queue, load_protocol(protocol), seed=seed, limit=limit)
    color_system = Console().color_system
    try:
        run_tui(session, sys.stdin.fileno(), sys.stdout, color_system=color_system)
    except KeyboardInterrupt:
        pass
    verdicts: dict[str, int] = {}
    for answer in session.answers:
        verdicts[answer.verdict] = verdicts.get(answer.verdict, 0) + 1
    counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "none"
    console.print(f"annotate: {annotator} stored {len(session.answers)} answer(s) in this session ({counts}); "
                  f"run the same command to continue", highlight=False, markup=False)


@annotate_app.command("export")
def export(
    ctx: typer.Context,
    db: DbOption,
    to: Annotated[Path, typer.Option("--to", help="Output file: .csv, .jsonl, or .ls.json (Label Studio tasks; "
                                     "the labelling config is written beside it as .ls.xml).")],
    n: Annotated[int, typer.Option("--n", help="How many pairs.")] = 200,
    pool: PoolOption = "queue",
    protocol: ProtocolOption = None,
    json_: JsonOption = False,
) -> None:
    """Write the next pairs to annotate to a file, candidates in a seeded order, verdict column empty.

    Fill the verdict column with 1, 2, tie or skip, then read it back with 'skyrm annotate import'.

    Example: skyrm annotate export --n 200 --to batch.csv
    """
    from skyrm.annotate.protocol import load_protocol
    from skyrm.annotate.roundtrip import export_batch

    summary = export_batch(open_store(_db(ctx, db)), to, n=n, pool=pool, protocol=load_protocol(protocol))
    if json_:
        print_json(summary.as_dict())
        return
    console.print(f"annotate export: {summary.pairs} pairs from {summary.source} to {summary.path} "
                  f"(batch {summary.batch})" + (f"; Label Studio config: {summary.config}" if summary.config else ""),
                  highlight=False, markup=False)


@annotate_app.command("import")
def import_(
    ctx: typer.Context,
    db: DbOption,
    path: Annotated[Path, typer.Argument(help="A filled export: .csv, .jsonl or a Label Studio .ls.json export.",
                                         show_default=False)],
    annotator: Annotated[str, typer.Option("--annotator", help="Who labelled the file; recorded on every label.")],
    strict: Annotated[bool, typer.Option(help="Store nothing if any row is bad.")] = False,
    protocol: ProtocolOption = None,
    json_: JsonOption = False,
) -> None:
    """Read a filled export back as human labels, checking every row first.

    Unknown pair ids, bad verdicts, a pair given twice or candidate text that is not the pair's
    are reported with file, line and field; with --strict nothing is stored if any row is bad.
    Importing the same file again stores nothing new.

    Example: skyrm annotate import batch.csv --annotator alice --strict
    """
    from skyrm.annotate.protocol import load_protocol
    from skyrm.annotate.roundtrip import import_batch

    summary = import_batch(open_store(_db(ctx, db)), path, annotator=annotator, strict=strict, protocol=load_protocol(protocol))
    if json_:
        print_json(summary.as_dict())
    for error in summary.errors:
        console_err.print(f"[yellow]skipped:[/yellow] {error}", highlight=False, soft_wrap=True, markup=True)
    if json_:
        return
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(summary.verdicts.items())) or "none"
    console.print(f"annotate import: {summary.path}: {summary.rows} rows, {summary.labels_new} new labels by "
                  f"{annotator} ({verdicts}), {summary.already_imported} already imported, "
                  f"{summary.unanswered} without a verdict, {summary.bad_rows} bad rows skipped",
                  highlight=False, markup=False)
