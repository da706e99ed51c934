"""LLM judge commands: attributes, judge, preverify."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from skyrm.cli._common import DbOption, JsonOption, app, console, open_store, run_reported
from skyrm.judges import DEFAULT_JUDGE

JudgeSpecOption = Annotated[str, typer.Option(
    "--judge", help="Judge spec: llamacpp:PATH.gguf | llamacpp:smollm2 | hf:MODEL | openai:URL#MODEL.")]
LimitOption = Annotated[int | None, typer.Option(help="Handle at most this many pairs.")]


@app.command()
def attributes(
    db: DbOption,
    judge: JudgeSpecOption = DEFAULT_JUDGE,
    pool: Annotated[str, typer.Option(help="all, a pool name, a source, a file of ids, or comma-separated ids.")] = "all",
    limit: LimitOption = None,
    retries: Annotated[int, typer.Option(help="Extra sampled attempts after the greedy one.")] = 2,
    json_: JsonOption = False,
) -> None:
    """Write the preference-attribute 5-tuple for pairs that have none.

    Invalid model output is retried, then recorded as a failure (never guessed).

    Example: skyrm attributes --judge llamacpp:smollm2 --limit 50
    """
    from skyrm.labelling.attributes import AttributesConfig, generate_attributes

    store = open_store(db)
    config = AttributesConfig(judge=judge, pool=pool, limit=limit, retries=retries)
    summary = run_reported("attributes", lambda progress: generate_attributes(store, config, progress=progress),
                           json_=json_, as_json=lambda done: done.as_dict())
    if summary is None:
        return
    console.print(f"attributes: {summary.written} written, {summary.failed} failed of {summary.targets} pairs "
                  f"({summary.model_calls} model calls, {summary.cache_hits} from cache) by {summary.producer}")
    for failure in summary.failures[:10]:
        console.print(f"  failed {failure['pair_id']}: {failure['error']}", highlight=False)


@app.command()
def judge(
    db: DbOption,
    judge_: Annotated[list[str] | None, typer.Option(
        "--judge", help="Judge spec, repeatable: each model votes, then the models are merged.")] = None,
    mode: Annotated[str, typer.Option(help="logprob: P('1') vs P('2') in both orders; sample: K verdicts.")] = "logprob",
    votes: Annotated[int, typer.Option(help="Sampled verdicts per model and pair (sample mode).")] = 5,
    pool: Annotated[str, typer.Option(help="unverified, another pool, a source, a file of ids, comma-separated "
                                      "ids, or retrieved[:ROUND] (what skyrm retrieve selected, not yet "
                                      "labelled).")] = "unverified",
    shots: Annotated[int, typer.Option(help="Gold examples in the prompt (up to).")] = 8,
    examples: Annotated[str, typer.Option(help="nearest: the gold pairs nearest by `skyrm embed` vectors, in one "
                                          "shared order (prefix reuse); nearest-first: the same, nearest first; "
                                          "tiers: same category, then source.")] = "nearest",
    limit: LimitOption = None,
    seed: Annotated[int, typer.Option(help="Seeds candidate order, example choice and sampling.")] = 0,
    round_: Annotated[int, typer.Option("--round", help="Curation round recorded on the labels.")] = 0,
    contested: Annotated[str, typer.Option(help="Verdict for pairs whose two orders disagree: tie (stays "
                                           "unverified) or average.")] = "tie",
    batch: Annotated[int, typer.Option(help="Pairs per batch of model calls and per commit.")] = 8,
    json_: JsonOption = False,
) -> None:
    """Label pairs with local LLM judges (preference-aware: gold examples, guideline, both orders).

    Labels go to the store as kind 'llm' with backend, model, template version,
    parameters and candidate order. Re-running skips finished pairs; model outputs
    are cached, so an interrupted run resumes where it stopped.

    Example: skyrm judge --judge llamacpp:smollm2 --mode logprob --shots 8 --limit 100
    """
    from skyrm.labelling.label import JudgeConfig, label_pairs

    store = open_store(db)
    config = JudgeConfig(judges=tuple(judge_ or [DEFAULT_JUDGE]), mode=mode, votes=votes, shots=shots, pool=pool,
                         limit=limit, seed=seed, round=round_, contested=contested, chunk=batch,
                         examples=examples)
    summary = run_reported("judge", lambda progress: label_pairs(store, config, progress=progress),
                           json_=json_, as_json=lambda done: done.as_dict())
    if summary is None:
        return
    table = Table("targets", "already done", "labelled", "contested", "failed", "verdicts", "pairs/s",
                  "model calls", "cache hits")
    table.add_row(str(summary.targets), str(summary.already_done), str(summary.labelled), str(summary.contested),
                  str(summary.failed), ", ".join(f"{k} {v}" for k, v in sorted(summary.verdicts.items())),
                  f"{summary.pairs_per_second:.2f}", str(summary.model_calls), str(summary.cache_hits))
    console.print(table)
    console.print(f"judges: {', '.join(summary.producers)} (run {summary.run_id})", highlight=False)
    for producer, runtime in zip(summary.producers, summary.runtimes):
        if "repack" in runtime:
            console.print(f"  {producer}: weight repacking {'on' if runtime['repack'] else 'off'} "
                          f"({runtime['repack_reason']})", highlight=False)
    for failure in summary.failures[:10]:
        console.print(f"  failed {failure['pair_id']} ({failure['producer']}): {failure['error']}", highlight=False)


@app.command()
def preverify(
    db: DbOption,
    judge: JudgeSpecOption = DEFAULT_JUDGE,
    pool: Annotated[str, typer.Option(help="Pool, source, file of ids or comma-separated ids.")] = "unverified",
    limit: LimitOption = None,
    all_pairs: Annotated[bool, typer.Option("--all", help="Also subjective pairs and pairs without "
                                            "attributes.")] = False,
    json_: JsonOption = False,
) -> None:
    """Check single responses of objective pairs for correctness, stored as hints for annotators.

    Hints never change pools. Run `skyrm attributes` first: objectivity comes from it.

    Example: skyrm preverify --judge llamacpp:smollm2 --limit 100
    """
    from skyrm.labelling.preverify import PreverifyConfig, preverify as run_preverify

    store = open_store(db)
    config = PreverifyConfig(judge=judge, pool=pool, limit=limit, all_pairs=all_pairs)
    summary = run_reported("preverify", lambda progress: run_preverify(store, config, progress=progress),
                           json_=json_, as_json=lambda done: done.as_dict())
    if summary is None:
        return
    console.print(f"preverify: {summary.checked_pairs} pairs checked ({summary.hints_written} hints, "
                  f"{summary.failed} failed, {summary.already_done} already done; skipped "
                  f"{summary.skipped_subjective} subjective, {summary.skipped_no_attributes} without attributes) "
                  f"by {summary.producer} in {summary.mode} mode", highlight=False)
