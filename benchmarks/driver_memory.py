"""Driver memory of the global stages as the corpus grows: dedup, gold, split, export.

    .venv/bin/python benchmarks/driver_memory.py [--sizes 100000,1000000]

For each size a seeding process writes a finished ``fetch`` stage of N synthetic
text-only posts (the scale benchmark's multilingual templates: 2% reposted texts,
tokens and gold entity spans, shards of 1,000), then one fresh process per stage (as one
command per stage would) runs ``dedup`` (keys per shard, search over arrays, marks per
shard), ``gold`` (a shard stage), ``split`` (order keys per shard, an external sort and
the greedy in the driver, writes per shard) and ``export`` (rows and IMGID lines per
shard, parts concatenated, manifest, card) with the local executor and reports its peak
RSS (VmHWM) after its imports and at the end.  ``--clusters`` marks the reposted texts as
clusters (split then holds their posts in memory).  Prints a table and writes
benchmarks/results/driver_memory.json; exits 1 when the driver's peak (the largest over
the stages) at the largest size exceeds ``--goal`` times the smallest size's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

_TOKEN = re.compile(r"\S+")


def hwm_mb() -> float:
    """Peak RSS of this process, MiB (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def seed(root: Path, n: int, as_stage: str = "fetch", clusters: bool = False) -> None:
    """Write ``n`` posts as the finished ``fetch`` stage under ``root`` (streamed);
    ``clusters``: each reposted text and its source marked as a cluster (4% of the posts
    in clusters of 2, as dedup would mark them)."""
    from scale import _ENTITY_RE, _LABEL_OF, post_text, source_of

    from mmnerd.config import PipelineConfig
    from mmnerd.io import write_json
    from mmnerd.pipeline import MARKER, StageStats, stage_dir, write_shard
    from mmnerd.records import Post, Span

    cfg = PipelineConfig(name="mem", data_dir=str(root))
    folder = stage_dir(cfg, as_stage)
    folder.mkdir(parents=True, exist_ok=True)
    stats = StageStats(as_stage)
    for lo in range(0, n, cfg.shard_size):
        batch = []
        for k in range(lo, min(n, lo + cfg.shard_size)):
            lang, text = post_text(source_of(k)[0])
            toks = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
            spans = [Span(m.start(), m.end(), _LABEL_OF[m.group()], m.group())
                     for m in _ENTITY_RE.finditer(text)]  # fmt: skip
            batch.append(
                Post(
                    id=f"mem:{k:08d}",
                    source="mem",
                    source_id=str(k),
                    text=text,
                    lang=lang,
                    tokens=[text[a:b] for a, b in toks],
                    token_offsets=toks,
                    gold_spans=spans,
                    created_at=f"2024-01-01T00:00:{k % 60:02d}Z",
                )
            )
            text_src = source_of(k)[0]
            if clusters and text_src != k:
                batch[-1].cluster_id = f"text-{text_src}"
            elif clusters and k % 50 == 0 and k + 11 < n:  # the source of post k + 11
                batch[-1].cluster_id = f"text-{k}"
        write_shard(folder, f"{lo // cfg.shard_size:05d}", batch, stats)
    write_json(
        folder / MARKER, {"fingerprint": "seeded", "run_id": "seed", "stats": stats.to_dict()}
    )


STAGES = ("dedup", "gold", "split", "export")


def measure(root: Path, name: str) -> dict[str, Any]:
    """Run stage ``name`` (its inputs are done) on the seeded data dir in this fresh process;
    its seconds, the VmHWM before (imports) and after."""
    from mmnerd.config import PipelineConfig
    from mmnerd.dedup import DedupStage
    from mmnerd.export import export
    from mmnerd.export.splits import SplitStage
    from mmnerd.pipeline import Runner
    from mmnerd.sources.gold import GoldStage

    cfg = PipelineConfig(name="mem", data_dir=str(root), export={"labels": "source"})
    runner = Runner(cfg)
    stage = {"dedup": DedupStage(), "gold": GoldStage(), "split": SplitStage(cfg)}.get(name)
    if name == "export":
        import matplotlib.pyplot  # noqa: F401  (the card's import, counted as a fixed cost)
        import pyarrow.parquet  # noqa: F401
    base = round(hwm_mb(), 1)
    t0 = time.perf_counter()
    if stage is not None:
        n = runner.run_stage(stage).items_in
    else:  # gold and split are done: only the files are written
        manifest, _ = export(cfg, runner)
        n = sum(f["rows"] for f in manifest["files"])
    secs = round(time.perf_counter() - t0, 1)
    return {"stage": name, "items_in": n, "seconds": secs, "imports_rss_mb": base,
            "peak_rss_mb": round(hwm_mb(), 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--stages", default=",".join(STAGES), help="stages to measure, in order")
    ap.add_argument("--name", default="driver_memory", help="results/<name>.json")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs (paths printed)")
    ap.add_argument(
        "--seed-as",
        default="fetch",
        help="the stage the posts are seeded as: fetch, or dedup (no duplicates marked: "
        "then measure --stages gold,split,export without the text join)",
    )
    ap.add_argument(
        "--clusters",
        action="store_true",
        help="mark each reposted text and its source as a cluster (4%% of the posts)",
    )
    ap.add_argument(
        "--goal",
        type=float,
        default=1.3,
        help="fail when the driver peak at the largest size exceeds this multiple of the "
        "smallest size's (issue 16: 1.3)",
    )
    ap.add_argument("--_seed", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._seed:
        seed(Path(args._seed[0]), int(args._seed[1]), args._seed[2], args._seed[3] == "1")
        return 0
    if args._measure:
        print("RESULT " + json.dumps(measure(Path(args._measure[0]), args._measure[1])))
        return 0
    rows: list[dict[str, Any]] = []
    peaks: dict[int, float] = {}
    t_all = time.perf_counter()
    for n in [int(x) for x in args.sizes.split(",")]:
        root = Path(tempfile.mkdtemp(prefix=f"mmnerd-drivermem-{n}-"))
        try:
            t0 = time.perf_counter()
            clusters = "1" if args.clusters else "0"
            cmd = [sys.executable, __file__, "--_seed", str(root), str(n), args.seed_as, clusters]
            subprocess.run(cmd, check=True)
            seeded = time.perf_counter() - t0
            for name in args.stages.split(","):  # a fresh process per stage, as per command
                load = os.getloadavg()[0]
                r = subprocess.run(
                    [sys.executable, __file__, "--_measure", str(root), name],
                    stdout=subprocess.PIPE,
                    text=True,
                    check=True,
                )
                line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
                st = json.loads(line[7:])
                print(json.dumps(st), file=sys.stderr, flush=True)
                load_s = f"{load:.1f}->{os.getloadavg()[0]:.1f}"
                rows.append({"posts": n, **st, "load_1m": load_s})
        finally:
            if args.keep:
                print(f"kept {root}", flush=True)
            else:
                shutil.rmtree(root, ignore_errors=True)
        peaks[n] = max(r["peak_rss_mb"] for r in rows if r["posts"] == n)
        print(f"{n:,} posts: seeded in {seeded:.0f} s; driver peak {peaks[n]} MiB", flush=True)
    sizes = sorted(peaks)
    ratio = peaks[sizes[-1]] / peaks[sizes[0]] if len(sizes) > 1 else 1.0
    per_stage = {
        name: [r["peak_rss_mb"] for r in rows if r["stage"] == name and r["posts"] in sizes]
        for name in STAGES
    }
    by_stage = ", ".join(f"{k} {v[-1] / v[0]:.2f}x" for k, v in per_stage.items() if len(v) > 1)
    notes = (
        f"Driver peak RSS (VmHWM of the stage's process, local executor; the largest over "
        f"the stages) at {sizes[-1]:,} / {sizes[0]:,} posts: {ratio:.2f}x (goal <= {args.goal}x); "
        f"per stage: {by_stage}. "
        f"Total {time.perf_counter() - t_all:.0f} s on {os.cpu_count()} cores."
    )
    save(args.name, rows, notes)
    if ratio > args.goal:
        print(f"FAILED: driver peak {ratio:.2f}x from {sizes[0]:,} to {sizes[-1]:,} posts "
              f"> goal {args.goal}x", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
