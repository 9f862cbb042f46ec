"""The suite cannot stay green without testing: under .ci/run (MMNERD_NO_SKIPS) a skipped
test, e.g. a Label Studio, browser, Dask or torch test whose prerequisite is missing, fails
the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import NO_SKIPS, ROOT


def run_pytest(folder: Path, no_skips: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != NO_SKIPS}
    env["PYTHONPATH"] = str(ROOT)
    if no_skips:
        env[NO_SKIPS] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True, text=True, env=env, cwd=folder, timeout=120,
    )  # fmt: skip


def test_a_skip_fails_the_run_in_ci_mode_only(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_sessionfinish, pytest_terminal_summary  # noqa\n"
    )
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_ok():\n    pass\n\n"
        "def test_needs_label_studio():\n    pytest.skip('Label Studio server not installed')\n"
    )
    assert run_pytest(tmp_path, no_skips=False).returncode == 0
    ci = run_pytest(tmp_path, no_skips=True)
    assert ci.returncode == 1, ci.stdout
    assert "test_needs_label_studio: Skipped: Label Studio server not installed" in ci.stdout
    (tmp_path / "test_x.py").write_text("def test_ok():\n    pass\n")
    assert run_pytest(tmp_path, no_skips=True).returncode == 0


def test_ci_runs_the_suite_with_the_rule() -> None:
    assert "MMNERD_NO_SKIPS=1 make test" in (ROOT / ".ci" / "run").read_text()
