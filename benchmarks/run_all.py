"""`make bench`: run every benchmark script, then merge benchmarks/results/*.json into
benchmarks/results.json and benchmarks/results.md, headed by a side-by-side table (each
mmnerd figure beside the competing tool's figure from the same run).

Usage: python benchmarks/run_all.py [--only download,dedup,...] [--quick | --full]
                                    [--budget 180] [--args scale="--posts 5000"]

Sizes: the default runs issue 16's scale checks with their correctness checks (10M
hashes and 10M texts against brute force, the driver's memory at 100k and 1M posts)
beside the rest, about two hours on the 2-core project machine; ``--quick`` is a few
minutes (smoke test of the whole suite, ``make bench-quick``); ``--full`` uses each
script's own (largest) defaults, e.g. 100k posts through the scale run and a 100k-row
export.
``--budget`` (minutes) bounds the whole run: a script still running when the budget
is spent is stopped and reported as "timeout"; the scripts not started are reported
as "skipped (budget)".  A missing or failing script is reported and the rest run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEDUP_JSON = str(RESULTS / "dedup.json")
# name -> (script, args per size: quick, default, full); cheapest first, scale last
SCRIPTS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "cli_startup": (
        "cli_startup.py",
        {"quick": ["--runs", "3"], "default": [], "full": ["--runs", "10"]},
    ),
    "langid_hint": (
        "langid_hint.py",
        {"quick": [], "default": [], "full": []},
    ),
    "train": (
        "train.py",
        {"quick": [], "default": [], "full": ["--sizes", "tiny,base"]},
    ),
    "download": (
        "download.py",
        {"quick": ["--n", "300", "--reps", "1"], "default": ["--n", "2000", "--reps", "1"]}
        | {"full": []},
    ),
    "dedup": (
        "dedup.py",
        {
            "quick": ["--quick", "--out", DEDUP_JSON],
            # default: issue 16's checks: faiss Flat's pair set at 1M, 3M <= 20 s, 10M
            # <= 120 s and 2.5 GiB with 10,000 queries checked by brute force (~30 min
            # here); MultiHash up to 100k (full: up to 3M, > 5 minutes more)
            "default": ["--multihash-max", "100000", "--out", DEDUP_JSON],
            "full": ["--out", DEDUP_JSON],
        },
    ),
    "driver_memory": (
        "driver_memory.py",
        {
            "quick": ["--sizes", "2000,10000"],
            # default: issue 16's check, 1M against 100k (~35 min here)
            "default": ["--sizes", "100000,1000000"],
            "full": ["--sizes", "100000,1000000"],
        },
    ),
    "audit": (
        "audit.py",
        {
            "quick": ["--posts", "5000", "--second-posts", "1000"],
            "default": [],
            "full": ["--posts", "100000", "--second-posts", "20000"],
        },
    ),
    "import_corpus": (
        "import_corpus.py",
        {
            "quick": ["--posts", "3000", "--second-posts", "600"],
            "default": [],
            "full": ["--epochs", "3"],
        },
    ),
    "search_dask": (
        "search_dask.py",
        {"quick": ["--n", "100000"], "default": ["--n", "1000000"], "full": ["--n", "3000000"]},
    ),
    "text_dedup": (
        "text_dedup.py",
        {
            "quick": ["--scale", "100000", "--big", "0"],
            # default: issue 16's budget-checked 10M texts (and 3M), ~30 min here
            "default": ["--big", "3000000,10000000"],
            "full": ["--n", "50000", "--scale", "2000000", "--big", "3000000,10000000"],
        },
    ),
    "export": (
        "export.py",
        {"quick": ["--sizes", "2000"], "default": ["--sizes", "10000"], "full": []},
    ),
    "labelstudio": (
        "labelstudio.py",
        {"quick": ["--n", "1000", "--sample", "50"], "default": [], "full": []},
    ),
    "fusion": (
        "fusion.py",
        {
            "quick": ["--posts", "600", "--seeds", "1", "--epochs", "4"]
            + ["--cross-lingual-models", "none"],
            "default": [],
            "full": ["--models", "text_crf,bilstm_crf,concat_fusion,mner2m,mner2m_gated"]
            + ["--cross-lingual-models", "text_crf,concat_fusion,mner2m,mner2m_gated"],
        },
    ),
    "scale": (
        "scale.py",
        {"quick": ["--posts", "2000"], "default": ["--posts", "5000"], "full": []},
    ),
}


# --------------------------------------------------------------------------- side by side
def _rows(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        for key in ("rows", "runs"):
            if isinstance(data.get(key), list):
                return _rows(data[key])
    return []


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return {}


NONE = "(none measured)"
Line = tuple[str, Any, str, Any, str]  # measure, mmnerd, competitor name, its figure, unit


def _cli(data: Any) -> list[Line]:
    rows = _rows(data)
    ours = _find(rows, tool="mmnerd --help").get("median_s")
    ls = _find(rows, tool="label-studio --help").get("median_s")
    return [("CLI start-up `--help` (goal < 0.5 s)", ours, "label-studio --help", ls, "s")]


def _download(data: Any) -> list[Line]:
    rows = _rows(data)
    out = []
    for mode in ("resize", "original"):
        ours = _find(rows, tool="mmnerd (processes=0)", mode=mode).get("images_per_s")
        theirs = _find(rows, tool="img2dataset", mode=mode).get("images_per_s")
        if ours is not None or theirs is not None:
            out.append((f"image download ({mode})", ours, "img2dataset", theirs, "images/s"))
    return out


def _dedup(data: Any) -> list[Line]:
    """Hashing: mmnerd's fast path beside imagehash and imagededup; search: for each corpus,
    mmnerd's row beside every other tool's (seconds, or the error / reason it was not run)."""
    out: list[Line] = []
    if not isinstance(data, dict):
        return out
    ips = (data.get("hashing") or {}).get("images_per_s", {})
    ours = ips.get("mmnerd fast (1 process)")
    for other in ("imagehash.phash (1 process)", "imagededup PHash.encode_images (1 process)"):
        if ours is not None and other in ips:
            out.append(("pHash, 1 process (fast path)", ours, other, ips[other], "images/s"))
    rows = data.get("search", [])
    for corpus in dict.fromkeys(r.get("corpus") for r in rows):
        group = [r for r in rows if r.get("corpus") == corpus]
        mine = next((r for r in group if r.get("tool", "").startswith("mmnerd")), None)
        if mine is None:
            continue
        for r in group:
            if r is mine:
                continue
            theirs = r.get("seconds") if r.get("seconds") is not None else r.get("error")
            out.append(
                (
                    f"all pairs within t={mine.get('threshold')}, {corpus}",
                    mine.get("seconds"),
                    r.get("tool", "?"),
                    theirs,
                    "s",
                )
            )
    return out


def _audit(data: Any) -> list[Line]:
    return [
        (
            f"leakage audit {r.get('run')}: {r.get('posts', 0):,} x {r.get('ref_posts', 0):,} posts"
            + ("" if r.get("ok") else " (MISMATCH with the plan)"),
            r.get("seconds"),
            NONE,
            None,
            "s",
        )
        for r in _rows(data)
    ]


def _text_dedup(data: Any) -> list[Line]:
    """Per threshold on the scored corpus: recall and time beside the old MinHash/LSH, and
    the time without normalisation beside datasketch's; then the scale rows."""
    rows = _rows(data)
    out: list[Line] = []
    for r in rows:
        method = str(r.get("method", ""))
        if not method.startswith("mmnerd") or "recall" not in r:
            continue
        same = [o for o in rows if o.get("corpus") == r.get("corpus")]
        same = [o for o in same if o.get("threshold") == r.get("threshold")]
        where = f"text near-duplicates J >= {r.get('threshold')}, {r.get('corpus')} posts"
        for o in same:
            name = str(o.get("method", ""))
            if name.startswith("old"):
                out.append((f"{where}: recall", r.get("recall"), name, o.get("recall"), ""))
                out.append((f"{where}: time", r.get("seconds"), name, o.get("seconds"), "s"))
            elif name.startswith("datasketch"):
                theirs = o.get("s_excl_normalise", o.get("error"))
                out.append(
                    (f"{where}: time w/o normalising", r.get("s_excl_normalise"), name, theirs, "s")
                )
    for r in rows:
        if "budget" in str(r.get("method", "")):
            where = f"text near-duplicates J >= 0.8, {r.get('corpus')} posts, {r.get('method')}"
            out.append(
                (f"{where} (peak {r.get('peak_rss_mb')} MiB)", r.get("seconds"), NONE, None, "s")
            )
    return out


