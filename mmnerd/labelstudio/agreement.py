"""Inter-annotator agreement: pairwise entity F1 and token-level Cohen's kappa.

For every pair of annotators, over the posts both completed:

* **entity F1** — exact match of ``(start, end, type)`` on token-aligned spans,
  pooled over posts: ``2·|A∩B| / (|A| + |B|)`` (symmetric; 1.0 if both marked
  nothing);
* **token kappa** — Cohen's kappa over the tokens' IOB2 tags (9 classes);
  per entity type, kappa of the binary "token belongs to a mention of type T".

Both overall, per language and per type.  :func:`write_report` writes
``agreement.md``, ``agreement.json`` and one PNG heat map per annotator pair
(token confusion between the two, by entity type) plus ``pairwise_f1.png``
under ``<data_dir>/side/pull/agreement/`` (the pull stage's side folder).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from mmnerd.io import atomic_write, remove_stale_temps, write_json
from mmnerd.records import ENTITY_TYPES, Post, Span
from mmnerd.text.bio import spans_to_bio

TYPES_O = ("O", *ENTITY_TYPES)


def f1_counts(both: float, na: float, nb: float) -> float:
    """Exact-match entity F1 of two annotators from counts: ``2·both / (na + nb)``
    (symmetric; 1.0 when neither marked anything).  The one definition mmnerd uses."""
    return 2 * both / (na + nb) if na + nb else 1.0


def entity_f1(a: Sequence[Span], b: Sequence[Span]) -> float:
    """:func:`f1_counts` of two span sets, spans matched on ``(start, end, label)``."""
    ka, kb = {s.key() for s in a}, {s.key() for s in b}
    return f1_counts(len(ka & kb), len(ka), len(kb))


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two equally long label sequences (None when empty)."""
    if len(a) != len(b):
        raise ValueError("sequences differ in length")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return (po - pe) / (1 - pe)


class _Tally:
    """Counts for one annotator pair within one slice (overall / language)."""

    def __init__(self) -> None:
        self.posts = 0
        self.na = Counter()  # entities by type, annotator A
        self.nb = Counter()
        self.both = Counter()
        self.tags_a: list[str] = []
        self.tags_b: list[str] = []

    def add(self, sa: Sequence[Span], sb: Sequence[Span], ta: list[str], tb: list[str]) -> None:
        self.posts += 1
        ka, kb = {s.key() for s in sa}, {s.key() for s in sb}
        self.na.update(k[2] for k in ka)
        self.nb.update(k[2] for k in kb)
        self.both.update(k[2] for k in ka & kb)
        self.tags_a.extend(ta)
        self.tags_b.extend(tb)

    def f1(self, typ: str | None = None) -> float | None:
        if typ is None:
            na, nb, both = sum(self.na.values()), sum(self.nb.values()), sum(self.both.values())
        else:
            na, nb, both = self.na[typ], self.nb[typ], self.both[typ]
        if na + nb == 0 and (typ is not None or self.posts == 0):
            return None  # nobody marked anything of this type: agreement is undefined
        return f1_counts(both, na, nb)

    def kappa(self, typ: str | None = None) -> float | None:
        if typ is None:
            return cohen_kappa(self.tags_a, self.tags_b)
        return cohen_kappa(
            [t[2:] == typ for t in self.tags_a],  # type: ignore[misc]
            [t[2:] == typ for t in self.tags_b],  # type: ignore[misc]
        )

    def summary(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "tokens": len(self.tags_a),
            "entity_f1": _r(self.f1()),
            "token_kappa": _r(self.kappa()),
            "per_type": {
                t: {"entity_f1": _r(self.f1(t)), "token_kappa": _r(self.kappa(t))}
                for t in ENTITY_TYPES
            },
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _offsets(post: Post) -> list[tuple[int, int]]:
    if post.token_offsets:
        return [tuple(o) for o in post.token_offsets]  # type: ignore[misc]
    from mmnerd.text.tokenize import tokenize

    return tokenize(post.text, post.lang or "xx")[1]


def compute(posts: Iterable[Post]) -> dict[str, Any]:
    """Pairwise agreement (see the module docstring) as a JSON-ready dict."""
    overall: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    by_lang: dict[tuple[str, str, str], _Tally] = defaultdict(_Tally)
    confusion: dict[tuple[str, str], Counter] = defaultdict(Counter)
    annotators: set[str] = set()
    for post in posts:
        done = {}
        for a in sorted(post.annotations, key=lambda a: a.annotation_id):
            if not a.cancelled:
                done[a.annotator] = a  # one per annotator and post: the latest
        if len(done) < 2:
            continue
        offs = _offsets(post)
        tags = {k: spans_to_bio(a.spans, offs).tags for k, a in done.items()}
        for x, y in combinations(sorted(done), 2):
            annotators.update((x, y))
            for tally in (overall[(x, y)], by_lang[(x, y, post.lang or "?")]):
                tally.add(done[x].spans, done[y].spans, tags[x], tags[y])
            confusion[(x, y)].update(
                (ta[2:] or "O", tb[2:] or "O") for ta, tb in zip(tags[x], tags[y], strict=True)
            )
    pairs = []
    for (x, y), tally in sorted(overall.items()):
        langs = {
            lang: t.summary() for (a, b, lang), t in sorted(by_lang.items()) if (a, b) == (x, y)
        }
        pairs.append({"a": x, "b": y, **tally.summary(), "per_language": langs})
    total = _Tally()
    for t in overall.values():
        total.posts += t.posts
        total.na.update(t.na)
        total.nb.update(t.nb)
        total.both.update(t.both)
        total.tags_a.extend(t.tags_a)
        total.tags_b.extend(t.tags_b)
    lang_total: dict[str, _Tally] = defaultdict(_Tally)
    for (_, _, lang), t in by_lang.items():
        lt = lang_total[lang]
        lt.posts += t.posts
        lt.na.update(t.na)
        lt.nb.update(t.nb)
        lt.both.update(t.both)
        lt.tags_a.extend(t.tags_a)
        lt.tags_b.extend(t.tags_b)
    return {
        "annotators": sorted(annotators),
        "overall": total.summary(),
        "per_language": {lang: t.summary() for lang, t in sorted(lang_total.items())},
        "pairs": pairs,
        "confusion": {
            f"{x}|{y}": {f"{a}|{b}": n for (a, b), n in sorted(c.items())}
            for (x, y), c in sorted(confusion.items())
        },
    }


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Inter-annotator agreement",
        "",
        "Pairwise, over posts both annotators completed. Entity F1: exact (start, end, type) "
        "on token-aligned spans. Kappa: Cohen's kappa over IOB2 token tags (per type: binary).",
        "",
        f"Annotators (hashed ids): {', '.join(result['annotators']) or 'none with overlap'}",
        "",
        "## Overall",
        "",
        "| slice | pair-posts | tokens | entity F1 | token kappa |",
        "|---|---:|---:|---:|---:|",
    ]
    o = result["overall"]
    lines.append(
        f"| all | {o['posts']} | {o['tokens']} | {_fmt(o['entity_f1'])} "
        f"| {_fmt(o['token_kappa'])} |"
    )
    for lang, s in result["per_language"].items():
        lines.append(
            f"| {lang} | {s['posts']} | {s['tokens']} | {_fmt(s['entity_f1'])} "
            f"| {_fmt(s['token_kappa'])} |"
        )
    lines += ["", "## Per entity type", "", "| type | entity F1 | token kappa |", "|---|---:|---:|"]
    for t in ENTITY_TYPES:
        s = o["per_type"][t]
        lines.append(f"| {t} | {_fmt(s['entity_f1'])} | {_fmt(s['token_kappa'])} |")
    lines += [
        "",
        "## Per annotator pair",
        "",
        "| A | B | posts | entity F1 | token kappa | " + " | ".join(ENTITY_TYPES) + " | heat map |",
        "|---|---|---:|---:|---:|" + "---:|" * len(ENTITY_TYPES) + "---|",
    ]
    for p in result["pairs"]:
        per = " | ".join(_fmt(p["per_type"][t]["entity_f1"]) for t in ENTITY_TYPES)
        png = f"pair_{p['a']}_{p['b']}.png"
        lines.append(
            f"| {p['a']} | {p['b']} | {p['posts']} | {_fmt(p['entity_f1'])} "
            f"| {_fmt(p['token_kappa'])} | {per} | [{png}]({png}) |"
        )
    lines.append("")
    return "\n".join(lines)


