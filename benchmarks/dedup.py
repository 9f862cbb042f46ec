"""Benchmark deduplication side by side: mmnerd vs imagehash, imagededup, faiss, numpy.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dedup.py [--quick] [--out FILE.json]

Hashing: ``--images`` generated 800x600 JPEGs (gradients, shapes, half with
noise; cached under benchmarks/results/cache/dedup-images/), hashed by
``imagehash.phash`` (one process), by mmnerd inline with and without the JPEG
draft fast path, by mmnerd with 2 processes, and by imagededup's
``PHash.encode_images`` (1 process and 2 processes); how many hashes differ
from imagehash's and by how many bits.

Search: ``n`` random 64-bit hashes with 5% planted near copies (0-12 bits
flipped), all pairs within ``--threshold`` (10) by
:func:`mmnerd.images.index.search` (2 threads), imagededup
``PHash.find_duplicates(encoding_map=...)`` (its Linux default
``brute_force_cython``, 2 workers), faiss ``IndexBinaryFlat.range_search``
(2 threads) and numpy brute force (chunked XOR + popcount, only up to
``--brute-max``); recall of each against brute force.  Plus a "meme" corpus:
``--meme`` copies of one identical hash among 20k, where imagededup's BK-tree
(``search_method="bktree"``) is also tried.

The competing tools run as subprocesses of benchmarks/.venv-bench/bin/python
(the venv download.py uses for img2dataset; created here if missing), each run
bounded by ``--tool-timeout`` seconds; a failure (timeout, exception type,
install error) is recorded in the JSON and the run goes on.  imagededup is
installed with ``--no-deps`` because its package imports torch/torchvision
(for its CNN method) and scikit-learn at import time, which cannot be installed
here; a stub package directory (benchmarks/.venv-bench/imagededup-shim/, written
by this script, put on PYTHONPATH of those subprocesses only) provides empty
``torch``, ``torchvision`` and ``sklearn`` modules so that ``imagededup.methods``
imports.  Its hashing and search code paths use none of them (numpy, Pillow,
PyWavelets, scipy, tqdm and its own Cython extension).

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import BENCH_PY, BENCH_VENV, BenchSetupError, ensure_packages  # noqa: E402

SHIM = BENCH_VENV / "imagededup-shim"
IMAGE_CACHE = HERE / "results" / "cache" / "dedup-images"
BENCH_PACKAGES = ["faiss-cpu", "numpy", "Pillow", "PyWavelets", "scipy", "tqdm", "matplotlib"]


def make_image(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A random RGB picture: colour gradients, rectangles/ellipses, noise in half of them."""
    rng = np.random.default_rng(seed)
    w, h = size
    gw, gh = max(2, w // 4), max(2, h // 4)
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    base = np.zeros((gh, gw, 3), np.float32)
    for c in range(3):
        a, b, ph = rng.uniform(-3, 3, 3)
        base[..., c] = 127 + 100 * np.sin(a * x / gw * np.pi + b * y / gh * np.pi + ph)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x1, y1], fill=col)
    if rng.random() < 0.5:
        noise = rng.standard_normal((h, w, 3), dtype=np.float32) * 12
        img = Image.fromarray((np.asarray(img) + noise).clip(0, 255).astype(np.uint8))
    return img


def _save_image(i: int) -> None:
    p = IMAGE_CACHE / f"{i:05d}.jpg"
    if not p.exists():
        tmp = p.with_suffix(".tmp")
        make_image(i).save(tmp, "JPEG", quality=85)
        tmp.replace(p)


def ensure_images(n: int, folder: Path) -> list[Path]:
    """The first ``n`` cached images, linked into ``folder`` (imagededup hashes a directory)."""
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(n) if not (IMAGE_CACHE / f"{i:05d}.jpg").exists()]
    if todo:
        print(f"  generating {len(todo)} images in {IMAGE_CACHE} ...", flush=True)
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(_save_image, todo, chunksize=20))
    paths = []
    for i in range(n):
        p = folder / f"{i:05d}.jpg"
        os.symlink(IMAGE_CACHE / p.name, p)
        paths.append(p)
    return paths