def _driver_memory(data: Any) -> list[Line]:
    return [
        (
            f"driver peak RSS after {r.get('stage')}, {r.get('posts', 0):,} posts",
            r.get("peak_rss_mb"),
            NONE,
            None,
            "MiB",
        )
        for r in _rows(data)
    ]


def _search_dask(data: Any) -> list[Line]:
    """The image search on Dask workers beside the local threads: wall and driver peak."""
    rows = _rows(data)
    local = _find(rows, mode="local")
    dask = next((r for r in rows if str(r.get("mode", "")).startswith("dask")), {})
    n = f"{dask.get('n', 0):,}"
    return [
        (f"image search {n} hashes on Dask ({dask.get('mode')})", dask.get("seconds"),
         "local threads", local.get("seconds"), "s"),
        (f"driver peak RSS, image search {n} hashes on Dask", dask.get("driver_peak_rss_mb"),
         "local threads", local.get("driver_peak_rss_mb"), "MiB"),
    ]  # fmt: skip


def _export(data: Any) -> list[Line]:
    return [
        (
            f"export {r.get('rows', 0):,} rows",
            r.get("rows_per_s"),
            "(none measured)",
            None,
            "rows/s",
        )
        for r in _rows(data)
    ]


def _labelstudio(data: Any) -> list[Line]:
    rows = _rows(data)

    def rival(tag: str) -> dict:
        return next((r for r in rows if tag in str(r.get("step", ""))), {})

    rivals = {  # our step's opening words -> (the rival's name, its row)
        "push (bulk import, existing": (
            "Label Studio's own single bulk import",
            rival("(competitor)"),
        ),
        "push (bulk import, creates": (
            "a script: project + storage + one bulk import",
            rival("(script)"),
        ),
    }
    out: list[Line] = []
    for r in rows:
        step = str(r.get("step", ""))
        if any(r is v for _, v in rivals.values()) or not r.get("per_second"):
            continue
        match = next((nv for k, nv in rivals.items() if step.startswith(k) and nv[1]), None)
        if match:
            name, v = match
            theirs = v["per_second"]
            out.append((f"Label Studio {step}", r.get("per_second"), name, theirs, "tasks/s"))
        else:
            out.append((f"Label Studio {step}", r.get("per_second"), NONE, None, "items/s"))
    return out


