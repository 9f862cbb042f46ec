"""Punctuation removal for text near-duplicates: mmnerd's ``str.translate`` table against
the ``regex`` module's ``\\p{P}``, on synthetic multilingual posts.

    python benchmarks/punctuation.py [--n 100000]

Both map every Unicode punctuation character to a space after casefolding (what
``mmnerd.dedup.text.normalize_text`` does before splitting into words).  Reports
the CPU seconds for all posts (5 interleaved rounds: the median, every round listed),
the one-time table build, and how many posts' word lists differ (the table covers the BMP only).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

WORDS = (  # noqa: SIM905
    "Paris Berlin Madrid London Anna Müller José García l'équipe straße über niño "
    "coração c'est qu'il aujourd'hui señor Zürich Köln Ελλάδα Москва 東京 Ωmega "
    "the of and la le der die das el los und et y que pour mit con"
).split()
PUNCT = list(",.;:!?¿¡«»“”‘’—–…()[]{}·•@#%&*/\\\"'") + ["...", "!!", "?!", "--"]
EMOJI = ["😀", "🇫🇷", "👍🏽", "❤️", "👩‍💻", "🎉"]


def make_posts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    posts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(5, 30)):
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.25:
                w += rng.choice(PUNCT)
            elif r < 0.3:
                w = rng.choice(EMOJI)
            elif r < 0.33:
                w = "#" + w
            parts.append(w)
        posts.append(" ".join(parts))
    return posts


def rounds(fns: list, posts: list[str], runs: int = 5) -> list[tuple[list[float], list[list[str]]]]:
    """CPU seconds of each function in each of ``runs`` rounds, the functions taking turns
    (so a change of machine load hits both alike), with its output."""
    secs: list[list[float]] = [[] for _ in fns]
    outs: list[list[list[str]]] = [[] for _ in fns]
    for _ in range(runs):
        for k, fn in enumerate(fns):
            t0 = time.process_time()  # CPU seconds: steadier than wall time on a busy machine
            outs[k] = [fn(p) for p in posts]
            secs[k].append(time.process_time() - t0)
    return list(zip(secs, outs, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    a = ap.parse_args()
    posts = make_posts(a.n)

    from mmnerd.dedup import text as dedup_text

    t0 = time.perf_counter()
    table = dedup_text._punct_table()
    build = time.perf_counter() - t0

    import regex

    t0 = time.perf_counter()
    punct = regex.compile(r"\p{P}")
    compile_s = time.perf_counter() - t0

    (r_table, w_table), (r_regex, w_regex) = rounds(
        [
            lambda p: p.casefold().translate(table).split(),
            lambda p: punct.sub(" ", p.casefold()).split(),
        ],
        posts,
    )
    t_table, t_regex = sorted(r_table)[len(r_table) // 2], sorted(r_regex)[len(r_regex) // 2]
    differ = sum(x != y for x, y in zip(w_table, w_regex, strict=True))
    rows = [
        {"method": "str.translate table (mmnerd)", "setup_s": round(build, 3),
         "cpu_s": round(t_table, 3), "posts_per_s": round(a.n / t_table),
         "rounds_cpu_s": [round(x, 3) for x in r_table]},
        {"method": "regex \\p{P} sub", "setup_s": round(compile_s, 3),
         "cpu_s": round(t_regex, 3), "posts_per_s": round(a.n / t_regex),
         "rounds_cpu_s": [round(x, 3) for x in r_regex]},
    ]  # fmt: skip
    save(
        "punctuation",
        rows,
        notes=f"{a.n} synthetic posts, CPU s, median of 5 interleaved rounds (all listed); "
        f"posts whose words differ: {differ}",
    )


if __name__ == "__main__":
    main()