# -- bench venv (competitors) ---------------------------------------------------------
SHIM_MODULES = [
    "torch",
    "torch/nn",
    "torch/utils",
    "torch/utils/data",
    "torchvision",
    "torchvision/models",
    "torchvision/models/vision_transformer",
    "torchvision/transforms",
    "sklearn",
    "sklearn/metrics",
    "sklearn/metrics/pairwise",
]
SHIM_SOURCE = '''"""Benchmark-only stub (benchmarks/dedup.py): imagededup imports without torch."""


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub


class _Stub(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Stub
'''


def ensure_bench_env() -> dict[str, str]:
    """Create/extend the bench venv; {"faiss": version or "unavailable: why", ...} (an
    unavailable competitor fails the benchmark, see :func:`bench_corpus`)."""
    status: dict[str, str] = {}
    try:
        ensure_packages(BENCH_PACKAGES)
        ensure_packages(["imagededup"], pip_args=["--no-deps"], timeout=600)
    except BenchSetupError as e:
        return {"imagededup": f"unavailable: {e}", "faiss": f"unavailable: {e}"}
    for mod in SHIM_MODULES:
        init = SHIM / mod / "__init__.py"
        if not init.exists() or init.read_text() != SHIM_SOURCE:
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text(SHIM_SOURCE)
    probe = {
        "imagededup": "import imagededup; from imagededup.methods import PHash;"
        " print(imagededup.__version__)",
        "faiss": "import faiss; faiss.IndexBinaryMultiHash; print(faiss.__version__)",
    }
    for name, code in probe.items():
        r = subprocess.run(
            [str(BENCH_PY), "-c", code], capture_output=True, text=True, env=_tool_env()
        )
        ok = r.returncode == 0
        status[name] = r.stdout.strip() if ok else "unavailable: " + r.stderr.strip()[-400:]
    return status


def _tool_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(SHIM),
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "1",
    }


def run_tool(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``spec`` in a bench-venv subprocess; its JSON result or {"error": ...}."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            [str(BENCH_PY), __file__, "_tool", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_tool_env(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout (> {timeout:.0f} s)", "wall_s": round(timeout, 1)}
    wall = round(time.perf_counter() - t0, 2)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return {"error": f"exit {r.returncode}: {r.stderr.strip()[-300:]}", "wall_s": wall}
    return {**json.loads(lines[-1]), "wall_s": wall}


def tool_main(spec: dict[str, Any]) -> None:
    """Inside the bench venv: run one competitor, print one JSON line."""
    kind = spec["kind"]
    if kind == "imagededup_encode":
        from imagededup.methods import PHash

        t0 = time.perf_counter()
        enc = PHash(verbose=False).encode_images(
            image_dir=spec["folder"], num_enc_workers=spec["workers"]
        )
        print(json.dumps({"seconds": time.perf_counter() - t0, "hashes": enc}))
        return
    h = np.load(spec["hashes"])
    t = spec["threshold"]
    if kind == "imagededup_search":
        from imagededup.methods import PHash

        enc = {str(k): format(int(v), "016x") for k, v in enumerate(h)}
        t0 = time.perf_counter()
        try:
            res = PHash(verbose=False).find_duplicates(
                encoding_map=enc,
                max_distance_threshold=t,
                search_method=spec["method"],
                num_dist_workers=spec["workers"],
            )
        except BaseException as e:  # RecursionError on identical hashes in the BK-tree
            secs = time.perf_counter() - t0
            print(json.dumps({"seconds": secs, "error": type(e).__name__, "detail": str(e)[:200]}))
            return
        secs = time.perf_counter() - t0
        pairs = [(int(a), int(b)) for a, dups in res.items() for b in dups if int(a) < int(b)]
        arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    elif kind in ("faiss", "faiss_multihash"):
        import faiss

        faiss.omp_set_num_threads(2)
        codes = np.ascontiguousarray(h.astype("<u8")).view(np.uint8).reshape(-1, 8)
        t0 = time.perf_counter()
        if kind == "faiss":
            index = faiss.IndexBinaryFlat(64)
        else:  # nhash tables of b bits, nflip flips each: exact when nhash*(nflip+1) > t
            index = faiss.IndexBinaryMultiHash(64, spec["nhash"], spec["b"])
            index.nflip = spec["nflip"]
        index.add(codes)
        lims, dist, ids = index.range_search(codes, t + 1)  # distance < radius
        qi = np.repeat(np.arange(len(h), dtype=np.int64), np.diff(lims.astype(np.int64)))
        keep = (qi < ids) & (dist <= t)
        arr = np.stack([qi[keep], ids[keep].astype(np.int64)], axis=1)
        secs = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown tool {kind}")
    np.save(spec["pairs_out"], arr)
    print(json.dumps({"seconds": secs, "pairs": len(arr)}))