def _scale(data: Any) -> list[Line]:
    rows = _rows(data)
    local = [r for r in rows if r.get("executor") == "local"]
    out = []
    for r in local:
        other = next(
            (
                o
                for o in rows
                if o.get("executor", "").startswith("dask") and o.get("stage") == r.get("stage")
            ),
            {},
        )
        out.append(
            (
                f"pipeline {r.get('posts', 0):,} posts: {r.get('stage', '').strip()}",
                r.get("items_per_s"),
                f"same on {other.get('executor', 'dask')}",
                other.get("items_per_s"),
                "items/s",
            )
        )
    return out


def _train(data: Any) -> list[Line]:
    return [
        (
            f"train {r.get('size')} {r.get('variant', r.get('model'))}"
            + (" +cache" if r.get("cache") else ""),
            r.get("train_examples_per_s"),
            NONE,
            None,
            "examples/s",
        )
        for r in _rows(data)
    ]


def _fusion(data: Any) -> list[Line]:
    """F1 of the robust model beside mner2m's, per column of issue 18's table."""
    rows = _rows(data)
    ours, ref = _find(rows, model="mner2m_gated"), _find(rows, model="mner2m")
    return [
        (f"fusion sample: {col} (mean ± std)", ours.get(col), "mner2m", ref.get(col), "F1 %")
        for col in ("F1 all", "F1 image-decided", "F1 shuffled images")
        if ours or ref
    ]


HEADLINES: dict[str, Callable[[Any], list[Line]]] = {
    "fusion": _fusion,
    "cli_startup": _cli,
    "download": _download,
    "dedup": _dedup,
    "audit": _audit,
    "export": _export,
    "driver_memory": _driver_memory,
    "text_dedup": _text_dedup,
    "search_dask": _search_dask,
    "labelstudio": _labelstudio,
    "scale": _scale,
    "train": _train,
    "train_base": _train,
}


def side_by_side(merged: dict[str, Any], when: dict[str, str]) -> list[dict[str, Any]]:
    """One line per measure; ``when`` (name -> time the result file was written) shows stale
    results left by an earlier run next to fresh ones."""
    table = []
    for name, data in merged.items():
        base = name.split("_")[0] if name not in HEADLINES else name
        fn = HEADLINES.get(name) or HEADLINES.get(base)
        if fn is None:
            continue
        try:
            lines = fn(data)
        except Exception as e:  # a changed result shape must not lose the other tables
            lines = [(f"(could not read: {type(e).__name__}: {e})", None, "", None, "")]
        for measure, ours, who, theirs, unit in lines:
            ratio = ""
            if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs:
                ratio = f"{ours / theirs:.2f}x"
            table.append(
                {
                    "benchmark": name,
                    "measure": measure,
                    "mmnerd": "—" if ours is None else ours,
                    "competitor": who,
                    "competitor figure": "—" if theirs is None else theirs,
                    "unit": unit,
                    "ratio": ratio,
                    "measured": when.get(name, ""),
                }
            )
    return table


