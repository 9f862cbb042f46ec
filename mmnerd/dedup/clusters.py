"""Clusters of duplicates over image and text edges, and the keep policy that picks a
cluster's representative (:func:`deduplicate` marks posts in place)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmnerd.config import DedupConfig
from mmnerd.dedup.images import _load_cache, _save_cache, image_edges
from mmnerd.dedup.text import Scan, join_scanned
from mmnerd.images.hashing import hash_hex
from mmnerd.records import Post

if TYPE_CHECKING:
    from mmnerd.images.partitioned import PartitionedSearch


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


def star_edges(words: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking each item with ``use`` to the first item with the same ``(n, 2)``
    key (e.g. sha256 prefix): identical files, as a star."""
    pos = np.flatnonzero(use)
    if len(pos) < 2:
        z = np.zeros(0, np.int64)
        return z, z
    order = pos[np.lexsort((pos, words[pos, 1], words[pos, 0]))]
    k = words[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (k[1:, 0] != k[:-1, 0]) | (k[1:, 1] != k[:-1, 1])
    head = order[new][np.cumsum(new) - 1]
    dup = ~new
    return head[dup].astype(np.int64), order[dup].astype(np.int64)


@dataclass
class Marks:
    """What dedup writes back: for the posts in clusters of 2+ (``idx``, ascending), the
    cluster id, the representative's id ("" for the representative) and the reason
    (0 representative, 1 duplicate_image, 2 duplicate_text)."""

    idx: np.ndarray  # (c,) int64
    cluster_id: np.ndarray  # (c,) str
    duplicate_of: np.ndarray  # (c,) str
    reason: np.ndarray  # (c,) int8

    REASONS = ("", "duplicate_image", "duplicate_text")


def find_clusters(
    hashes: np.ndarray,
    valid: np.ndarray,
    sha: np.ndarray,
    star: np.ndarray,
    scan: Scan,
    cfg: DedupConfig,
    workers: int = 2,
    res: DedupResult | None = None,
    work_dir: Path | None = None,
    partitioned: PartitionedSearch | None = None,
    at: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of the four detectors over the arrays of :class:`~mmnerd.dedup.keys.PostKeys`
    and their connected components: ``(labels (n,) int64, img_linked (n,) bool)``.
    Edge counts go to ``res``; the text join keeps its files in ``work_dir`` (default: a
    temporary folder); ``partitioned`` runs the image search's tasks on an executor.
    ``at`` ``(i,) int64`` ascending: the image arrays (``hashes``, ``valid``, ``sha``,
    ``star``) hold only these posts (those with an image), the scan all ``n``."""
    res = res if res is not None else DedupResult()
    n = len(scan.counts)
    ei, ej = star_edges(sha, star)
    res.exact_image_edges = len(ei)
    budget = cfg.memory_mb << 20
    ni, nj, _ = image_edges(hashes, valid, cfg.threshold, workers, budget, partitioned)
    res.near_image_edges = len(ni)
    if at is not None:  # positions among the image posts -> posts
        ei, ej, ni, nj = at[ei], at[ej], at[ni], at[nj]
    ti, tj, tw = join_scanned(scan, cfg.text_threshold, memory_bytes=budget, work_dir=work_dir)
    res.exact_text_edges = int((tw >= 1.0).sum())
    res.near_text_edges = int((tw < 1.0).sum())
    img_i = np.concatenate([ei, ni])
    img_j = np.concatenate([ej, nj])
    img_linked = np.zeros(n, dtype=bool)
    img_linked[img_i] = True
    img_linked[img_j] = True
    labels = connected_components(n, np.concatenate([img_i, ti]), np.concatenate([img_j, tj]))
    return labels, img_linked


def cluster_members(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posts in clusters of 2+: ``(idx, label)`` sorted by label's first post, then post."""
    counts = np.bincount(labels)
    idx = np.flatnonzero(counts[labels] >= 2)
    lab = labels[idx]
    first = np.full(len(counts), len(labels), dtype=np.int64)
    np.minimum.at(first, lab, idx)
    order = np.lexsort((idx, first[lab]))
    return idx[order], lab[order]


def pick_representatives(
    idx: np.ndarray,
    lab: np.ndarray,
    keys: dict[int, tuple],
    ids: dict[int, str],
    img_linked: np.ndarray,
    res: DedupResult,
) -> Marks:
    """Representatives (smallest ``keys[k]``, :func:`keep_key`) and the marks of every
    member of the clusters ``(idx, lab)`` (:func:`cluster_members`); fills
    ``res.clusters`` and the duplicate counts."""
    cid = np.empty(len(idx), dtype=object)
    dup = np.empty(len(idx), dtype=object)
    reason = np.zeros(len(idx), dtype=np.int8)
    bounds = np.flatnonzero(np.diff(lab)) + 1 if len(lab) else np.zeros(0, np.int64)
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(idx)], strict=True):
        members = idx[lo:hi].tolist()
        if not members:  # no cluster at all
            continue
        rep_k = min(members, key=keys.__getitem__)
        has_image = bool(img_linked[members].any())
        c = f"{'img' if has_image else 'txt'}-{ids[rep_k]}"
        res.clusters[rep_k] = [rep_k] + [k for k in members if k != rep_k]
        for off, k in enumerate(members, lo):
            cid[off] = c
            if k == rep_k:
                dup[off] = ""
                continue
            dup[off] = ids[rep_k]
            if img_linked[k]:
                reason[off] = 1
                res.duplicate_image += 1
            else:
                reason[off] = 2
                res.duplicate_text += 1
    order = np.argsort(idx, kind="stable")
    return Marks(
        idx[order],
        cid[order].astype(str) if len(idx) else np.zeros(0, str),
        dup[order].astype(str) if len(idx) else np.zeros(0, str),
        reason[order],
    )


