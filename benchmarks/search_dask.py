"""The exact image search on Dask workers vs local threads (issue 16).

Usage: python benchmarks/search_dask.py [--n 1000000] [--threshold 10] [--workers 2]

1M 64-bit hashes, 5% of them near copies of others (0-12 bits off; ``planted`` of
benchmarks/dedup.py), searched within ``--threshold`` bits twice, each in a fresh child
process: ``local`` (:func:`mmnerd.images.index.search` on 2 threads, as the local
executor runs it) and ``dask`` (the same search through
:class:`mmnerd.images.partitioned.PartitionedSearch` on a LocalCluster of ``--workers``
single-threaded worker processes: the blocks' arrays written once as .npy files, the tasks
memory-mapping them).  Reports the search's wall time, the driver's peak RSS (VmHWM of the
child, before and after the search) and each worker's peak RSS, and the pair-set digest
(sha256 of the sorted value pairs and their distances), which must equal the local one:
exit 1 otherwise.  Cluster start and the kernels' first load are timed apart.  Writes
benchmarks/results/search_dask.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402
from dedup import hwm_mb, planted  # noqa: E402


def digest(i: np.ndarray, j: np.ndarray, dist: np.ndarray, u: int) -> str:
    """sha256 of the value pairs ``(i, j)`` (sorted) and their distances: equal sets,
    equal digests."""
    keys = i.astype(np.int64) * u + j
    order = np.argsort(keys, kind="stable")
    h = hashlib.sha256(keys[order].tobytes())
    h.update(dist[order].astype(np.uint8).tobytes())
    return h.hexdigest()


def worker_hwm_mb() -> float:
    """Run on a Dask worker: its process's peak RSS, MiB."""
    return hwm_mb()


def child(mode: str, n: int, threshold: int, workers: int, seed: int, tasks: int) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    from mmnerd.images.index import make_plan, search

    h = planted(n, seed)
    out: dict[str, Any] = {"mode": mode, "n": n, "threshold": threshold}
    executor = None
    partitioned = None
    with tempfile.TemporaryDirectory(prefix="search-dask-") as tmp:
        if mode == "dask":
            from mmnerd.config import ExecutorConfig
            from mmnerd.executors.dask import DaskExecutor
            from mmnerd.images.partitioned import PartitionedSearch

            t0 = time.perf_counter()
            executor = DaskExecutor(ExecutorConfig(kind="dask", workers=workers))
            executor.client().wait_for_workers(workers)
            out["cluster_start_s"] = round(time.perf_counter() - t0, 2)
            partitioned = PartitionedSearch(executor, Path(tmp), tasks_per_block=tasks)
        try:
            t0 = time.perf_counter()
            search(h[:64], threshold, partitioned=partitioned)  # kernels' first load
            out["kernel_load_s"] = round(time.perf_counter() - t0, 2)
            out["driver_rss_before_mb"] = round(hwm_mb(), 1)
            t0, c0 = time.perf_counter(), time.process_time()
            m = search(h, threshold, workers=2, partitioned=partitioned)
            out["seconds"] = round(time.perf_counter() - t0, 2)
            out["driver_cpu_s"] = round(time.process_time() - c0, 2)
            out["driver_peak_rss_mb"] = round(hwm_mb(), 1)
            if executor is not None:
                peaks = executor.client().run(worker_hwm_mb)
                out["worker_peak_rss_mb"] = [round(v, 1) for _, v in sorted(peaks.items())]
        finally:
            if executor is not None:
                executor.close()
    vp = m.value_pairs
    plan = make_plan(threshold, len(m.values))
    out |= {
        "distinct": len(m.values),
        "value_pairs": len(vp),
        "item_pairs": m.n_pairs(),
        "plan": [[b.bits, b.radius] for b in plan.blocks],
        "digest": digest(vp.i, vp.j, vp.dist, len(m.values)),
    }
    print(json.dumps(out))


def run_child(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(args.n)]
    cmd += ["--threshold", str(args.threshold), "--workers", str(args.workers)]
    cmd += ["--seed", str(args.seed), "--tasks-per-block", str(args.tasks_per_block)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"mode": mode, "error": f"exit {r.returncode}: {r.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="hashes")
    ap.add_argument("--threshold", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    ap.add_argument("--tasks-per-block", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per child")
    ap.add_argument("--child", choices=["local", "dask"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n, args.threshold, args.workers, args.seed, args.tasks_per_block)
        return 0
    load = os.getloadavg()
    runs = [run_child(args, mode) for mode in ("local", "dask")]
    ref = runs[0].get("digest")
    rows = []
    for r in runs:
        if "error" in r:
            rows.append({"mode": r["mode"], "error": r["error"]})
            continue
        workers = r.get("worker_peak_rss_mb", [])
        rows.append({
            "mode": r["mode"] if r["mode"] == "local" else f"dask ({args.workers} workers)",
            "n": r["n"],
            "threshold": r["threshold"],
            "distinct": r["distinct"],
            "value_pairs": r["value_pairs"],
            "seconds": r["seconds"],
            "driver_cpu_s": r["driver_cpu_s"],
            "driver_rss_before_mb": r["driver_rss_before_mb"],
            "driver_peak_rss_mb": r["driver_peak_rss_mb"],
            "worker_peak_rss_mb": ", ".join(f"{v:.0f}" for v in workers) or "-",
            "cluster_start_s": r.get("cluster_start_s", "-"),
            "kernel_load_s": r["kernel_load_s"],
            "same_pairs": r["digest"] == ref,
            "digest": r["digest"][:16],
        })  # fmt: skip
    end = os.getloadavg()
    notes = (
        f"load average (1, 5, 15 min) at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}; plan {runs[0].get('plan')}"
    )
    save("search_dask", rows, notes)
    ok = all("error" not in r for r in runs) and all(r["same_pairs"] for r in rows)
    if not ok:
        print("FAIL: the Dask search's pair set differs from the local one (or a run failed)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
