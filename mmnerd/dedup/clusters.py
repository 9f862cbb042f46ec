"""Clusters of duplicates over image and text edges, and the keep policy that picks a
cluster's representative (:func:`deduplicate` marks posts in place)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmnerd.config import DedupConfig
from mmnerd.dedup.images import _load_cache, _save_cache, _star, image_edges
from mmnerd.dedup.text import text_edges
from mmnerd.images.hashing import hash_files_report, hash_hex
from mmnerd.records import Post


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
    ti, tj, tw = text_edges(
        [p.text for p in posts],
        cfg.text_threshold,
        drop=drop_words,
        memory_bytes=cfg.memory_mb << 20,
    )
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
