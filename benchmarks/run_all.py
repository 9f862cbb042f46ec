"""`make bench`: run every benchmark script, then merge benchmarks/results/*.json into
benchmarks/results.json and benchmarks/results.md (each figure beside the competing tool's).

Usage: python benchmarks/run_all.py [--only download,dedup,...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = {  # name -> (script, args)
    "cli_startup": ("cli_startup.py", []),
    "download": ("download.py", []),
    "dedup": ("dedup.py", []),
    "labelstudio": ("labelstudio.py", []),
    "export": ("export.py", []),
    "scale": ("scale.py", []),
    "train": ("train.py", []),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(SCRIPTS))
    args = ap.parse_args()
    names = [n for n in SCRIPTS if not args.only or n in args.only.split(",")]
    failed = []
    for name in names:
        script, extra = SCRIPTS[name]
        if not (HERE / script).exists():
            print(f"== {name}: {script} not present, skipped")
            continue
        print(f"\n== {name} ({script})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / script), *extra])
        print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    merged = {}
    md = ["# Benchmark results\n"]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        merged[path.stem] = data
        md += [
            f"## {path.stem}\n",
            markdown_table(data.get("rows", [])),
            "",
            data.get("notes", ""),
            "",
        ]
    (HERE / "results.json").write_text(json.dumps(merged, indent=2))
    (HERE / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
