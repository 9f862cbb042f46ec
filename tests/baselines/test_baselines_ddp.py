"""torchrun smoke test: 2 CPU processes, gloo backend, DistributedDataParallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes(synth_export: Path, tmp_path: Path) -> None:
    rep = tmp_path / "r"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "baselines.benchmark", "--export", str(synth_export), "--report-dir", str(rep),
        "--models", "mner2m", "--epochs", "2", "--batch-size", "16", "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((rep / "benchmark.json").read_text())
    assert report["world_size"] == 2
    run = report["results"]["mner2m"]["runs"][0]
    assert run["world_size"] == 2 and run["eval_counts"]["test"] == 1
    assert (rep / "checkpoints" / "mner2m" / "seed1" / "model.pt").is_file()
    assert r.stdout.count("| Model | P | R | F1 |") == 1  # only rank 0 prints the table
