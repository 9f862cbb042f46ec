"""The leakage audit (``mmnerd audit-leakage``): near-duplicates that straddle the splits of
a corpus, or that the corpus shares with another corpus (``--against REF``).

Inputs are an mmnerd export (Parquet splits) or an IMGID corpus in the Twitter-2015/2017
layout (``train.txt``, ``valid.txt``, ``test.txt``) or the MMNERD one
(``{train,valid,test}_conll_format.txt``).  Each becomes a :class:`Corpus` whose posts carry
text, image hashes and where they came from (file, line, IMGID).

:func:`audit_leakage` groups posts by an exact key (the normalised text; the pHash value),
links distinct keys that are near-duplicates (texts: Jaccard of word 2-shingles, verified
exactly; images: pHash within ``threshold`` bits), and lists every leaking post: in a
cross-split pair the post of the later split (train < validation < test) leaks; every post with a
near-duplicate in REF leaks, whatever its split (REF counts as training data).
:func:`write_clean` writes the corpus without the leaking posts, in its own format.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmnerd.errors import ConfigError, InputError
from mmnerd.records import ImageRef, Post

IMGID_LAYOUTS: dict[str, dict[str, str]] = {
    "twitter": {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
    "mmnerd": {
        "train": "train_conll_format.txt",
        "validation": "valid_conll_format.txt",
        "test": "test_conll_format.txt",
    },
}
"""Split → file name of the two published IMGID layouts (Twitter-2015/2017, MMNERD)."""
EXPORT_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev"),
    "test": ("test",),
}
"""Split → accepted Parquet stems of an mmnerd export (``validation`` is the newer name)."""
REMOVED_NAME = "leakage-removed.json"
LEAK_FIELDS = [
    "id",
    "split",
    "file",
    "line",
    "imgid",
    "kind",
    "against",
    "matched_id",
    "matched_split",
    "matched_file",
    "matched_line",
    "matched_imgid",
    "score",
    "distance",
    "matches",
]
"""Columns of a leak row (JSON and CSV); ``score`` = text Jaccard, ``distance`` = pHash bits."""
_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- inputs
@dataclass
class Corpus:
    """An audited or reference corpus: its files per split and its posts per split."""

    path: Path
    format: str  # "imgid" | "export"
    layout: str  # "twitter" | "mmnerd" | "export"
    files: dict[str, Path]
    posts: dict[str, list[Post]] = field(default_factory=dict)
    hash_kind: str = "phash"  # the perceptual hash kind of its image hashes

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "layout": self.layout,
            "files": {s: p.name for s, p in self.files.items()},
            "posts": {s: len(ps) for s, ps in self.posts.items()},
        }


def _expected() -> str:
    return " or ".join(
        f"{', '.join(files.values())} ({'Twitter-2015/2017' if name == 'twitter' else 'MMNERD'})"
        for name, files in IMGID_LAYOUTS.items()
    )


def imgid_files(folder: Path) -> tuple[str, dict[str, Path]]:
    """The layout (``twitter`` or ``mmnerd``) of an IMGID folder and its file per split.

    Raises :class:`InputError` naming the expected files when neither layout is complete.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (expected {_expected()})")
    present = {
        name: {s: folder / f for s, f in files.items() if (folder / f).is_file()}
        for name, files in IMGID_LAYOUTS.items()
    }
    complete = [name for name, files in present.items() if len(files) == 3]
    if len(complete) == 2:
        raise InputError(f"{folder}: holds both IMGID layouts; keep one ({_expected()})")
    if complete:
        return complete[0], present[complete[0]]
    found = sorted(p.name for files in present.values() for p in files.values())
    hint = f"; found only {', '.join(found)}" if found else ""
    nested = [*folder.glob("*/train_conll_format.txt"), *folder.glob("*/*/train_conll_format.txt")]
    if nested and not found:
        hint += f" (MMNERD: give one language folder, e.g. {sorted(nested)[0].parent})"
    raise InputError(f"{folder}: not an IMGID corpus: expected {_expected()}{hint}")


def export_files(folder: Path) -> dict[str, Path]:
    """``{split: path}`` of an mmnerd export (``validation``, or ``dev`` in a schema 1
    export); split = file stem."""
    folder = Path(folder)
    out: dict[str, Path] = {}
    for stems in EXPORT_SPLITS.values():
        hits = [folder / f"{s}.parquet" for s in stems if (folder / f"{s}.parquet").is_file()]
        if len(hits) > 1:
            raise InputError(f"{folder}: holds both {hits[0].name} and {hits[1].name}; keep one")
        if not hits:
            names = " or ".join(f"{s}.parquet" for s in stems)
            raise InputError(f"{folder}: {names} missing (is {folder} an mmnerd export?)")
        out[hits[0].stem] = hits[0]
    return out


