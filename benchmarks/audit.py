"""Leakage audit benchmark: ``mmnerd audit-leakage --imgid A --against B`` as users run it.

    python benchmarks/audit.py [--posts 25000] [--second-posts 5000] [--seed 1] [--keep DIR]
                               [--images]

Generates (benchmarks/imgid_corpus.py) an MMNERD-like corpus A (``--posts``, MMNERD layout,
no images, as released) and a Twitter-like corpus B (``--second-posts``, Twitter layout)
that shares a planted set of posts with A (10% of B: exact copies, lowercased copies, one
word changed), plus cross-split and same-split copies inside each.  Then times the CLI, each
in its own process (start-up included):

1. A against B; 2. B against A; 3. A against B with ``--write-clean``; 4. the clean copy
against B again.

Each leak list must equal the planted set exactly (same posts, kinds, ``against`` and
matched post); the clean copy must pass (exit 0).  ``--images`` also writes a picture per
id (``--images`` / ``--against-images``; copies that kept their id share the picture, a
planted image leak): random pictures can be pHash neighbours by chance, so image leaks
beyond the plan are counted (``chance_image``), not failed.  Prints a table, writes
benchmarks/results/audit.json (``audit-images.json`` with ``--images``), exits 1 on any
difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, peak_rss_mb, save  # noqa: E402
from imgid_corpus import expected_leaks, make_pair, plan_json, write_corpus  # noqa: E402


def audit(args: list[str], out: Path) -> tuple[int, float, dict[str, Any]]:
    """Run ``mmnerd audit-leakage`` in a fresh process; (exit code, seconds, report)."""
    cmd = [sys.executable, "-m", "mmnerd.cli", "audit-leakage", *args, "--out", str(out)]
    with Timer() as t:
        res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode not in (0, 1):
        sys.exit(f"audit failed ({res.returncode}): {res.stderr.strip()}")
    return res.returncode, t.seconds, json.loads(out.read_text())


def compare(report: dict[str, Any], expected: dict[tuple, str]) -> dict[str, int]:
    """Leak rows against the plan: missing, unexpected (text), image leaks beyond the plan
    (chance pHash neighbours), and planted leaks whose matched post is not the planted one."""
    got = {(r["id"], r["kind"], r["against"]): r["matched_id"] for r in report["leaks"]}
    extra = set(got) - set(expected)
    return {
        "leaks": len(got),
        "expected": len(expected),
        "missing": len(set(expected) - set(got)),
        "unexpected": sum(1 for k in extra if k[1] == "text"),
        "chance_image": sum(1 for k in extra if k[1] == "image"),
        "wrong_match": sum(1 for k, v in expected.items() if k in got and got[k] != v),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=25000, help="posts of corpus A (MMNERD-like)")
    ap.add_argument("--second-posts", type=int, default=5000, help="posts of corpus B")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="write the corpora here (default: a temp dir)")
    ap.add_argument("--images", action="store_true", help="a picture per id, hashed by the audit")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmnerd-audit-") as tmp:
        root = a.keep or Path(tmp)
        first, second = root / "mmnerd_like", root / "twitter_like"
        with Timer() as gen:
            c1, c2, plan = make_pair(a.posts, a.second_posts, a.seed, "mmnerd", "twitter")
            write_corpus(c1, first, images=a.images)
            write_corpus(c2, second, images=a.images)
            planted = plan_json(c1, c2, plan)
            (first / "planted.json").write_text(json.dumps(planted, indent=1))
        print(f"generated {a.posts:,} + {a.second_posts:,} posts in {gen.seconds:.1f} s")
        n_a = sum(len(ps) for ps in c1.splits.values())
        n_b = sum(len(ps) for ps in c2.splits.values())
        pics_a = ["--images", first / "images"] if a.images else []
        pics_b = ["--images", second / "images"] if a.images else []
        ref_a = ["--against-images", first / "images"] if a.images else []
        ref_b = ["--against-images", second / "images"] if a.images else []
        a_vs_b = ["--imgid", first, *pics_a, "--against", second, *ref_b]
        b_vs_a = ["--imgid", second, *pics_b, "--against", first, *ref_a]
        clean = [*a_vs_b, "--write-clean", root / "clean"]
        again = ["--imgid", root / "clean", *pics_a, "--against", second, *ref_b]
        runs = [  # name, arguments, audited side of the plan, posts, REF posts, exit code
            ("A against B", a_vs_b, "first", n_a, n_b, 1),
            ("B against A", b_vs_a, "second", n_b, n_a, 1),
            ("A against B + --write-clean", clean, "first", n_a, n_b, 1),
            ("clean copy against B", again, "", 0, n_b, 0),
        ]
        rows, ok = [], True
        for name, args, side, n, m, want_exit in runs:
            code, secs, rep = audit([str(x) for x in args], root / "report.json")
            if not n:
                n = sum(rep["input"]["posts"].values())
            plan_side = expected_leaks(planted, side, images=a.images) if side else {}
            figures = compare(rep, plan_side)
            good = code == want_exit and not (
                figures["missing"] or figures["unexpected"] or figures["wrong_match"]
            )
            ok &= good
            rows.append(
                {
                    "run": name,
                    "posts": n,
                    "ref_posts": m,
                    "seconds": round(secs, 2),
                    "posts_per_s": round((n + m) / secs),
                    "exit": code,
                    **figures,
                    "image check": rep["image"]["note"],
                    "ok": good,
                }
            )
    hows = {
        h: sum(1 for c in planted["cross"] if c["how"] == h) for h in ("exact", "lower", "word")
    }
    notes = (
        f"Corpus A: {n_a:,} MMNERD-like posts (MMNERD layout, "
        f"{'a picture per id' if a.images else 'no images'}); B: {n_b:,} "
        f"Twitter-like posts; planted in B from A: {hows}; inside A: "
        f"{sum(w['leak'] for w in planted['first'])} cross-split copies (leaks) and "
        f"{sum(not w['leak'] for w in planted['first'])} same-split copies (not leaks). "
        "Each run is a fresh `mmnerd audit-leakage` process (start-up, reading, hashing of "
        "texts, search, JSON + CSV). "
        f"Peak RSS of the audit processes: {peak_rss_mb(children=True):.0f} MiB. "
        + ("Every leak list equals the planted set." if ok else "MISMATCH with the plan.")
    )
    save("audit-images" if a.images else "audit", rows, notes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
