"""``skyrm preverify``: batched correct/incorrect checks of single responses, as hints.

METHOD.md Stage 1: objective pairs can be pre-verified by an LLM in batch, one
response at a time, to speed human annotators up. The result is a *hint*
(``p`` = P(correct)) in the ``hints`` table, never a label: a hint must not move a
pair into silver or gold. Only pairs whose attributes say "objective" are checked
unless ``all_pairs`` is set; pairs without attributes are counted and skipped.

logprob mode reads P("Yes") vs P("No") after the prefill; a backend without
probabilities falls back to ``votes`` sampled answers (share of "Yes").
Both responses of a pair share the instructions and conversation, so they run
back to back and the prefix cache reuses them. Deliberately not here: labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from skyrm.judges import DEFAULT_JUDGE, Judge, LogprobsUnsupported, load_judge
from skyrm.labelling.calls import CachedJudge
from skyrm.labelling.label import resolve_targets, vote_seed
from skyrm.labelling.parsing import parse_choice
from skyrm.labelling.prompts import Budget, load_template, preverify_choices, preverify_prompt
from skyrm.labelling.votes import two_way
from skyrm.records import content_hash
from skyrm.runs import Meter, Progress, tracked_run
from skyrm.store import Store

SIDES = ("chosen", "rejected")


@dataclass(frozen=True)
class PreverifyConfig:
    judge: str = DEFAULT_JUDGE
    pool: str = "unverified"
    limit: int | None = None
    all_pairs: bool = False  # also subjective pairs and pairs without attributes
    votes: int = 5  # only when the backend has no probabilities
    temperature: float = 0.7
    seed: int = 0
    chunk: int = 16
    template: str = "preverify"
    budget: Budget = field(default_factory=Budget)


@dataclass
class PreverifySummary:
    considered: int = 0
    skipped_no_attributes: int = 0
    skipped_subjective: int = 0
    already_done: int = 0
    checked_pairs: int = 0
    hints_written: int = 0
    failed: int = 0
    mode: str = "logprob"
    seconds: float = 0.0
    run_id: int | None = None
    producer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hint_key(pair_id: str, side: str, producer: str, prompt_version: str, params: dict[str, Any]) -> str:
    return content_hash([pair_id, side, producer, prompt_version, params], length=40)


def preverify(store: Store, config: PreverifyConfig, *, judge: Judge | None = None,
              progress: Progress | None = None) -> PreverifySummary:
    template = load_template(config.template)
    choices = preverify_choices(config.template)
    summary = PreverifySummary()
    ids = resolve_targets(store, config.pool)
    attributes = store.get_attributes_many(ids)
    targets = []
    for pid in ids:
        attrs = attributes.get(pid)
        if not config.all_pairs:
            if attrs is None:
                summary.skipped_no_attributes += 1
                continue
            if attrs.objectivity != "objective":
                summary.skipped_subjective += 1
                continue
        targets.append(pid)
    if config.limit is not None:
        targets = targets[:config.limit]
    summary.considered = len(targets)
    owned = judge is None
    judge = judge if judge is not None else load_judge(config.judge)
    calls = CachedJudge(store, judge, template.prompt_version)
    summary.producer = calls.producer
    params = {"seed": config.seed, "budget": asdict(config.budget), "all_pairs": config.all_pairs}
    pending = []
    for pid in targets:
        stored = {h["dedup_key"] for h in store.hints_for(pid)}
        if all(hint_key(pid, s, calls.producer, template.prompt_version, params) in stored for s in SIDES):
            summary.already_done += 1
        else:
            pending.append(pid)
    run_config = {**asdict(config), "prompt_version": template.prompt_version, "producer": calls.producer,
                  "fingerprint": judge.fingerprint}
    with tracked_run(store, "preverify", run_config) as run:
        summary.run_id = run.id
        meter = Meter(progress, len(pending))
        mode = "logprob"
        try:
            for start in range(0, len(pending), config.chunk):
                chunk = pending[start:start + config.chunk]
                pairs = store.get_pairs(chunk)
                prompts = [preverify_prompt(pairs[pid], side, config.budget, config.template)
                           for pid in chunk for side in SIDES]
                probabilities: list[tuple[float | None, dict[str, Any]]] = []
                if mode == "logprob":
                    try:
                        for lp in calls.choice_logprobs(prompts, choices):
                            p, mass = two_way(lp, *choices)
                            probabilities.append((p, {"logprobs": lp, "mass": mass, "mode": "logprob"}))
                    except LogprobsUnsupported:
                        mode = "sample"
                if mode == "sample":
                    probabilities = _sampled(calls, prompts, chunk, choices, config)
                hints = []
                for n, pid in enumerate(chunk):
                    for k, side in enumerate(SIDES):
                        p, detail = probabilities[2 * n + k]
                        if p is None:
                            summary.failed += 1
                            continue
                        hints.append({"pair_id": pid, "side": side, "kind": "correct", "producer": calls.producer,
                                      "prompt_version": template.prompt_version, "p": p,
                                      "detail": {**detail, "params": params, "backend": judge.backend,
                                                 "model": judge.model, "fingerprint": judge.fingerprint},
                                      "dedup_key": hint_key(pid, side, calls.producer, template.prompt_version,
                                                            params)})
                summary.hints_written += store.add_hints(hints)
                summary.checked_pairs += len(chunk)
                meter.advance(start + len(chunk), f"{meter.per_second(summary.checked_pairs):.2f} pairs/s")
        finally:
            summary.mode = mode
            summary.seconds = meter.seconds
            run.metrics = summary.as_dict()
            if owned:
                judge.close()
    return summary


def _sampled(calls: CachedJudge, prompts: list, chunk: list[str], choices: tuple[str, str],
             config: PreverifyConfig) -> list[tuple[float | None, dict[str, Any]]]:
    flat, seeds = [], []
    for n, pid in enumerate(chunk):
        for k in range(2):
            for v in range(config.votes):
                flat.append(prompts[2 * n + k])
                seeds.append(vote_seed(config.seed, f"{pid}:{SIDES[k]}", v))
    outputs = calls.generate(flat, max_tokens=4, temperature=config.temperature, seeds=seeds)
    out = []
    for i in range(len(prompts)):
        answers = [parse_choice(g.text, choices) for g in outputs[i * config.votes:(i + 1) * config.votes]]
        valid = [a for a in answers if a is not None]
        p = sum(a == choices[0] for a in valid) / len(valid) if valid else None
        out.append((p, {"answers": answers, "mode": "sample"}))
    return out