def corpus_format(folder: Path) -> str:
    """``export`` when ``folder`` holds Parquet splits, ``imgid`` when it holds IMGID files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    stems = [s for stems in EXPORT_SPLITS.values() for s in stems]
    if any((folder / f"{s}.parquet").is_file() for s in stems):
        return "export"
    if any((folder / f).is_file() for files in IMGID_LAYOUTS.values() for f in files.values()):
        return "imgid"
    raise InputError(
        f"{folder}: neither an mmnerd export (train.parquet, dev.parquet or "
        f"validation.parquet, test.parquet) nor an IMGID corpus ({_expected()})"
    )


def imgid_blocks(path: Path) -> tuple[bytes, int, list[tuple[int, int, int]]]:
    """The bytes of an IMGID file, where its first post starts, and ``(line, start, end)``
    per post: the ``IMGID:`` line number and the byte range from that line up to the next
    ``IMGID:`` line (token lines and blank lines after them included).  Lines split at
    ``\\n`` only, like :func:`mmnerd.sources.conll.read_imgid_lines`; a leading BOM stays
    in the preamble."""
    data = Path(path).read_bytes()
    starts: list[int] = []
    lines: list[int] = []
    pos = 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        head = raw[len(_BOM) :] if lineno == 1 and raw.startswith(_BOM) else raw
        if head.startswith(b"IMGID:"):
            starts.append(pos + len(raw) - len(head))
            lines.append(lineno)
        pos += len(raw) + 1
    if not starts:
        return data, len(data), []
    ends = [*starts[1:], len(data)]
    return data, starts[0], list(zip(lines, starts, ends, strict=True))


def post_id(split: str, imgid: str, n: int) -> str:
    """``<split>:<imgid>``, plus ``~n`` for the n-th (n > 1) post with that id in the split."""
    return f"{split}:{imgid}" + (f"~{n}" if n > 1 else "")


def posts_from_imgid(
    folder: Path, images: Path | None = None, kind: str = "phash"
) -> dict[str, list[Post]]:
    """Posts per split (``train``, ``validation``, ``test``) of an IMGID corpus in either layout
    (:func:`imgid_files`), with ``extra`` = file, ``IMGID:`` line number and imgid; with
    ``images``, each post's picture (:func:`mmnerd.sources.conll.find_image`) is hashed.
    Posts whose picture is missing take part through their text only."""
    return load_imgid(folder, images, kind).posts


def load_imgid(folder: Path, images: Path | None = None, kind: str = "phash") -> Corpus:
    """:func:`posts_from_imgid` as a :class:`Corpus` (layout and files kept for the clean copy)."""
    from mmnerd.sources.conll import read_imgid_lines

    layout, files = imgid_files(folder)
    corpus = Corpus(Path(folder), "imgid", layout, files, hash_kind=kind)
    for split, path in files.items():
        _data, _pre, blocks = imgid_blocks(path)
        seen: Counter[str] = Counter()
        posts: list[Post] = []
        for k, (imgid, tokens, _labels, _lines) in enumerate(read_imgid_lines(path)):
            seen[imgid] += 1
            posts.append(
                Post(
                    id=post_id(split, imgid, seen[imgid]),
                    source="imgid",
                    source_id=imgid,
                    text=" ".join(tokens),
                    split=split,
                    extra={"file": path.name, "line": blocks[k][0], "imgid": imgid},
                )
            )
        if len(posts) != len(blocks):  # the reader and the block scanner disagree
            raise InputError(f"{path}: {len(blocks)} IMGID lines but {len(posts)} posts")
        corpus.posts[split] = posts
    if images is not None:
        _hash_imgid_images([p for ps in corpus.posts.values() for p in ps], Path(images), kind)
    return corpus


def _hash_imgid_images(posts: list[Post], images: Path, kind: str) -> None:
    """Set ``post.image`` (sha256 + pHash) of each post whose picture is in ``images``;
    each file is hashed once however many posts share its id."""
    from mmnerd.images.hashing import hash_files_report, hash_hex
    from mmnerd.sources.conll import find_image

    if not images.is_dir():
        raise InputError(f"{images}: no such image folder")
    by_file: dict[Path, list[Post]] = {}
    for p in posts:
        found = find_image(images, p.source_id)
        if found is not None:
            by_file.setdefault(found, []).append(p)
    files = list(by_file)
    workers = 2 if len(files) >= 256 else 1
    report = hash_files_report([str(f) for f in files], kind=kind, workers=workers)
    for k, f in enumerate(files):
        if k in report.failed:
            ref = ImageRef(url="", path=f.name, status="unreadable", reason=report.failed[k])
        else:
            sha = hashlib.sha256(f.read_bytes()).hexdigest()
            ref = ImageRef(url="", path=f.name, status="ok", sha256=sha)
            ref.phash = hash_hex(int(report.hashes[k]))
        for p in by_file[f]:
            p.image = dataclasses.replace(ref)


def posts_from_export(export_dir: Path) -> dict[str, list[Post]]:
    """Posts per split (``train``, ``validation`` or ``dev``, ``test``) of an mmnerd export:
    id, text and image hashes; ``extra`` = file and row number."""
    return load_export(export_dir).posts


def load_export(export_dir: Path) -> Corpus:
    """:func:`posts_from_export` as a :class:`Corpus`."""
    import pyarrow.parquet as pq

    from mmnerd.io import read_json

    files = export_files(export_dir)
    manifest = Path(export_dir) / "manifest.json"
    kind = read_json(manifest).get("image_hash", "phash") if manifest.is_file() else "phash"
    corpus = Corpus(Path(export_dir), "export", "export", files, hash_kind=kind)
    cols = ["id", "text", "image_sha256", "image_phash"]
    for split, path in files.items():
        try:
            rows = pq.read_table(path, columns=cols).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad or foreign file
            raise InputError(f"{path}: not an mmnerd export split ({e})") from None
        posts = []
        for k, r in enumerate(rows):
            sha, phash = r["image_sha256"] or "", r["image_phash"] or ""
            image = ImageRef(url="", status="ok", sha256=sha, phash=phash) if sha or phash else None
            posts.append(
                Post(
                    id=r["id"],
                    source="export",
                    source_id=r["id"],
                    text=r["text"] or "",
                    split=split,
                    image=image,
                    extra={"file": path.name, "row": k},
                )
            )
        corpus.posts[split] = posts
    return corpus


def load_corpus(folder: Path, images: Path | None = None, kind: str = "phash") -> Corpus:
    """An export or an IMGID corpus, whichever ``folder`` holds (:func:`corpus_format`);
    an IMGID corpus's pictures are hashed with ``kind``."""
    if corpus_format(folder) == "export":
        if images is not None:
            raise ConfigError(
                f"{folder} is an mmnerd export: its image hashes are in the Parquet; "
                "drop the image folder option"
            )
        return load_export(folder)
    return load_imgid(folder, images, kind)


