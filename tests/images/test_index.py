"""Exact near-duplicate search: same pair set as brute force, identical floods, incremental
adds and persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmnerd.images.index import (
    HashIndex,
    Matches,
    Pairs,
    brute_force_pairs,
    find_pairs,
    join,
    make_plan,
    search,
)


def planted(n: int, seed: int, near: int = 3000, max_flips: int = 18) -> np.ndarray:
    """``(n,) uint64`` random hashes where ``near`` entries are copies of others with
    0..max_flips bits flipped (chains too, since sources may themselves be copies)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    for _ in range(near):
        v = int(h[rng.integers(0, n)])
        for bit in rng.choice(64, int(rng.integers(0, max_flips + 1)), replace=False):
            v ^= 1 << int(bit)
        h[rng.integers(0, n)] = v
    return h


def as_dict(p: Pairs) -> dict[tuple[int, int], int]:
    d = dict(zip(zip(p.i.tolist(), p.j.tolist(), strict=True), p.dist.tolist(), strict=True))
    assert len(d) == len(p), "a pair was reported twice"
    return d


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    h = planted(20_000, seed=1)
    return h, as_dict(brute_force_pairs(h, 16))


@pytest.mark.parametrize("t", [0, 4, 10, 16])
def test_equals_brute_force(data: tuple[np.ndarray, dict], t: int) -> None:
    h, ref = data
    expected = {k: d for k, d in ref.items() if d <= t}
    got = as_dict(find_pairs(h, t))
    assert got == expected
    assert len(expected) > 100  # the planted pairs are there
    assert all(i < j for i, j in got)


@pytest.mark.parametrize(("m", "t"), [(1, 2), (2, 3), (3, 10), (4, 10), (6, 10), (11, 10)])
def test_every_plan_is_exact(m: int, t: int) -> None:
    h = planted(3000, seed=2, near=800, max_flips=12)
    ref = as_dict(brute_force_pairs(h, t))
    values, inverse = np.unique(h, return_inverse=True)
    plan = make_plan(t, len(values), m=m)
    assert len(plan.blocks) == m
    assert sum(b.radius for b in plan.blocks) == t - m + 1
    vp = join(values, None, t, workers=1, plan=plan)
    from mmnerd.images.index import Matches

    got = as_dict(Matches(values, inverse, vp).pairs())
    assert got == ref


def test_big_buckets_use_row_blocks() -> None:
    # 1,500 distinct hashes that share their top 48 bits: one giant bucket per high block
    rng = np.random.default_rng(3)
    low = rng.choice(2**16, 1500, replace=False).astype(np.uint64)
    h = (np.uint64(0xABCDEF123456) << np.uint64(16)) | low
    for t in (2, 5):
        assert as_dict(find_pairs(h, t, workers=2)) == as_dict(brute_force_pairs(h, t))


def test_identical_flood_is_compact() -> None:
    h = planted(5000, seed=4, near=200)
    meme = h[0]
    h[:3000] = meme  # a meme reposted 3,000 times: 4.5M pairs among the copies
    h[3000] = meme ^ np.uint64(0b101)  # and one near copy
    m = search(h, 4)
    assert len(m.values) <= 2001
    rest = brute_force_pairs(h[2999:], 4)  # one copy of the meme + everything else
    expected = 3000 * 2999 // 2 + 2999 * int((rest.i == 0).sum()) + len(rest)
    assert m.n_pairs() == expected
    labels = m.components()
    assert len(set(labels[:3001].tolist())) == 1
    small = h[2500:]  # 500 copies: expand and compare pair by pair
    assert np.array_equal(find_pairs(small, 4).as_array(), brute_force_pairs(small, 4).as_array())


def test_bipartite_join() -> None:
    a = np.unique(planted(4000, seed=5, near=0))
    b = np.unique(np.concatenate([a[:50], a[100:200] ^ np.uint64(0b1100), planted(1000, 6, 0)]))
    got = join(a, b, 6)
    d = np.bitwise_count(a[:, None] ^ b[None, :])
    ref = set(zip(*np.nonzero(d <= 6), strict=True))
    assert got.as_set() == {(int(i), int(j)) for i, j in ref}
    assert len(got) >= 150


def test_incremental_add_equals_one_shot(tmp_path: Path) -> None:
    h = planted(6000, seed=7, near=1500, max_flips=10)
    h[5000:5010] = h[10]  # identical copies arriving later
    ids = np.array([f"post:{k}" for k in range(len(h))])
    ref = as_dict(find_pairs(h, 8))
    index = HashIndex(threshold=8)
    found: dict[tuple[int, int], int] = {}
    for s, e in [(0, 2500), (2500, 2501), (2501, 5005), (5005, 6000)]:
        new = index.add(ids[s:e], h[s:e])
        assert np.all(new.j >= s) and np.all(new.i < new.j)
        found.update(as_dict(new))
        if s == 2501:  # persistence round trip in the middle of the stream
            path = index.save(tmp_path / "index.npz")
            index = HashIndex.load(path)
            assert len(index) == 5005 and index.ids[7] == "post:7"
    assert found == ref
    assert np.array_equal(index.hashes, h)
    assert as_dict(index.search().pairs()) == ref
    q = index.query(h[[10, 20]])
    assert {(0, 10), (0, 5000)} <= q.as_set()


def test_empty_and_validation(tmp_path: Path) -> None:
    assert len(find_pairs(np.zeros(0, np.uint64), 5)) == 0
    assert len(find_pairs([7], 5)) == 0
    assert find_pairs([1, 3, 1 << 63], 1).as_set() == {(0, 1)}
    with pytest.raises(ValueError):
        make_plan(65, 10)
    with pytest.raises(ValueError):
        find_pairs(np.array([-1]), 3)
    index = HashIndex(4, kind="dhash")
    assert len(index.add([], [])) == 0
    index = HashIndex.load(index.save(tmp_path / "empty.npz"))
    assert len(index) == 0 and index.kind == "dhash" and index.threshold == 4
    assert index.add(["a", "b"], [5, 5]).as_set() == {(0, 1)}


def test_a_tiny_memory_budget_gives_the_same_pairs(data: tuple[np.ndarray, dict]) -> None:
    """A budget too small for the padded rows of the cheapest plan: the rows get narrower
    (more overflow items, paired by the second kernel) or the plan changes; the pairs
    stay exactly brute force's."""
    h, ref = data
    values, inverse = np.unique(h, return_inverse=True)
    for budget in (1 << 18, 1 << 20):
        vp = join(values, None, 10, workers=2, memory_bytes=budget)
        got = as_dict(Matches(values, inverse, vp).pairs())
        assert got == {k: d for k, d in ref.items() if d <= 10}


def test_overflow_items_of_crowded_keys_are_paired_once() -> None:
    """Keys shared by far more values than a row holds (a crowd of near copies): the
    overflow kernel pairs the extra values with everything, each pair once."""
    rng = np.random.default_rng(9)
    base = rng.integers(0, 2**64 - 1, 40, dtype=np.uint64, endpoint=True)
    crowd = base[0] ^ (rng.integers(0, 2**20, 3000).astype(np.uint64))  # low 20 bits vary
    h = np.concatenate([base, crowd, base[1:10] ^ np.uint64(0b111)])
    for t in (3, 8):
        assert as_dict(find_pairs(h, t)) == as_dict(brute_force_pairs(h, t))
