"""Exact and near-duplicate clusters over images and texts, the keep policy, the leakage audit.

Edges between posts come from four detectors, all merged into one graph
whose connected components are the clusters:

* identical image files (same ``ImageRef.sha256``);
* near-identical images: perceptual hashes within ``dedup.threshold`` bits
  (exact search, :mod:`mmnerd.images.index`);
* identical texts after :func:`normalize_text` (casefold, URLs and mentions
  removed, whitespace collapsed);
* near-identical texts: MinHash over word shingles + LSH banding, candidates
  kept when the estimated Jaccard similarity is ``>= dedup.text_threshold``.

Identical items are linked as a star to their first member (not all pairs),
so a post reposted 5,000 times costs 4,999 edges, not 12.5M.

In each cluster one post is the representative (``dedup.keep``); every member
gets ``cluster_id`` and the others ``duplicate_of = <representative id>``.
Nothing is deleted: the push to annotation skips posts with ``duplicate_of``,
and the splits keep a cluster in one split.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmnerd.config import DedupConfig
from mmnerd.images.hashing import hash_files_report, hash_hex, hex_to_int
from mmnerd.images.index import HashIndex, _triangle, search
from mmnerd.io import atomic_write, write_json
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post

REPORT_DIR = ("reports", "dedup")

# --------------------------------------------------------------------------- text
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@])@[\w.]+(?:@[\w.-]+)?", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")
_PUNCT: dict[int, str] | None = None


def _punct_table() -> dict[int, str]:
    """``str.translate`` table mapping every Unicode punctuation character (P*) to a space."""
    global _PUNCT
    if _PUNCT is None:
        import unicodedata

        # punctuation outside the BMP (historic scripts) is not worth a 1 s table build
        _PUNCT = {c: " " for c in range(0x10000) if unicodedata.category(chr(c))[0] == "P"}
    return _PUNCT


def normalize_text(text: str, drop: Sequence[str] = ()) -> str:
    """Text key for duplicates: URLs and @mentions removed, casefolded, punctuation
    (Unicode P*) removed, whitespace collapsed; whole words in ``drop`` (e.g. the
    "URL" placeholder) removed too.  Emoji are kept; "#" goes with the punctuation."""
    t = _URL_RE.sub(" ", text)
    t = _MENTION_RE.sub(" ", t)
    t = t.casefold().translate(_punct_table())
    if drop:
        gone = {d.casefold() for d in drop if d}
        t = " ".join(w for w in t.split() if w not in gone)
    return _SPACE_RE.sub(" ", t).strip()


def shingles(norm_text: str, k: int = 2) -> list[str]:
    """Word ``k``-grams of a normalised text (the whole text if it has fewer words)."""
    words = norm_text.split()
    if len(words) <= k:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]


def _hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over ``uint64`` (a bijection that spreads every input bit)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shingle_hashes(norm_texts: Sequence[str], k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word ``k``-shingles of each text (as :func:`shingles`: a text
    with fewer than ``k`` words is one shingle), vectorised over word hashes.

    Returns ``hv`` ``(total,) uint64`` grouped by text and ``counts`` ``(n,) int64``.
    """
    cache: dict[str, int] = {}
    word_h: list[int] = []
    lengths = np.zeros(len(norm_texts), dtype=np.int64)
    for d, t in enumerate(norm_texts):
        words = t.split()
        lengths[d] = len(words)
        for w in words:
            h = cache.get(w)
            if h is None:
                h = cache[w] = _hash64(w)
            word_h.append(h)
    if not word_h:
        return np.zeros(0, np.uint64), np.zeros(len(norm_texts), np.int64)
    wh = np.concatenate([np.array(word_h, dtype=np.uint64), np.zeros(k, np.uint64)])
    n_words = len(word_h)
    doc = np.repeat(np.arange(len(norm_texts)), lengths)
    pos = np.arange(n_words) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    left = lengths[doc] - pos  # words from here to the end of the text
    emit = (left >= k) | ((pos == 0) & (lengths[doc] < k))
    idx = np.flatnonzero(emit)
    rng = np.random.default_rng(11)
    mult = rng.integers(1, 2**63, k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    acc = np.zeros(len(idx), dtype=np.uint64)
    for m in range(k):
        use = (m < left[idx]).astype(np.uint64)
        acc += wh[idx + m] * mult[m] * use
    return _mix64(acc), np.bincount(doc[idx], minlength=len(norm_texts)).astype(np.int64)


def minhash_from_hashes(
    hv: np.ndarray, counts: np.ndarray, num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """``(n, num_perm) uint32`` MinHash signatures of ``n`` sets given as 64-bit element
    hashes ``hv`` grouped by set (``counts`` per set); empty sets get all-ones rows.

    Permutation ``p``: ``((a_p * x + b_p) mod 2**64) >> 32`` (multiply-shift, ``a_p``
    odd), datasketch-style but vectorised.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    sig = np.full((len(counts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    docs = np.flatnonzero(counts > 0)
    if len(docs) == 0:
        return sig
    starts = (np.cumsum(counts) - counts)[docs]
    budget = max(1, (1 << 20) // num_perm)  # elements per chunk (~4 MB of uint32)
    group = starts // budget
    cuts = np.flatnonzero(np.diff(group)) + 1
    for chunk in np.split(np.arange(len(docs)), cuts):
        lo = int(starts[chunk[0]])
        hi = int(starts[chunk[-1]] + counts[docs[chunk[-1]]])
        ph = ((a[:, None] * hv[None, lo:hi] + b[:, None]) >> np.uint64(32)).astype(np.uint32)
        sig[docs[chunk]] = np.minimum.reduceat(ph, starts[chunk] - lo, axis=1).T
    return sig


def minhash_signatures(
    shingle_sets: Sequence[Sequence[str]], num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """``(n, num_perm) uint32`` MinHash signatures of string sets (see
    :func:`minhash_from_hashes`; strings are hashed with blake2b-64)."""
    uniq = [sorted(set(s)) for s in shingle_sets]
    counts = np.array([len(s) for s in uniq], dtype=np.int64)
    hv = np.array([_hash64(x) for s in uniq for x in s], dtype=np.uint64)
    return minhash_from_hashes(hv, counts, num_perm, seed)


def lsh_params(threshold: float, num_perm: int = 128) -> tuple[int, int]:
    """(bands, rows) with ``bands * rows <= num_perm`` minimising equal-weight false
    positive + false negative areas around ``threshold`` (datasketch's rule)."""
    s = np.linspace(0.0, 1.0, 1001)
    best, best_err = (1, num_perm), math.inf
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - s**rows) ** bands
        fp = np.trapezoid(np.where(s < threshold, p, 0.0), s)
        fn = np.trapezoid(np.where(s >= threshold, 1.0 - p, 0.0), s)
        if fp + fn < best_err:
            best, best_err = (bands, rows), fp + fn
    return best


def text_edges(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    k: int = 2,
    drop: Sequence[str] = (),
    max_bucket: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, jaccard)`` between texts that are duplicates.

    Identical normalised texts are linked as a star (jaccard 1.0); distinct
    normalised texts are compared by MinHash/LSH and linked when the estimated
    Jaccard similarity of their word ``k``-shingles is ``>= threshold``.  Empty
    normalised texts never match.  An LSH bucket larger than ``max_bucket`` is
    checked as a chain (each member against the next and the first) to bound
    the work, so near-duplicate recall inside giant buckets is approximate.
    """
    norms = [normalize_text(t, drop) for t in texts]
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ww: list[np.ndarray] = []
    first: dict[str, int] = {}
    reps: list[int] = []
    for idx, t in enumerate(norms):
        if not t:
            continue
        if t in first:
            ii.append(np.array([first[t]]))
            jj.append(np.array([idx]))
            ww.append(np.array([1.0]))
        else:
            first[t] = idx
            reps.append(idx)
    if len(reps) >= 2 and threshold < 1.0:
        hv, counts = shingle_hashes([norms[r] for r in reps], k)
        sig = minhash_from_hashes(hv, counts, num_perm)
        bands, rows = lsh_params(threshold, num_perm)
        rng = np.random.default_rng(7)
        mult = rng.integers(1, 2**63, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        cand: list[np.ndarray] = []
        for band in range(bands):
            part = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
            key = (part * mult[None, :]).sum(axis=1, dtype=np.uint64)
            order = np.argsort(key, kind="stable")
            ks = key[order]
            cuts = np.flatnonzero(np.diff(ks)) + 1
            starts = np.concatenate([[0], cuts])
            sizes = np.diff(np.concatenate([starts, [len(ks)]]))
            small = (sizes >= 2) & (sizes <= max_bucket)
            a, b = _triangle(starts[small], sizes[small])  # all pairs, every small bucket
            pairs = [(order[a], order[b])]
            for st, sz in zip(starts[sizes > max_bucket], sizes[sizes > max_bucket], strict=True):
                members = order[st : st + sz]  # giant bucket: a chain plus a star
                pairs.append(
                    (
                        np.concatenate([members[:-1], np.repeat(members[0], sz - 2)]),
                        np.concatenate([members[1:], members[2:]]),
                    )
                )
            for pa, pb in pairs:
                lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
                cand.append(lo.astype(np.int64) * len(reps) + hi)
        if cand:
            codes = np.unique(np.concatenate(cand))
            ca, cb = codes // len(reps), codes % len(reps)
            sim = (sig[ca] == sig[cb]).mean(axis=1)
            keep = sim >= threshold
            rep_arr = np.array(reps, dtype=np.int64)
            ii.append(rep_arr[ca[keep]])
            jj.append(rep_arr[cb[keep]])
            ww.append(sim[keep])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (
        np.concatenate(ii).astype(np.int64),
        np.concatenate(jj).astype(np.int64),
        np.concatenate(ww).astype(float),
    )


# --------------------------------------------------------------------------- images
def _star(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking each item with a non-empty key to the first item with that key."""
    first: dict[str, int] = {}
    ii: list[int] = []
    jj: list[int] = []
    for idx, k in enumerate(keys):
        if not k:
            continue
        if k in first:
            ii.append(first[k])
            jj.append(idx)
        else:
            first[k] = idx
    return np.array(ii, dtype=np.int64), np.array(jj, dtype=np.int64)


def image_edges(
    hashes: np.ndarray, valid: np.ndarray, threshold: int, workers: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, hamming)`` between items whose ``(n,) uint64`` hashes are within
    ``threshold`` bits (only where ``valid``); identical hashes are linked as stars."""
    pos = np.flatnonzero(valid)
    if len(pos) < 2:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.uint8)
    m = search(hashes[pos], threshold, workers=workers)
    order = np.argsort(m.inverse, kind="stable")
    sizes = m.group_sizes()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    first = order[starts]  # (u,) first item of each distinct value
    member = order
    head = np.repeat(first, sizes)
    not_head = member != head
    ii = np.concatenate([head[not_head], first[m.value_pairs.i]])
    jj = np.concatenate([member[not_head], first[m.value_pairs.j]])
    dd = np.concatenate([np.zeros(int(not_head.sum()), np.uint8), m.value_pairs.dist])
    return pos[ii], pos[jj], dd


def _load_cache(path: str | os.PathLike | None, kind: str) -> dict[str, int]:
    """sha256 → hash from a cache written by :func:`_save_cache` (empty if absent/other kind)."""
    if path is None or not Path(path).exists():
        return {}
    index = HashIndex.load(path)
    if index.kind != kind:
        return {}
    return dict(zip(index.ids.tolist(), index.hashes.tolist(), strict=True))


def _save_cache(path: str | os.PathLike, kind: str, cache: dict[str, int]) -> None:
    ids = np.array(list(cache), dtype=str)
    HashIndex(0, ids, np.array(list(cache.values()), dtype=np.uint64), kind=kind).save(path)


# --------------------------------------------------------------------------- clusters
def connected_components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``(n,) int64`` component label per node of the undirected graph with edges (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    _, labels = cc(graph, directed=False)
    return labels.astype(np.int64)


def _area(p: Post) -> int:
    return p.image.width * p.image.height if p.image is not None else 0


def keep_key(post: Post, keep: str) -> tuple:
    """Sort key: the smallest key in a cluster is its representative.

    ``largest``: most pixels, then earliest ``created_at``, then id;
    ``earliest``: earliest ``created_at`` (missing = last), then most pixels, then id;
    ``id``: smallest id.
    """
    when = (post.created_at == "", post.created_at)
    if keep == "largest":
        return (-_area(post), *when, post.id)
    if keep == "earliest":
        return (*when, -_area(post), post.id)
    if keep == "id":
        return (post.id,)
    raise ValueError(f"unknown keep policy {keep!r} (largest, earliest, id)")


@dataclass
class DedupResult:
    """What :func:`deduplicate` found; ``clusters`` maps representative index → members."""

    n_posts: int = 0
    n_images: int = 0
    hashed: int = 0  # images hashed in this run (the others came from the cache)
    hash_failed: dict[str, str] = field(default_factory=dict)  # post id → error
    exact_image_edges: int = 0
    near_image_edges: int = 0
    exact_text_edges: int = 0
    near_text_edges: int = 0
    duplicate_image: int = 0
    duplicate_text: int = 0
    clusters: dict[int, list[int]] = field(default_factory=dict)

    def histogram(self) -> dict[str, int]:
        """Cluster size → how many clusters of that size (singletons excluded)."""
        c = Counter(len(m) for m in self.clusters.values())
        return {str(k): c[k] for k in sorted(c)}

    def to_dict(self) -> dict[str, Any]:
        sizes = [len(m) for m in self.clusters.values()]
        return {
            "posts": self.n_posts,
            "images": self.n_images,
            "images_hashed": self.hashed,
            "images_from_cache": self.n_images - self.hashed - len(self.hash_failed),
            "hash_failed": len(self.hash_failed),
            "edges": {
                "exact_image": self.exact_image_edges,
                "near_image": self.near_image_edges,
                "exact_text": self.exact_text_edges,
                "near_text": self.near_text_edges,
            },
            "clusters": len(self.clusters),
            "posts_in_clusters": int(sum(sizes)),
            "largest_cluster": max(sizes, default=0),
            "duplicates": {
                "duplicate_image": self.duplicate_image,
                "duplicate_text": self.duplicate_text,
            },
            "cluster_size_histogram": self.histogram(),
        }


def deduplicate(
    posts: list[Post],
    config: DedupConfig | None = None,
    image_root: str | os.PathLike | None = None,
    workers: int = 2,
    drop_words: Sequence[str] = (),
    cache_path: str | os.PathLike | None = None,
) -> DedupResult:
    """Hash, find duplicates, cluster and mark ``posts`` in place; returns the figures.

    Posts whose ``image.status == "ok"`` and ``image.path`` is set are hashed
    from ``image_root / image.path`` (``image.phash`` gets the hex); others take
    part through their text only.  Each post's ``cluster_id`` / ``duplicate_of``
    are reset, then set for members of clusters of 2+; duplicates get
    ``extra["dedup"] = {"reason": "duplicate_image" | "duplicate_text"}``.
    ``cache_path`` (``.npz``, sha256 → hash of ``config.hash`` kind) spares
    rehashing images seen by an earlier run.
    """
    cfg = config or DedupConfig()
    res = DedupResult(n_posts=len(posts))
    n = len(posts)
    hashes = np.zeros(n, dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    with_image = [
        k
        for k, p in enumerate(posts)
        if p.image is not None and p.image.status == "ok" and p.image.path
    ]
    res.n_images = len(with_image)
    cache = _load_cache(cache_path, cfg.hash)
    todo: list[int] = []  # one post per image content not in the cache
    seen: set[str] = set()
    for k in with_image:
        sha = posts[k].image.sha256  # type: ignore[union-attr]
        if sha not in cache and (not sha or sha not in seen):
            todo.append(k)
            seen.add(sha)
    if todo:
        root = Path(image_root) if image_root is not None else Path(".")
        paths = [root / posts[k].image.path for k in todo]  # type: ignore[union-attr]
        w = workers if len(paths) >= 256 else 1
        rep = hash_files_report(paths, kind=cfg.hash, workers=w)
        for local, k in enumerate(todo):
            if local in rep.failed:
                res.hash_failed[posts[k].id] = rep.failed[local]
            elif posts[k].image.sha256:  # type: ignore[union-attr]
                cache[posts[k].image.sha256] = int(rep.hashes[local])  # type: ignore[union-attr]
            else:
                hashes[k], valid[k] = rep.hashes[local], True
    res.hashed = len(todo) - len(res.hash_failed)
    for k in with_image:
        img = posts[k].image
        assert img is not None
        if img.sha256 in cache:
            hashes[k], valid[k] = np.uint64(cache[img.sha256]), True
        img.phash = hash_hex(int(hashes[k])) if valid[k] else ""
    if cache_path is not None and todo:
        _save_cache(cache_path, cfg.hash, cache)
    # edges
    sha = [p.image.sha256 if p.image is not None and p.image.status == "ok" else "" for p in posts]
    ei, ej = _star(sha)
    res.exact_image_edges = len(ei)
    ni, nj, _ = image_edges(hashes, valid, cfg.threshold, workers=workers)
    res.near_image_edges = len(ni)
    ti, tj, tw = text_edges([p.text for p in posts], cfg.text_threshold, drop=drop_words)
    res.exact_text_edges = int((tw >= 1.0).sum())
    res.near_text_edges = int((tw < 1.0).sum())
    img_i = np.concatenate([ei, ni])
    img_j = np.concatenate([ej, nj])
    img_linked = np.zeros(n, dtype=bool)
    img_linked[img_i] = True
    img_linked[img_j] = True
    labels = connected_components(n, np.concatenate([img_i, ti]), np.concatenate([img_j, tj]))
    # clusters
    for p in posts:
        p.cluster_id = ""
        p.duplicate_of = ""
        p.extra.pop("dedup", None)
    members_of: dict[int, list[int]] = {}
    for k, lab in enumerate(labels.tolist()):
        members_of.setdefault(lab, []).append(k)
    for members in members_of.values():
        if len(members) < 2:
            continue
        rep_k = min(members, key=lambda k: keep_key(posts[k], cfg.keep))
        has_image = bool(img_linked[members].any())
        cid = f"{'img' if has_image else 'txt'}-{posts[rep_k].id}"
        res.clusters[rep_k] = [rep_k] + [k for k in members if k != rep_k]
        for k in members:
            posts[k].cluster_id = cid
            if k != rep_k:
                posts[k].duplicate_of = posts[rep_k].id
                reason = "duplicate_image" if img_linked[k] else "duplicate_text"
                posts[k].extra["dedup"] = {"reason": reason}
                if reason == "duplicate_image":
                    res.duplicate_image += 1
                else:
                    res.duplicate_text += 1
    return res


# --------------------------------------------------------------------------- report
def contact_sheet(
    posts: Sequence[Post],
    clusters: dict[int, list[int]],
    image_root: str | os.PathLike,
    max_clusters: int = 12,
    max_members: int = 8,
    thumb: int = 112,
) -> bytes:
    """PNG bytes: one row per largest cluster, representative first (green frame),
    duplicates after it (red frame).  Captions: ``img`` (linked by its image) or ``txt``
    (linked by its text only) and ``d=<bits>``, the Hamming distance to the nearest
    other member's hash (large for a text-only link: expected, not a false positive)."""
    from PIL import Image, ImageDraw

    rows = sorted(clusters.values(), key=lambda m: (-len(m), posts[m[0]].id))[:max_clusters]
    pad, label_h = 6, 14
    cell_w, cell_h = thumb + pad, thumb + pad + label_h
    cols = max([min(len(m), max_members) for m in rows], default=1)
    width = max(cols * cell_w + pad, 360)
    height = max(1, len(rows)) * (cell_h + label_h) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    root = Path(image_root)
    if not rows:
        draw.text((pad, pad), "no duplicate clusters", fill="black")
    for r, members in enumerate(rows):
        y0 = pad + r * (cell_h + label_h)
        rep = posts[members[0]]
        draw.text((pad, y0), f"{rep.cluster_id}  ({len(members)} posts)"[:100], fill="black")
        member_hashes = [
            (k, hex_to_int(posts[k].image.phash))  # type: ignore[union-attr]
            for k in members
            if posts[k].image is not None and posts[k].image.phash  # type: ignore[union-attr]
        ]
        for c, k in enumerate(members[:max_members]):
            p = posts[k]
            x0, y1 = pad + c * cell_w, y0 + label_h
            colour = "green" if c == 0 else "red"
            draw.rectangle(
                [x0 - 2, y1 - 2, x0 + thumb + 1, y1 + thumb + 1], outline=colour, width=2
            )
            reason = p.extra.get("dedup", {}).get("reason", "")
            caption = "rep" if c == 0 else "img" if reason == "duplicate_image" else "txt"
            try:
                if p.image is None or not p.image.path:
                    raise OSError("no image")
                with Image.open(root / p.image.path) as im:
                    im.draft("RGB", (thumb, thumb))
                    im = im.convert("RGB")
                    im.thumbnail((thumb, thumb))
                    sheet.paste(im, (x0 + (thumb - im.width) // 2, y1 + (thumb - im.height) // 2))
                others = [h for j, h in member_hashes if j != k]
                if c and p.image.phash and others:
                    h = hex_to_int(p.image.phash)
                    caption += f" d={min((h ^ o).bit_count() for o in others)}"
            except OSError:
                draw.text((x0 + 4, y1 + 4), (p.text or "")[:18], fill="gray")
            draw.text((x0, y1 + thumb + 2), caption, fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_report(
    folder: str | os.PathLike,
    result: DedupResult,
    posts: Sequence[Post],
    image_root: str | os.PathLike,
    config: DedupConfig,
) -> Path:
    """Write ``report.json`` and ``clusters.png`` (largest clusters) into ``folder``."""
    folder = Path(folder)
    report = {"config": config.model_dump(mode="json"), **result.to_dict()}
    report["largest_clusters"] = [
        {
            "cluster_id": posts[m[0]].cluster_id,
            "size": len(m),
            "representative": posts[m[0]].id,
            "members": [posts[k].id for k in m[:20]],
        }
        for m in sorted(result.clusters.values(), key=lambda m: -len(m))[:20]
    ]
    report["hash_failed_examples"] = dict(list(result.hash_failed.items())[:20])
    write_json(folder / "report.json", report)
    with atomic_write(folder / "clusters.png", "wb") as f:
        f.write(contact_sheet(posts, result.clusters, image_root))
    return folder


# --------------------------------------------------------------------------- stage
def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class DedupStage(Stage):
    """Mark exact and near duplicates (image and text); yields every post, none dropped."""

    name: ClassVar[str] = "dedup"
    input: ClassVar[str | None] = "fetch"
    scope: ClassVar = "global"
    config_sections: ClassVar[tuple[str, ...]] = ("dedup",)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        posts = list(records)
        cfg = ctx.config.dedup
        norm = ctx.config.normalize
        image_root = ctx.root / "images"
        cache = Path(cfg.index_path) if cfg.index_path else ctx.root / "index" / f"{cfg.hash}.npz"
        result = deduplicate(
            posts,
            cfg,
            image_root=image_root,
            workers=_workers(),
            drop_words=[norm.url_placeholder, norm.mention_placeholder],
            cache_path=cache,
        )
        for reason, n in (
            ("duplicate_image", result.duplicate_image),
            ("duplicate_text", result.duplicate_text),
        ):
            if n:
                ctx.flag(reason, n)
        if result.hash_failed:
            ctx.flag("image_hash_failed", len(result.hash_failed))
        write_report(ctx.root.joinpath(*REPORT_DIR), result, posts, image_root, cfg)
        yield from posts


# --------------------------------------------------------------------------- leakage
def audit_leakage(
    posts_by_split: dict[str, list[Post]],
    threshold: int = 10,
    text_threshold: float = 0.8,
    max_examples: int = 20,
    drop_words: Sequence[str] = ("URL",),
) -> dict[str, Any]:
    """Near-duplicates (image: same sha256 or pHash hex within ``threshold``; text:
    :func:`text_edges`) whose clusters straddle splits.

    Returns ``{"ok": bool, "image": {...}, "text": {...}, "leaking_posts": {split: n}}``
    where each part has ``clusters`` (straddling clusters), ``posts`` per split
    and ``examples`` of cross-split pairs ``{a, a_split, b, b_split, score}``.
    """
    posts: list[Post] = []
    split_of: list[str] = []
    for split, items in posts_by_split.items():
        posts.extend(items)
        split_of.extend([split] * len(items))
    n = len(posts)
    splits = np.array(split_of, dtype=object)
    hashes = np.zeros(n, dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    for k, p in enumerate(posts):
        if p.image is not None and p.image.phash:
            hashes[k] = hex_to_int(p.image.phash)
            valid[k] = True
    ei, ej = _star([p.image.sha256 if p.image is not None else "" for p in posts])
    ni, nj, nd = image_edges(hashes, valid, threshold)
    img = (
        np.concatenate([ei, ni]),
        np.concatenate([ej, nj]),
        np.concatenate([np.zeros(len(ei)), nd.astype(float)]),
    )
    txt = text_edges([p.text for p in posts], text_threshold, drop=drop_words)
    out: dict[str, Any] = {"threshold": threshold, "text_threshold": text_threshold}
    leaking = np.zeros(n, dtype=bool)
    for name, (ii, jj, score) in (("image", img), ("text", txt)):
        labels = connected_components(n, ii, jj)
        straddle: dict[int, set[str]] = {}
        for lab, sp in zip(labels.tolist(), split_of, strict=True):
            straddle.setdefault(lab, set()).add(sp)
        bad = {lab for lab, s in straddle.items() if len(s) > 1}
        in_bad = np.array([lab in bad for lab in labels.tolist()], dtype=bool)
        leaking |= in_bad
        cross = np.flatnonzero(splits[ii] != splits[jj]) if len(ii) else np.zeros(0, np.int64)
        out[name] = {
            "clusters": len(bad),
            "posts": dict(Counter(splits[in_bad].tolist())),
            "cross_split_edges": int(len(cross)),
            "examples": [
                {
                    "a": posts[int(ii[e])].id,
                    "a_split": split_of[int(ii[e])],
                    "b": posts[int(jj[e])].id,
                    "b_split": split_of[int(jj[e])],
                    "score": float(score[e]),
                }
                for e in cross[:max_examples]
            ],
        }
    out["leaking_posts"] = dict(Counter(splits[leaking].tolist()))
    out["ok"] = not bool(leaking.any())
    return out


def leakage_json(report: dict[str, Any]) -> str:
    """The audit as pretty JSON (for the CLI)."""
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False)
