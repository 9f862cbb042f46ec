"""Download benchmark: mmnerd's fetcher against img2dataset on the same local images.

    .venv/bin/python benchmarks/download.py [--n 2000] [--reps 2]

Generates N varied 800x600 JPEGs once (cached under benchmarks/results/cache/),
serves them from one HTTP/1.1 server process on 127.0.0.1, and downloads them with

* mmnerd (``fetch_many``; normalised, resized to 256 px on the longest side; and
  storing originals), and
* img2dataset (``keep_ratio_largest`` 256, JPEG quality 90; and ``resize_mode=no`` +
  ``disable_all_reencoding``), installed into benchmarks/.venv-bench by this script,

each as a fresh subprocess timed end to end (interpreter start and imports included),
``--reps`` times (every run's seconds reported, the median in the table).  Every
image's outcome is checked (status, size, stored bytes).
Prints a table and writes benchmarks/results/download.json.  Only 127.0.0.1 is used.
Exits 1 when img2dataset cannot be installed (unless ``--skip-img2dataset``) or when a
run of either tool fails or stores a wrong image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import BENCH_VENV, BenchSetupError, ensure_packages, median_run  # noqa: E402

RESULTS = HERE / "results"
CACHE = RESULTS / "cache" / "download-images"
SIDE = 256


# -- images ----------------------------------------------------------------------
def make_image(i: int) -> bytes:
    """An 800x600 JPEG with varied content: smooth colour field, shapes, mild noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(i)
    field = rng.integers(0, 256, (rng.integers(2, 9), rng.integers(2, 9), 3), dtype=np.uint8)
    img = Image.fromarray(field).resize((800, 600), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 25))):
        x0, y0 = int(rng.integers(0, 760)), int(rng.integers(0, 560))
        box = (x0, y0, x0 + int(rng.integers(10, 300)), y0 + int(rng.integers(10, 300)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=color)
        elif kind == 1:
            draw.rectangle(box, fill=color)
        else:
            draw.line(box, fill=color, width=int(rng.integers(1, 12)))
    arr = np.asarray(img, dtype=np.int16)
    arr = arr + rng.normal(0, float(rng.uniform(1, 8)), arr.shape).astype(np.int16)
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(75, 95)))
    return buf.getvalue()


def ensure_images(n: int) -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = [CACHE / f"{i:05d}.jpg" for i in range(n)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        print(f"generating {len(todo)} images in {CACHE} ...", flush=True)
        with ProcessPoolExecutor(2) as pool:
            for i, data in zip(todo, pool.map(make_image, todo, chunksize=20), strict=True):
                tmp = paths[i].with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(paths[i])
    return paths


# -- server ----------------------------------------------------------------------
def serve(folder: str, port_file: str) -> None:
    """Serve every file of ``folder`` from memory at /<name> (HTTP/1.1, keep-alive)."""
    files = {f"/{p.name}": p.read_bytes() for p in Path(folder).iterdir() if p.suffix == ".jpg"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 512

    srv = Server(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(str(srv.server_address[1]))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the parent closes our stdin
    srv.shutdown()


# -- mmnerd run (in a subprocess) ------------------------------------------------
def run_mmnerd(urls_file: str, out: str, mode: str, workers: int, processes: int) -> None:
    """Fetch every URL with mmnerd; print one JSON line of per-status counts and facts."""
    t0 = time.perf_counter()
    from collections import Counter

    from mmnerd.config import ImagesConfig
    from mmnerd.images.fetch import fetch_many
    from mmnerd.records import ImageRef

    urls = Path(urls_file).read_text().split()
    cfg = ImagesConfig(
        workers=workers,
        per_host=workers,
        processes=processes,
        allow_hosts=["127.0.0.1"],
        store="original" if mode == "original" else "normalized",
        max_side=SIDE if mode == "resize" else 0,
    )
    refs = list(fetch_many([ImageRef(url=u) for u in urls], cfg, Path(out)))
    took = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds_inside": took,
                "status": Counter(r.status for r in refs),
                "sizes": Counter(f"{r.width}x{r.height}" for r in refs),
                "files": {u: r.path for u, r in zip(urls, refs, strict=True)},
            }
        )
    )


