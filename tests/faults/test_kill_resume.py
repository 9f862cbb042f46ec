"""kill -9 during `mmnerd collect` at seeded random moments, rerun, compare with a clean run:
identical records, nothing lost or duplicated, no temp files left."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.killing import kill_after, kill_mid_run, temp_files

pytestmark = pytest.mark.slow


def collect_cmd(data_dir: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mmnerd.cli",
        "collect",
        "-p",
        str(ROOT / "pipelines/sample.toml"),
        "--set",
        f'data_dir="{data_dir}"',
        "--set",
        "source.posts=120",
        "--set",
        "shard_size=15",
    ]


def snapshot(data_dir: Path) -> dict[str, bytes]:
    files = {}
    for p in sorted((data_dir / "stages").rglob("*.jsonl")):
        files[str(p.relative_to(data_dir))] = p.read_bytes()
    for p in sorted((data_dir / "images").rglob("*")):
        if p.is_file():
            files[str(p.relative_to(data_dir))] = p.read_bytes()
    return files


def test_kill_9_then_rerun_equals_clean_run(tmp_path):
    port = free_port()
    clean = tmp_path / "clean"
    t0 = time.perf_counter()
    subprocess.run(collect_cmd(clean, port), check=True, capture_output=True, cwd=ROOT)
    took = time.perf_counter() - t0
    expected = snapshot(clean)
    assert any(k.startswith("stages/fetch/shard-") for k in expected)
    rng = random.Random(2026)
    for trial in range(2):
        run_dir = tmp_path / f"killed{trial}"

        def start(delay: float, run_dir: Path = run_dir) -> bool:
            # a new data dir with the corpus's key, so authors get the same pseudonyms
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(clean / "secrets", run_dir / "secrets")
            return kill_after(collect_cmd(run_dir, port), delay)

        # inside the run (it took `took` s clean): the kill must land, or the trial proves nothing
        assert kill_mid_run(start, rng.uniform(0.2, 0.7) * took), trial
        subprocess.run(collect_cmd(run_dir, port), check=True, capture_output=True, cwd=ROOT)
        got = snapshot(run_dir)
        assert got.keys() == expected.keys(), f"trial {trial}"
        assert got == expected, f"trial {trial}"
        assert not temp_files(run_dir)
