"""`[language] trust_hint` against detection on short posts (issue 15).

Uses the hand-written posts of tests/data/langid (52 per target language, many of three
words or fewer).  For the target-language posts, compares what the language stage keeps
and labels correctly (a) with detection (py3langid restricted to the 10 candidates,
min_confidence 0.5) and (b) with trust_hint, when the declared language is right and when
a share of the declarations is wrong (a Mastodon hint is often the author's interface
default).  Prints a table, writes benchmarks/results/langid_hint.json.

    python benchmarks/langid_hint.py [--wrong-share 0.1] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("en", "fr", "de", "es")
CANDIDATES = ("en", "fr", "de", "es", "it", "pt", "nl", "ca", "ro", "pl")


def load() -> list[tuple[str, str]]:
    rows = []
    for path in sorted((ROOT / "tests/data/langid").glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                lang, text = line.split("\t", 1)
                rows.append((lang, text))
    return rows


def words(text: str) -> int:
    from mmnerd.text.langid import language_evidence

    return len(language_evidence(text).split())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wrong-share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    from mmnerd.text.langid import detect
    from mmnerd.text.stages import HINT_DISPUTE

    posts = [(lang, text) for lang, text in load() if lang in TARGETS]
    rng = random.Random(args.seed)
    rows = []
    for subset, keep in (
        ("all target posts", lambda t: True),
        ("<= 3 words", lambda t: words(t) <= 3),
    ):
        chosen = [(lang, text) for lang, text in posts if keep(text)]
        detected = [detect(text, CANDIDATES) for _, text in chosen]
        pairs = list(zip(chosen, detected, strict=True))
        ok_detect = sum(d == lang and p >= 0.5 for (lang, _), (d, p) in pairs)
        wrong = {i for i in range(len(chosen)) if rng.random() < args.wrong_share}
        hints = [rng.choice([t for t in TARGETS if t != lang]) if i in wrong else lang
                 for i, (lang, _) in enumerate(chosen)]  # fmt: skip
        ok_hint_noisy = sum(h == lang for (lang, _), h in zip(chosen, hints, strict=True))
        disputed = sum(
            d != h and p >= HINT_DISPUTE for h, (d, p) in zip(hints, detected, strict=True)
        )
        caught = sum(i in wrong and detected[i][0] != hints[i] and detected[i][1] >= HINT_DISPUTE
                     for i in range(len(chosen)))  # fmt: skip
        rows.append({
            "posts": subset, "n": len(chosen),
            "detection: kept and right": f"{ok_detect} ({ok_detect / len(chosen):.1%})",
            "trust_hint, right hints": f"{len(chosen)} (100%)",
            f"trust_hint, {args.wrong_share:.0%} wrong hints": f"{ok_hint_noisy} "
            f"({ok_hint_noisy / len(chosen):.1%})",
            "wrong hints flagged lang_hint_disputed": f"{caught} of {len(wrong)}",
            "right hints flagged": disputed - caught,
        })  # fmt: skip
    save("langid_hint", rows, notes="py3langid restricted to 10 candidates, min_confidence 0.5; "
         f"hint dispute threshold {HINT_DISPUTE}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
