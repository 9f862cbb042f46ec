"""CLI start-up: wall time of `mmnerd --help` (goal < 0.5 s) beside `label-studio --help`.

Usage: python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows = [
        {
            "tool": "mmnerd --help",
            "median_s": round(wall([str(ROOT / ".venv/bin/mmnerd"), "--help"], args.runs), 3),
        }
    ]
    ls = ROOT / ".venv-ls/bin/label-studio"
    if not ls.exists():  # the competitor is missing: fail, do not print mmnerd alone
        print(f"FAILED: {ls} not found (make setup installs Label Studio)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": tmp}
        rows.append(
            {
                "tool": "label-studio --help",
                "median_s": round(wall([str(ls), "--help"], args.runs, env), 3),
            }
        )
    save("cli_startup", rows, "goal: mmnerd --help < 0.5 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
