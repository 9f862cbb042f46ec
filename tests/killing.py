"""Helpers for the kill -9 tests: start a command, SIGKILL it mid-way, look for leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def kill_after(argv: list[str], delay: float) -> bool:
    """Run ``argv`` from the repo root and SIGKILL it after ``delay`` s; True if it was
    still running then (False: it finished first)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def temp_files(root: Path) -> list[Path]:
    """Temp files (``*.tmp*``) a killed process left under ``root``."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]
