"""Helpers shared by the benchmark scripts: timing, peak RSS, result files, tables."""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


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
