"""`skyrm curate stage1|stage2|run`: the two-stage curation, with its per-iteration tables."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, print_json, progress_bar
from skyrm.judges import DEFAULT_JUDGE

STAGE_CHOICES = {"stage1": ("stage1",), "stage2": ("stage2",), "run": ("stage1", "stage2")}


@app.command()
def curate(
    stage: Annotated[str, typer.Argument(help="stage1 (human-guided iterations), stage2 (automatic "
                                         "consistency filtering) or run (both in order).",
                                         metavar="stage1|stage2|run")],
    db: DbOption,
    iterations: Annotated[int, typer.Option(help="Stage 1 iterations.")] = 2,
    rm_method: Annotated[str, typer.Option(help="head (frozen backbone, seconds), lora, full or qlora.")] = "head",
    base: Annotated[str, typer.Option(help="Reward-model backbone: minilm, a directory or a hub name.")] = "minilm",
    max_length: Annotated[int, typer.Option(help="Tokens per sequence for the reward models.")] = 256,
    embed_model: Annotated[str, typer.Option(help="Sentence encoder for retrieval and similar examples.")]
    = "minilm",
    judge: Annotated[Optional[list[str]], typer.Option(
        "--judge", help=f"Judge spec; repeat for several models (default {DEFAULT_JUDGE}).")] = None,
    judge_mode: Annotated[str, typer.Option(help="logprob (both orders' probabilities) or sample (votes).")]
    = "logprob",
    votes: Annotated[int, typer.Option(help="sample mode: verdicts per model and pair.")] = 5,
    shots: Annotated[int, typer.Option(help="Similar gold examples in each judge prompt.")] = 8,
    k_max: Annotated[int, typer.Option(help="Neighbours retrieved for a gold pair the RM gets wrong.")] = 8,
    budget_judge_calls: Annotated[Optional[int], typer.Option(
        help="Most judge model calls over the whole run (both stages).")] = None,
    min_judge_gold_acc: Annotated[float, typer.Option(
        help="A judge whose accuracy on gold pairs is below this does not vote.")] = 0.6,
    judge_check_pairs: Annotated[int, typer.Option(help="Gold pairs each judge is measured on.")] = 40,
    folds: Annotated[int, typer.Option(
        help="Stage 2: cross-fit the pool RM over K folds (1, the default: the RM scores the pairs it trained "
             "on; measured as good or better with the head RM; try 3 with lora/full, which can memorise).")] = 1,
    recycle: Annotated[str, typer.Option(help="Stage 2: drop discarded pairs, or flip them (recorded).")] = "drop",
    workdir: Annotated[str, typer.Option(help="Where reward-model checkpoints and id files go.")] = "curate",
    seed: Annotated[int, typer.Option(help="Seed for training, sampling and folds.")] = 0,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda if present).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and an estimate; change nothing.")]
    = False,
    json_: JsonOption = False,
) -> None:
    """Curate the pool: Stage 1 human-guided iterations, Stage 2 dual-RM consistency filtering.

    Every step is recorded in the store: after Ctrl-C or kill -9 the same command continues
    where it stopped. Pairs that need a human go to the annotation queue (skyrm annotate).

    Example: skyrm curate run --iterations 2 --judge llamacpp:smollm2 --budget-judge-calls 2000
    """
    from skyrm.curate import CurateConfig, plan, run_curation
    from skyrm.errors import ConfigError

    if stage not in STAGE_CHOICES:
        raise ConfigError(f"curate takes stage1, stage2 or run, got '{stage}'")
    config = CurateConfig(base=base, rm_method=rm_method, max_length=max_length, embed_model=embed_model,
                          iterations=iterations,
                          judges=tuple(judge or (DEFAULT_JUDGE,)), judge_mode=judge_mode, votes=votes, shots=shots,
                          k_max=k_max, budget_judge_calls=budget_judge_calls, min_judge_gold_acc=min_judge_gold_acc,
                          judge_check_pairs=judge_check_pairs, folds=folds, recycle=recycle, workdir=workdir,
                          seed=seed, device=device)
    store = open_store(db)
    if dry_run:
        estimate = plan(store, config, STAGE_CHOICES[stage], probe=True)
        if json_:
            print_json(estimate)
            return
        _print_plan(estimate)
        return
    with progress_bar(f"curate {stage}", enabled=not json_) as progress:
        report = run_curation(store, config, STAGE_CHOICES[stage], progress=progress)
    if json_:
        print_json(report)
        return
    print_report(report)


def _print_plan(estimate: dict[str, Any]) -> None:
    table = Table("step", "train", "retrieve", "score", "judge (pairs)", title="plan")
    for step in estimate["steps"]:
        table.add_row(step["step"], str(step.get("train", "")), str(step.get("retrieve", "")),
                      str(step.get("score", "")), str(step.get("judge", step.get("pairs", ""))))
    console.print(table)
    minutes = estimate["estimated_seconds"] / 60
    console.print(f"estimate: {estimate['judge_calls']} judge calls ({estimate['judged_pairs']} pairs), "
                  f"{estimate['trainings']} trainings, about {minutes:.1f} minutes "
                  f"({', '.join(f'{k} {v:.0f} s' for k, v in estimate['seconds_by_work'].items())})", highlight=False)
    console.print("seconds per unit: " + ", ".join(f"{k} {v:g} ({estimate['cost_sources'][k]})"
                                                   for k, v in estimate["costs"].items()), highlight=False)


def _judge_line(spec: str, info: dict[str, Any], voting: bool) -> str:
    acc = info.get("accuracy")
    figure = "n/a" if acc is None else f"{acc:.2f}"
    return (f"{spec} {figure} on {info.get('n', 0)} decided, {info.get('abstained', 0)} abstained"
            + ("" if voting else " (not voting)"))


def print_report(report: dict[str, Any]) -> None:
    """The per-iteration table, the Stage 2 figures and the pools."""
    rows = report.get("stage1") or []
    if rows:
        console.print("judges on gold (accuracy over the pairs they decided; contested pairs are abstentions): "
                      + ", ".join(_judge_line(spec, info, spec in rows[0]["voting"])
                                  for spec, info in rows[0]["judge_check"].items()), highlight=False)
        table = Table("iter", "trained on", "gold acc", "silver", "retrieved", "judged", "contested",
                      "queued", "seconds: train / embed / retrieve / judge / queue", title="stage 1")
        for row in rows:
            acc = row["gold_accuracy"]
            secs = row["seconds"]
            table.add_row(str(row["iteration"]), row["trained_on"], "n/a" if acc is None else f"{acc:.3f}",
                          str(row["silver"]), str(row["retrieved"]), str(row["judged"]), str(row["contested"]),
                          str(row["queued"]), " / ".join(f"{secs.get(k, 0):.1f}" for k in
                                                          ("train", "embed", "retrieve", "judge", "queue")))
        console.print(table)
    stage2 = report.get("stage2")
    if stage2:
        table = Table("figure", "value", title="stage 2")
        for key in ("pairs", "folds", "best_rm_gold_accuracy", "gold_rm_held_out_accuracy", "disagreed", "judged",
                    "kept", "discarded", "flipped", "reasons", "seconds"):
            if key in stage2:
                table.add_row(key, str(stage2[key]))
        console.print(table)
    pools = report.get("pools")
    if pools:
        console.print("pools: " + ", ".join(f"{k} {v}" for k, v in pools.items()), highlight=False)