def check_mmnerd(report: dict[str, Any], out: Path, mode: str, served: dict[str, bytes]) -> str:
    """'' if every image is ok, of the right size, and stored as expected; else a problem."""
    if report["status"] != {"ok": len(served)}:
        return f"statuses {report['status']}"
    want = f"{SIDE}x{SIDE * 3 // 4}" if mode == "resize" else "800x600"
    if report["sizes"] != {want: len(served)}:
        return f"sizes {report['sizes']}"
    for url, rel in report["files"].items():
        data = (out / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != Path(rel).stem:
            return f"{rel}: not content-addressed"
        if mode == "original" and data != served[url.rsplit("/", 1)[1]]:
            return f"{rel}: not the original bytes"
    return ""


# -- img2dataset ---------------------------------------------------------------------
def ensure_img2dataset() -> tuple[Path | None, str]:
    """(path of the img2dataset CLI, "") or (None, why it is not available)."""
    exe = BENCH_VENV / "bin" / "img2dataset"
    try:
        ensure_packages(["img2dataset"])
    except BenchSetupError as e:
        return None, str(e)
    return (exe, "") if exe.exists() else (None, "img2dataset installed no CLI")


def img2dataset_cmd(exe: Path, urls_file: str, out: str, mode: str, workers: int) -> list[str]:
    args = [
        str(exe),
        f"--url_list={urls_file}",
        "--input_format=txt",
        f"--output_folder={out}",
        "--output_format=files",
        "--processes_count=2",
        f"--thread_count={workers}",
        "--number_sample_per_shard=1000",
        "--timeout=10",
        "--retries=0",
        "--extract_exif=False",  # its fastest setting
        "--enable_wandb=False",
        "--compute_hash=sha256",
    ]
    if mode == "resize":
        args += [
            f"--image_size={SIDE}",
            "--resize_mode=keep_ratio_largest",
            "--encode_quality=90",
            "--encode_format=jpg",
        ]
    else:
        args += ["--resize_mode=no", "--disable_all_reencoding=True"]
    return args


def check_img2dataset(out: Path, mode: str, n: int) -> str:
    """'' if img2dataset reports n successes and wrote n images of the expected size."""
    from PIL import Image

    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    ok = sum(s.get("successes", 0) for s in stats)
    if ok != n:
        return f"{ok} successes of {n}"
    images = sorted(out.glob("*/*.jpg"))
    if len(images) != n:
        return f"{len(images)} image files"
    want = (SIDE, SIDE * 3 // 4) if mode == "resize" else (800, 600)
    for p in images[:: max(1, n // 50)]:
        with Image.open(p) as img:
            if img.size != want:
                return f"{p.name}: {img.size}"
    return ""


# -- driver ----------------------------------------------------------------------------
def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    return time.perf_counter() - t, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images")
    ap.add_argument("--reps", type=int, default=2, help="runs per configuration (all reported)")
    ap.add_argument("--workers", type=int, default=32, help="download threads (both tools)")
    ap.add_argument(
        "--processes",
        default="0,2",
        help="mmnerd decode processes to try, comma-separated (0 = in the threads)",
    )
    ap.add_argument(
        "--skip-img2dataset",
        action="store_true",
        help="measure mmnerd alone (otherwise img2dataset missing or failing fails the run)",
    )
    args = ap.parse_args()
    exe, why = (None, "skipped (--skip-img2dataset)")
    if not args.skip_img2dataset:
        exe, why = ensure_img2dataset()
        if exe is None:  # a competitor that cannot be installed fails the benchmark
            print(f"FAILED: img2dataset: {why}", file=sys.stderr)
            return 1

    paths = ensure_images(args.n)
    served = {p.name: p.read_bytes() for p in paths}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    work = Path(tempfile.mkdtemp(prefix="mmnerd-dlbench-"))
    port_file = work / "port"
    server = subprocess.Popen(
        [sys.executable, __file__, "_serve", str(CACHE), str(port_file)],
        stdin=subprocess.PIPE,
        env=env,
    )
    results: dict[str, Any] = {
        "n_images": args.n,
        "image": "800x600 JPEG, varied content",
        "resize_side": SIDE,
        "workers": args.workers,
        "machine": f"{os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "runs": [],
    }
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.1)
        port = int(port_file.read_text())
        urls_file = work / "urls.txt"
        urls_file.write_text("".join(f"http://127.0.0.1:{port}/{p.name}\n" for p in paths))

        results["img2dataset"] = why or _version(exe)

        one = work / "one-url.txt"
        one.write_text(urls_file.read_text().splitlines()[0] + "\n")
        startup = {"mmnerd": _startup([sys.executable, __file__, "_mmnerd", str(one)], env, work)}
        if exe is not None:
            i2d = img2dataset_cmd(exe, str(one), str(work / "i2d-one"), "resize", args.workers)
            startup["img2dataset"] = _startup(i2d, env, work)
        results["startup_seconds"] = startup
        print(f"  start-up + 1 image (s): {startup}", flush=True)

        for mode in ("resize", "original"):
            for procs in [int(p) for p in args.processes.split(",")]:
                run = _bench_mmnerd(work, urls_file, mode, args, procs, served, env)
                results["runs"].append(_steady(run, startup["mmnerd"], args.n))
            if exe is not None:
                run = _bench_i2d(work, exe, urls_file, mode, args, env)
                results["runs"].append(_steady(run, startup["img2dataset"], args.n))
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    _report(results)
    runs = results["runs"]
    bad = [f"{r['tool']} {r['mode']}: {r['problem'][:200]}" for r in runs if r["problem"]]
    if bad:
        print("FAILED: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


def _startup(cmd: list[str], env: dict[str, str], work: Path) -> float:
    """Seconds for a run with a single image: interpreter start, imports, pools, one fetch."""
    if cmd[2:3] == ["_mmnerd"]:
        cmd = [*cmd, str(work / "mmnerd-one"), "resize", "1", "0"]
    runs = sorted(timed(cmd, env)[0] for _ in range(3))
    return round(runs[1], 3)  # the median of three


def _steady(run: dict[str, Any], startup: float, n: int) -> dict[str, Any]:
    """Add the throughput once the fixed start-up cost is taken out."""
    run["images_per_s_after_startup"] = round((n - 1) / max(1e-9, run["seconds"] - startup), 1)
    return run


def _version(exe: Path | None) -> str:
    if exe is None:
        return ""
    pip = exe.parent / "pip"
    out = subprocess.run([str(pip), "show", "img2dataset"], capture_output=True, text=True).stdout
    return next((ln.split()[-1] for ln in out.splitlines() if ln.startswith("Version")), "?")


def _bench_mmnerd(
    work: Path,
    urls: Path,
    mode: str,
    args: argparse.Namespace,
    procs: int,
    served: dict[str, bytes],
    env: dict[str, str],
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        out = work / f"mmnerd-{mode}-{procs}-{rep}"
        cmd = [sys.executable, __file__, "_mmnerd", str(urls), str(out), mode]
        cmd += [str(args.workers), str(procs)]
        secs, proc = timed(cmd, env)
        if proc.returncode != 0:
            raise SystemExit(f"mmnerd run failed:\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        problem = check_mmnerd(report, out, mode, served)
        run = {
            "tool": f"mmnerd (processes={procs})",
            "mode": mode,
            "seconds": round(secs, 3),
            "images_per_s": round(args.n / secs, 1),
            "seconds_inside": round(report["seconds_inside"], 3),
            "all_correct": not problem,
            "problem": problem,
        }
        shutil.rmtree(out, ignore_errors=True)
        runs.append(run)
        print(f"  {run['tool']:<26} {mode:<9} {secs:6.2f} s  {problem or 'ok'}", flush=True)
    return median_run(runs)


def _bench_i2d(
    work: Path,
    exe: Path,
    urls: Path,
    mode: str,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        out = work / f"i2d-{mode}-{rep}"
        secs, proc = timed(img2dataset_cmd(exe, str(urls), str(out), mode, args.workers), env)
        problem = check_img2dataset(out, mode, args.n)
        if proc.returncode != 0:
            problem = f"exit {proc.returncode}: {proc.stderr[-500:]}"
        run = {
            "tool": "img2dataset",
            "mode": mode,
            "seconds": round(secs, 3),
            "images_per_s": round(args.n / secs, 1),
            "all_correct": not problem,
            "problem": problem,
        }
        shutil.rmtree(out, ignore_errors=True)
        runs.append(run)
        print(f"  {'img2dataset':<26} {mode:<9} {secs:6.2f} s  {problem or 'ok'}", flush=True)
    return median_run(runs)


def _report(results: dict[str, Any]) -> None:
    runs = results["runs"]
    ratios: dict[str, float] = {}
    print(
        f"\n{'mode':<9} {'tool':<26} {'images/s':>9} {'seconds':>8}  {'vs img2dataset':>14}"
        f"  {'after start-up':>14} {'vs':>6}  ok"
    )
    for mode in ("resize", "original"):
        ref = next((r for r in runs if r["mode"] == mode and r["tool"] == "img2dataset"), None)
        for r in (r for r in runs if r["mode"] == mode):
            ratio = steady_ratio = ""
            if ref and r is not ref:
                x = r["images_per_s"] / ref["images_per_s"]
                y = r["images_per_s_after_startup"] / ref["images_per_s_after_startup"]
                r["ratio_vs_img2dataset"] = round(x, 2)
                r["ratio_after_startup"] = round(y, 2)
                ratios[f"{mode}: {r['tool']}"] = round(x, 2)
                ratio, steady_ratio = f"{x:.2f}x", f"{y:.2f}x"
            print(
                f"{mode:<9} {r['tool']:<26} {r['images_per_s']:>9.1f} {r['seconds']:>8.2f}"
                f"  {ratio:>14}  {r['images_per_s_after_startup']:>14.1f} {steady_ratio:>6}"
                f"  {'yes' if r['all_correct'] else r['problem']}"
            )
    results["ratios"] = ratios
    if isinstance(results.get("img2dataset"), str) and not results["img2dataset"][:1].isdigit():
        print(f"\nimg2dataset: {results['img2dataset']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "download.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'download.json'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_mmnerd":
        a = sys.argv[2:]
        run_mmnerd(a[0], a[1], a[2], int(a[3]), int(a[4]))
    else:
        sys.exit(main())
