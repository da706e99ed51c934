"""Reward-model evaluation: benchmark loaders, official scoring rules, reports, plots, comparisons.

- ``metrics``: the scoring rules as pure functions (ties count as wrong);
- ``task``: what a benchmark task is (load files, per-example units, tables);
  ``tasks/``: one module per benchmark (RewardBench v1/v2, RM-Bench, JudgeBench,
  RMB, PPE, plain pairs); ``benchmarks``: the lazy registry that finds them by name;
- ``run``: score each distinct response once (through the store's rewards
  cache) and summarise; ``compare``: paired bootstrap deltas between results;
- ``report`` and ``plots``: tables, report.md, results.json and PNGs.

Importing this package loads no model code; benchmark items never enter the
pairs table (they must never become training data).
"""