def apply_marks(posts: Sequence[Post], offset: int, marks: Marks) -> None:
    """Reset and set ``cluster_id``, ``duplicate_of`` and ``duplicate_reason`` of ``posts``
    (global positions ``offset ...``) from ``marks``."""
    lo = int(np.searchsorted(marks.idx, offset))
    hi = int(np.searchsorted(marks.idx, offset + len(posts)))
    for p in posts:
        p.cluster_id = ""
        p.duplicate_of = ""
        p.duplicate_reason = ""
    for m in range(lo, hi):
        p = posts[int(marks.idx[m]) - offset]
        p.cluster_id = str(marks.cluster_id[m])
        p.duplicate_of = str(marks.duplicate_of[m])
        if marks.reason[m]:
            p.duplicate_reason = Marks.REASONS[marks.reason[m]]


def member_keys(
    members: np.ndarray,
    area: np.ndarray | Mapping[int, int],
    created: np.ndarray | Mapping[int, str],
    ids: np.ndarray | Mapping[int, str],
    keep: str,
) -> tuple[dict[int, tuple], dict[int, str]]:
    """Keep-policy keys (:func:`keep_key`) and ids of the posts ``members`` (global
    indices into the ``(n,)`` arrays ``area``, ``created``, ``ids``, or mappings holding
    at least the members)."""
    keys: dict[int, tuple] = {}
    names: dict[int, str] = {}
    for k in members.tolist():
        when = (created[k] == "", str(created[k]))
        name = str(ids[k])
        names[k] = name
        if keep == "largest":
            keys[k] = (-int(area[k]), *when, name)
        elif keep == "earliest":
            keys[k] = (*when, -int(area[k]), name)
        elif keep == "id":
            keys[k] = (name,)
        else:
            raise ValueError(f"unknown keep policy {keep!r} (largest, earliest, id)")
    return keys, names


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
    ``duplicate_reason = "duplicate_image" | "duplicate_text"``.
    ``cache_path`` (``.npz``, sha256 → hash of ``config.hash`` kind) spares
    rehashing images seen by an earlier run.  (The dedup stage does the same shard by
    shard on the executor, over arrays: :mod:`mmnerd.dedup.stage`.)
    """
    from mmnerd.dedup.keys import post_keys

    cfg = config or DedupConfig()
    res = DedupResult(n_posts=len(posts))
    cache = _load_cache(cache_path, cfg.hash)
    keys = post_keys(posts, cfg.hash, cache, image_root, drop_words, workers)
    res.n_images = int(keys.has_image.sum())
    res.hashed = len(keys.hashed) - len(keys.failed)
    res.hash_failed = {posts[k].id: msg for k, msg in keys.failed.items()}
    for k in np.flatnonzero(keys.has_image).tolist():
        img = posts[k].image
        assert img is not None
        img.phash = hash_hex(int(keys.hash[k])) if keys.valid[k] else ""
    if cache_path is not None and keys.hashed:
        _save_cache(cache_path, cfg.hash, {**cache, **keys.new_cache})
    labels, img_linked = find_clusters(
        keys.hash, keys.valid, keys.sha, keys.star, keys.text, cfg, workers, res
    )
    idx, lab = cluster_members(labels)
    kk, names = member_keys(idx, keys.area, keys.created, keys.ids, cfg.keep)
    marks = pick_representatives(idx, lab, kk, names, img_linked, res)
    apply_marks(posts, 0, marks)
    return res