# --------------------------------------------------------------------------- matching
@dataclass
class _Graph:
    """Posts grouped by an exact key, and near-duplicate edges between distinct keys.

    ``gid`` ``(n,)``: group of each post (-1: no key, takes no part); ``ga``, ``gb``,
    ``good``: edges between groups, ``good`` larger = closer (Jaccard, or minus the
    Hamming distance); ``perfect``: ``good`` of two posts in one group.
    """

    gid: np.ndarray
    n_groups: int
    ga: np.ndarray
    gb: np.ndarray
    good: np.ndarray
    perfect: float


def _text_graph(texts: Sequence[str], threshold: float, drop: Sequence[str]) -> _Graph:
    from mmnerd.dedup.text import normalize_text, text_edges

    gid = np.full(len(texts), -1, dtype=np.int64)
    keys: dict[str, int] = {}
    norms: list[str] = []
    originals: list[str] = []
    for k, t in enumerate(texts):
        norm = normalize_text(t, drop)
        if not norm:
            continue
        g = keys.get(norm)
        if g is None:
            g = keys[norm] = len(norms)
            norms.append(norm)
            originals.append(t)
        gid[k] = g
    ga, gb, jac = text_edges(originals, threshold, drop=drop)  # exact Jaccard, all pairs
    return _Graph(gid, len(norms), ga, gb, jac, 1.0)


