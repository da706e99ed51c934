"""``skyrm attributes``: the preference-attribute 5-tuple for pairs that have none.

The first attempt is greedy; retries sample with new seeds. Output is constrained
by a JSON-schema grammar where the backend supports it (llama.cpp) and strictly
parsed everywhere. A pair whose attempts all fail gets no attributes: the failure
(with each attempt's output and reason) is written to ``judge_cache`` under a
failure key and to the run's metrics, and nothing in the pools changes. Because
model outputs are cached, a re-run repeats a failure without new model calls;
raise ``retries`` to try again with new seeds. Deliberately not here: prompt text
(prompts.py), parsing rules (parsing.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from skyrm.errors import ConfigError, JudgeError
from skyrm.judges import DEFAULT_JUDGE, Judge, load_judge
from skyrm.labelling.calls import CachedJudge
from skyrm.labelling.label import resolve_targets
from skyrm.labelling.parsing import ParseError, parse_attributes
from skyrm.labelling.prompts import Budget, attributes_prompt, attributes_schema, load_template
from skyrm.records import content_hash
from skyrm.runs import Meter, Progress, tracked_run
from skyrm.selection import POOL_CHOICES
from skyrm.store import Store


@dataclass(frozen=True)
class AttributesConfig:
    judge: str = DEFAULT_JUDGE
    pool: str = "all"
    limit: int | None = None
    retries: int = 2  # extra attempts after the greedy one
    temperature: float = 0.7  # for retries
    max_tokens: int = 384
    max_chars: int = 400  # bound on each free-text field when output is grammar-constrained
    constrained: bool = True  # use a grammar when the backend has one
    seed: int = 0
    chunk: int = 8
    template: str = "attributes"
    budget: Budget = field(default_factory=Budget)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError("--retries must be 0 or more")
        if self.max_tokens < 32:
            raise ConfigError("max_tokens must be at least 32 for the attributes JSON")


@dataclass
class AttributesSummary:
    targets: int = 0
    written: int = 0
    failed: int = 0
    attempts: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None
    producer: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = self.failures[:50]
        return out


def failure_key(pair_id: str, producer: str, prompt_version: str, params: dict[str, Any]) -> str:
    return "attributes-failure:" + content_hash([pair_id, producer, prompt_version, params], length=40)


def generate_attributes(store: Store, config: AttributesConfig, *, judge: Judge | None = None,
                        progress: Progress | None = None) -> AttributesSummary:
    """Write attributes for pairs in ``config.pool`` that have none yet."""
    template = load_template(config.template)
    summary = AttributesSummary()
    if config.pool in POOL_CHOICES:
        targets = store.pairs_without_attributes(config.pool, config.limit)
    else:
        ids = resolve_targets(store, config.pool)
        with_attrs = store.get_attributes_many(ids)
        targets = [i for i in ids if i not in with_attrs][:config.limit]
    summary.targets = len(targets)
    owned = judge is None
    judge = judge if judge is not None else load_judge(config.judge)
    calls = CachedJudge(store, judge, template.prompt_version)
    summary.producer = calls.producer
    schema = attributes_schema(config.max_chars) if config.constrained and judge.supports_grammar else None
    params = {"retries": config.retries, "temperature": config.temperature, "max_tokens": config.max_tokens,
              "constrained": schema is not None, "seed": config.seed}
    run_config = {**asdict(config), "prompt_version": template.prompt_version, "producer": calls.producer,
                  "fingerprint": judge.fingerprint}
    with tracked_run(store, "attributes", run_config) as run:
        summary.run_id = run.id
        meter = Meter(progress, len(targets))
        try:
            for start in range(0, len(targets), config.chunk):
                ids = targets[start:start + config.chunk]
                pairs = store.get_pairs(ids)
                prompts = {pid: attributes_prompt(pairs[pid], config.budget, config.template) for pid in ids}
                _attributes_chunk(store, calls, ids, prompts, config, schema, params, template.prompt_version,
                                  summary)
                meter.advance(start + len(ids), f"{meter.per_second(start + len(ids)):.2f} pairs/s, "
                                                f"{summary.failed} failed")
        finally:
            summary.seconds = meter.seconds
            summary.cache_hits, summary.model_calls = calls.hits, calls.calls
            run.metrics = summary.as_dict()
            if owned:
                judge.close()
    return summary


def _attributes_chunk(store: Store, calls: CachedJudge, ids: Sequence[str], prompts: dict[str, Any],
                      config: AttributesConfig, schema: dict[str, Any] | None, params: dict[str, Any],
                      prompt_version: str, summary: AttributesSummary) -> None:
    pending = list(ids)
    history: dict[str, list[dict[str, str]]] = {pid: [] for pid in ids}
    for attempt in range(config.retries + 1):
        if not pending:
            break
        temperature = 0.0 if attempt == 0 else config.temperature
        seeds = [config.seed + attempt for _ in pending]
        try:
            outputs = calls.generate([prompts[pid] for pid in pending], max_tokens=config.max_tokens,
                                     temperature=temperature, seeds=seeds, json_schema=schema)
            texts = [o.text for o in outputs]
        except JudgeError as exc:
            texts = [None] * len(pending)
            for pid in pending:
                history[pid].append({"error": str(exc), "output": ""})
        summary.attempts += len(pending)
        still = []
        for pid, text in zip(pending, texts):
            if text is None:
                still.append(pid)
                continue
            try:
                attributes = parse_attributes(text)
            except ParseError as exc:
                history[pid].append({"error": str(exc), "output": text[:500]})
                still.append(pid)
                continue
            store.add_attributes(pid, attributes, producer=calls.producer, prompt_version=prompt_version)
            summary.written += 1
        pending = still
    for pid in pending:
        record = {"error": history[pid][-1]["error"] if history[pid] else "no output", "attempts": history[pid],
                  "producer": calls.producer, "prompt_version": prompt_version, "params": params}
        store.cache_put(failure_key(pid, calls.producer, prompt_version, params), record)
        summary.failed += 1
        summary.failures.append({"pair_id": pid, "error": record["error"]})
