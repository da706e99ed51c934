"""Preference-aware labelling (METHOD.md Stage 1 step 3): ``skyrm judge`` as a library call.

For each target pair: up to ``shots`` similar gold examples with their attributes
and labels, the annotation guideline, then the pair as Candidate 1 / Candidate 2.
``logprob`` mode reads P("1") vs P("2") in both candidate orders and averages them
(position-debiased); ``sample`` mode draws K verdicts alternating the orders
(self-consistency). With several judges each model's verdict becomes a label and a
merged label is written last, so the pools view (latest LLM label) uses the merge.

Resumable and idempotent: every label carries a ``dedup_key`` of (pair, producer,
template version, parameters, round); finished pairs are skipped; model outputs go
through ``judge_cache``; each chunk's labels commit in one transaction, so a kill at
any moment leaves whole pairs or nothing. Deliberately not here: backends, prompt
wording, vote maths (see backends, prompts.py, votes.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from skyrm.errors import ConfigError, InputError, JudgeError
from skyrm.judges import DEFAULT_JUDGE, Judge, LogprobsUnsupported, load_judge
from skyrm.labelling.calls import CachedJudge
from skyrm.labelling.examples import EXAMPLE_MODES, example_selector, shot_ids
from skyrm.labelling.parsing import parse_choice
from skyrm.labelling.prompts import ORDERS, Budget, PairwisePrompts, Shot, load_template, pairwise_choices, \
    pairwise_prompts
from skyrm.labelling.votes import CONTESTED_POLICIES, ModelVerdict, logprob_verdict, merge_models, sample_verdict
from skyrm.records import Attributes, Label, Pair, content_hash
from skyrm.runs import Meter, Progress, tracked_run
from skyrm.selection import parse_selection
from skyrm.store import Store

MODES = ("logprob", "sample")
GENERATION_MARGIN = 8  # tokens kept free after the prompt in logprob mode


@dataclass(frozen=True)
class JudgeConfig:
    """Everything that decides a label; saved with the run and hashed into dedup keys."""

    judges: tuple[str, ...] = (DEFAULT_JUDGE,)
    mode: str = "logprob"
    votes: int = 5  # sample mode: verdicts per model and pair
    temperature: float = 0.7  # sample mode
    max_tokens: int = 4  # sample mode: the prefill makes the digit the first token
    shots: int = 8
    pool: str = "unverified"
    limit: int | None = None
    seed: int = 0
    round: int = 0
    contested: str = "tie"  # what a contested pair's verdict is: tie (stays unverified) or average
    chunk: int = 8  # pairs per batch of model calls and per transaction
    template: str = "pairwise"
    budget: Budget = field(default_factory=Budget)
    examples: str = "nearest"  # how gold examples are picked: nearest, nearest-first or tiers (examples.py)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.votes < 1:
            raise ConfigError("--votes must be at least 1")
        if not 0 <= self.shots <= 32:
            raise ConfigError("--shots must be between 0 and 32")
        if self.contested not in CONTESTED_POLICIES:
            raise ConfigError(f"--contested must be one of {', '.join(CONTESTED_POLICIES)}")
        if not self.judges:
            raise ConfigError("give at least one --judge")
        if self.chunk < 1:
            raise ConfigError("chunk must be at least 1")
        if self.examples not in EXAMPLE_MODES:
            raise ConfigError(f"--examples must be one of {', '.join(EXAMPLE_MODES)}, got {self.examples!r}")

    def label_params(self) -> dict[str, Any]:
        """The parameters that change a verdict (not pool/limit/chunk)."""
        params: dict[str, Any] = {"mode": self.mode, "shots": self.shots, "seed": self.seed,
                                  "contested": self.contested, "budget": asdict(self.budget)}
        if self.mode == "sample":
            params.update(votes=self.votes, temperature=self.temperature, max_tokens=self.max_tokens)
        if self.examples != "nearest":  # the default adds nothing, so earlier dedup keys stay valid
            params["examples"] = self.examples
        return params


@dataclass
class JudgeSummary:
    targets: int = 0
    already_done: int = 0
    labelled: int = 0
    labels_written: int = 0
    failed: int = 0
    contested: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    model_calls: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    run_id: int | None = None
    producers: list[str] = field(default_factory=list)
    runtimes: list[dict[str, Any]] = field(default_factory=list)  # per judge: e.g. llama.cpp's repack choice

    @property
    def pairs_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pairs_per_second"] = round(self.pairs_per_second, 4)
        out["failures"] = self.failures[:50]
        return out


# ------------------------------------------------------------------ targets
def resolve_targets(store: Store, pool: str, limit: int | None = None) -> list[str]:
    """Pair ids from a pool name, a source name, a file of ids, or comma-separated ids.

    ``retrieved`` / ``retrieved:ROUND``: the pairs ``skyrm retrieve`` selected that have no LLM label yet.
    """
    ids = _listed_targets(store, pool)
    if ids is None:
        ids = store.pair_ids(pool)
    return ids[:limit] if limit is not None else ids


def target_blocks(store: Store, pool: str, block: int = 5000) -> Iterator[list[str]]:
    """``resolve_targets`` a block at a time: a pool or source name streams from the store, so
    a run over a large pool never lists all of it. A bad selection raises here, at the call."""
    ids = _listed_targets(store, pool)
    if ids is None:
        return store.iter_pair_id_blocks(pool, batch=block)
    return (ids[start:start + block] for start in range(0, len(ids), block))


def _listed_targets(store: Store, pool: str) -> list[str] | None:
    """The targets of the selections that name their pairs (retrieved pairs, ids, a file of ids);
    None for a pool or source name."""
    from skyrm.retrieve import retrieved_targets

    retrieved = retrieved_targets(store, pool, "llm")
    if retrieved is not None:
        return retrieved
    choice = parse_selection(pool)
    if choice.kind != "ids":
        return None
    ids = list(choice.ids)
    found = store.get_pairs(ids)
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise InputError(f"{len(unknown)} pair id(s) not in the store, e.g. {unknown[0]}: check --pool")
    return list(dict.fromkeys(ids))


def dedup_key(pair_id: str, producer: str, prompt_version: str, params: dict[str, Any], round_: int) -> str:
    return content_hash({"pair": pair_id, "producer": producer, "prompt_version": prompt_version,
                         "params": params, "round": round_}, length=40)


def vote_seed(seed: int, pair_id: str, index: int) -> int:
    return int(content_hash([seed, pair_id, index], length=8), 16) & 0x7FFFFFFF


def _pending_targets(store: Store, blocks: Iterable[list[str]], key_of: Callable[[str], str],
                     limit: int | None) -> tuple[list[str], int]:
    """The targets without a final label (at most ``limit``), and how many have one.

    Targets come a block at a time and their keys are looked up per block, so a limited
    run on a large pool holds ``limit`` pending ids, not the pool's ids and keys.
    """
    pending: list[str] = []
    done_count = 0
    for ids in blocks:
        keys = [key_of(pid) for pid in ids]
        done = store.has_label_keys(keys)
        done_count += sum(key in done for key in keys)
        if limit is None or len(pending) < limit:
            pending.extend(pid for pid, key in zip(ids, keys) if key not in done)
    return (pending if limit is None else pending[:limit]), done_count


# ------------------------------------------------------------ one judge
@dataclass
class _Target:
    pair_id: str
    pair: Pair
    attributes: Attributes | None
    shots: list[Shot]


class _JudgeRunner:
    """One model's part of a run: fitting prompts to its context, calling it, aggregating."""

    def __init__(self, store: Store, judge: Judge, config: JudgeConfig, prompt_version: str):
        self.judge, self.config = judge, config
        self.calls = CachedJudge(store, judge, prompt_version)
        self.choices = pairwise_choices(config.template)
        self.mode = config.mode
        self.fell_back = False

    @property
    def producer(self) -> str:
        return self.calls.producer

    def _fits(self, prompts: PairwisePrompts) -> bool:
        limit = self.judge.context_length
        if limit is None:
            return True
        room = GENERATION_MARGIN if self.mode == "logprob" else self.config.max_tokens + GENERATION_MARGIN
        for prompt in prompts.prompts.values():
            count = self.judge.count_tokens(self.judge.render(prompt))
            if count is not None and count + room > limit:
                return False
        return True

    def build(self, target: _Target) -> tuple[PairwisePrompts, int] | None:
        """Prompts that fit the context: drop shots first, then shorten the target's texts."""
        budget = self.config.budget
        for _ in range(3):
            for n in range(len(target.shots), -1, -1):
                prompts = pairwise_prompts(target.pair, target.attributes, target.shots[:n], budget,
                                           self.config.template)
                if self._fits(prompts):
                    return prompts, n
            budget = Budget(budget.response_chars // 2, budget.conversation_chars // 2,
                            budget.example_response_chars, budget.example_conversation_chars)
        return None

    def run(self, targets: list[_Target], built: list[tuple[PairwisePrompts, int] | None]
            ) -> list[tuple[ModelVerdict | None, dict[str, Any]]]:
        """One verdict (or None) per target, with the provenance detail for its label."""
        ready = [i for i, b in enumerate(built) if b is not None]
        results: list[tuple[ModelVerdict | None, dict[str, Any]]] = [
            (None, {"error": "prompt does not fit the model's context"}) for _ in targets]
        if not ready:
            return results
        if self.mode == "logprob":
            try:
                flat = [built[i][0].prompts[order] for i in ready for order in ORDERS]
                logprobs = self.calls.choice_logprobs(flat, self.choices)
            except LogprobsUnsupported:
                self.mode, self.fell_back = "sample", True
            else:
                for n, i in enumerate(ready):
                    verdict = logprob_verdict(logprobs[2 * n], logprobs[2 * n + 1], self.choices,
                                              self.config.contested)
                    results[i] = (verdict, {"logprobs": {"chosen-first": logprobs[2 * n],
                                                         "rejected-first": logprobs[2 * n + 1]}})
                return results
        prompts, seeds, owners = [], [], []
        for i in ready:
            target = targets[i]
            start = random.Random(f"{self.config.seed}:{target.pair_id}").randrange(2)
            for v in range(self.config.votes):
                order = ORDERS[(start + v) % 2]
                prompts.append(built[i][0].prompts[order])
                seeds.append(vote_seed(self.config.seed, target.pair_id, v))
                owners.append((i, order))
        generations = self.calls.generate(prompts, max_tokens=self.config.max_tokens,
                                          temperature=self.config.temperature, seeds=seeds)
        votes: dict[int, list[dict[str, Any]]] = {i: [] for i in ready}
        for (i, order), seed, generation in zip(owners, seeds, generations):
            votes[i].append({"order": order, "seed": seed, "text": generation.text[:200],
                             "answer": parse_choice(generation.text, self.choices)})
        for i in ready:
            verdict = sample_verdict(votes[i], self.choices, self.config.contested)
            results[i] = (verdict, {} if verdict is not None else
                          {"error": "no valid vote", "votes": votes[i]})
        return results


