"""Shared fixtures: a pipeline config rooted in a temp folder, and small posts."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def run_mmnerd(
    *args: object,
    cwd: str | Path | None = ROOT,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``python -m mmnerd.cli ARGS`` in a fresh process, as users run it (text output
    captured); ``env`` defaults to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "mmnerd.cli", *map(str, args)], cwd=cwd, env=env, input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def error_line(stderr: str) -> str:
    """The one ``mmnerd: error:`` line of a failed command (progress lines of the work done
    before it may precede it; nothing may follow, and there is no traceback)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("mmnerd: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    """The default pipeline, writing under tmp_path."""
    return load_config(ROOT / "pipelines" / "sample.toml", [f'data_dir="{tmp_path / "data"}"'])


NO_SKIPS = "MMNERD_NO_SKIPS"
"""Set by .ci/run: a skipped test (Label Studio, browser, Dask, torch, ... missing) fails
the run, so CI can never stay green without exercising a real component."""


def _skipped(session: pytest.Session) -> list:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    if os.environ.get(NO_SKIPS) and exitstatus == 0 and _skipped(session):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    import os

    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get(NO_SKIPS) and skipped:
        terminalreporter.section(f"{NO_SKIPS}: skipped tests fail this run", red=True)
        for rep in skipped:
            where, reason = rep.nodeid, rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else ""
            terminalreporter.line(f"SKIPPED {where}: {reason}")