def _image_graph(posts: Sequence[Post], threshold: int) -> _Graph:
    from mmnerd.dedup.images import image_edges
    from mmnerd.images.hashing import hex_to_int

    gid = np.full(len(posts), -1, dtype=np.int64)
    keys: dict[str, int] = {}
    values: list[int] = []
    valid: list[bool] = []
    for k, p in enumerate(posts):
        img = p.image
        if img is None or not (img.phash or img.sha256):
            continue
        key = img.phash or f"sha256:{img.sha256}"  # same bytes give the same pHash
        g = keys.get(key)
        if g is None:
            g = keys[key] = len(values)
            values.append(hex_to_int(img.phash) if img.phash else 0)
            valid.append(bool(img.phash))
        gid[k] = g
    ga, gb, dist = image_edges(
        np.array(values, dtype=np.uint64), np.array(valid, dtype=bool), threshold
    )
    return _Graph(gid, len(values), ga, gb, -dist.astype(float), 0.0)


@dataclass
class _Best:
    """Per group, for one set of target categories: match count and the closest match."""

    matches: np.ndarray  # (G,) int64
    member: np.ndarray  # (G,) post index of the closest match
    good: np.ndarray  # (G,) its closeness


class _Matcher:
    """Per group and category (split rank, or the REF's): member counts, the first member,
    and the closest neighbouring group's member; :meth:`best` answers for a set of target
    categories."""

    def __init__(self, graph: _Graph, cat: np.ndarray, n_cats: int):
        n, G, C = len(cat), graph.n_groups, n_cats
        self.graph = graph
        on = graph.gid >= 0
        self.cnt = cnt = np.zeros((G, C), dtype=np.int64)
        np.add.at(cnt, (graph.gid[on], cat[on]), 1)
        self.first = first = np.full((G, C), n, dtype=np.int64)
        np.minimum.at(first, (graph.gid[on], cat[on]), np.flatnonzero(on))
        src = np.concatenate([graph.ga, graph.gb]).astype(np.int64)
        dst = np.concatenate([graph.gb, graph.ga]).astype(np.int64)
        gd = np.concatenate([graph.good, graph.good])
        self.nb_cnt = np.zeros((G, C), dtype=np.int64)
        self.nb_good = np.full((G, C), -np.inf)
        self.nb_member = np.full((G, C), n, dtype=np.int64)
        for c in range(C):
            w = cnt[dst, c]
            self.nb_cnt[:, c] = np.bincount(src, weights=w, minlength=G).astype(np.int64)
            m = w > 0
            if not m.any():
                continue
            s_, g_, mem = src[m], gd[m], first[dst[m], c]
            order = np.lexsort((mem, -g_, s_))  # per group: closest first, then lowest index
            head = order[np.r_[True, s_[order][1:] != s_[order][:-1]]]
            self.nb_good[s_[head], c] = g_[head]
            self.nb_member[s_[head], c] = mem[head]

    def best(self, targets: list[int]) -> _Best:
        """Matches of each group's posts among the posts of ``targets`` (ascending)."""
        t = np.array(targets, dtype=np.int64)
        rows = np.arange(self.graph.n_groups)
        direct = self.cnt[:, t]
        has_direct = direct.sum(axis=1) > 0
        c_direct = t[np.argmax(direct > 0, axis=1)]  # the earliest category with a copy
        c_near = t[np.argmax(self.nb_good[:, t], axis=1)]  # the closest, earliest on ties
        return _Best(
            matches=direct.sum(axis=1) + self.nb_cnt[:, t].sum(axis=1),
            member=np.where(has_direct, self.first[rows, c_direct], self.nb_member[rows, c_near]),
            good=np.where(has_direct, self.graph.perfect, self.nb_good[rows, c_near]),
        )


