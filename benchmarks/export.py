"""Export benchmark: rows/s and peak RSS for 10k and 100k synthetic rows with images.

Each size (and executor) runs in its own subprocess so peak RSS is that run's alone; with
``dask`` (a 2-worker LocalCluster) the workers' peak RSS is asked on each worker.
Usage: python benchmarks/export.py [--sizes 10000,100000] [--executors local,dask]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, peak_rss_mb, save  # noqa: E402


def build_pull_stage(root: Path, n: int, shard: int = 1000) -> None:
    """A finished 'pull' stage of n annotated posts, each with a distinct small JPEG."""
    import hashlib

    from PIL import Image

    from mmnerd.io import write_json, write_posts
    from mmnerd.pipeline import MARKER
    from mmnerd.records import ImageRef, Post, Span

    folder = root / "stages" / "pull"
    images = root / "images"
    langs = ("en", "fr", "de", "es")
    labels = ("PER", "LOC", "ORG", "MISC")
    batch = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (48, 32), (i % 251, (i // 251) % 251, 90)).save(buf, "JPEG", quality=80)
        data = buf.getvalue() + i.to_bytes(4, "little")  # unique bytes per row
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}.jpg"
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        (images / rel).write_bytes(data)
        lab = labels[i % 4]
        tokens = ["Visit", "Paris", "with", "friends", str(i)]
        batch.append(
            Post(
                id=f"bench:{i:07d}",
                source="bench",
                source_id=str(i),
                lang=langs[i % 4],
                text=" ".join(tokens),
                tokens=tokens,
                spans=[Span(6, 11, lab, "Paris")],
                ner_tags=["O", f"B-{lab}", "O", "O", "O"],
                synthetic=True,
                image=ImageRef(
                    url="http://x", status="ok", sha256=sha, path=rel, width=48, height=32
                ),
            )
        )
        if len(batch) == shard:
            write_posts(folder / f"shard-{i // shard:05d}.jsonl", batch)
            batch = []
    if batch:
        write_posts(folder / f"shard-{n // shard:05d}.jsonl", batch)
    write_json(
        folder / MARKER, {"fingerprint": "bench", "run_id": "bench", "stats": {"stage": "pull"}}
    )


def worker_hwm_mb() -> float:
    """Peak RSS of this (worker) process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def child(n: int, executor: str) -> None:
    import os

    from mmnerd.config import PipelineConfig
    from mmnerd.export import export
    from mmnerd.pipeline import Runner

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PipelineConfig(data_dir=tmp, executor={"kind": executor, "workers": 2})
        build_pull_stage(Path(tmp), n)
        base = peak_rss_mb()
        load = os.getloadavg()[0]
        runner = Runner(cfg)
        workers = ""
        try:
            with Timer() as t:
                manifest, _ = export(cfg, runner)
            if executor == "dask":
                peaks = runner.executor.client().run(worker_hwm_mb).values()
                workers = " + ".join(str(v) for v in sorted(peaks))
        finally:
            if hasattr(runner.executor, "close"):
                runner.executor.close()
        rows = sum(f["rows"] for f in manifest["files"])
        size = sum(f["bytes"] for f in manifest["files"])
        print(
            json.dumps(
                {
                    "executor": executor,
                    "workers_peak_rss_mb": workers or "-",
                    "load_1m": f"{load:.1f}->{os.getloadavg()[0]:.1f}",
                    "rows": rows,
                    "seconds": round(t.seconds, 2),
                    "rows_per_s": round(rows / t.seconds),
                    "parquet_mb": round(size / 2**20, 1),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                    "rss_before_export_mb": round(base, 1),
                }
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--executors", default="local")
    ap.add_argument("--child", type=int, default=0)
    ap.add_argument("--executor", default="local", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.executor)
        return
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for ex in args.executors.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--executor", ex],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"tool": "mmnerd export", **row})
    save(
        "export",
        rows,
        "Peak RSS (the driver's) includes building the input; rss_before_export_mb is that "
        "part. Rows are built per shard on the executor (with dask: on the workers) and the "
        "driver concatenates the parts.",
    )


if __name__ == "__main__":
    main()
