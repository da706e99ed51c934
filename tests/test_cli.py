"""The command line: every command has help with an example, imports stay light, errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from skyrm.cli import app

runner = CliRunner()


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)


def test_core_commands_exist():
    assert {"init", "import", "export", "status", "decontam"} <= set(_commands())


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_help_with_an_example(name):
    result = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`skyrm {name} --help` shows no example"


def test_import_skyrm_and_help_load_no_heavy_backend():
    code = ("import sys, skyrm, skyrm.cli, skyrm.store, skyrm.formats\n"
            "from skyrm.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'peft', 'bitsandbytes') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out


@pytest.mark.parametrize("breakage", ["import skyrm.no_such_module", "raise ModuleNotFoundError("
                                       "\"No module named 'skyrm.cli.judge'\", name='skyrm.cli.judge')"])
def test_a_broken_command_module_fails_loudly(breakage):
    """A command module that cannot be imported stops the command line; it is never skipped in silence."""
    code = ("import importlib.abc, importlib.machinery, sys\n"
            "class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'skyrm.cli.judge':\n"
            "            return importlib.machinery.ModuleSpec(name, self)\n"
            "    def create_module(self, spec):\n"
            "        return None\n"
            "    def exec_module(self, module):\n"
            f"        {breakage}\n"
            "sys.meta_path.insert(0, Broken())\n"
            "from skyrm.cli import main\n"
            "main(['status', '--help'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr and "skyrm." in result.stderr.splitlines()[-1], result.stderr


def _skyrm(*args, db=None, check=False):
    cmd = [sys.executable, "-m", "skyrm", *args] + (["--db", str(db)] if db else [])
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def test_error_is_one_red_line_and_exit_1(tmp_path):
    result = _skyrm("status", db=tmp_path / "none.db")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no store at")
    assert "Traceback" not in result.stderr


def test_bad_file_error_names_file_and_line(tmp_path):
    path = tmp_path / "weird.jsonl"
    path.write_text('{"x": 1}\n')
    result = _skyrm("import", str(path), db=tmp_path / "s.db")
    assert result.returncode == 1
    assert f"{path}:1: cannot tell the file's format" in " ".join(result.stderr.split())


def test_init_import_status_export_cycle(tmp_path, test_data):
    db = tmp_path / "c.db"
    created = json.loads(_skyrm("init", "--json", db=db, check=True).stdout)
    assert created["db"] == str(db) and created["migrations"] and db.is_file()
    assert json.loads(_skyrm("status", "--json", db=db, check=True).stdout)["pairs"] == 0
    source = test_data / "formats" / "hf.jsonl"
    imported = _skyrm("import", str(source), "--json", db=db, check=True)
    assert json.loads(imported.stdout)[0]["pairs_new"] == 3
    status = json.loads(_skyrm("status", "--json", db=db, check=True).stdout)
    assert status["pairs"] == 3 and status["pools"]["unverified"] == 3 and status["sources"] == {"hf": {"unverified": 3}}
    out = tmp_path / "x.parquet"
    exported = json.loads(_skyrm("export", "--to", str(out), "--pool", "all", "--json", db=db, check=True).stdout)
    assert exported == {"path": str(out), "pool": "all", "shape": "trl", "pairs": 3}
    import pyarrow.parquet as pq

    # the file holds exactly the imported pairs, each the right way round (trl: prompt + chosen/rejected)
    rows = pq.read_table(out).to_pylist()
    written = sorted(json.dumps([row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]], sort_keys=True)
                     for row in rows)
    expected = sorted(json.dumps([row["chosen"], row["rejected"]], sort_keys=True)
                      for row in map(json.loads, source.read_text().splitlines()))
    assert len(rows) == exported["pairs"] and written == expected
    table = _skyrm("status", db=db, check=True).stdout
    assert "unverified" in table and "hf" in table


def test_decontam_cli_marks_and_keeps(tmp_path):
    db = tmp_path / "d.db"
    pairs = tmp_path / "p.jsonl"
    leaked = "please explain in simple words why the sky looks blue during the day and red at sunset"
    pairs.write_text(json.dumps({"prompt": leaked, "chosen": "scattering", "rejected": "paint"}) + "\n" +
                     json.dumps({"prompt": "unrelated question about cooking pasta", "chosen": "boil",
                                 "rejected": "fry"}) + "\n")
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"prompt": "Please explain, in simple words, why the sky looks blue during "
                                           "the day and red at sunset?", "chosen": "x", "rejected": "y"}) + "\n")
    _skyrm("import", str(pairs), db=db, check=True)
    result = json.loads(_skyrm("decontam", "--against", str(bench), "--json", db=db, check=True).stdout)
    assert result == {"checked": 2, "marked": 1, "benchmark_prompts": 1}
    status = json.loads(_skyrm("status", "--json", db=db, check=True).stdout)
    assert status["pairs"] == 2 and status["pools"]["discarded"] == 1
    again = json.loads(_skyrm("decontam", "--against", str(bench), "--json", db=db, check=True).stdout)
    assert again["marked"] == 0


def test_train_flags_are_read_from_the_config_table(monkeypatch, tmp_path):
    """`skyrm train` builds its flags from rm/config.py's TRAIN_FLAGS and TrainConfig's field types."""
    import dataclasses

    import skyrm.rm.config as config_module
    from skyrm.errors import ConfigError
    from skyrm.rm.config import TRAIN_FLAGS, TrainConfig

    assert set(TRAIN_FLAGS) <= {f.name for f in dataclasses.fields(TrainConfig)}
    seen = []

    def fake_load_config(path, **settings):
        seen.append((path, settings))
        raise ConfigError("stop before training")

    monkeypatch.setattr(config_module, "load_config", fake_load_config)
    args = ["train", "--db", str(tmp_path / "s.db"), "--base", "minilm", "--out", "runs/x/", "--steps", "3",
            "--lr", "0.001", "--no-gradient-checkpointing"]
    for extra in ([], ["--resume", "--config", str(tmp_path / "t.toml")]):
        result = runner.invoke(app, args + extra)
        assert isinstance(result.exception, ConfigError), result.output
    (path, plain), (toml, resumed) = seen
    assert path is None and set(plain) == set(TRAIN_FLAGS)
    assert {k: v for k, v in plain.items() if v is not None} == {
        "base": "minilm", "out": "runs/x", "steps": 3, "lr": 0.001, "gradient_checkpointing": False}
    assert toml == tmp_path / "t.toml" and resumed["resume"] is True