# -- hashing ------------------------------------------------------------------------------
def bench_hashing(
    n_images: int, folder: Path, tools: dict[str, str], timeout: float
) -> dict[str, Any]:
    import imagehash

    from mmnerd.images import hashing
    from mmnerd.images.hashing import hash_files, hash_image, hex_to_int

    paths = ensure_images(n_images, folder)

    def rate(fn: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = fn()
        return n_images / (time.perf_counter() - t0), out

    def ref_all() -> list[int]:
        out = []
        for p in paths:
            with Image.open(p) as img:
                out.append(hex_to_int(str(imagehash.phash(img))))
        return out

    ref_rate, ref = rate(ref_all)
    exact_rate, exact = rate(lambda: hash_files(paths, "phash", workers=1, fast=False))
    fast_rate, fast = rate(lambda: hash_files(paths, "phash", workers=1, fast=True))
    par_rate, par = rate(lambda: hash_files(paths, "phash", workers=2, fast=True))
    ref_arr = np.array(ref, dtype=np.uint64)
    assert np.array_equal(exact, ref_arr), "fast=False must equal imagehash"
    assert np.array_equal(fast, par)
    dist = np.bitwise_count(fast ^ ref_arr)
    rates = {
        "imagehash.phash (1 process)": round(ref_rate, 1),
        "mmnerd exact, fast=False (1 process)": round(exact_rate, 1),
        "mmnerd fast (1 process)": round(fast_rate, 1),
        "mmnerd fast (2 processes)": round(par_rate, 1),
    }
    out: dict[str, Any] = {"images": n_images, "size": [800, 600], "images_per_s": rates}
    # imagededup PHash.encode_images, 1 and 2 processes (time inside the subprocess)
    errors = {}
    for workers, label in ((0, "1 process"), (2, "2 processes")):
        name = f"imagededup PHash.encode_images ({label})"
        if not tools.get("imagededup", "").startswith("unavailable"):
            spec = {"kind": "imagededup_encode", "folder": str(folder), "workers": workers}
            r = run_tool(spec, timeout)
        else:
            r = {"error": tools.get("imagededup", "not installed")}
        if "error" in r:
            errors[name] = r["error"]
            continue
        rates[name] = round(n_images / r["seconds"], 1)
        if workers == 0:
            theirs = np.array([int(r["hashes"][p.name], 16) for p in paths], dtype=np.uint64)
            d2 = np.bitwise_count(theirs ^ ref_arr)
            out["imagededup_vs_imagehash"] = {
                "exact": round(float((d2 == 0).mean()), 4),
                "within_2_bits": round(float((d2 <= 2).mean()), 4),
                "median_bits": float(np.median(d2)),
            }
    if errors:
        out["errors"] = errors
    ide = rates.get("imagededup PHash.encode_images (1 process)")
    if ide:
        out["mmnerd_fast_vs_imagededup_1_process"] = round(fast_rate / ide, 2)
        ide2 = rates.get("imagededup PHash.encode_images (2 processes)")
        if ide2:
            out["mmnerd_fast_vs_imagededup_2_processes"] = round(par_rate / ide2, 2)
    out["fast_vs_imagehash"] = {
        "exact": round(float((dist == 0).mean()), 4),
        "within_2_bits": round(float((dist <= 2).mean()), 4),
        "bits_histogram": {str(k): int(v) for k, v in enumerate(np.bincount(dist)) if v},
    }
    # agreement for other draft sizes (how draft_min was chosen), on the first 300 images
    sub = paths[: min(300, n_images)]
    by_draft = {}
    saved = hashing.PHash.draft_min
    try:
        for dm in (32, 64, 128, 256):
            hashing.PHash.draft_min = dm
            t0 = time.perf_counter()
            h = np.array([hash_image(p, "phash") for p in sub], dtype=np.uint64)
            r2 = len(sub) / (time.perf_counter() - t0)
            d = np.bitwise_count(h ^ ref_arr[: len(sub)])
            by_draft[dm] = {
                "images_per_s": round(r2, 1),
                "exact": round(float((d == 0).mean()), 4),
                "within_2_bits": round(float((d <= 2).mean()), 4),
            }
    finally:
        hashing.PHash.draft_min = saved
    out["fast_by_draft_min"] = by_draft
    return out


# -- search -------------------------------------------------------------------------------
def planted(n: int, seed: int, share: float = 0.05) -> np.ndarray:
    """Random 64-bit hashes; ``share`` of them overwritten by copies of others (0-12 bits off)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = int(n * share)
    src = rng.integers(0, n, k)
    dst = rng.integers(0, n, k)
    flips = np.zeros(k, dtype=np.uint64)
    for _ in range(12):
        on = rng.random(k) < 0.5
        flips[on] |= np.uint64(1) << rng.integers(0, 64, int(on.sum())).astype(np.uint64)
    h[dst] = h[src] ^ flips
    return h


def meme_corpus(n: int, copies: int, seed: int) -> np.ndarray:
    """``planted(n)`` with ``copies`` items replaced by one identical hash (a reposted meme)."""
    h = planted(n, seed)
    rng = np.random.default_rng(seed + 1)
    h[rng.choice(n, copies, replace=False)] = h[0]
    return h


def _keys(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    return np.unique(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))


def hwm_mb() -> float:
    """Peak RSS of this process image, MiB (VmHWM: ru_maxrss would report a parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def brute_rows(h: np.ndarray, queries: np.ndarray, t: int, workers: int = 2) -> np.ndarray:
    """Reference: ``(k, 2)`` pairs ``(query position, item)`` with ``item != query`` and
    ``popcount(h[q] ^ h[item]) <= t``, by numpy XOR + popcount of each query against all
    of ``h`` (chunks of 2 queries per thread: ~160 MB of temporaries each at 10M)."""
    from concurrent.futures import ThreadPoolExecutor

    def chunk(lo: int) -> np.ndarray:
        q = queries[lo : lo + 2]
        d = np.bitwise_count(h[q][:, None] ^ h[None, :])
        r, c = np.nonzero(d <= t)
        keep = c != q[r]
        return np.stack([q[r[keep]], c[keep]], axis=1)

    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(chunk, range(0, len(queries), 2)))
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)


