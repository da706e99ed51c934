"""Store and data commands: init, import, export, status, decontam.

With --json each command prints one JSON value on stdout and nothing else there:
init and export an object, import a list of one object per file, status and
decontam an object (errors stay one line on stderr, exit code 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from skyrm.cli._common import (DbOption, JsonOption, app, console, discard_new_empty_store, open_store, print_json,
                               progress_bar, run_reported)
from skyrm.errors import InputError
from skyrm.formats import FORMATS, SHAPES


@app.command()
def init(db: DbOption, json_: JsonOption = False) -> None:
    """Create the SQLite store, or upgrade an existing one to the current schema.

    Example: skyrm init --db lab.db
    """
    store = open_store(db, create=True)
    if json_:
        print_json({"db": store.path, "migrations": store.migrations_applied()})
        return
    console.print(f"store ready: [bold]{store.path}[/bold] ({len(store.migrations_applied())} migrations applied)")


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="JSONL, JSON array or Parquet files (optionally .gz), "
                                                "directories to search for them, or - for JSON lines on "
                                                "standard input.")],
    db: DbOption,
    source: Annotated[str | None, typer.Option(help="Source name (default: the file name without suffixes; "
                                               "for a file found in a directory, its path below that directory; "
                                               "'stdin' for -).")] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"Row shape: {', '.join(FORMATS)}.")] = "auto",
    as_: Annotated[str, typer.Option("--as", help="pool: unverified pairs; gold: the file's labels are "
                                     "human-verified; silver: they are LLM labels.")] = "pool",
    strict: Annotated[bool, typer.Option(help="Any bad row fails the import and nothing is stored.")] = False,
    json_: JsonOption = False,
) -> None:
    """Import preference pairs: validate, deduplicate by content, quarantine bad rows.

    Streams files of any size. An interrupted import resumes when run again, and
    a finished one adds nothing. A file none of whose first 100 rows gives a pair
    (wrong --format, not a data file, empty) fails and stores nothing.

    Example: skyrm import data/demo_pairs.jsonl.gz --source demo
    """
    from skyrm.ingest import import_files, named_paths

    named_paths(files)  # a missing file fails here, before a store is created for nothing
    existed = Path(db).exists()
    store = open_store(db, create=True)
    try:
        with progress_bar("import", enabled=not json_) as progress:
            summaries = import_files(store, files, fmt=fmt, source=source, as_=as_, strict=strict,
                                     progress=progress)
    except BaseException:
        if not existed:
            discard_new_empty_store(store)
        raise
    if json_:
        print_json([s.as_dict() for s in summaries])
        return
    table = Table("file", "source", "rows", "new pairs", "already stored", "bad rows", "labels")
    for s in summaries:
        note = " (already imported)" if s.skipped_done else ""
        table.add_row(s.path + note, s.source, str(s.rows), str(s.pairs_new), str(s.pairs_seen),
                      str(s.bad_rows), str(s.labels))
    console.print(table)
    for s in summaries:
        for reason, count in sorted(s.reasons.items(), key=lambda item: -item[1])[:10]:
            console.print(f"  quarantined {count} × {reason}  [dim]({s.path})[/dim]")


@app.command()
def export(
    db: DbOption,
    to: Annotated[Path, typer.Option("--to", help="Output .jsonl, .jsonl.gz or .parquet file.")],
    pool: Annotated[str, typer.Option(help="curated, gold, silver, unverified, discarded, trainable, all, "
                                      "or a source name.")] = "curated",
    shape: Annotated[str, typer.Option(help=f"Row shape: {', '.join(SHAPES)}.")] = "trl",
    json_: JsonOption = False,
) -> None:
    """Export a pool in the shape TRL, OpenRLHF or LLaMA-Factory read.

    Pairs are oriented by their labels: a pair judged the other way round is
    written flipped. `skyrm import` reads every shape back. A pool with no pairs
    writes nothing and fails, listing the pools and sources the store holds.
    --json prints {"path", "pool", "shape", "pairs"}.

    Example: skyrm export --to curated.jsonl --pool curated --shape trl
    """
    from skyrm.ingest import export_pairs

    store = open_store(db)
    count = run_reported("export", lambda progress: export_pairs(store, to, pool=pool, shape=shape,
                                                                 progress=progress),
                         json_=json_, as_json=lambda n: {"path": str(to), "pool": pool, "shape": shape, "pairs": n})
    if count is None:
        return
    console.print(f"wrote {count} pairs to [bold]{to}[/bold]")


@app.command()
def status(db: DbOption, json_: JsonOption = False) -> None:
    """Show pairs per source and pool, labels per kind and producer, quarantine and runs.

    Example: skyrm status --json
    """
    store = open_store(db)
    summary = store.summary()
    from skyrm.annotate.agreement import human_status

    summary["human"] = human_status(store)
    if json_:
        print_json(summary)
        return
    console.print(f"[bold]{summary['db']}[/bold]: {summary['pairs']} pairs, "
                  f"{summary['attributes']} with attributes, {summary['quarantine']} quarantined rows")
    pools = Table("pool", "pairs")
    for pool, count in summary["pools"].items():
        pools.add_row(pool, str(count))
    console.print(pools)
    pool_names = list(summary["pools"])
    sources = Table("source", *pool_names)
    for source, counts in sorted(summary["sources"].items()):
        sources.add_row(source, *(str(counts.get(p, 0)) for p in pool_names))
    if summary["sources"]:
        console.print(sources)
    if summary["labels"]:
        labels = Table("label kind", "producer", "labels")
        for row in summary["labels"]:
            labels.add_row(row["kind"], row["producer"], str(row["count"]))
        console.print(labels)
    if summary["runs"]:
        runs = Table("run", "kind", "name", "status", "path")
        for run in summary["runs"]:
            runs.add_row(str(run["id"]), run["kind"], run["name"], run["status"], run["path"])
        console.print(runs)
    _print_human(summary["human"])


def _print_human(human: dict) -> None:
    """The human section of `skyrm status` (skyrm.annotate.agreement.human_status)."""
    if not human["labels"] and not human["queue"]["queued"]:
        return
    console.print(f"human: {human['labels']} standing labels on {human['pairs']} pairs; queue "
                  f"{human['queue']['waiting']} waiting of {human['queue']['queued']} queued; "
                  f"{human['claims']} pairs on screen now", highlight=False, markup=False)
    if human["annotators"]:
        table = Table("annotator", "labels", "terminal", "imported", "chosen", "rejected", "tie", "skip",
                      "labels/h", "median s")
        for row in human["annotators"]:
            v = row["verdicts"]
            table.add_row(row["annotator"], str(row["labels"]), str(row["in_terminal"]), str(row["imported"]),
                          str(v["chosen"]), str(v["rejected"]), str(v["tie"]), str(v["skip"]),
                          "-" if row["labels_per_hour"] is None else f"{row['labels_per_hour']:.1f}",
                          "-" if row["median_seconds"] is None else f"{row['median_seconds']:.1f}")
        console.print(table)
    if human["kappa"]:
        table = Table("annotators", "overlapping pairs", "agreement", "Cohen's kappa")
        for row in human["kappa"]:
            table.add_row(" vs ".join(row["annotators"]), str(row["pairs"]),
                          "-" if row["agreement"] is None else f"{row['agreement']:.3f}",
                          "-" if row["kappa"] is None else f"{row['kappa']:.3f}")
        console.print(table)
    categories = sorted(set(human["vs_judge"]) | set(human["vs_rm"]), key=lambda c: (c == "all", c))
    if categories:
        table = Table("task category", "human vs judge", "pairs", "human vs RM", "pairs")
        for category in categories:
            judge, rm = human["vs_judge"].get(category), human["vs_rm"].get(category)
            table.add_row(category, f"{judge['agreement']:.3f}" if judge else "-", str(judge["pairs"]) if judge else "0",
                          f"{rm['agreement']:.3f}" if rm else "-", str(rm["pairs"]) if rm else "0")
        console.print(table)


@app.command()
def decontam(
    db: DbOption,
    against: Annotated[list[Path] | None, typer.Option(
        "--against", help="Benchmark file(s) whose first-turn prompts must not leak into training data; "
        "several may follow one --against, or repeat it.", show_default=False)] = None,
    more: Annotated[list[Path] | None, typer.Argument(
        help="More benchmark files (what follows --against A: B C...).", show_default=False)] = None,
    n: Annotated[int, typer.Option(help="n-gram length in words.")] = 13,
    json_: JsonOption = False,
) -> None:
    """Mark pairs sharing an n-gram with a benchmark prompt (a rule label; nothing is deleted).

    Example: skyrm decontam --against rm-bench/chat_filtered.json judgebench.jsonl
    """
    from skyrm.decontam import decontaminate

    against = [*(against or []), *(more or [])]
    if not against:
        raise InputError("no benchmark files: give them with --against FILE [FILE...]")
    if n < 1:
        raise InputError("--n must be at least 1")
    store = open_store(db)
    result = run_reported("decontam", lambda progress: decontaminate(store, against, n=n, progress=progress),
                          json_=json_)
    if result is not None:
        console.print(f"checked {result['checked']} pairs against {result['benchmark_prompts']} benchmark "
                      f"prompts: {result['marked']} newly marked as contaminated")