# --------------------------------------------------------------- the run
def _label_detail(runner: _JudgeRunner, verdict: ModelVerdict, extra: dict[str, Any], built: PairwisePrompts,
                  n_shots: int, target: _Target, params: dict[str, Any]) -> dict[str, Any]:
    detail = {"backend": runner.judge.backend, "model": runner.judge.model, "fingerprint": runner.judge.fingerprint,
              "params": params, "mode": runner.mode, "fallback_to_sample": runner.fell_back,
              "shots": shot_ids(target.shots[:n_shots]), "truncated": built.truncated,
              "attributes_in_prompt": target.attributes is not None, "choices": list(runner.choices)}
    detail.update(verdict.as_detail())
    detail.update(extra)
    return detail


def label_pairs(store: Store, config: JudgeConfig, *, judges: Sequence[Judge] | None = None,
                progress: Progress | None = None) -> JudgeSummary:
    """Label the target pairs with the configured judges; returns what happened."""
    template = load_template(config.template)
    prompt_version = template.prompt_version
    summary = JudgeSummary()
    targets = target_blocks(store, config.pool)  # a bad --pool fails before a model loads
    owned = judges is None
    loaded = list(judges) if judges is not None else [load_judge(spec) for spec in config.judges]
    runners = [_JudgeRunner(store, judge, config, prompt_version) for judge in loaded]
    producers = [r.producer for r in runners]
    if len(set(producers)) != len(producers):
        raise ConfigError(f"the same model is given twice as a judge: {', '.join(producers)}")
    summary.producers = producers
    summary.runtimes = [dict(getattr(judge, "runtime", {})) for judge in loaded]
    params = config.label_params()
    merged_producer = "merge:" + "+".join(producers) if len(runners) > 1 else None
    final_producer = merged_producer or producers[0]

    def final_key(pid: str) -> str:
        return dedup_key(pid, final_producer, prompt_version, params, config.round)

    # --limit counts pairs still to label, so repeating a limited run makes progress
    pending, summary.already_done = _pending_targets(store, targets, final_key, config.limit)
    summary.targets = summary.already_done + len(pending)

    run_config = {**asdict(config), "prompt_version": prompt_version, "producers": producers,
                  "fingerprints": [j.fingerprint for j in loaded], "runtimes": summary.runtimes}
    with tracked_run(store, "judge", run_config) as run:
        summary.run_id = run.id
        selector = example_selector(store, config.examples, seed=config.seed) if config.shots else None
        meter = Meter(progress, len(pending))
        try:
            # Order the work so consecutive targets share their few-shot block (prefix reuse).
            attributes = store.get_attributes_many(pending)
            selections = []
            for start in range(0, len(pending), 500):
                chunk_ids = pending[start:start + 500]
                pairs = store.get_pairs(chunk_ids)
                for pid in chunk_ids:
                    selections.append(selector.select(pid, pairs[pid], attributes.get(pid), config.shots)
                                      if selector else [])
            if selector:
                selections = selector.arrange(selections)
            keyed = [(tuple(shot_ids(shots)), pid, shots) for pid, shots in zip(pending, selections)]
            keyed.sort(key=lambda item: (item[0], item[1]))
            for start in range(0, len(keyed), config.chunk):
                block = keyed[start:start + config.chunk]
                pairs = store.get_pairs([pid for _, pid, _ in block])
                targets = [_Target(pid, pairs[pid], attributes.get(pid), shots) for _, pid, shots in block]
                _label_chunk(store, runners, targets, config, params, prompt_version, merged_producer, summary)
                meter.advance(start + len(block), f"{meter.per_second(summary.labelled):.2f} pairs/s, "
                                                  f"{summary.contested} contested, {summary.failed} failed")
        finally:
            summary.seconds = meter.seconds
            summary.cache_hits = sum(r.calls.hits for r in runners)
            summary.model_calls = sum(r.calls.calls for r in runners)
            run.metrics = summary.as_dict()
            if owned:
                for judge in loaded:
                    judge.close()
    return summary


