"""Helpers for the kill -9 tests: start a command, SIGKILL it mid-way, look for leftovers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
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


def kill_mid_run(start: Callable[[float], bool], delay: float, tries: int = 4) -> bool:
    """``start(d)`` begins a fresh run and SIGKILLs it after ``d`` s (True if it was still
    running). ``delay`` comes from a clean run timed on a machine whose load changes: when
    the run finishes first, start again with half the delay; True once a kill landed."""
    for _ in range(tries):
        if start(delay):
            return True
        delay /= 2
    return False


def fresh_copy(src: Path, dst: Path) -> Path:
    """``dst`` as a new copy of ``src`` (a finished run's leftovers removed first)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def temp_files(root: Path) -> list[Path]:
    """Temp files (``*.tmp*``) a killed process left under ``root``."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]
