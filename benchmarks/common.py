"""Helpers shared by the benchmark scripts: timing, peak RSS, result files, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_VENV = Path(
    os.environ.get("MMNERD_BENCH_VENV") or Path(__file__).resolve().parent / ".venv-bench"
)
"""The competitors' venv (img2dataset, imagededup, faiss, datasketch), apart from the
project's; ``MMNERD_BENCH_VENV`` moves it (the tests point it at a temporary folder)."""
BENCH_PY = BENCH_VENV / "bin" / "python"


def median_run(runs: Sequence[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    """Every run reported, none picked as the best: the median run by ``key`` (the slower
    middle one for an even count) with ``runs_s``, every run's ``key`` in order, and the
    first ``problem`` any run had."""
    order = sorted(range(len(runs)), key=lambda k: runs[k][key])
    out = dict(runs[order[len(order) // 2]])
    out["runs_s"] = [r[key] for r in runs]
    problems = [r["problem"] for r in runs if r.get("problem")]
    if problems:
        out["problem"], out["all_correct"] = problems[0], False
    return out


class BenchSetupError(RuntimeError):
    """A competitor could not be installed: the benchmark reports it and exits 1."""


def ensure_packages(
    packages: Sequence[str], pip_args: Sequence[str] = (), timeout: float = 900
) -> None:
    """Create :data:`BENCH_VENV` if missing and pip-install each of ``packages`` it lacks.

    Each package is checked with its own ``pip show`` (``pip show a b`` succeeds when any
    one of them is installed, which once left faiss, PyWavelets and matplotlib out and
    every competitor "unavailable").  Raises :class:`BenchSetupError` with pip's last
    lines when the venv cannot be made or a package cannot be installed (pip's own
    settings apply, e.g. ``PIP_NO_INDEX``)."""
    try:
        if not BENCH_PY.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(BENCH_VENV)],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        pip = [str(BENCH_PY), "-m", "pip", "--disable-pip-version-check"]
        missing = [
            p
            for p in packages
            if subprocess.run([*pip, "show", "-q", p], capture_output=True).returncode != 0
        ]
        if missing:
            subprocess.run(
                [*pip, "install", "-q", *pip_args, *missing],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = (getattr(e, "stderr", "") or "").strip()[-400:]
        raise BenchSetupError(f"cannot install {', '.join(packages)}: {e} {detail}") from None


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size of this process (or its finished children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0


def machine() -> dict[str, Any]:
    import os

    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def save(name: str, rows: list[dict[str, Any]], notes: str = "") -> Path:
    """Write benchmarks/results/<name>.json and print a markdown table of ``rows``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps(
            {"benchmark": name, "machine": machine(), "rows": rows, "notes": notes}, indent=2
        )
    )
    print(markdown_table(rows))
    if notes:
        print(f"\n{notes}")
    print(f"\n(wrote {path})")
    return path


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            f"{v:.3g}" if isinstance(v, float) else str(v) for v in (r.get(c, "") for c in cols)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