def query_pairs(m: Any, queries: np.ndarray) -> np.ndarray:
    """From mmnerd's compact :class:`Matches`: ``(k, 2)`` pairs ``(query, item)`` for every
    item within the threshold of each query (identical values included, itself not)."""
    inv = m.inverse
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv, minlength=len(m.values))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    by_value: dict[int, list[int]] = {}
    for q in queries.tolist():
        by_value.setdefault(int(inv[q]), []).append(q)
    out: list[tuple[int, int]] = []

    def items(v: int) -> list[int]:
        return order[starts[v] : starts[v] + sizes[v]].tolist()

    for v, qs in by_value.items():
        same = items(v)
        out += [(q, x) for q in qs for x in same if x != q]
    vp = m.value_pairs
    hit = np.isin(vp.i, list(by_value)) | np.isin(vp.j, list(by_value))
    for a, b in zip(vp.i[hit].tolist(), vp.j[hit].tolist(), strict=True):
        for mine, other in ((a, b), (b, a)):
            for q in by_value.get(mine, ()):
                out += [(q, x) for x in items(other)]
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def ours_main(spec: dict[str, Any]) -> None:
    """In a child process of the project venv: mmnerd's search on one hash file, timed;
    peak RSS (VmHWM) read right after the search (the loaded hashes included); then,
    if asked, the brute-force check of ``queries`` random items against all hashes."""
    from mmnerd.images.index import make_plan, search

    h = np.load(spec["hashes"])
    t = spec["threshold"]
    t0 = time.perf_counter()
    search(h[:64], t)  # loads the compiled kernels (once per process): not search time
    load_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    m = search(h, t, workers=2)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    plan = make_plan(t, len(m.values))
    out: dict[str, Any] = {
        "seconds": secs,
        "cpu_s": cpu,
        "peak_rss_mb": round(hwm_mb(), 1),
        "pairs": m.n_pairs(),
        "plan": [[b.bits, b.radius] for b in plan.blocks],
        "kernel_load_s": round(load_s, 2),
    }
    if spec.get("pairs_out"):
        p = m.pairs()
        np.save(spec["pairs_out"], np.stack([p.i, p.j], axis=1))
    nq = spec.get("queries", 0)
    if nq:
        queries = np.sort(np.random.default_rng(len(h)).choice(len(h), nq, replace=False))
        t1 = time.perf_counter()
        ref = brute_rows(h, queries, t)
        t_ref = time.perf_counter() - t1
        mine = query_pairs(m, queries)
        n = len(h)
        a, b = _keys(ref[:, 0], ref[:, 1], n), _keys(mine[:, 0], mine[:, 1], n)
        out["query_check"] = {
            "queries": nq,
            "brute_force_pairs": len(a),
            "mmnerd_pairs": len(b),
            "identical": bool(np.array_equal(a, b)),
            "brute_force_s": round(t_ref, 1),
        }
    print(json.dumps(out))


