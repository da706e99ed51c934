"""`skyrm demo`: run the whole curation pipeline on generated demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, print_json, progress_bar
from skyrm.judges import DEFAULT_JUDGE


@app.command()
def demo(
    db: DbOption,
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its data files and models.")] = Path(
        "skyrm-demo"),
    pairs: Annotated[int, typer.Option(help="Demo pairs in all (gold + pool).")] = 3000,
    gold: Annotated[int, typer.Option(help="Clean pairs that stand in for human-verified gold.")] = 300,
    judge: Annotated[Optional[list[str]], typer.Option(
        "--judge", help=f"Judge spec; repeat for several models (default {DEFAULT_JUDGE}, offline).")] = None,
    judge_calls: Annotated[int, typer.Option(help="Judge model calls for the whole curation.")] = 24,
    json_: JsonOption = False,
) -> None:
    """Run the pipeline end to end on generated demo data (offline, CPU, minutes).

    Import (gold is simulated from the demo data's known truth), attributes, a reward model on
    the noisy pool, curation Stage 1 (two iterations) and Stage 2, a reward model on the curated
    pool, both evaluated on the same held-out pairs. Run it again and it continues where it stopped.

    Example: skyrm demo --db demo.db
    """
    from skyrm.demo import DemoConfig, run_demo

    config = DemoConfig(pairs=pairs, gold=gold, judges=tuple(judge or (DEFAULT_JUDGE,)), judge_calls=judge_calls)
    store = open_store(db, create=True)
    with progress_bar("demo", enabled=not json_) as progress:
        report = run_demo(store, workdir, config, progress=progress)
    if json_:
        print_json(report)
        return
    print_demo(report)


def print_demo(report: dict[str, Any]) -> None:
    """Each step's figures, the curation tables, then the before/after summary."""
    from skyrm.cli.curate import print_report

    for step, result in report.items():
        if step == "summary":
            continue
        if step == "curate":
            console.print("[bold]curate[/bold]" + (f" ({result['state']})" if "state" in result else ""))
            print_report(result)
            continue
        table = Table(title=step, show_header=False)
        for key, value in result.items():
            table.add_row(str(key), str(value))
        console.print(table)
    table = Table("what the demo measured", "value", title="before and after curation")
    for key, value in report["summary"].items():
        table.add_row(key, str(value))
    console.print(table)
