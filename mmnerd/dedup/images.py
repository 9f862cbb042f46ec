"""Image duplicates: identical files (same sha256) and perceptual hashes within a threshold,
plus the sha256 -> hash cache reused across runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmnerd.images.index import HashIndex, search

if TYPE_CHECKING:
    from mmnerd.images.partitioned import PartitionedSearch


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
    hashes: np.ndarray,
    valid: np.ndarray,
    threshold: int,
    workers: int = 2,
    memory_bytes: int = 2 << 30,
    partitioned: PartitionedSearch | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, hamming)`` between items whose ``(n,) uint64`` hashes are within
    ``threshold`` bits (only where ``valid``); identical hashes are linked as stars.
    ``memory_bytes``: the search's budget; ``partitioned``: run it on an executor
    (:func:`mmnerd.images.index.join`)."""
    pos = np.flatnonzero(valid)
    if len(pos) < 2:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.uint8)
    m = search(hashes[pos], threshold, workers, memory_bytes=memory_bytes, partitioned=partitioned)
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
