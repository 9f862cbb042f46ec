"""A published corpus end to end, as a new user runs it (issue 14's "done when").

    python benchmarks/import_corpus.py [--posts 25000] [--second-posts 5000] [--seed 1]
                                       [--epochs 1] [--keep DIR]

Generates (benchmarks/imgid_corpus.py) a 25k-post MMNERD-like IMGID corpus A without
images and a 5k-post Twitter-like corpus B sharing planted posts with it, then runs the
CLI, each command a fresh process: ``collect -> dedup -> export`` with
pipelines/import-mmnerd.toml (gold labels, the corpus's own splits, no Label Studio),
``audit-leakage --export`` and ``audit-leakage --export --against B``, and ``benchmark``
(text models).  Checks, in the same run:

* the round trip: ``export/imgid/*.txt`` equal A's files (orphan ``I-`` tags come back
  as ``B-``: the documented repair);
* nothing lost: every post of A is in the export, in its own split;
* the audit against an exact reference: all-pairs word-2-shingle Jaccard (the tool's own
  shingles) by brute force over the exported texts; recall of the leaking posts at
  J >= 0.8 must be >= 0.99 (within the corpus and against B), and none extra;
* the benchmark exits 0 and reports test F1 for each text model.

Prints a table of every step, writes benchmarks/results/import_corpus.json, exits 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, save  # noqa: E402
from imgid_corpus import make_pair, write_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "import-mmnerd.toml"
THRESHOLD = 0.8


def cli(args: list[str], cwd: Path) -> tuple[int, float, str]:
    """Run ``mmnerd <args>`` in a fresh process; (exit code, seconds, stderr)."""
    env = {**os.environ, "MMNERD_PROGRESS_INTERVAL": "60", "OMP_NUM_THREADS": "1"}
    with Timer() as t:
        res = subprocess.run([sys.executable, "-m", "mmnerd.cli", *args], cwd=cwd,
                             capture_output=True, text=True, env=env)  # fmt: skip
    return res.returncode, t.seconds, res.stderr


def shingle_sets(texts: list[str]) -> list[frozenset[str]]:
    from mmnerd.dedup.text import normalize_text, shingles

    return [frozenset(shingles(normalize_text(t, ("URL",)))) for t in texts]


def exact_pairs(
    a: list[frozenset[str]], b: list[frozenset[str]] | None = None, t: float = THRESHOLD
) -> list[tuple[int, int, float]]:
    """Every pair (i, j) with exact Jaccard >= t: within ``a`` (i < j) or across ``a`` x
    ``b``; brute force over a sparse document x shingle matrix, in row blocks."""
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}

    def matrix(sets: list[frozenset[str]]):
        rows, cols = [], []
        for i, s in enumerate(sets):
            for sh in s:
                rows.append(i)
                cols.append(vocab.setdefault(sh, len(vocab)))
        return rows, cols

    ra, ca = matrix(a)
    rb, cb = matrix(b) if b is not None else (ra, ca)
    xa = csr_matrix((np.ones(len(ra), np.int32), (ra, ca)), shape=(len(a), len(vocab)))
    other = b if b is not None else a
    xb = csr_matrix((np.ones(len(rb), np.int32), (rb, cb)), shape=(len(other), len(vocab)))
    na = np.asarray(xa.sum(axis=1)).ravel()
    nb = np.asarray(xb.sum(axis=1)).ravel()
    out = []
    xbt = xb.T.tocsc()
    for lo in range(0, len(a), 2000):
        inter = (xa[lo : lo + 2000] @ xbt).tocoo()
        i, j, n = inter.row + lo, inter.col, inter.data
        keep = (i < j) if b is None else np.ones(len(i), bool)
        i, j, n = i[keep], j[keep], n[keep]
        jac = n / (na[i] + nb[j] - n)
        good = jac >= t - 1e-12
        out += list(zip(i[good].tolist(), j[good].tolist(), jac[good].tolist(), strict=True))
    return out


def exported(export: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = []
    for split in ("train", "validation", "test"):
        rows += pq.read_table(
            export / f"{split}.parquet", columns=["id", "text", "split"]
        ).to_pylist()
    return rows


def round_trip_ok(src: Path, export: Path) -> tuple[bool, int]:
    """(every exported IMGID file equals its source file after the orphan-I- repair,
    repairs seen)."""
    from mmnerd.sources.conll import read_imgid
    from mmnerd.text.bio import repair_iob2

    repairs, ok = 0, True
    names = {"train_conll_format.txt": "train.txt", "valid_conll_format.txt": "valid.txt",
             "test_conll_format.txt": "test.txt"}  # fmt: skip
    for name, out in names.items():
        lines = []
        for imgid, tokens, labels in read_imgid(src / name):
            tags = repair_iob2(labels)
            repairs += sum(a != b for a, b in zip(tags, labels, strict=True))
            body = "".join(f"{tok}\t{tag}\n" for tok, tag in zip(tokens, tags, strict=True))
            lines.append(f"IMGID:{imgid}\n{body}\n")
        ok = ok and (export / "imgid" / out).read_text(encoding="utf-8") == "".join(lines)
    return ok, repairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=25000)
    ap.add_argument("--second-posts", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="work here (default: a temp dir)")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mmnerd-import-"))
    work.mkdir(parents=True, exist_ok=True)
    a_dir, b_dir, data = work / "mmnerd-en", work / "twitter", work / "data"
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    with Timer() as t:
        first, second, _plan = make_pair(args.posts, args.second_posts, args.seed, "mmnerd",
                                         "twitter", 0.1)  # fmt: skip
        write_corpus(first, a_dir, False, False)
        write_corpus(second, b_dir, False, False)
    n_a = sum(len(ps) for ps in first.splits.values())
    rows.append({"step": "generate A (MMNERD-like) + B", "posts": n_a,
                 "seconds": round(t.seconds, 2), "ok": True})  # fmt: skip
    files = json.dumps([str(a_dir / f) for f in ("train_conll_format.txt",
                        "valid_conll_format.txt", "test_conll_format.txt")])  # fmt: skip
    common = ["-p", str(PIPELINE), "--set", f'data_dir="{data}"', "--set", f"source.files={files}",
              "--set", f'benchmark.report_dir="{work / "reports"}"']  # fmt: skip
    for command in (["collect"], ["dedup"], ["export"]):
        code, secs, err = cli([*command, *common], work)
        rows.append({"step": command[0], "posts": n_a, "seconds": round(secs, 2), "ok": code == 0})
        if code != 0:
            failures.append(f"{command[0]} exited {code}: {err.strip().splitlines()[-1:]}")
            return finish(rows, failures)
    export = data / "export"
    ok, repairs = round_trip_ok(a_dir, export)
    rows.append({"step": "round trip IMGID -> Parquet -> IMGID", "posts": n_a, "seconds": 0,
                 "ok": ok, "note": f"identical after {repairs} orphan I- repairs"})  # fmt: skip
    if not ok:
        failures.append("the IMGID export differs from the source files")
    got = exported(export)
    lost = n_a - len(got)
    rows.append({"step": "nothing lost", "posts": len(got), "seconds": 0, "ok": lost == 0,
                 "note": f"{lost} posts missing"})  # fmt: skip
    if lost:
        failures.append(f"{lost} posts missing from the export")
    # the audit, checked against exact all-pairs Jaccard
    order = {"train": 0, "validation": 1, "test": 2}
    with Timer() as t:
        sets = shingle_sets([r["text"] for r in got])
        within = exact_pairs(sets)
        from mmnerd.audit import load_imgid

        ref = [p for ps in load_imgid(b_dir).posts.values() for p in ps]
        against = exact_pairs(sets, shingle_sets([p.text for p in ref]))
    want_within = set()
    for i, j, _ in within:
        a, b = got[i], got[j]
        if a["split"] != b["split"]:
            later = a if order[a["split"]] > order[b["split"]] else b
            want_within.add(later["id"])
    want_ref = {got[i]["id"] for i, _, _ in against}
    note = f"{len(within)} pairs within, {len(against)} against B, J >= 0.8"
    rows.append({"step": "exact reference (brute force)", "posts": len(got) + len(ref),
                 "seconds": round(t.seconds, 2), "ok": True, "note": note})  # fmt: skip
    for label, extra in (
        ("audit --export", []),
        ("audit --export --against B", ["--against", str(b_dir)]),
    ):
        out = work / f"leak-{len(extra)}.json"
        code, secs, err = cli(
            ["audit-leakage", "--export", str(export), *extra, "--out", str(out)], work
        )
        report = json.loads(out.read_text()) if out.exists() else {"leaks": []}
        found = {(x["id"], x["against"]) for x in report["leaks"] if x["kind"] == "text"}
        want = {(i, "splits") for i in want_within} | (
            {(i, "ref") for i in want_ref} if extra else set()
        )
        hit = len(found & want)
        recall = hit / len(want) if want else 1.0
        extra_found = len(found - want)
        good = code in (0, 1) and recall >= 0.99 and extra_found == 0
        note = f"recall {hit}/{len(want)} = {recall:.4f}, {extra_found} extra"
        rows.append({"step": label, "posts": len(got), "seconds": round(secs, 2), "ok": good,
                     "note": note})  # fmt: skip
        if not good:
            failures.append(f"{label}: exit {code}, recall {recall:.4f}, {extra_found} extra")
    code, secs, err = cli(["benchmark", *common, "--set", f"benchmark.epochs={args.epochs}"], work)
    bench = work / "reports" / "benchmark.json"
    f1 = {}
    if bench.exists():
        res = json.loads(bench.read_text()).get("results", {})
        f1 = {m: round(100 * r["test"]["overall"]["f1"]["mean"], 1) for m, r in res.items()}
    good = code == 0 and bool(f1)
    rows.append({"step": f"benchmark (text models, {args.epochs} epoch)", "posts": len(got),
                 "seconds": round(secs, 2), "ok": good, "note": f"test F1 {f1}"})  # fmt: skip
    if not good:
        failures.append(f"benchmark exited {code}: {err.strip().splitlines()[-1:]}")
    return finish(rows, failures)


def finish(rows: list[dict[str, Any]], failures: list[str]) -> int:
    save(
        "import_corpus",
        rows,
        notes="FAILED: " + "; ".join(failures) if failures else "all checks passed",
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
