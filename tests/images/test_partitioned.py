"""The search run as executor tasks over files (:mod:`mmnerd.images.partitioned`), here with
the local executor: the same pair set as brute force and as the threaded join, for dense and
wide blocks, overflow rows and bipartite joins; its files are removed afterwards.  The same
on Dask: tests/executors/test_dask_search.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmnerd.executors.local import LocalExecutor
from mmnerd.images.index import (
    Matches,
    _run_task,
    _Side,
    _tile_shift,
    brute_force_pairs,
    join,
    make_plan,
    search,
)
from mmnerd.images.partitioned import PartitionedSearch, build_block, join_range


def planted(n: int, seed: int, near: int, max_flips: int = 12) -> np.ndarray:
    """``(n,) uint64`` random hashes, ``near`` of them copies of others with up to
    ``max_flips`` bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    src, dst = rng.integers(0, n, near), rng.integers(0, n, near)
    flips = np.zeros(near, np.uint64)
    for _ in range(max_flips):
        on = rng.random(near) < 0.5
        flips[on] |= np.uint64(1) << rng.integers(0, 64, int(on.sum())).astype(np.uint64)
    h[dst] = h[src] ^ flips
    return h


def pair_dict(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> dict[tuple[int, int], int]:
    out = dict(zip(zip(i.tolist(), j.tolist(), strict=True), d.tolist(), strict=True))
    assert len(out) == len(i), "a pair was reported twice"
    return out


@pytest.fixture
def files(tmp_path: Path) -> PartitionedSearch:
    return PartitionedSearch(LocalExecutor(), tmp_path / "search", tasks_per_block=5)


# m forces the plan: 1 and 2 give wide blocks (binary-searched keys), 3-4 dense rows
@pytest.mark.parametrize(("m", "t"), [(None, 10), (2, 5), (3, 10), (4, 6), (6, 10)])
def test_self_join_equals_brute_force_and_threads(files: PartitionedSearch, m, t) -> None:
    h = planted(6000, seed=1, near=1500)
    values, inverse = np.unique(h, return_inverse=True)
    plan = make_plan(t, len(values), m=m)
    got = join(values, None, t, plan=plan, partitioned=files)
    threads = join(values, None, t, workers=2, plan=plan)
    assert pair_dict(got.i, got.j, got.dist) == pair_dict(threads.i, threads.j, threads.dist)
    assert np.all(got.i < got.j)
    items = Matches(values, inverse, got).pairs()
    ref = brute_force_pairs(h, t)
    assert pair_dict(items.i, items.j, items.dist) == pair_dict(ref.i, ref.j, ref.dist)
    assert len(ref) > 300
    assert list(files.folder.iterdir()) == []  # each join removes its files


def test_plans_cover_dense_and_wide_blocks() -> None:
    """What the parametrisation above relies on."""
    wide = make_plan(5, 6000, m=2).blocks
    assert all(b.bits > 23 for b in wide)
    assert all(b.bits <= 23 for b in make_plan(10, 6000, m=4).blocks)


def test_overflow_rows_under_a_tiny_budget(files: PartitionedSearch) -> None:
    """A crowd sharing its high bits overflows the rows a small budget allows: the overflow
    tasks pair those values, each pair once."""
    rng = np.random.default_rng(9)
    base = rng.integers(0, 2**64 - 1, 300, dtype=np.uint64, endpoint=True)
    crowd = base[0] ^ rng.integers(0, 2**20, 3000).astype(np.uint64)  # low 20 bits vary
    h = np.concatenate([base, crowd, base[1:40] ^ np.uint64(0b111)])
    values, inverse = np.unique(h, return_inverse=True)
    budget = 1 << 18
    plan = make_plan(8, len(values), memory_bytes=budget)
    widths = [
        (b.bits, build_block(*_one_block(files, values, plan, bi, budget)))
        for bi, b in enumerate(plan.blocks)
    ]
    assert any(n_over > 0 for _, (_, _, n_over) in widths), widths
    got = join(values, None, 8, plan=plan, memory_bytes=budget, partitioned=files)
    threads = join(values, None, 8, plan=plan, memory_bytes=budget)
    assert got.as_set() == threads.as_set() and len(got) == len(threads)
    ref = brute_force_pairs(h, 8)
    items = Matches(values, inverse, got).pairs()
    assert pair_dict(items.i, items.j, items.dist) == pair_dict(ref.i, ref.j, ref.dist)


def _one_block(
    files: PartitionedSearch, values: np.ndarray, plan, bi: int, budget: int
) -> tuple[str, object, int, bool, int]:
    run = files.folder / f"probe-{bi}"
    run.mkdir(parents=True)
    np.save(run / "a.npy", values)
    return str(run), plan, bi, True, budget


@pytest.mark.parametrize("m", [None, 2, 3])
def test_bipartite_join(files: PartitionedSearch, m) -> None:
    a = np.unique(planted(4000, seed=5, near=0))
    b = np.unique(np.concatenate([a[:50], a[100:200] ^ np.uint64(0b1100), planted(1000, 6, 0)]))
    plan = make_plan(6, len(a), len(b), m=m)
    got = join(a, b, 6, plan=plan, partitioned=files)
    assert got.as_set() == join(a, b, 6, plan=plan).as_set()
    d = np.bitwise_count(a[:, None] ^ b[None, :])
    ref = {(int(i), int(j)) for i, j in zip(*np.nonzero(d <= 6), strict=True)}
    assert got.as_set() == ref and len(got) == len(ref) >= 150


def test_a_task_reads_the_block_from_files(files: PartitionedSearch) -> None:
    """A block's arrays round-trip through .npy files (memory-mapped) unchanged, and one
    task range gives the pairs the in-memory side gives."""
    values = np.unique(planted(3000, seed=3, near=800))
    plan = make_plan(10, len(values), m=3)
    run, _, _, _, budget = _one_block(files, values, plan, 1, 1 << 30)
    width, _, _ = build_block(run, plan, 1, True, budget)
    side = _Side.build(values, plan.blocks[1], rows=True, max_bytes=budget // 4)
    assert width == side.width
    spec = ("tiles", 0, 1 << (plan.blocks[1].bits - _tile_shift(plan.blocks[1], width)))
    mem = _run_task(plan, 1, side, side, True, *spec)
    disk = join_range(run, plan, 1, True, width, *spec)
    assert [x.tolist() for x in mem] == [x.tolist() for x in disk]
    assert len(mem[0]) > 0


def test_search_with_identical_copies(files: PartitionedSearch) -> None:
    h = planted(3000, seed=7, near=600)
    h[:200] = h[5]  # identical copies collapse before the search
    m = search(h, 10, partitioned=files)
    ref = brute_force_pairs(h, 10)
    items = m.pairs()
    assert pair_dict(items.i, items.j, items.dist) == pair_dict(ref.i, ref.j, ref.dist)