def _heatmaps(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for key, cells in result["confusion"].items():
        x, y = key.split("|")
        m = np.zeros((len(TYPES_O), len(TYPES_O)), dtype=int)
        for ab, n in cells.items():
            a, b = ab.split("|")
            m[TYPES_O.index(a), TYPES_O.index(b)] = n
        fig, ax = plt.subplots(figsize=(4.6, 4))
        ax.imshow(np.log1p(m), cmap="viridis")
        ax.set_xticks(range(len(TYPES_O)), TYPES_O)
        ax.set_yticks(range(len(TYPES_O)), TYPES_O)
        ax.set_xlabel(f"annotator {y}")
        ax.set_ylabel(f"annotator {x}")
        ax.set_title("token types (log colour)")
        for i in range(len(TYPES_O)):
            for j in range(len(TYPES_O)):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", color="w", fontsize=8)
        fig.tight_layout()
        path = out / f"pair_{x}_{y}.png"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        written.append(path)
    names = result["annotators"]
    if names:
        f1 = np.full((len(names), len(names)), np.nan)
        for p in result["pairs"]:
            i, j = names.index(p["a"]), names.index(p["b"])
            v = p["entity_f1"] if p["entity_f1"] is not None else np.nan
            f1[i, j] = f1[j, i] = v
        np.fill_diagonal(f1, 1.0)
        fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(names), 1 + 0.8 * len(names)))
        ax.imshow(f1, vmin=0, vmax=1, cmap="RdYlGn")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title("pairwise entity F1")
        fig.tight_layout()
        path = out / "pairwise_f1.png"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_report(posts: Iterable[Post], out_dir: str | Path) -> dict[str, Any]:
    """Compute agreement and write agreement.md/.json and the PNG heat maps into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # left by a pull killed while writing this report
    for old in out.glob("pair_*.png"):
        old.unlink()
    result = compute(posts)
    write_json(out / "agreement.json", result)
    with atomic_write(out / "agreement.md") as f:
        f.write(markdown(result))
    result["files"] = [str(p) for p in _heatmaps(result, out)]
    return result