def _pair_counts(graph: _Graph, cnt: np.ndarray, n_splits: int) -> dict[str, Any]:
    """Exact within-corpus figures: straddling clusters, posts in them, cross-split pairs,
    and (if a REF column exists) pairs between the corpus and REF."""
    from mmnerd.dedup.clusters import connected_components

    own = cnt[:, :n_splits]
    a = own.sum(axis=1)
    ga, gb = graph.ga, graph.gb
    inside = ((a * a - (own * own).sum(axis=1)) // 2).sum()
    across = (a[ga] * a[gb] - (own[ga] * own[gb]).sum(axis=1)).sum() if len(ga) else 0
    both = (a[ga] > 0) & (a[gb] > 0) if len(ga) else np.zeros(0, bool)
    labels = connected_components(graph.n_groups, ga[both], gb[both])
    comp = np.zeros((graph.n_groups, n_splits), dtype=np.int64)
    np.add.at(comp, labels, own)
    straddle = (comp > 0).sum(axis=1) > 1
    out: dict[str, Any] = {
        "clusters": int(straddle.sum()),
        "cross_split_pairs": int(inside + across),
        "cluster_posts": comp[straddle].sum(axis=0),
    }
    if cnt.shape[1] > n_splits:
        r = cnt[:, n_splits]
        ref_pairs = (a * r).sum() + ((a[ga] * r[gb] + a[gb] * r[ga]).sum() if len(ga) else 0)
        out["ref_pairs"] = int(ref_pairs)
    return out


def _where(p: Post) -> dict[str, Any]:
    x = p.extra
    return {"file": x.get("file", ""), "line": x.get("line"), "imgid": x.get("imgid", "")}


def image_note(posts: Sequence[Post]) -> dict[str, Any]:
    """How many posts had a hashed image, in words a reader cannot mistake for "no leaks"."""
    m = len(posts)
    n = sum(1 for p in posts if p.image is not None and (p.image.phash or p.image.sha256))
    bad = sum(1 for p in posts if p.image is not None and p.image.status == "unreadable")
    note = f"{n} of {m} posts had images" if n else f"no images: 0 of {m} posts had an image"
    if bad:
        note += f" ({bad} could not be read)"
    return {"posts": m, "with_image": n, "unreadable": bad, "note": note}


@dataclass
class _Audited:
    """The audited corpus and REF as one index space: the corpus's posts first (split
    categories 0..S-1), then REF's (category S)."""

    splits: list[str]
    posts: list[Post]
    everything: list[Post]
    cats: np.ndarray  # (n,) int64 split category per post of ``everything``
    ref_split_of: list[str]
    has_ref: bool

    @classmethod
    def of(cls, by_split: dict[str, list[Post]], against: dict[str, list[Post]] | None):
        splits = list(by_split)
        posts = [p for s in splits for p in by_split[s]]
        ref = against or {}
        ref_posts = [p for s in ref for p in ref[s]]
        cats = [k for k, s in enumerate(splits) for _ in by_split[s]] + [len(splits)] * len(
            ref_posts
        )
        ref_split_of = [s for s in ref for _ in ref[s]]
        return cls(splits, posts, posts + ref_posts, np.array(cats, dtype=np.int64),
                   ref_split_of, against is not None)  # fmt: skip

    def split_of(self, i: int) -> str:
        n = len(self.posts)
        return self.splits[int(self.cats[i])] if i < n else self.ref_split_of[i - n]


def _leak_rows(
    kind: str, graph: _Graph, matcher: _Matcher, a: _Audited
) -> tuple[list[tuple[tuple[int, int, int], dict[str, Any]]], dict[str, Counter[str]]]:
    """One row per leaking post of ``kind`` (sort key, row), and the counts per split: within
    the corpus a post leaks against the earlier splits, with REF against REF."""
    S, n_own = len(a.splits), len(a.posts)
    kind_no = 0 if kind == "image" else 1
    rows: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    leaking: dict[str, Counter[str]] = {"splits": Counter(), "ref": Counter()}
    plans = [("splits", s, list(range(s))) for s in range(1, S)]
    if a.has_ref:
        plans += [("ref", s, [S]) for s in range(S)]
    for where, s, targets in plans:
        b = matcher.best(targets)
        members = np.flatnonzero((a.cats[:n_own] == s) & (graph.gid[:n_own] >= 0))
        g = graph.gid[members]
        hit = b.matches[g] > 0
        for i, gg in zip(members[hit].tolist(), g[hit].tolist(), strict=True):
            q = int(b.member[gg])
            close = float(b.good[gg])
            row = {
                "id": a.posts[i].id,
                "split": a.splits[s],
                **_where(a.posts[i]),
                "kind": kind,
                "against": where,
                "matched_id": a.everything[q].id,
                "matched_split": a.split_of(q),
                **{f"matched_{k}": v for k, v in _where(a.everything[q]).items()},
                "score": round(close, 4) if kind == "text" else None,
                "distance": int(-close) if kind == "image" else None,
                "matches": int(b.matches[gg]),
            }
            rows.append(((s, i, kind_no * 2 + (where == "ref")), row))
            leaking[where][a.splits[s]] += 1
    return rows, leaking


def _kind_summary(
    kind: str, figures: dict[str, Any], leaking: dict[str, Counter[str]], a: _Audited,
    images: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The figures of one kind: straddling clusters, pairs, posts, leaking posts (and REF)."""
    posts = zip(a.splits, figures["cluster_posts"], strict=True)
    part: dict[str, Any] = {
        "clusters": figures["clusters"],
        "cross_split_pairs": figures["cross_split_pairs"],
        "posts": {s: int(v) for s, v in posts if v},
        "leaking_posts": dict(leaking["splits"]),
        "ref": None,
    }
    if a.has_ref:
        part["ref"] = {"pairs": figures["ref_pairs"], "leaking_posts": dict(leaking["ref"])}
    if kind == "image":
        part["checked"] = images["corpus"]["with_image"] > 0
        part["note"] = images["corpus"]["note"]
        if part["ref"] is not None:
            part["ref"]["checked"] = part["checked"] and images["ref"]["with_image"] > 0
            part["ref"]["note"] = "REF: " + images["ref"]["note"]
    return part


def audit_leakage(
    posts_by_split: dict[str, list[Post]],
    threshold: int = 10,
    text_threshold: float = 0.8,
    drop_words: Sequence[str] = ("URL",),
    against: dict[str, list[Post]] | None = None,
) -> dict[str, Any]:
    """Every leaking post of ``posts_by_split`` (splits in order: train < validation < test).

    Image near-duplicates: same sha256, or pHash within ``threshold`` bits; text: exact
    Jaccard of word 2-shingles of the normalised texts ``>= text_threshold``.  In a
    cross-split pair the post of the later split leaks; with ``against`` (REF, posts per
    split), every post with a near-duplicate in REF leaks.

    Returns ``{"ok", "leaks": [row, ...], "leaking_posts": {split: n}, "image": {...},
    "text": {...}, "images": {...}}``; a row has :data:`LEAK_FIELDS` (one per post, kind
    and ``against`` = ``splits`` | ``ref``; ``matches`` counts its matches there, the
    ``matched_*`` fields name the closest one).  Each kind has ``clusters`` (straddling
    clusters), ``cross_split_pairs``, ``posts`` (in straddling clusters, per split),
    ``leaking_posts`` and, with REF, ``ref`` = ``{pairs, leaking_posts}``.
    """
    a = _Audited.of(posts_by_split, against)
    S = len(a.splits)
    ref_posts = a.everything[len(a.posts) :]
    images = {"corpus": image_note(a.posts), "ref": image_note(ref_posts) if a.has_ref else None}
    graphs = {
        "image": _image_graph(a.everything, threshold),
        "text": _text_graph([p.text for p in a.everything], text_threshold, drop_words),
    }
    rows: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    out: dict[str, Any] = {"threshold": threshold, "text_threshold": text_threshold,
                           "splits": a.splits, "images": images}  # fmt: skip
    for kind, graph in graphs.items():
        matcher = _Matcher(graph, a.cats, S + (1 if a.has_ref else 0))
        kind_rows, leaking = _leak_rows(kind, graph, matcher, a)
        rows += kind_rows
        out[kind] = _kind_summary(kind, _pair_counts(graph, matcher.cnt, S), leaking, a, images)
    rows.sort(key=lambda kr: kr[0])
    leaks = [r for _, r in rows]
    leakers = {(r["split"], r["id"]) for r in leaks}
    counts = Counter(s for s, _ in leakers)
    per_split = {s: counts[s] for s in a.splits if counts[s]}
    return {"ok": not leakers, "leaking_posts": per_split, **out, "leaks": leaks}


# --------------------------------------------------------------------------- outputs
def leakage_json(report: dict[str, Any]) -> str:
    """The audit as pretty JSON (for the CLI)."""
    return json.dumps(report, indent=2, ensure_ascii=False)


def write_leaks_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The leak rows as CSV (:data:`LEAK_FIELDS`; empty cell = no value)."""
    from mmnerd.io import atomic_write

    with atomic_write(path) as f:
        w = csv.DictWriter(f, fieldnames=LEAK_FIELDS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in LEAK_FIELDS})


def check_clean_dir(out_dir: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output folder that is one of ``inputs`` or inside one (never overwrite)."""
    out = Path(out_dir).resolve()
    for src in inputs:
        base = Path(src).resolve()
        if out == base or out.is_relative_to(base):
            raise ConfigError(
                f"--write-clean {out_dir}: is {'' if out == base else 'inside '}the input "
                f"{src}; choose a folder outside it"
            )


def write_clean(
    corpus: Corpus, leaks: Sequence[dict[str, Any]], out_dir: Path, about: dict[str, Any]
) -> dict[str, Any]:
    """Write ``corpus`` without the posts listed in ``leaks`` into ``out_dir``, in its own
    format, plus :data:`REMOVED_NAME` (what was removed and why; ``about`` adds the audit's
    settings).  IMGID: the same file names, the kept posts' bytes unchanged.  Export: the
    Parquet splits without those rows (schema, metadata, compression kept), manifest.json
    updated, other files copied (images only the removed rows used are left out)."""
    from mmnerd.io import write_json

    check_clean_dir(out_dir, [corpus.path])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons: dict[str, list[dict[str, Any]]] = {}
    for r in leaks:
        reasons.setdefault(r["id"], []).append(
            {k: r[k] for k in ("kind", "against", "matched_id", "matched_split", "score")}
            | {"distance": r["distance"]}
        )
    if corpus.format == "imgid":
        rows = _clean_imgid(corpus, set(reasons), out_dir)
        notes = "kept posts are byte-identical to the input; images are not copied"
    else:
        rows, notes = _clean_export(corpus, set(reasons), out_dir)
    split_of = {p.id: s for s, ps in corpus.posts.items() for p in ps}
    summary = {
        **about,
        "input": str(corpus.path),
        "format": corpus.format,
        "rows": rows,
        "removed": [
            {"id": pid, "split": split_of.get(pid, ""), "reasons": why}
            for pid, why in reasons.items()
        ],
        "note": notes,
    }
    write_json(out_dir / REMOVED_NAME, summary)
    return summary


def _clean_imgid(corpus: Corpus, removed: set[str], out_dir: Path) -> dict[str, dict[str, int]]:
    from mmnerd.io import atomic_write

    rows = {}
    for split, path in corpus.files.items():
        data, pre, blocks = imgid_blocks(path)
        posts = corpus.posts[split]
        kept = [b for b, p in zip(blocks, posts, strict=True) if p.id not in removed]
        with atomic_write(out_dir / path.name, "wb") as f:
            f.write(data[:pre])
            for _line, start, end in kept:
                f.write(data[start:end])
        rows[split] = {"before": len(posts), "after": len(kept)}
    return rows


def _clean_export(
    corpus: Corpus, removed: set[str], out_dir: Path
) -> tuple[dict[str, dict[str, int]], str]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mmnerd.export.parquet import sha256_file
    from mmnerd.io import atomic_write, read_json, write_json

    gone = pa.array(sorted(removed), type=pa.string())
    rows: dict[str, dict[str, int]] = {}
    facts: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    dropped: set[str] = set()
    for split, path in corpus.files.items():
        pf = pq.ParquetFile(path)
        md = pf.metadata
        size = md.row_group(0).num_rows if md.num_row_groups else 1024
        codec = md.row_group(0).column(0).compression if md.num_row_groups else "ZSTD"
        codec = "none" if codec == "UNCOMPRESSED" else codec.lower()
        target = out_dir / path.name
        n = 0
        with (
            atomic_write(target, "wb") as f,
            pq.ParquetWriter(f, pf.schema_arrow, compression=codec) as w,
        ):
            for g in range(md.num_row_groups):
                t = pf.read_row_group(g)
                drop = pc.is_in(t["id"], value_set=gone)
                kept = t.filter(pc.invert(drop))
                if "image" in t.column_names:
                    paths = pc.struct_field(t["image"], "path")
                    used.update(x for x in pc.filter(paths, pc.invert(drop)).to_pylist() if x)
                    dropped.update(x for x in pc.filter(paths, drop).to_pylist() if x)
                if kept.num_rows:
                    w.write_table(kept, row_group_size=size)
                n += kept.num_rows
            if n == 0:
                w.write_table(pf.schema_arrow.empty_table())
        rows[split] = {"before": md.num_rows, "after": n}
        facts[path.name] = {
            "rows": n,
            "sha256": sha256_file(target),
            "bytes": target.stat().st_size,
        }
    orphans = dropped - used
    skip = {p.name for p in corpus.files.values()} | {"manifest.json", REMOVED_NAME}
    src = corpus.path.resolve()

    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).resolve().relative_to(src)
        return [
            x
            for x in names
            if (rel / x).as_posix() in orphans or (x.startswith(".") and x.endswith(".tmp"))
        ]

    for item in sorted(src.iterdir()):
        if item.name in skip or item.name in ignore(str(src), [item.name]):
            continue
        if item.is_dir():
            shutil.copytree(item, out_dir / item.name, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(item, out_dir / item.name)
    manifest = read_json(src / "manifest.json")
    if isinstance(manifest, dict):
        for entry in manifest.get("files", []):
            entry.update(facts.get(entry.get("file"), {}))
        write_json(out_dir / "manifest.json", manifest)
    note = "manifest.json rows and sha256 updated"
    if (src / "README.md").is_file():
        note += "; the dataset card (README.md) is copied unchanged: its figures predate this"
    if orphans:
        note += f"; {len(orphans)} images used only by removed rows left out"
    return rows, note


# --------------------------------------------------------------------------- the command
def _load_both(
    source: Path,
    source_format: str,
    images: Path | None,
    against: Path | None,
    against_images: Path | None,
) -> tuple[Corpus, Corpus | None]:
    """The audited corpus and REF, an IMGID side's pictures hashed with the kind of the
    export's hashes (an export's ``image_phash`` holds its ``dedup.hash`` kind)."""
    if source_format == "export":
        corpus = load_export(source)
        ref = load_corpus(against, against_images, corpus.hash_kind) if against else None
        if ref is not None and ref.hash_kind != corpus.hash_kind:
            raise ConfigError(
                f"--against {against}: its image hashes are {ref.hash_kind}, the export's "
                f"{corpus.hash_kind}; export both with the same dedup.hash"
            )
        return corpus, ref
    ref = load_corpus(against, against_images) if against is not None else None
    kind = ref.hash_kind if ref is not None and ref.format == "export" else "phash"
    return load_imgid(source, images, kind), ref


def run_audit(
    source: Path,
    source_format: str,
    images: Path | None = None,
    against: Path | None = None,
    against_images: Path | None = None,
    threshold: int = 10,
    text_threshold: float = 0.8,
    clean_dir: Path | None = None,
) -> dict[str, Any]:
    """Load the corpus (``source_format`` ``export`` or ``imgid``) and REF, audit, and write
    the clean copy if ``clean_dir``; returns the report (see :func:`audit_leakage`) with
    ``input``, ``against`` and ``clean`` added."""
    if against_images is not None and against is None:
        raise ConfigError("--against-images needs --against REF")
    if images is not None and source_format == "export":
        raise ConfigError("--images is for --imgid; an export holds its image hashes")
    if clean_dir is not None:
        check_clean_dir(clean_dir, [source] + ([against] if against is not None else []))
    if against is not None and Path(against).resolve() == Path(source).resolve():
        raise ConfigError(f"--against {against}: is the audited corpus itself")
    corpus, ref = _load_both(source, source_format, images, against, against_images)
    report = audit_leakage(
        corpus.posts,
        threshold=threshold,
        text_threshold=text_threshold,
        against=ref.posts if ref is not None else None,
    )
    leaks = report.pop("leaks")
    report |= {"input": corpus.describe(), "against": ref.describe() if ref else None}
    report |= {"clean": None, "leaks": leaks}
    if clean_dir is not None:
        about = {
            "against": str(against) if against is not None else None,
            "threshold": threshold,
            "text_threshold": text_threshold,
        }
        done = write_clean(corpus, report["leaks"], clean_dir, about)
        report["clean"] = {"path": str(clean_dir), "rows": done["rows"]}
    return report


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows (kind, against, clusters, pairs, leaking posts) for the CLI."""

    def per_split(d: dict[str, int]) -> str:
        return ", ".join(f"{k}: {v}" for k, v in d.items()) or "0"

    rows = []
    for kind in ("image", "text"):
        part = report[kind]
        if part.get("checked", True):
            pairs = str(part["cross_split_pairs"])
            rows.append(
                [kind, "splits", str(part["clusters"]), pairs, per_split(part["leaking_posts"])]
            )
        else:
            rows.append([kind, "splits", "—", "—", "not checked (no images)"])
        ref = part.get("ref")
        if ref is not None:
            if ref.get("checked", True):
                rows.append([kind, "REF", "", str(ref["pairs"]), per_split(ref["leaking_posts"])])
            else:
                rows.append([kind, "REF", "", "—", "not checked (no images)"])
    return rows


def image_lines(report: dict[str, Any]) -> list[str]:
    """How many posts had images, in the corpus and in REF (printed under the table)."""
    lines = [f"image: {report['images']['corpus']['note']}"]
    if report["images"].get("ref"):
        lines.append(f"image: REF: {report['images']['ref']['note']}")
    return lines
