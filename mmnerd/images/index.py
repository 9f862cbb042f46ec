"""Exact near-duplicate search over 64-bit hashes: every pair within Hamming distance ``t``.

Method (multi-index hashing with the generalised pigeonhole principle):

1. Identical hashes are collapsed first (``np.unique``): a meme reposted 5,000
   times becomes one distinct value plus an "identical group", so the search
   never sees its 12.5M internal pairs.
2. The 64 bits are split into ``m`` contiguous blocks with radii ``r_i`` where
   ``sum(r_i) = t - m + 1``.  If two hashes are within ``t`` then some block ``i``
   differs in at most ``r_i`` bits (else the distance would be ``>= t + 1``).
   ``m = t + 1`` (all radii 0) is the classic pigeonhole; fewer, wider blocks
   with small radii are far cheaper on large sets.  :func:`make_plan` picks
   ``m`` with a cost model.
3. Per block the distinct values are sorted by block key (a bucket = values
   sharing the key).  Neighbouring bucket pairs (keys within ``r_i`` bits) come
   from enumerating the flip masks; each bucket pair is verified densely
   (``XOR`` + ``np.bitwise_count`` over the ``|A| x |B|`` matrix), batched by
   bucket-size class so numpy works on big arrays.
4. A pair found in block ``i`` is kept only if no earlier block ``j < i`` also
   catches it (``d_j <= r_j``), so every pair is reported exactly once.

The result is exact: the same pair set as brute force (tests check it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

_U64 = np.uint64
_DENSE_TABLE_BITS = 22  # block keys up to this width are looked up in a dense table
_CHUNK = 1 << 16  # candidate cells per dense verification chunk (512 KB of uint64: in cache)


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Block:
    """Bits ``[shift, shift + bits)`` of the hash, searched within ``radius`` flips."""

    shift: int
    bits: int
    radius: int

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    def keys(self, values: np.ndarray) -> np.ndarray:
        """``(n,) uint64`` values → ``(n,) uint64`` block keys."""
        return (values >> _U64(self.shift)) & _U64(self.mask)


@dataclass(frozen=True)
class Plan:
    """How to search: the blocks (their radii sum to ``threshold - len(blocks) + 1``)."""

    threshold: int
    blocks: tuple[Block, ...]
    cost: float = 0.0  # model estimate, ~nanoseconds on one core


def _ball(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1))


def _blocks(m: int, threshold: int) -> tuple[Block, ...]:
    q, rem = divmod(64, m)
    widths = [q + 1 if i < rem else q for i in range(m)]
    slack = threshold - m + 1
    radii = [slack // m + (1 if i < slack % m else 0) for i in range(m)]
    blocks, shift = [], 64
    for w, r in zip(widths, radii, strict=True):
        shift -= w
        blocks.append(Block(shift=shift, bits=w, radius=r))
    return tuple(blocks)


def _cost(blocks: Sequence[Block], n_a: int, n_b: int) -> float:
    """Rough single-core nanoseconds to join ``n_a`` with ``n_b`` distinct values."""
    total = 0.0
    for b in blocks:
        space = 2.0**b.bits
        d_a = space * -math.expm1(-n_a / space)  # expected distinct keys
        d_b = space * -math.expm1(-n_b / space)
        ball = _ball(b.bits, b.radius)
        # table lookups: in cache up to 2**16 keys, then cache/TLB misses, then searchsorted
        lookup = 4.0 if b.bits <= 16 else 30.0 if b.bits <= _DENSE_TABLE_BITS else 80.0
        enum = min(d_a, d_b) * ball * lookup
        bucket_pairs = min(d_a, d_b) * ball * min(1.0, max(d_a, d_b) / space)
        gather = bucket_pairs * (40.0 + 6.0 * (n_a / max(d_a, 1) + n_b / max(d_b, 1)))
        cells = n_a * n_b * ball / space
        total += enum + gather + 3.0 * cells
    return total


def make_plan(threshold: int, n_a: int, n_b: int | None = None, m: int | None = None) -> Plan:
    """The cheapest block split for joining ``n_a`` values with ``n_b`` (self-join if None).

    ``m`` forces the number of blocks (``1 <= m <= threshold + 1``).
    """
    if not 0 <= threshold <= 64:
        raise ValueError(f"threshold must be in [0, 64], got {threshold}")
    n_b = n_a if n_b is None else n_b
    half = 0.5 if n_b == n_a else 1.0
    choices = [m] if m is not None else range(1, min(threshold + 1, 32) + 1)
    best: Plan | None = None
    for k in choices:
        if not 1 <= k <= threshold + 1:
            raise ValueError(f"m must be in [1, threshold + 1], got {k}")
        blocks = _blocks(k, threshold)
        if any(_ball(b.bits, b.radius) > 5_000_000 for b in blocks):
            continue
        cost = _cost(blocks, n_a, n_b) * half
        if best is None or cost < best.cost:
            best = Plan(threshold, blocks, cost)
    if best is None:  # only huge radii: fall back to the classic pigeonhole
        best = Plan(threshold, _blocks(threshold + 1, threshold), 0.0)
    return best


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Pairs:
    """Pairs of positions ``i[k] < j[k]`` (``(k,) int64``) and their distances (``uint8``)."""

    i: np.ndarray
    j: np.ndarray
    dist: np.ndarray

    def __len__(self) -> int:
        return len(self.i)

    def as_array(self) -> np.ndarray:
        """``(k, 2) int64``, sorted lexicographically."""
        arr = np.stack([self.i, self.j], axis=1) if len(self) else np.zeros((0, 2), np.int64)
        return arr[np.lexsort((arr[:, 1], arr[:, 0]))] if len(arr) else arr

    def as_set(self) -> set[tuple[int, int]]:
        return set(zip(self.i.tolist(), self.j.tolist(), strict=True))

    @staticmethod
    def empty() -> Pairs:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8))

    @staticmethod
    def concat(parts: Sequence[Pairs]) -> Pairs:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Pairs.empty()
        return Pairs(
            np.concatenate([p.i for p in parts]),
            np.concatenate([p.j for p in parts]),
            np.concatenate([p.dist for p in parts]),
        )


@dataclass(frozen=True)
class Matches:
    """Compact result of :func:`search` over ``n`` hashes.

    ``values``: ``(u,) uint64`` distinct hashes (sorted); ``inverse``: ``(n,)``
    item → value index; ``value_pairs``: pairs of *distinct values* within the
    threshold (``i < j`` index ``values``).  Identical hashes are implied by
    ``inverse`` and only expanded on demand, so a flood of copies stays cheap.
    """

    values: np.ndarray
    inverse: np.ndarray
    value_pairs: Pairs

    @property
    def n(self) -> int:
        return len(self.inverse)

    def group_sizes(self) -> np.ndarray:
        """``(u,) int64``: how many items carry each distinct value."""
        return np.bincount(self.inverse, minlength=len(self.values))

    def n_pairs(self) -> int:
        """Number of item pairs :meth:`pairs` would return, without building them."""
        sizes = self.group_sizes()
        within = int((sizes * (sizes - 1) // 2).sum())
        vp = self.value_pairs
        return within + int((sizes[vp.i] * sizes[vp.j]).sum())

    def pairs(self) -> Pairs:
        """All item pairs ``i < j`` within the threshold, identical ones included."""
        order = np.argsort(self.inverse, kind="stable")
        sizes = self.group_sizes()
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # identical groups: all pairs inside each group of size >= 2
        g = np.flatnonzero(sizes >= 2)
        wi, wj = triangle_pairs(starts[g], sizes[g])
        within = Pairs(order[wi], order[wj], np.zeros(len(wi), np.uint8))
        vp = self.value_pairs
        ci, cj, rep = _cartesian(starts[vp.i], sizes[vp.i], starts[vp.j], sizes[vp.j])
        cross = Pairs(order[ci], order[cj], vp.dist[rep])
        out = Pairs.concat([within, cross])
        lo, hi = np.minimum(out.i, out.j), np.maximum(out.i, out.j)
        return Pairs(lo, hi, out.dist)

    def components(self) -> np.ndarray:
        """``(n,) int64`` connected-component label per item (transitive closure)."""
        labels = _components(len(self.values), self.value_pairs.i, self.value_pairs.j)
        return labels[self.inverse]


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def triangle_pairs(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(a, b)`` with ``start <= a < b < start + size`` for each run (vectorised)."""
    if len(sizes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # run r contributes, for each a in the run, the b's after it
    a_count = sizes.astype(np.int64)
    a = np.repeat(starts, a_count) + _ramp(a_count)
    after = np.repeat(starts + sizes, a_count) - a - 1  # how many b's follow a
    b = np.repeat(a, after) + 1 + _ramp(after)
    return np.repeat(a, after), b


def _cartesian(
    sa: np.ndarray, ca: np.ndarray, sb: np.ndarray, cb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each k: all (x, y) with x in [sa, sa+ca), y in [sb, sb+cb); also returns k."""
    tot = (ca * cb).astype(np.int64)
    rep = np.repeat(np.arange(len(tot)), tot)
    r = _ramp(tot)
    cbr = cb[rep].astype(np.int64)
    return sa[rep] + r // cbr, sb[rep] + r % cbr, rep


def _ramp(counts: np.ndarray) -> np.ndarray:
    """``concat([arange(c) for c in counts])`` without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    offs = np.repeat(ends - counts, counts)
    return np.arange(total, dtype=np.int64) - offs


# --------------------------------------------------------------------------- the join
@dataclass
class _Side:
    """One side of a join, for one block: values sorted by block key, bucketed."""

    order: np.ndarray  # (u,) positions into the side's values, sorted by key
    sorted_vals: np.ndarray  # (u,) uint64
    keys: np.ndarray  # (d,) uint64 distinct keys (sorted)
    starts: np.ndarray  # (d,) int64
    counts: np.ndarray  # (d,) int64

    @staticmethod
    def build(values: np.ndarray, block: Block) -> _Side:
        k = block.keys(values)
        order = np.argsort(k, kind="stable")
        sk = k[order]
        keys, starts, counts = np.unique(sk, return_index=True, return_counts=True)
        return _Side(order, values[order], keys, starts.astype(np.int64), counts.astype(np.int64))


def _flip_masks(bits: int, radius: int) -> np.ndarray:
    """``(V,) uint64``: all masks of ``bits`` bits with 1..radius bits set."""
    masks = [
        sum(1 << p for p in c) for k in range(1, radius + 1) for c in combinations(range(bits), k)
    ]
    return np.array(masks, dtype=np.uint64)


def _bucket_pairs(
    a: _Side, b: _Side, block: Block, self_join: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(pa, pb)`` into ``a.keys`` / ``b.keys`` whose keys differ by <= radius bits.

    Self-join: each unordered bucket pair once, ``pa <= pb`` (``pa == pb`` = same bucket).
    """
    pa_parts: list[np.ndarray] = []
    pb_parts: list[np.ndarray] = []
    # exact key matches
    if self_join:
        idx = np.arange(len(a.keys))
        pa_parts.append(idx)
        pb_parts.append(idx)
    else:
        common, ia, ib = np.intersect1d(a.keys, b.keys, assume_unique=True, return_indices=True)
        pa_parts.append(ia.astype(np.int64))
        pb_parts.append(ib.astype(np.int64))
    masks = _flip_masks(block.bits, block.radius)
    if len(masks):
        # enumerate from the side with fewer keys, look up in the other
        src, dst = (a, b) if len(a.keys) <= len(b.keys) else (b, a)
        if block.bits <= _DENSE_TABLE_BITS:
            table = np.full(1 << block.bits, -1, dtype=np.int64)
            table[dst.keys] = np.arange(len(dst.keys))

            def lookup(t: np.ndarray) -> np.ndarray:
                return table[t]
        else:

            def lookup(t: np.ndarray) -> np.ndarray:
                pos = np.searchsorted(dst.keys, t)
                pos[pos == len(dst.keys)] = 0
                return np.where(dst.keys[pos] == t, pos, -1)

        step = max(1, _CHUNK // max(1, len(masks)))
        for s in range(0, len(src.keys), step):
            ks = src.keys[s : s + step]
            targets = (ks[:, None] ^ masks[None, :]).ravel()
            found = lookup(targets)
            hit = np.flatnonzero(found >= 0)
            ps = s + hit // len(masks)
            pd = found[hit]
            if self_join:  # each unordered pair once
                keep = ps < pd
                ps, pd = ps[keep], pd[keep]
            if src is a:
                pa_parts.append(ps)
                pb_parts.append(pd)
            else:
                pa_parts.append(pd)
                pb_parts.append(ps)
    return np.concatenate(pa_parts), np.concatenate(pb_parts)


def _size_class(c: np.ndarray) -> np.ndarray:
    """Round bucket sizes up to a ladder (exact to 16, then ~12% steps) to batch them."""
    ladder = _LADDER
    return ladder[np.searchsorted(ladder, c)]


def _make_ladder() -> np.ndarray:
    vals = list(range(1, 17))
    while vals[-1] < 1 << 31:
        vals.append(int(math.ceil(vals[-1] * 1.125)))
    return np.array(vals, dtype=np.int64)


_LADDER = _make_ladder()


@dataclass
class _Task:
    block_index: int
    self_bucket: bool
    size_a: int
    size_b: int
    pa: np.ndarray  # (P,) bucket indices
    pb: np.ndarray


def _verify(
    task: _Task, a: _Side, b: _Side, plan: Plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense check of ``task``'s bucket pairs; returns (value index a, value index b, dist).

    Layout ``(size_a, size_b, P)`` keeps the bucket-pair axis innermost, so every
    ufunc runs over long contiguous rows (small buckets would otherwise make
    numpy call its inner loop once per 10-20 cells).
    """
    t = plan.threshold
    sa_n, sb_n = task.size_a, task.size_b
    ar_a = np.arange(sa_n, dtype=np.int64)[:, None]
    ar_b = np.arange(sb_n, dtype=np.int64)[:, None]
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    cells = sa_n * sb_n
    cols = max(1, _CHUNK // max(cells, 1))
    row_step = max(1, _CHUNK // max(sb_n, 1))  # huge buckets: blocks of rows of A
    for s in range(0, len(task.pa), cols):
        pa, pb = task.pa[s : s + cols], task.pb[s : s + cols]
        st_a, ct_a = a.starts[pa], a.counts[pa]
        st_b, ct_b = b.starts[pb], b.counts[pb]
        n_p = len(pa)
        va = a.sorted_vals[st_a + np.minimum(ar_a, ct_a - 1)]  # (size_a, P), padding clamped
        vb = b.sorted_vals[st_b + np.minimum(ar_b, ct_b - 1)]  # (size_b, P)
        for r0 in range(0, sa_n, row_step):
            x = va[r0 : r0 + row_step, None, :] ^ vb[None, :, :]  # (rows, size_b, P)
            d = np.bitwise_count(x)
            flat = np.flatnonzero(d <= t)
            if len(flat) == 0:
                continue
            p = flat % n_p
            yb = (flat // n_p) % sb_n
            xa = flat // (n_p * sb_n)
            xor = x.reshape(-1)[flat]
            xa = xa + r0
            ok = (xa < ct_a[p]) & (yb < ct_b[p])
            if task.self_bucket:
                ok &= xa < yb
            p, xa, yb, xor = p[ok], xa[ok], yb[ok], xor[ok]
            for j in range(task.block_index):  # reported by an earlier block already?
                blk = plan.blocks[j]
                dj = np.bitwise_count((xor >> _U64(blk.shift)) & _U64(blk.mask))
                keep = dj > blk.radius
                p, xa, yb, xor = p[keep], xa[keep], yb[keep], xor[keep]
            out_a.append(a.order[st_a[p] + xa])
            out_b.append(b.order[st_b[p] + yb])
            out_d.append(np.bitwise_count(xor))
    if not out_a:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.uint8)
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_d)


def _tasks(
    block_index: int, a: _Side, b: _Side, pa: np.ndarray, pb: np.ndarray, self_join: bool
) -> Iterator[_Task]:
    """Group bucket pairs by (size class of A, size class of B, same bucket) into tasks."""
    # classes per bucket (few distinct), renumbered densely so the group code is small
    cls_a, cls_b = _size_class(a.counts), _size_class(b.counts)
    ladder, inv = np.unique(np.concatenate([cls_a, cls_b]), return_inverse=True)
    ia, ib = inv[: len(cls_a)], inv[len(cls_a) :]
    n_cls = len(ladder)
    code = (ia[pa] * n_cls + ib[pb]) * 2
    if self_join:
        code += pa == pb
    small = np.int16 if 2 * n_cls * n_cls < 2**15 else np.int64
    order = np.argsort(code.astype(small), kind="stable")  # radix sort for int16
    code_sorted = code[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(code_sorted)) + 1, [len(order)]])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi <= lo:
            continue
        c = int(code_sorted[lo])
        same, rest = c % 2, c // 2
        size_a, size_b = int(ladder[rest // n_cls]), int(ladder[rest % n_cls])
        rows = max(1, (8 * _CHUNK) // max(size_a * size_b, 1))  # several tasks per group
        for s in range(lo, hi, rows):
            sub = order[s : min(hi, s + rows)]
            yield _Task(block_index, bool(same), size_a, size_b, pa[sub], pb[sub])


def join(
    values_a: np.ndarray,
    values_b: np.ndarray | None,
    threshold: int,
    workers: int = 2,
    plan: Plan | None = None,
) -> Pairs:
    """All pairs of *distinct* values within ``threshold`` bits.

    ``values_a`` ``(u,) uint64`` must hold distinct values.  Self-join
    (``values_b is None``): pairs ``i < j`` of positions in ``values_a``.
    Otherwise ``values_b`` (distinct too) is joined against ``values_a``:
    ``i`` indexes ``values_a``, ``j`` indexes ``values_b`` and equal values
    (distance 0) are pairs too.  ``workers`` threads share the verification.
    """
    values_a = np.ascontiguousarray(values_a, dtype=_U64)
    self_join = values_b is None
    values_b = values_a if values_b is None else np.ascontiguousarray(values_b, dtype=_U64)
    if len(values_a) == 0 or len(values_b) == 0 or (self_join and threshold == 0):
        return Pairs.empty()
    if plan is None:
        plan = make_plan(threshold, len(values_a), None if self_join else len(values_b))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    workers = max(1, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for bi, block in enumerate(plan.blocks):
            side_a = _Side.build(values_a, block)
            side_b = side_a if self_join else _Side.build(values_b, block)
            pa, pb = _bucket_pairs(side_a, side_b, block, self_join)
            tasks = list(_tasks(bi, side_a, side_b, pa, pb, self_join))
            # big tasks first so the threads finish together
            tasks.sort(key=lambda tk: -len(tk.pa) * tk.size_a * tk.size_b)
            if workers == 1:
                parts.extend(_verify(tk, side_a, side_b, plan) for tk in tasks)
            else:
                parts.extend(pool.map(lambda tk: _verify(tk, side_a, side_b, plan), tasks))  # noqa: B023
    ia = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    ib = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    dd = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.uint8)
    if self_join:
        ia, ib = np.minimum(ia, ib), np.maximum(ia, ib)
    return Pairs(ia.astype(np.int64), ib.astype(np.int64), dd.astype(np.uint8))


def _as_hashes(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.dtype != _U64:
        if arr.dtype.kind == "i" and len(arr) and arr.min() < 0:
            raise ValueError("hashes must be unsigned 64-bit values")
        arr = arr.astype(_U64)
    return arr.reshape(-1)


def search(hashes: np.ndarray | Sequence[int], threshold: int, workers: int = 2) -> Matches:
    """Exact near-duplicate search over ``(n,) uint64`` hashes; compact :class:`Matches`."""
    arr = _as_hashes(hashes)
    values, inverse = np.unique(arr, return_inverse=True)
    return Matches(
        values, inverse.reshape(-1).astype(np.int64), join(values, None, threshold, workers)
    )


def find_pairs(hashes: np.ndarray | Sequence[int], threshold: int, workers: int = 2) -> Pairs:
    """All pairs ``i < j`` of positions with ``popcount(h[i] ^ h[j]) <= threshold``.

    Exact (same set as brute force).  Identical hashes give all their pairs:
    a group of ``k`` copies adds ``k (k - 1) / 2``; use :func:`search` for the
    compact form.
    """
    return search(hashes, threshold, workers).pairs()


def brute_force_pairs(hashes: np.ndarray, threshold: int, cells: int = 1 << 22) -> Pairs:
    """Reference: all pairs ``i < j`` within ``threshold`` by chunked XOR + popcount over the
    upper triangle (O(n^2); ``cells`` bounds the temporary matrix, 32 MB by default)."""
    h = _as_hashes(hashes)
    n = len(h)
    rows = max(1, cells // max(n, 1))
    out_i, out_j, out_d = [], [], []
    for s in range(0, n, rows):
        block = h[s : s + rows]
        d = np.bitwise_count(block[:, None] ^ h[None, s:])  # columns start at s
        r, c = np.nonzero(d <= threshold)
        keep = c > r
        r, c = r[keep], c[keep]
        out_i.append(r + s)
        out_j.append(c + s)
        out_d.append(d[r, c])
    if not out_i:
        return Pairs.empty()
    return Pairs(
        np.concatenate(out_i).astype(np.int64),
        np.concatenate(out_j).astype(np.int64),
        np.concatenate(out_d).astype(np.uint8),
    )


# --------------------------------------------------------------------------- the index
class HashIndex:
    """A persistent, append-only set of ``(id, hash)`` with incremental near-duplicate search.

    ``add`` compares a new batch with itself and with everything indexed
    before (old images are never rehashed) and returns only the new pairs, as
    positions into :attr:`ids` / :attr:`hashes` (``i < j``; ``j`` is always new).
    """

    def __init__(
        self,
        threshold: int,
        ids: np.ndarray | Sequence | None = None,
        hashes: np.ndarray | Sequence[int] | None = None,
        workers: int = 2,
        kind: str = "",
    ) -> None:
        if not 0 <= threshold <= 64:
            raise ValueError(f"threshold must be in [0, 64], got {threshold}")
        self.threshold = threshold
        self.workers = workers
        self.kind = kind  # which hash (phash, dhash, ...): a label saved with the index
        self.ids: np.ndarray = np.asarray(ids if ids is not None else [], dtype=None)
        self.hashes: np.ndarray = _as_hashes(hashes if hashes is not None else [])
        if len(self.ids) != len(self.hashes):
            raise ValueError(f"{len(self.ids)} ids but {len(self.hashes)} hashes")
        self._distinct: tuple[np.ndarray, np.ndarray] | None = None  # (values, inverse)

    def __len__(self) -> int:
        return len(self.hashes)

    def _groups(self) -> tuple[np.ndarray, np.ndarray]:
        if self._distinct is None:
            values, inverse = np.unique(self.hashes, return_inverse=True)
            self._distinct = (values, inverse.reshape(-1).astype(np.int64))
        return self._distinct

    def query(self, hashes: np.ndarray | Sequence[int], threshold: int | None = None) -> Pairs:
        """Pairs ``(q, p)``: query position ``q`` is within ``threshold`` of indexed
        position ``p`` (``i`` = query positions, ``j`` = index positions)."""
        t = self.threshold if threshold is None else threshold
        q = _as_hashes(hashes)
        if len(q) == 0 or len(self) == 0:
            return Pairs.empty()
        old_vals, old_inv = self._groups()
        q_vals, q_inv = np.unique(q, return_inverse=True)
        vp = join(old_vals, q_vals, t, self.workers)  # i: old value, j: query value
        return _expand_bipartite(
            vp, old_inv, len(old_vals), q_inv.reshape(-1), len(q_vals), swap=True
        )

    def add(self, ids: np.ndarray | Sequence, hashes: np.ndarray | Sequence[int]) -> Pairs:
        """Append a batch; return the pairs it creates (within itself and with the old ones)."""
        new = _as_hashes(hashes)
        new_ids = np.asarray(ids)
        if len(new_ids) != len(new):
            raise ValueError(f"{len(new_ids)} ids but {len(new)} hashes")
        n_old = len(self)
        cross = self.query(new)  # i: batch position, j: old position
        cross = Pairs(cross.j, cross.i + n_old, cross.dist)
        inner = find_pairs(new, self.threshold, self.workers)
        inner = Pairs(inner.i + n_old, inner.j + n_old, inner.dist)
        self.ids = np.concatenate([self.ids, new_ids]) if n_old else new_ids.copy()
        self.hashes = np.concatenate([self.hashes, new])
        self._distinct = None
        return Pairs.concat([cross, inner])

    def search(self) -> Matches:
        """All near-duplicates among everything indexed (compact form)."""
        return search(self.hashes, self.threshold, self.workers)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``ids``, ``hashes``, ``threshold`` and ``kind`` to an ``.npz`` atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        ids = self.ids if len(self.ids) else np.zeros(0, dtype="<U1")
        np.savez(
            tmp,
            ids=ids,
            hashes=self.hashes,
            threshold=np.int64(self.threshold),
            kind=np.str_(self.kind),
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, workers: int = 2) -> HashIndex:
        """Read an index written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            kind = str(z["kind"]) if "kind" in z.files else ""
            return cls(int(z["threshold"]), z["ids"], z["hashes"], workers=workers, kind=kind)


def _expand_bipartite(
    vp: Pairs, inv_a: np.ndarray, n_a: int, inv_b: np.ndarray, n_b: int, swap: bool
) -> Pairs:
    """Value pairs (a-value, b-value) → item pairs, via the identical groups of both sides."""
    order_a = np.argsort(inv_a, kind="stable")
    size_a = np.bincount(inv_a, minlength=n_a)
    start_a = np.concatenate([[0], np.cumsum(size_a)[:-1]]).astype(np.int64)
    order_b = np.argsort(inv_b, kind="stable")
    size_b = np.bincount(inv_b, minlength=n_b)
    start_b = np.concatenate([[0], np.cumsum(size_b)[:-1]]).astype(np.int64)
    xa, xb, rep = _cartesian(start_a[vp.i], size_a[vp.i], start_b[vp.j], size_b[vp.j])
    ia, ib = order_a[xa], order_b[xb]
    if swap:
        return Pairs(ib.astype(np.int64), ia.astype(np.int64), vp.dist[rep])
    return Pairs(ia.astype(np.int64), ib.astype(np.int64), vp.dist[rep])