def _owner(result: str) -> str:
    """The script (a key of SCRIPTS) that wrote the result file ``result`` (e.g. train_base
    -> train, audit-images -> audit)."""
    for name in sorted(SCRIPTS, key=len, reverse=True):
        if result == name or result.startswith((name + "_", name + "-")):
            return name
    return result


def generic_rows(data: Any) -> list[dict[str, Any]]:
    """A flat table for results written in another shape (e.g. dedup's search list)."""
    rows = _rows(data)
    if not rows and isinstance(data, dict):
        rows = _rows(data.get("search"))
    return [{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in rows]


# --------------------------------------------------------------------------- running
def run(cmd: list[str], timeout: float) -> str:
    """Run a script in its own process group; "ok", "exit N" or "timeout"."""
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return "timeout"
    return "ok" if rc == 0 else f"exit {rc}"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(SCRIPTS))
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    size.add_argument("--full", action="store_true", help="each script's largest defaults")
    ap.add_argument("--budget", type=float, default=180.0, help="minutes for the whole run")
    ap.add_argument(
        "--args",
        action="append",
        default=[],
        metavar='NAME="ARGS"',
        help='replace one script\'s arguments, e.g. --args scale="--posts 5000"',
    )
    ap.add_argument("--no-run", action="store_true", help="only merge existing results")
    args = ap.parse_args()
    mode = "quick" if args.quick else "full" if args.full else "default"
    override = {}
    for a in args.args:
        name, _, rest = a.partition("=")
        if name not in SCRIPTS:
            ap.error(f"--args: unknown benchmark {name!r}")
        override[name] = shlex.split(rest)
    names = [n for n in SCRIPTS if not args.only or n in args.only.split(",")]
    deadline = time.monotonic() + args.budget * 60
    wall_start = time.time() - 1
    status: dict[str, str] = {}
    t_start = time.perf_counter()
    for name in [] if args.no_run else names:
        script, sizes = SCRIPTS[name]
        if not (HERE / script).exists():
            print(f"== {name}: {script} not present, skipped", flush=True)
            status[name] = "missing"
            continue
        left = deadline - time.monotonic()
        if left <= 5:
            status[name] = "skipped (budget)"
            print(f"== {name}: skipped, the {args.budget:g}-minute budget is spent", flush=True)
            continue
        extra = override.get(name, sizes[mode])
        cmd = [sys.executable, str(HERE / script), *extra]
        print(f"\n== {name}: {' '.join(cmd[1:])} (load {os.getloadavg()[0]:.1f})", flush=True)
        t0 = time.perf_counter()
        status[name] = run(cmd, left)
        print(f"== {name}: {status[name]} after {time.perf_counter() - t0:.0f} s", flush=True)
    total = time.perf_counter() - t_start

    paths = sorted(RESULTS.glob("*.json"))
    if not args.no_run:  # this run's files only: a result left by an earlier run is not news
        paths = [p for p in paths if p.stat().st_mtime >= wall_start]
    merged = {p.stem: json.loads(p.read_text()) for p in paths}
    when = {p.stem: time.strftime("%m-%d %H:%M", time.localtime(p.stat().st_mtime)) for p in paths}
    # a script that failed (wrong outputs, a competitor missing, a crash) is never ranked
    failed = {_owner(stem) for stem in merged} & {k for k, v in status.items() if v != "ok"}
    ranked = {k: v for k, v in merged.items() if _owner(k) not in failed}
    sbs = side_by_side(ranked, when)
    md = [
        "# Benchmark results\n",
        f"Mode {mode}, {total / 60:.1f} minutes, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end.\n",
        "## Side by side (same run)\n",
        markdown_table(sbs),
        "",
        *([f"Not ranked, the script failed: {', '.join(sorted(failed))}."] if failed else []),
        "",
        "ratio = mmnerd / competitor: above 1 is better for rates (/s), below 1 for times (s).",
        "",
    ]
    if status:
        md += [
            "## Scripts\n",
            markdown_table([{"benchmark": k, "status": v} for k, v in status.items()]),
            "",
        ]
    for name, data in merged.items():
        notes = data.get("notes", "") if isinstance(data, dict) else ""
        md += [f"## {name}\n", markdown_table(generic_rows(data)), "", notes, ""]
    (HERE / "results.json").write_text(
        json.dumps({"status": status, "side_by_side": sbs, "results": merged}, indent=2)
    )
    (HERE / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    bad = {k: v for k, v in status.items() if v != "ok"}
    if bad:
        print("not ok: " + ", ".join(f"{k} ({v})" for k, v in bad.items()), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
