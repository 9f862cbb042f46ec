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
   ``m`` and the widths with a cost model (measured per-step costs).
3. Per block the distinct values are sorted by block key (a bucket = values
   sharing the key) and each key's first values are copied into a fixed-width
   padded row.  Compiled kernels (numba, :mod:`mmnerd.images._kernels`) walk
   every value against the rows of the keys within ``r_i`` flips of its own,
   8 values per vector XOR + popcount + compare, tile by tile (keys sharing their
   high bits) so the rows in use stay in cache; nothing is materialised but the
   pairs found.  Values past their row's width ("overflow") are paired by a
   second kernel against whole buckets.
4. A pair found in block ``i`` is kept only if no earlier block ``j < i`` also
   catches it (``d_j <= r_j``), so every pair is reported exactly once.

The result is exact: the same pair set as brute force (tests check it).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mmnerd.images.partitioned import PartitionedSearch

_U64 = np.uint64


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


def _blocks(m: int, threshold: int, deltas: Sequence[int] = ()) -> tuple[Block, ...]:
    """``m`` contiguous blocks covering the 64 bits, widths as even as possible plus
    ``deltas`` (summing to 0); the radii (``sum = threshold - m + 1``) go to the widest
    blocks first."""
    q, rem = divmod(64, m)
    widths = [q + 1 if i < rem else q for i in range(m)]
    for i, d in enumerate(deltas):
        widths[i] += d
    slack = threshold - m + 1
    radii = [slack // m + (1 if i < slack % m else 0) for i in range(m)]
    by_width = sorted(range(m), key=lambda i: -widths[i])
    radius_of = dict(zip(by_width, radii, strict=True))
    blocks, shift = [], 64
    for i, w in enumerate(widths):
        shift -= w
        blocks.append(Block(shift=shift, bits=w, radius=radius_of[i]))
    return tuple(blocks)


# model constants, ~nanoseconds on one core of the project machine (see docs/dedup.md)
_NS_UNIT = 2.5  # one (value, flip mask) step of fixed_join
_NS_ROW = 1.2  # one 8-value unit of the overflow and wide-block scans
# one 8-value unit of a padded row: ~2 ns while rows are short (they stay in the caches),
# rising to ~7.5 ns on rows of ~1,300 values (streamed from memory).  Fitted on planted
# hashes (benchmarks/dedup.py) at 1M, 3M and 10M, per block: rows of 32-40 values cost
# 2.0-2.2 ns a unit, of 104 values 4.6, of 160, 424 and 1,328 values 5.0, 5.5 and 7.4.
# With a flat 1.2 ns the 10M plan was 13:1, 17:2 x3 (122 s here) where three wide blocks
# (21:3, 22:3, 21:2) take 51 s.
_ROW_KNEE = 1.7  # log2(width / 32) where the steep part ends (~104 values)
_NS_ROW_MIN, _NS_ROW_STEEP, _NS_ROW_SLOW = 2.0, 1.53, 0.76  # ns, ns per doubling of width


def _ns_row(width: float) -> float:
    """Nanoseconds per 8-value unit of a padded row of ``width`` values (see above)."""
    doublings = math.log2(max(width, 32) / 32)
    steep = min(doublings, _ROW_KNEE)
    return _NS_ROW_MIN + _NS_ROW_STEEP * steep + _NS_ROW_SLOW * (doublings - steep)


_NS_SORT = 40.0  # sorting and bucketing one value for one block
_NS_SEARCH = 40.0  # one binary search of a wide block


def _cost(blocks: Sequence[Block], n_a: int, n_b: int, memory_bytes: int) -> float:
    """Rough single-core nanoseconds to join ``n_a`` with ``n_b`` distinct values
    (``inf`` if a block's padded rows would not fit a quarter of ``memory_bytes``)."""
    total = 0.0
    half = 0.5 if n_a == n_b else 1.0
    for b in blocks:
        ball = _ball(b.bits, b.radius)
        space = 2.0**b.bits
        lam = n_b / space
        total += (n_a + n_b) * _NS_SORT
        if b.bits <= _DENSE_MAX_BITS:
            width = min(_MAX_WIDTH, 8 * math.ceil((lam + 3 * math.sqrt(lam) + 1) / 8))
            fit = int(memory_bytes / 4 / (space * 8)) - 8  # values per row the budget allows
            if fit < 8:
                return math.inf
            width = min(width, fit // 8 * 8)
            over = max(0.0, lam - width) / max(lam, 1e-9)  # share left to the overflow kernel
            units = n_a * ball * half
            total += units * (_NS_UNIT + width / 8 * _ns_row(width))
            total += units * over * lam * _NS_ROW + space * width * 0.5
        else:
            d_a = space * -math.expm1(-n_a / space)
            total += d_a * ball * half * _NS_SEARCH
            total += n_a * n_b * ball / space * half * _NS_ROW / 4
    return total


def make_plan(
    threshold: int,
    n_a: int,
    n_b: int | None = None,
    m: int | None = None,
    memory_bytes: int = 2 << 30,
) -> Plan:
    """The cheapest block split for joining ``n_a`` values with ``n_b`` (self-join if None).

    ``m`` forces the number of blocks (``1 <= m <= threshold + 1``); widths may differ by
    a few bits between blocks (a narrower block for a smaller radius).
    """
    if not 0 <= threshold <= 64:
        raise ValueError(f"threshold must be in [0, 64], got {threshold}")
    n_b = n_a if n_b is None else n_b
    choices = [m] if m is not None else range(1, min(threshold + 1, 32) + 1)
    best: Plan | None = None
    for k in choices:
        if not 1 <= k <= threshold + 1:
            raise ValueError(f"m must be in [1, threshold + 1], got {k}")
        spread = range(-3, 4) if 2 <= k <= 4 else range(0, 1)
        for deltas in itertools.product(spread, repeat=k - 1):
            blocks = _blocks(k, threshold, (*deltas, -sum(deltas)))
            if any(not 1 <= b.bits <= 64 or _ball(b.bits, b.radius) > 5_000_000 for b in blocks):
                continue
            cost = _cost(blocks, n_a, n_b, memory_bytes)
            if best is None or cost < best.cost:
                best = Plan(threshold, blocks, cost)
    if best is None or math.isinf(best.cost):  # only huge radii: the classic pigeonhole
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
_DENSE_MAX_BITS = 23  # wider block keys are looked up by binary search (small corpora)
_TILE_BYTES = 1 << 19  # a tile's padded rows (B side) kept in the L2 cache: 512 KiB
_MAX_WIDTH = 4096  # most values a padded row holds; more are overflow items
_FIXED_BYTES = 32  # per item per block: sorted value, key, id (8 B each) + overflow share


def _flip_masks(bits: int, radius: int) -> np.ndarray:
    """``(V,) int64``: all masks of ``bits`` bits with 1..radius bits set (bit patterns:
    a 64-bit mask with the top bit set is negative)."""
    masks = [
        sum(1 << p for p in c) for k in range(1, radius + 1) for c in combinations(range(bits), k)
    ]
    return np.array(masks, dtype=np.uint64).view(np.int64)


def _row_width(counts: np.ndarray, max_bytes: int) -> int:
    """Values per padded row (a multiple of 8): the smallest that leaves <= 1% of the items
    (and <= 1% of the keys' excess) as overflow, within ``max_bytes`` of rows."""
    n = int(counts.sum())
    keys = len(counts)
    width = 8
    while width < _MAX_WIDTH and keys * (width + 8) * 8 <= max_bytes:
        over = int(np.maximum(counts - width, 0).sum())
        if over <= n // 100:
            break
        width += 8
    return width


@dataclass
class _Side:
    """One side of a join for one block: values sorted by block key (stable), bucketed.

    Dense blocks (``bits <= 23``) index buckets by key (``start`` ``(2**bits + 1,)``) and
    keep each key's first ``width`` values in fixed rows (``rows``); the items past
    ``width`` are ``overflow`` (sorted positions).  Wide blocks keep the distinct keys
    (``ukeys``) and variable rows padded to 8 (``pstart``, ``rows``).
    """

    sv: np.ndarray  # (u,) uint64 values sorted by key
    key: np.ndarray  # (u,) int64 their keys
    order: np.ndarray  # (u,) int64 their positions in the side's values
    start: np.ndarray  # (K + 1,) int64 item offsets per bucket
    rows: np.ndarray  # padded values
    width: int = 0  # dense: values per row
    overflow: np.ndarray | None = None  # dense: sorted positions past their row
    ukeys: np.ndarray | None = None  # wide: (K,) distinct keys
    pstart: np.ndarray | None = None  # wide: (K + 1,) row offsets

    @property
    def dense(self) -> bool:
        return self.ukeys is None

    @staticmethod
    def build(values: np.ndarray, block: Block, rows: bool, max_bytes: int) -> _Side:
        from mmnerd.images import _kernels as kn

        keys = block.keys(values).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        sv = values[order]
        if block.bits <= _DENSE_MAX_BITS:
            counts = np.bincount(sk, minlength=1 << block.bits)
            start = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=start[1:])
            if not rows:
                return _Side(sv, sk, order, start, np.zeros(0, _U64))
            width = _row_width(counts, max_bytes)
            table = np.empty(len(counts) * width, _U64)
            kn.fixed_rows(sv, start, width, block.shift, table)
            slot = np.arange(len(sk), dtype=np.int64) - start[sk]
            return _Side(sv, sk, order, start, table, width, np.flatnonzero(slot >= width))
        new = np.ones(len(sk), dtype=bool)
        new[1:] = sk[1:] != sk[:-1]
        start = np.append(np.flatnonzero(new), len(sk)).astype(np.int64)
        ukeys = sk[new]
        counts = np.diff(start)
        pstart = np.zeros(len(counts) + 1, np.int64)
        np.cumsum((counts + 7) // 8 * 8, out=pstart[1:])
        table = np.empty(int(pstart[-1]), _U64)
        kn.pad_rows(sv, start, pstart, table)
        return _Side(sv, sk, order, start, table, ukeys=ukeys, pstart=pstart)


def _tile_masks(bits: int, radius: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every mask of ``bits`` bits with <= ``radius`` bits set (0 included), grouped by its
    high part (``>> s``): ``(hmasks, lo_ptr, lo_masks)`` as :func:`fixed_join` takes them."""
    groups: dict[int, list[int]] = {}
    for mu in [0, *_flip_masks(bits, radius).view(_U64).tolist()]:
        groups.setdefault(mu >> s, []).append(mu & ((1 << s) - 1))
    hmasks = sorted(groups)
    lo: list[int] = []
    ptr = [0]
    for h in hmasks:
        lo += sorted(groups[h])
        ptr.append(len(lo))
    return np.array(hmasks, np.int64), np.array(ptr, np.int64), np.array(lo, np.int64)


def _run_kernel(fn: Callable[..., int], *args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Call a kernel with output buffers; if they were too small, once more with the size
    it reported (a task's pairs are its output: never cut)."""
    cap = 1 << 12
    while True:
        oi = np.empty(cap, np.int64)
        oj = np.empty(cap, np.int64)
        od = np.empty(cap, np.uint8)
        n = fn(*args, oi, oj, od)
        if n <= cap:
            return oi[:n], oj[:n], od[:n]
        cap = n


@dataclass(frozen=True)
class _BlockWork:
    """What every task of one block shares (a few KiB): the earlier blocks' shifts, masks
    and radii, the flip masks (sparse and overflow kernels) and the tile masks (dense)."""

    prev: tuple[np.ndarray, np.ndarray, np.ndarray]
    masks: np.ndarray  # (V + 1,) int64: 0 and every mask of 1..radius flips
    s: int = 0  # dense: low key bits inside a tile
    tiles: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # dense: _tile_masks


def _tile_shift(block: Block, width: int) -> int:
    """Low key bits of a tile: its padded rows (``width`` values a key) fit ``_TILE_BYTES``."""
    return max(0, min(block.bits, int(math.log2(max(1, _TILE_BYTES // (8 * width))))))


@functools.lru_cache(maxsize=8)
def _block_work(plan: Plan, bi: int, width: int) -> _BlockWork:
    """The shared part of block ``bi``'s tasks (``width`` 0: a wide block); cached, so a
    process running many tasks of a block computes it once."""
    block = plan.blocks[bi]
    earlier = plan.blocks[:bi]
    prev = (
        np.array([e.shift for e in earlier], _U64),
        np.array([e.mask for e in earlier], _U64),
        np.array([e.radius for e in earlier], np.int64),
    )
    masks = np.concatenate([[0], _flip_masks(block.bits, block.radius)]).astype(np.int64)
    if not width:
        return _BlockWork(prev, masks)
    s = _tile_shift(block, width)
    return _BlockWork(prev, masks, s, _tile_masks(block.bits, block.radius, s))


def _task_specs(
    block: Block, width: int, n_keys_a: int, n_overflow: int, n_tasks: int
) -> list[tuple[str, int, int]]:
    """Block ``block``'s work cut into ``(kind, lo, hi)`` tasks: ``"sparse"`` ranges of
    side A's distinct keys (a wide block: ``width`` 0), or ``"tiles"`` ranges of key tiles
    then ``"overflow"`` ranges of side B's overflow items (a dense block)."""
    if not width:
        return [("sparse", lo, hi) for lo, hi in _ranges(n_keys_a, n_tasks)]
    specs = [
        ("tiles", lo, hi)
        for lo, hi in _ranges(1 << (block.bits - _tile_shift(block, width)), n_tasks)
    ]
    specs += [("overflow", lo, hi) for lo, hi in _ranges(n_overflow, max(1, n_tasks // 4))]
    return specs


def _side_specs(
    plan: Plan, bi: int, a: _Side, b: _Side, n_tasks: int
) -> list[tuple[str, int, int]]:
    n_keys_a = 0 if a.ukeys is None else len(a.ukeys)
    n_over = 0 if b.overflow is None else len(b.overflow)
    return _task_specs(plan.blocks[bi], b.width if b.dense else 0, n_keys_a, n_over, n_tasks)


def _run_task(
    plan: Plan, bi: int, a: _Side, b: _Side, self_join: bool, kind: str, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One task of block ``bi`` (:func:`_task_specs`): ``(id a, id b, dist)`` arrays."""
    from mmnerd.images import _kernels as kn

    w = _block_work(plan, bi, b.width if b.dense else 0)
    t = plan.threshold
    if kind == "sparse":
        assert a.ukeys is not None and b.ukeys is not None and b.pstart is not None
        return _run_kernel(
            kn.sparse_join, a.sv, a.ukeys.view(np.int64), a.order, a.start,
            b.sv, b.ukeys.view(np.int64), b.order, b.start, b.pstart, b.rows, w.masks, lo, hi,
            self_join, t, *w.prev,
        )  # fmt: skip
    if kind == "tiles":
        assert w.tiles is not None
        return _run_kernel(
            kn.fixed_join, a.sv, a.key, a.order, a.start, b.sv, b.order, b.start,
            b.rows, b.width, w.s, *w.tiles, lo, hi, self_join, t, *w.prev,
        )  # fmt: skip
    assert kind == "overflow" and b.overflow is not None
    return _run_kernel(
        kn.overflow_join, b.overflow[lo:hi], b.sv, b.key, b.order, b.start,
        a.sv, a.order, a.start, b.width, w.masks, self_join, t, *w.prev,
    )  # fmt: skip


def _block_tasks(
    plan: Plan, bi: int, a: _Side, b: _Side, self_join: bool, n_tasks: int
) -> list[Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The work of block ``bi`` as independent tasks (key-tile ranges, then the overflow
    items), each returning ``(id a, id b, dist)`` arrays."""
    from functools import partial

    return [
        partial(_run_task, plan, bi, a, b, self_join, kind, lo, hi)
        for kind, lo, hi in _side_specs(plan, bi, a, b, n_tasks)
    ]


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``[0, n)`` cut into up to ``parts`` contiguous, non-empty ranges."""
    cuts = np.unique(np.linspace(0, n, max(1, min(parts, n)) + 1).astype(np.int64))
    return [(int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]


def join(
    values_a: np.ndarray,
    values_b: np.ndarray | None,
    threshold: int,
    workers: int = 2,
    plan: Plan | None = None,
    memory_bytes: int = 2 << 30,
    partitioned: PartitionedSearch | None = None,
) -> Pairs:
    """All pairs of *distinct* values within ``threshold`` bits.

    ``values_a`` ``(u,) uint64`` must hold distinct values.  Self-join
    (``values_b is None``): pairs ``i < j`` of positions in ``values_a``.
    Otherwise ``values_b`` (distinct too) is joined against ``values_a``:
    ``i`` indexes ``values_a``, ``j`` indexes ``values_b`` and equal values
    (distance 0) are pairs too.  ``workers`` threads run the tasks of each block (the
    compiled kernels release the GIL).  ``memory_bytes`` caps the padded rows of a
    block; the kernels materialise no candidates, so the working memory is the
    ~32 bytes per value per block of the sorted arrays, plus the pairs found.
    ``partitioned`` runs the blocks' tasks through an executor instead of the threads
    (:class:`~mmnerd.images.partitioned.PartitionedSearch`; the same pairs).
    """
    values_a = np.ascontiguousarray(values_a, dtype=_U64)
    self_join = values_b is None
    values_b = values_a if values_b is None else np.ascontiguousarray(values_b, dtype=_U64)
    if len(values_a) == 0 or len(values_b) == 0 or (self_join and threshold == 0):
        return Pairs.empty()
    if plan is None:
        n_b = None if self_join else len(values_b)
        plan = make_plan(threshold, len(values_a), n_b, memory_bytes=memory_bytes)
    workers = max(1, workers)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if partitioned is not None:
        parts = partitioned.run(values_a, None if self_join else values_b, plan, memory_bytes)
        return _pairs_of(parts, self_join)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for bi, block in enumerate(plan.blocks):
            side_b = _Side.build(values_b, block, rows=True, max_bytes=memory_bytes // 4)
            side_a = side_b if self_join else _Side.build(values_a, block, False, 0)
            tasks = _block_tasks(plan, bi, side_a, side_b, self_join, 8 * workers)
            if workers == 1:
                parts.extend(task() for task in tasks)
            else:
                parts.extend(pool.map(lambda task: task(), tasks))
            del side_a, side_b
    return _pairs_of(parts, self_join)


def _pairs_of(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], self_join: bool) -> Pairs:
    """The tasks' ``(id a, id b, dist)`` arrays as one :class:`Pairs` (``i < j`` if a
    self-join)."""
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


def search(
    hashes: np.ndarray | Sequence[int],
    threshold: int,
    workers: int = 2,
    memory_bytes: int = 2 << 30,
    partitioned: PartitionedSearch | None = None,
) -> Matches:
    """Exact near-duplicate search over ``(n,) uint64`` hashes; compact :class:`Matches`.
    ``memory_bytes`` bounds the padded rows of a block; ``partitioned`` runs the search's
    tasks on an executor (:func:`join`)."""
    arr = _as_hashes(hashes)
    values, inverse = np.unique(arr, return_inverse=True)
    pairs = join(
        values, None, threshold, workers, memory_bytes=memory_bytes, partitioned=partitioned
    )
    return Matches(values, inverse.reshape(-1).astype(np.int64), pairs)


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
