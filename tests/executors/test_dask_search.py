"""The exact image search partitioned across Dask workers (2-worker LocalCluster, processes):
the same pair set as brute force and as the threaded join, and the dedup stage on Dask
(whose image search then runs on the workers) writes byte-identical outputs to local."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mmnerd.config import ExecutorConfig, PipelineConfig
from mmnerd.images.index import Matches, brute_force_pairs, join, make_plan
from mmnerd.images.partitioned import PartitionedSearch
from mmnerd.pipeline import Runner, seed_stage, stage_dir
from mmnerd.records import ImageRef, Post
from tests.images.test_partitioned import planted
from tests.test_dedup import picture

pytest.importorskip("dask.distributed")


def pair_dict(p) -> dict[tuple[int, int], int]:  # type: ignore[no-untyped-def]
    out = dict(zip(zip(p.i.tolist(), p.j.tolist(), strict=True), p.dist.tolist(), strict=True))
    assert len(out) == len(p), "a pair was reported twice"
    return out


@pytest.fixture(scope="module")
def on_dask(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionedSearch]:
    from mmnerd.executors.dask import DaskExecutor

    executor = DaskExecutor(ExecutorConfig(kind="dask", workers=2))
    folder = tmp_path_factory.mktemp("search")
    try:
        yield PartitionedSearch(executor, folder, tasks_per_block=6)
    finally:
        executor.close()


@pytest.mark.slow
@pytest.mark.parametrize(("m", "t", "budget"), [(None, 10, 2 << 30), (2, 5, 2 << 30),
                                                (4, 10, 1 << 18)])  # fmt: skip
def test_self_join_on_dask_equals_brute_force(on_dask: PartitionedSearch, m, t, budget) -> None:
    """Dense blocks, wide (binary-searched) blocks, and rows narrowed by a tiny budget."""
    h = planted(8000, seed=11, near=2000)
    h[:100] = h[7]  # identical copies too
    values, inverse = np.unique(h, return_inverse=True)
    plan = make_plan(t, len(values), m=m, memory_bytes=budget)
    got = join(values, None, t, plan=plan, memory_bytes=budget, partitioned=on_dask)
    threads = join(values, None, t, workers=2, plan=plan, memory_bytes=budget)
    assert pair_dict(got) == pair_dict(threads)
    ref = brute_force_pairs(h, t)
    assert pair_dict(Matches(values, inverse, got).pairs()) == pair_dict(ref)
    assert len(ref) > 5000
    assert list(on_dask.folder.iterdir()) == []


@pytest.mark.slow
def test_overflow_rows_on_dask(on_dask: PartitionedSearch) -> None:
    rng = np.random.default_rng(9)
    base = rng.integers(0, 2**64 - 1, 300, dtype=np.uint64, endpoint=True)
    crowd = base[0] ^ rng.integers(0, 2**20, 3000).astype(np.uint64)  # a crowded key
    h = np.unique(np.concatenate([base, crowd, base[1:40] ^ np.uint64(0b111)]))
    got = join(h, None, 8, memory_bytes=1 << 18, partitioned=on_dask)
    assert pair_dict(got) == pair_dict(brute_force_pairs(h, 8))


@pytest.mark.slow
@pytest.mark.parametrize("m", [None, 2])
def test_bipartite_join_on_dask(on_dask: PartitionedSearch, m) -> None:
    a = np.unique(planted(4000, seed=5, near=0))
    b = np.unique(np.concatenate([a[:50], a[100:200] ^ np.uint64(0b1100), planted(1000, 6, 0)]))
    plan = make_plan(6, len(a), len(b), m=m)
    got = join(a, b, 6, plan=plan, partitioned=on_dask)
    d = np.bitwise_count(a[:, None] ^ b[None, :])
    ref = {(int(i), int(j)) for i, j in zip(*np.nonzero(d <= 6), strict=True)}
    assert got.as_set() == ref == join(a, b, 6, plan=plan).as_set()
    assert len(got) == len(ref) >= 150


# --------------------------------------------------------------------------- the stage
def stored(img, root: Path, name: str, quality: int) -> ImageRef:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / name).write_bytes(data)
    return ImageRef(url=f"http://x/{name}", status="ok", sha256=hashlib.sha256(data).hexdigest(),
                    path=name, width=img.width, height=img.height)  # fmt: skip


def corpus(root: Path) -> list[Post]:
    """60 posts: 30 pictures, each posted again resized and re-encoded (a near copy)."""
    posts = []
    for k in range(30):
        img = picture(k, (160, 120))
        for copy, (im, q) in enumerate([(img, 90), (img.resize((120, 90)), 60)]):
            ref = stored(im, root, f"{k}-{copy}.jpg", q)
            i = 2 * k + copy
            text = f"picture number {k} variant {copy} " * (copy + 1)
            when = f"2024-01-{1 + i % 28:02d}T00:00:00Z"
            posts.append(Post(id=f"t:{i:03d}", source="t", source_id=str(i), text=text,
                              image=ref, created_at=when))  # fmt: skip
    return posts


@pytest.mark.slow
def test_dedup_stage_on_dask_searches_on_the_workers_and_equals_local(tmp_path: Path) -> None:
    from mmnerd.dedup import DedupStage

    local = PipelineConfig(data_dir=str(tmp_path / "local"), shard_size=16)
    dask = PipelineConfig(
        data_dir=str(tmp_path / "dask"), shard_size=16, executor={"kind": "dask", "workers": 2}
    )
    for cfg in (local, dask):
        seed_stage(cfg, "fetch", corpus(cfg.root))
    Runner(local).run([DedupStage()])
    runner = Runner(dask)
    try:
        runner.run([DedupStage()])
    finally:
        runner.executor.close()
    out = {}
    for name, cfg in (("local", local), ("dask", dask)):
        folder = stage_dir(cfg, "dedup")
        report = json.loads((cfg.root / "side" / "dedup" / "report.json").read_text())
        out[name] = ([p.read_bytes() for p in sorted(folder.glob("shard-*.jsonl"))], report)
    assert out["local"] == out["dask"]
    assert len(out["dask"][0]) == 4
    assert out["dask"][1]["edges"]["near_image"] >= 25  # the resized copies, found by pHash
    # the search ran as tasks over files of the work folder (removed after the join)
    assert (stage_dir(dask, "dedup") / "_work" / "imagesearch").is_dir()
    assert not list((stage_dir(dask, "dedup") / "_work" / "imagesearch").iterdir())
    assert not (stage_dir(local, "dedup") / "_work" / "imagesearch").exists()
