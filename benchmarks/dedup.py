"""Benchmark deduplication: hashing speed and agreement vs imagehash, search time vs brute force.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dedup.py [--quick] [--out FILE.json]

Hashing: ``--images`` generated 800x600 JPEGs (gradients, shapes, half with
noise), hashed by ``imagehash.phash`` (one process), by mmnerd inline with
and without the JPEG draft fast path, and by mmnerd with 2 processes; how
many fast-path hashes differ from imagehash's and by how many bits.

Search: ``n`` random 64-bit hashes with 1% planted near copies (0-12 bits
flipped); all pairs within ``t`` by :func:`mmnerd.images.index.search` (2
threads) and by numpy brute force (chunked XOR + popcount, only up to
``--brute-max``).  Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


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


def bench_hashing(n_images: int, folder: Path) -> dict[str, Any]:
    import imagehash

    from mmnerd.images import hashing
    from mmnerd.images.hashing import hash_files, hash_image, hex_to_int

    paths = []
    for i in range(n_images):
        p = folder / f"{i:05d}.jpg"
        make_image(i).save(p, quality=85)
        paths.append(p)

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
    # agreement for other draft sizes (how draft_min was chosen), on the first 300 images
    sub = paths[: min(300, n_images)]
    by_draft = {}
    saved = hashing.PHash.draft_min
    try:
        for dm in (32, 64, 128, 256):
            hashing.PHash.draft_min = dm
            t0 = time.perf_counter()
            h = np.array([hash_image(p, "phash") for p in sub], dtype=np.uint64)
            r = len(sub) / (time.perf_counter() - t0)
            d = np.bitwise_count(h ^ ref_arr[: len(sub)])
            by_draft[dm] = {
                "images_per_s": round(r, 1),
                "exact": round(float((d == 0).mean()), 4),
                "within_2_bits": round(float((d <= 2).mean()), 4),
            }
    finally:
        hashing.PHash.draft_min = saved
    return {
        "images": n_images,
        "size": [800, 600],
        "images_per_s": {
            "imagehash.phash (1 process)": round(ref_rate, 1),
            "mmnerd exact, fast=False (1 process)": round(exact_rate, 1),
            "mmnerd fast (1 process)": round(fast_rate, 1),
            "mmnerd fast (2 processes)": round(par_rate, 1),
        },
        "fast_vs_imagehash": {
            "exact": round(float((dist == 0).mean()), 4),
            "within_2_bits": round(float((dist <= 2).mean()), 4),
            "bits_histogram": {str(k): int(v) for k, v in enumerate(np.bincount(dist)) if v},
        },
        "fast_by_draft_min": by_draft,
    }


def planted(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = n // 100
    src = rng.integers(0, n, k)
    dst = rng.integers(0, n, k)
    flips = np.zeros(k, dtype=np.uint64)
    for _ in range(12):
        on = rng.random(k) < 0.5
        flips[on] |= np.uint64(1) << rng.integers(0, 64, int(on.sum())).astype(np.uint64)
    h[dst] = h[src] ^ flips
    return h


def brute_force_seconds(h: np.ndarray, t: int) -> tuple[float, int]:
    from mmnerd.images.index import brute_force_pairs

    t0 = time.perf_counter()
    n = len(brute_force_pairs(h, t))
    return time.perf_counter() - t0, n


def bench_search(sizes: list[int], thresholds: list[int], brute_max: int) -> list[dict]:
    from mmnerd.images.index import make_plan, search

    rows = []
    for n in sizes:
        h = planted(n, seed=n)
        for t in thresholds:
            plan = make_plan(t, len(np.unique(h)))
            t0, c0 = time.perf_counter(), time.process_time()
            m = search(h, t, workers=2)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            row: dict[str, Any] = {
                "n": n,
                "threshold": t,
                "blocks": [[b.bits, b.radius] for b in plan.blocks],
                "mmnerd_s": round(secs, 3),
                "mmnerd_cpu_s": round(cpu, 3),  # both threads; wall on an idle 2-core ~ cpu/1.7
                "pairs": m.n_pairs(),
            }
            if n <= brute_max:
                bs, bn = brute_force_seconds(h, t)
                assert bn == row["pairs"], (bn, row["pairs"])
                row["brute_force_s"] = round(bs, 3)
            rows.append(row)
            print(
                f"  search n={n:>9,} t={t:>2}: {secs:7.2f} s (cpu {cpu:.2f} s)"
                f"  pairs={row['pairs']:,}"
                + (f"  brute force {row['brute_force_s']:.2f} s" if "brute_force_s" in row else ""),
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000, help="0 skips the hashing part")
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--thresholds", default="4,10")
    ap.add_argument("--brute-max", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="200 images, 20k/100k hashes")
    ap.add_argument("--out", default="reports/bench/dedup.json")
    args = ap.parse_args()
    if args.quick:
        args.images, args.sizes = 200, "20000,100000"
    sizes = [int(s) for s in args.sizes.split(",")]
    thresholds = [int(t) for t in args.thresholds.split(",")]
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    if args.images > 0:  # --images 0 skips the hashing part
        with tempfile.TemporaryDirectory() as tmp:
            print(f"hashing {args.images} generated 800x600 JPEGs ...", flush=True)
            result["hashing"] = bench_hashing(args.images, Path(tmp))
        for name, r in result["hashing"]["images_per_s"].items():
            print(f"  {name:<40} {r:8.1f} images/s")
        agree = result["hashing"]["fast_vs_imagehash"]
        print(
            f"  fast path vs imagehash: exact {agree['exact']:.1%}, "
            f"<=2 bits {agree['within_2_bits']:.1%}"
        )
    print("search (2 threads) vs numpy brute force ...", flush=True)
    result["search"] = bench_search(sizes, thresholds, args.brute_max)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n{'n':>10} {'t':>3} {'mmnerd s':>9} {'cpu s':>7} {'brute s':>9} {'pairs':>10}")
    for r in result["search"]:
        bf = f"{r['brute_force_s']:9.2f}" if "brute_force_s" in r else f"{'-':>9}"
        print(
            f"{r['n']:>10,} {r['threshold']:>3} {r['mmnerd_s']:9.2f} {r['mmnerd_cpu_s']:7.2f}"
            f" {bf} {r['pairs']:>10,}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
