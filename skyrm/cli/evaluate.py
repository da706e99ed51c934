"""The eval command: benchmark a reward model, or compare two evaluation results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, print_json, progress_bar
from skyrm.errors import ConfigError


@app.command("eval")
def eval_(
    db: DbOption,
    model: Annotated[str | None, typer.Option(help="Reward model: a skyrm run or export directory, any "
                                              "AutoModelForSequenceClassification directory, a .gguf file or a "
                                              "short name (minilm, smollm2).")] = None,
    bench: Annotated[list[str] | None, typer.Option(
        help="NAME=PATH, repeatable. NAME: rewardbench, rewardbench2, rm-bench, judgebench, rmb, ppe, pairs; "
             "PATH: a file or a directory of files.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write report.md, results.json (per-item rewards "
                                             "included) and PNG plots here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Responses per forward pass (results do not depend on it).")] = 16,
    max_length: Annotated[int | None, typer.Option(help="Token limit per (history, response); default: the "
                                                   "model's own.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples of each file (a quick look, "
                                              "not an official figure).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of PPE's best-of-N subsampling (and of --compare).")] = 0,
    bon_draws: Annotated[int, typer.Option(help="Random N-subsets per prompt and N for best-of-N curves.")] = 16,
    shared_prefix: Annotated[str, typer.Option(
        help="on: a decoder runs a history shared by several responses (best-of-N lists, RM-Bench's six) once "
             "and continues each response from its KV cache; checked against plain scoring on the first batch.",
        metavar="on|off")] = "off",
    compare: Annotated[tuple[Path, Path] | None, typer.Option(
        help="Compare two results (results.json files or --out directories) instead: B - A per benchmark "
             "with paired bootstrap 95% intervals.", metavar="A B")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for --compare.")] = 1000,
    json_: JsonOption = False,
) -> None:
    """Evaluate a reward model on RM benchmarks with their official scoring, or compare two evaluations.

    Each distinct (history, response) is scored once, through the store's rewards
    cache: re-running, or adding a benchmark, recomputes nothing already scored.
    Benchmark items are never added to the pairs table.

    Example: skyrm eval --model runs/rm1 --bench rm-bench=../shared/data/rm-bench --bench rmb=../shared/data/rmb --out eval1
    """
    from skyrm.evaluate import report

    if compare is not None:
        from skyrm.evaluate.compare import compare_results, load_results

        comparison = compare_results(load_results(compare[0]), load_results(compare[1]), resamples=resamples,
                                     seed=seed)
        if json_:
            print_json(comparison)
        else:
            console.print(report.compare_table(comparison))
            if comparison["only_in_one"]:
                console.print(f"not compared (in one result only): {', '.join(comparison['only_in_one'])}")
        return

    from skyrm.evaluate.run import EvalConfig, load_all, parse_bench, run_eval

    if not model:
        raise ConfigError("give --model DIR to evaluate, or --compare A B to compare two results")
    config = EvalConfig(model=model, benches=tuple(parse_bench(spec) for spec in bench or []),
                        batch_size=batch_size, max_length=max_length, limit=limit, seed=seed, bon_draws=bon_draws,
                        shared_prefix=shared_prefix)
    loaded = load_all(config)  # a bad benchmark file fails here, before any model work
    store = open_store(db, create=True)  # the store is the rewards cache: create one on first use
    with progress_bar("eval", enabled=not json_) as progress:
        result = run_eval(store, config, loaded=loaded, progress=progress)
    written = report.write_outputs(result, out) if out is not None else []
    if json_:
        print_json(report.summary(result))
        return
    for bench_result in result["benchmarks"].values():
        for note in bench_result["notes"]:
            console.print(f"[yellow]note:[/yellow] {note}")
    for table in report.rich_tables(result):
        console.print(table)
    if written:
        console.print(f"wrote {', '.join(str(p) for p in written)}")