def _label_chunk(store: Store, runners: list[_JudgeRunner], targets: list[_Target], config: JudgeConfig,
                 params: dict[str, Any], prompt_version: str, merged_producer: str | None,
                 summary: JudgeSummary) -> None:
    per_runner = []
    for runner in runners:
        built = [runner.build(t) for t in targets]
        try:
            results = runner.run(targets, built)
        except JudgeError as exc:
            # Isolate the failing pair(s): a batch error must not cost the whole chunk.
            if len(targets) == 1:
                results = [(None, {"error": str(exc)})]
            else:
                results = []
                for target, b in zip(targets, built):
                    try:
                        results += runner.run([target], [b])
                    except JudgeError as single:
                        results.append((None, {"error": str(single)}))
        per_runner.append((runner, built, results))

    labels: list[Label] = []
    keys: list[str] = []
    for index, target in enumerate(targets):
        model_verdicts = []
        for runner, built, results in per_runner:
            verdict, extra = results[index]
            if verdict is None:
                summary.failures.append({"pair_id": target.pair_id, "producer": runner.producer,
                                         "error": str(extra.get("error", ""))})
                continue
            prompts, n_shots = built[index]
            model_verdicts.append((runner, verdict))
            labels.append(Label(target.pair_id, "llm", runner.producer, verdict.verdict, verdict.confidence,
                                prompt_version, verdict.order, config.round,
                                _label_detail(runner, verdict, extra, prompts, n_shots, target, params)))
            keys.append(dedup_key(target.pair_id, runner.producer, prompt_version, params, config.round))
        if not model_verdicts:
            summary.failed += 1
            continue
        final = model_verdicts[0][1]
        if merged_producer is not None:
            final = merge_models([v for _, v in model_verdicts], config.contested)
            detail = {"params": params, "judges": [
                {"producer": r.producer, "confidence": v.confidence, "verdict": v.verdict, "contested": v.contested}
                for r, v in model_verdicts],
                "missing": [r.producer for r, _, res in per_runner if res[index][0] is None]}
            detail.update(final.as_detail())
            labels.append(Label(target.pair_id, "llm", merged_producer, final.verdict, final.confidence,
                                prompt_version, final.order, config.round, detail))
            keys.append(dedup_key(target.pair_id, merged_producer, prompt_version, params, config.round))
        summary.labelled += 1
        summary.contested += int(final.contested)
        summary.verdicts[final.verdict] = summary.verdicts.get(final.verdict, 0) + 1
    summary.labels_written += store.add_labels(labels, dedup_keys=keys)