def run_ours(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """:func:`ours_main` in a child process of this venv; its JSON or {"error": ...}."""
    try:
        r = subprocess.run(
            [sys.executable, __file__, "_ours", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout (> {timeout:.0f} s)"}
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return {"error": f"exit {r.returncode}: {r.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def bench_corpus(
    name: str,
    h: np.ndarray,
    t: int,
    work: Path,
    args: argparse.Namespace,
    tools: dict[str, str],
    skip: dict[str, str],
    failures: list[str],
    imagededup_methods: tuple[str, ...] = ("brute_force_cython",),
) -> list[dict[str, Any]]:
    """One row per tool for one hash set; ``skip`` (tool -> reason or rate) carries
    quadratic estimates between sizes; ``failures`` collects failed checks."""
    from mmnerd.images.index import brute_force_pairs

    n = len(h)
    rows: list[dict[str, Any]] = []
    slug = "".join(c if c.isalnum() else "_" for c in name)
    path = work / f"{slug}.npy"
    np.save(path, h)
    truth = None
    if n <= args.brute_max:
        t0 = time.perf_counter()
        bp = brute_force_pairs(h, t)
        truth = _keys(bp.i, bp.j, n)
        secs = time.perf_counter() - t0
        rows.append({"tool": "numpy brute force", "seconds": round(secs, 3), "pairs": len(truth)})
    else:
        rows.append({"tool": "numpy brute force", "error": f"not run (n > {args.brute_max:,})"})
    ours_pairs = work / f"{slug}-mmnerd-pairs.npy" if n <= args.flat_max else None
    spec = {"hashes": str(path), "threshold": t, "pairs_out": str(ours_pairs or "")}
    if n > args.brute_max and n > args.flat_max:
        spec["queries"] = args.queries
    r = run_ours(spec, args.ours_timeout)
    row: dict[str, Any] = {"tool": "mmnerd search (2 threads)"}
    if "error" in r:
        row["error"] = r["error"]
        failures.append(f"mmnerd at {name}: {r['error']}")
    else:
        row |= {k: v for k, v in r.items() if k != "seconds"} | {"seconds": round(r["seconds"], 3)}
        row["cpu_s"] = round(r["cpu_s"], 2)
        if truth is not None and ours_pairs is not None:
            a = np.load(ours_pairs)
            row["identical_to_brute_force"] = bool(
                np.array_equal(_keys(a[:, 0], a[:, 1], n), truth)
            )
            if not row["identical_to_brute_force"]:
                failures.append(f"mmnerd at {name}: pair set differs from brute force")
        qc = r.get("query_check")
        if qc and not qc["identical"]:
            failures.append(
                f"mmnerd at {name}: differs from brute force on {qc['queries']} queries"
            )
        limit = args.targets.get(n)
        if limit is not None:
            row["target_s"] = limit
            if r["seconds"] > limit:
                failures.append(f"mmnerd at {name}: {r['seconds']:.1f} s > target {limit} s")
        if n >= 10_000_000 and r["peak_rss_mb"] > args.rss_target_mb:
            failures.append(
                f"mmnerd at {name}: peak RSS {r['peak_rss_mb']} MiB > {args.rss_target_mb} MiB"
            )
    rows.append(row)
    mh = {"kind": "faiss_multihash", "nhash": 4, "b": 16, "nflip": max(0, t // 4)}
    specs: list[tuple[str, str, dict[str, Any], int | None, float]] = [
        (f"imagededup find_duplicates ({meth}, 2 workers)", "imagededup",
         {"kind": "imagededup_search", "method": meth, "workers": 2}, None, args.tool_timeout)
        for meth in imagededup_methods
    ]  # fmt: skip
    specs.append(("faiss IndexBinaryFlat range_search (2 threads)", "faiss", {"kind": "faiss"},
                  args.flat_max, args.flat_timeout))  # fmt: skip
    specs.append((f"faiss IndexBinaryMultiHash (nhash 4, b 16, nflip {mh['nflip']}, 2 threads)",
                  "faiss", mh, args.multihash_max, args.tool_timeout))  # fmt: skip
    for label, tool, tspec, max_n, timeout in specs:
        status = tools.get(tool, "")
        if status.startswith("unavailable"):
            rows.append({"tool": label, "error": status})
            failures.append(f"{label}: {status[:200]}")
            continue
        why = skip.get(label, "")
        if max_n is not None and n > max_n:
            why = f"not run (n > {max_n:,}; --{'flat' if 'Flat' in label else 'multihash'}-max)"
        rate = float(skip.get(f"_rate:{label}", 0))
        if not why and max_n is None and not rate and n > 100_000:
            why = "not run: quadratic, and no smaller size measured in this run"
        if not why and max_n is None and rate * n**2 > timeout:  # imagededup: quadratic
            why = f"not run: quadratic, est. {rate * n**2:,.0f} s > timeout {timeout:.0f} s"
        if why:
            rows.append({"tool": label, "error": why})
            continue
        out = work / f"{slug}-{tool}-pairs.npy"
        r = run_tool({**tspec, "hashes": str(path), "threshold": t, "pairs_out": str(out)}, timeout)
        row = {"tool": label}
        if "error" in r:
            row["error"] = r["error"]
            row |= {k: r[k] for k in ("detail",) if k in r}
            if "seconds" in r:
                row["seconds"] = round(r["seconds"], 3)
            if r["error"].startswith("exit"):  # crashed: a competitor that cannot run
                failures.append(f"{label} at {name}: {r['error'][:200]}")
            if r["error"].startswith(("timeout", "exit")):
                skip[label] = f"not run: failed at n={n:,} ({r['error'][:80]})"
        else:
            row["seconds"] = round(r["seconds"], 3)
            row["pairs"] = r["pairs"]
            a = np.load(out)
            theirs = _keys(a[:, 0], a[:, 1], n)
            if truth is not None:
                row["recall"] = round(len(np.intersect1d(theirs, truth)) / max(1, len(truth)), 4)
            if ours_pairs is not None and ours_pairs.exists():
                o = np.load(ours_pairs)
                same = bool(np.array_equal(theirs, _keys(o[:, 0], o[:, 1], n)))
                row["identical_to_mmnerd"] = same
                if not same and "Flat" in label:
                    failures.append(
                        f"mmnerd at {name}: pair set differs from faiss IndexBinaryFlat"
                    )
            if max_n is None:
                skip[f"_rate:{label}"] = str(r["seconds"] / n**2)
        rows.append(row)
    for r in rows:
        r["corpus"] = name
        r["n"] = n
        r["threshold"] = t
        print(f"  {name:<14} {_fmt_row(r)}", flush=True)
    return rows


def _fmt_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['tool']:<60} {r['error']}"
    extra = ""
    for key in ("recall", "identical_to_brute_force", "identical_to_mmnerd", "peak_rss_mb"):
        if key in r:
            extra += f"  {key} {r[key]}"
    if "query_check" in r:
        qc = r["query_check"]
        extra += f"  {qc['queries']:,} queries vs brute force: identical {qc['identical']}"
    return f"{r['tool']:<60} {r['seconds']:8.2f} s  pairs {r['pairs']:,}{extra}"


def bench_search(
    sizes: list[int],
    t: int,
    args: argparse.Namespace,
    tools: dict[str, str],
    deadline: float,
    failures: list[str],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    skip: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mmnerd-dedupbench-") as tmp:
        work = Path(tmp)
        for n in sizes:
            if time.monotonic() > deadline:
                rows.append({"corpus": f"planted {n:,}", "n": n, "error": "skipped (budget)"})
                failures.append(f"planted {n:,}: skipped (budget)")
                continue
            label = f"planted {n // 1000:,}k" if n < 1_000_000 else f"planted {n // 10**6}M"
            rows += bench_corpus(label, planted(n, seed=n), t, work, args, tools, skip, failures)
        if args.meme:
            rows += bench_corpus(
                f"meme {args.meme:,}/20k",
                meme_corpus(20_000, args.meme, seed=7),
                t,
                work,
                args,
                tools,
                skip,
                failures,
                imagededup_methods=("bktree", "brute_force_cython"),
            )
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


# -- driver -------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000, help="0 skips the hashing part")
    ap.add_argument("--sizes", default="20000,100000,1000000,3000000,10000000")
    ap.add_argument("--threshold", type=int, default=10)
    ap.add_argument("--brute-max", type=int, default=100_000, help="full brute force up to n")
    ap.add_argument("--flat-max", type=int, default=1_000_000, help="faiss IndexBinaryFlat up to n")
    ap.add_argument("--flat-timeout", type=float, default=1500, help="seconds for faiss Flat")
    ap.add_argument("--multihash-max", type=int, default=3_000_000, help="faiss MultiHash up to n")
    ap.add_argument(
        "--queries",
        type=int,
        default=10_000,
        help="above --flat-max: random items checked against every hash by brute force",
    )
    ap.add_argument("--targets", default="3000000:20,10000000:120", help="n:seconds,... for mmnerd")
    ap.add_argument("--rss-target-mb", type=float, default=2560, help="mmnerd peak at >= 10M")
    ap.add_argument("--meme", type=int, default=3000, help="identical copies in the meme corpus")
    ap.add_argument("--tool-timeout", type=float, default=300, help="seconds per competitor run")
    ap.add_argument("--ours-timeout", type=float, default=1200, help="seconds per mmnerd run")
    ap.add_argument("--budget", type=float, default=40, help="minutes; later sizes are skipped")
    ap.add_argument("--quick", action="store_true", help="500 images, 20k hashes")
    ap.add_argument("--out", default=str(HERE / "results" / "dedup.json"))
    args = ap.parse_args()
    if args.quick:
        args.images, args.sizes = 500, "20000"
    args.targets = {
        int(k): float(v) for k, v in (x.split(":") for x in args.targets.split(",") if x)
    }
    deadline = time.monotonic() + args.budget * 60
    sizes = [int(s) for s in args.sizes.split(",")]
    t_start = time.perf_counter()
    failures: list[str] = []
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print("bench venv (imagededup --no-deps + stub torch/torchvision/sklearn, faiss-cpu) ...")
    tools = ensure_bench_env()
    result["tools"] = tools
    print(f"  {tools}", flush=True)
    if args.images > 0:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"hashing {args.images} generated 800x600 JPEGs ...", flush=True)
            result["hashing"] = bench_hashing(args.images, Path(tmp), tools, args.tool_timeout)
        for name, r in result["hashing"]["images_per_s"].items():
            print(f"  {name:<52} {r:8.1f} images/s")
        for name, e in result["hashing"].get("errors", {}).items():
            print(f"  {name:<52} {e}")
            failures.append(f"{name}: {str(e)[:200]}")
    print(f"search, all pairs within {args.threshold} bits ...", flush=True)
    result["search"] = bench_search(sizes, args.threshold, args, tools, deadline, failures)
    result["failures"] = failures
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n" + markdown(result))
    print(f"\nwrote {out} ({result['seconds']:.0f} s)")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def markdown(result: dict[str, Any]) -> str:
    lines = []
    hs = result.get("hashing")
    if hs:
        lines += [f"Hashing {hs['images']:,} 800x600 JPEGs (pHash):", ""]
        lines += ["| hasher | images/s |", "|---|---:|"]
        lines += [f"| {k} | {v:,.1f} |" for k, v in hs["images_per_s"].items()]
        lines += [f"| {k} | {v} |" for k, v in hs.get("errors", {}).items()]
        lines.append("")
    lines += [
        "| corpus | tool | seconds | pairs | peak RSS MiB | check |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in result.get("search", []):
        if "error" in r:
            err = r["error"] + (f" ({r['seconds']:.2f} s)" if "seconds" in r else "")
            lines.append(f"| {r['corpus']} | {r.get('tool', '')} | {err} | | | |")
            continue
        checks = []
        if "recall" in r:
            checks.append(f"recall {r['recall']:.4f}")
        for key, what in (("identical_to_brute_force", "= brute force"),
                          ("identical_to_mmnerd", "= mmnerd")):  # fmt: skip
            if key in r:
                checks.append(what if r[key] else f"NOT {what}")
        if "query_check" in r:
            qc = r["query_check"]
            same = "=" if qc["identical"] else "NOT ="
            checks.append(f"{qc['queries']:,} queries {same} brute force")
        rss = f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else ""
        lines.append(
            f"| {r['corpus']} | {r['tool']} | {r['seconds']:.2f} | {r['pairs']:,} | {rss} "
            f"| {'; '.join(checks)} |"
        )
    if result.get("failures"):
        lines += ["", "FAILED: " + "; ".join(result["failures"])]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_tool":
        tool_main(json.loads(sys.argv[2]))
    elif len(sys.argv) > 2 and sys.argv[1] == "_ours":
        ours_main(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
