"""The recipes in examples/: their configs load, and every skyrm command they run exists with the flags they use.

The GPU recipes cannot run here; this keeps them from rotting when a flag or a config field is renamed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from skyrm.rm.config import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RECIPES = sorted(p for p in EXAMPLES.iterdir() if (p / "run.sh").exists())
SKYRM_CALL = re.compile(r"(?:^\s*|-m )(?:skyrm|\$SKYRM)\s+(\S+)(.*)")


def _commands(script: Path) -> list[tuple[str, list[str]]]:
    """(command, flags) for each skyrm call in a shell script, continuation lines joined."""
    text = script.read_text().replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = SKYRM_CALL.search(line)
        if match:
            words = shlex.split(match.group(2), posix=True, comments=True)
            calls.append((match.group(1), [w.split("=")[0] for w in words if w.startswith("--")]))
    return calls


def _cli_options() -> dict[str, set[str]]:
    import typer.main

    from skyrm.cli import app

    group = typer.main.get_command(app)
    options: dict[str, set[str]] = {}
    for name, command in group.commands.items():
        flags = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        options[name] = flags
        for sub_name, sub in getattr(command, "commands", {}).items():  # sub-commands (annotate status, ...)
            options[f"{name} {sub_name}"] = {opt for p in sub.params for opt in (*p.opts, *p.secondary_opts)}
    return options


def test_every_recipe_has_a_readme_that_says_what_it_needs_and_how_long():
    assert {p.name for p in RECIPES} >= {"cpu-quickstart", "gpu-24gb", "gpu-node-8"}
    for recipe in RECIPES:
        readme = (recipe / "README.md").read_text()
        assert "**Needs**" in readme and re.search(r"minutes|hours", readme), recipe


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_configs_load(recipe):
    configs = sorted(recipe.glob("*.toml"))
    assert configs, f"{recipe.name} has no config"
    for config in configs:
        loaded = load_config(config)
        assert loaded.base and loaded.method in ("head", "lora", "qlora", "full")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_commands_exist_with_their_flags(recipe):
    options = _cli_options()
    calls = _commands(recipe / "run.sh")
    assert len(calls) >= 4, calls
    for command, flags in calls:
        assert command in options, f"{recipe.name}/run.sh runs 'skyrm {command}', which does not exist"
        unknown = [flag for flag in flags if flag not in options[command]]
        assert not unknown, f"{recipe.name}/run.sh: 'skyrm {command}' has no {', '.join(unknown)}"
