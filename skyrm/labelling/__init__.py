"""Labelling: the flows that ask judges about pairs and write what they answer to the store.

``label.py`` (``skyrm judge``: verdicts as labels), ``attributes.py`` (``skyrm
attributes``) and ``preverify.py`` (``skyrm preverify``: hints), with what they share:
``prompts.py`` (versioned templates), ``parsing.py`` (strict answer parsers),
``votes.py`` (verdicts from probabilities or samples), ``examples.py`` (few-shot gold
examples) and ``calls.py`` (judge calls memoised in ``judge_cache``).

It sits above ``skyrm.judges`` (backends behind a lazy registry, no store) and below
curation and the CLI. Importing it loads no backend: judges are loaded by spec when a
flow runs. Deliberately not here: backends and model loading (``skyrm.judges``), which
pairs a pool names (``skyrm.selection``), the run lifecycle (``skyrm.runs``).
"""
