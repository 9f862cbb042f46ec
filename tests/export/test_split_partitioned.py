"""The split stage through the runner (mmnerd/export/split_shards.py: keys per shard, an
external sort in the driver, output per shard) gives :func:`assign_splits`' assignment and
the in-memory path's bytes, on the local executor and on Dask, and resumes after a crash."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmnerd.config import PipelineConfig
from mmnerd.executors.local import LocalExecutor
from mmnerd.export import split_shards
from mmnerd.export.splits import SplitStage, assign_splits
from mmnerd.pipeline import Runner, iter_stage, run_whole, seed_stage, stage_dir
from mmnerd.records import Post, Span

LANGS = ["en", "fr", "de", "es", "zz-long"]
LABELS = ["PER", "LOC", "ORG", "MISC"]


def random_posts(rng: random.Random, n: int) -> list[Post]:
    """``n`` posts in a random stream order (ids not sorted), random languages and entity
    types, clusters of 2-6 spread over the whole stream (so over shards), and one post
    whose id is a cluster id (assign_splits groups it with that cluster)."""
    ids = [f"r:{rng.randrange(10**9):09d}-{k}" for k in range(n)]
    posts = []
    for pid in ids:
        text = "a b c d"
        labels = rng.sample(LABELS, rng.choice([0, 0, 1, 1, 1, 2, 3]))
        spans = [Span(0, 1, lab, "a") for lab in labels]
        posts.append(Post(id=pid, source="r", source_id=pid, text=text, lang=rng.choice(LANGS),
                          spans=spans, status="ok"))  # fmt: skip
    for c in range(n // 12):
        for k in rng.sample(range(n), rng.randint(2, 6)):
            posts[k].cluster_id = f"cl-{c}"
    loner = next(p for p in posts if not p.cluster_id)
    loner.id = f"cl-{n // 12 - 1}"  # a one-post group whose key is the last cluster's
    return posts


def config(root: Path, fixed: list[str] | None = None, **extra: Any) -> PipelineConfig:
    export: dict[str, Any] = {"ratios": (0.7, 0.2, 0.1), "seed": 5}
    if fixed is not None:
        (root / "fixed.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "fixed.txt").write_text("".join(f"{i}\n" for i in fixed))
        export["fixed_test"] = str(root / "fixed.txt")
    return PipelineConfig(data_dir=str(root), shard_size=17, export=export, **extra)


def outputs(cfg: PipelineConfig) -> dict[str, bytes]:
    folder = stage_dir(cfg, "split")
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


def in_memory(root: Path, posts: list[Post], fixed: list[str] | None) -> dict[str, bytes]:
    """The split stage's shards as the in-memory path (SplitStage.run) writes them."""
    cfg = config(root, fixed)
    seed_stage(cfg, "pull", posts, shard_size=23)
    folder = stage_dir(cfg, "split")
    folder.mkdir(parents=True)
    run_whole(cfg, _InMemory(cfg), folder)
    return outputs(cfg)


class _InMemory(SplitStage):
    """SplitStage without its partitioned path (the runner then streams ``run``)."""

    run_partitioned = None  # type: ignore[assignment]


@pytest.mark.parametrize("trial", range(6))
def test_partitioned_split_equals_assign_splits(tmp_path, monkeypatch, trial):
    """Through the runner: assign_splits' assignment (clusters across shards, several
    languages and entity types, pinned posts in and out of clusters, a post whose id is a
    cluster id), written as the in-memory path (SplitKeys + assign_split_codes) writes it."""
    rng = random.Random(trial)
    posts = random_posts(rng, rng.randint(150, 400))
    fixed = [p.id for p in rng.sample(posts, 12)] + ["not-in-corpus"] if trial % 2 else None
    if fixed:
        pinned = [p for p in posts if p.id in fixed]
        assert any(p.cluster_id for p in pinned) and not all(p.cluster_id for p in pinned)
    # tiny runs: many runs, the k-way merge reading blocks of 256 records
    monkeypatch.setattr(split_shards, "RUN_RECORDS", rng.choice([3, 7, 50]))
    cfg = config(tmp_path / "d", fixed)
    seed_stage(cfg, "pull", posts, shard_size=23)  # 23 in, 17 out: pieces of two shards
    stats = Runner(cfg).run_stage(SplitStage(cfg))
    got = {p.id: p.split for p in iter_stage(cfg, "split")}
    pins = {i: "test" for i in fixed or []}
    assert got == assign_splits(posts, (0.7, 0.2, 0.1), 5, pins)
    assert stats.items_in == stats.items_out == len(posts)
    assert stats.flagged.get("fixed_test_missing", 0) == (1 if fixed else 0)
    assert outputs(cfg) == in_memory(tmp_path / "ref", posts, fixed)
    assert not (stage_dir(cfg, "split") / "_work").exists()  # removed once done


def test_merge_streams_every_record_in_key_order(tmp_path):
    """The external sort alone: random keys over many runs come back sorted, none lost."""
    rng = random.Random(3)
    runs = split_shards._Runs(tmp_path, 5)
    digests = [rng.randbytes(32) if k % 9 else bytes(32) for k in range(333)]
    rank = np.array([rng.randrange(4) for _ in digests])
    raw = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
    runs.add(split_shards._key_bytes(rank, raw), np.arange(333), np.arange(333))
    got = list(runs.merged(merge_records=10))
    assert len(runs.paths) == 67
    pairs = enumerate(zip(rank.tolist(), digests, strict=True))
    want = sorted((r.to_bytes(4, "big") + d, k) for k, (r, d) in pairs)
    assert [ref for _, _, ref in got] == [k for _, k in want]


class Crash(Exception):
    pass


class CrashingExecutor(LocalExecutor):
    """The local executor, raising after ``after`` tasks of the phase ``label`` (as a
    killed run stops); counts the tasks it ran per phase."""

    def __init__(self, label: str = "", after: int = 0):
        self.label, self.after = label, after
        self.ran: dict[str, int] = {}

    def map_tasks(self, fn, args, label):
        out = []
        for a in args:
            if label == self.label and self.ran.get(label, 0) >= self.after:
                raise Crash(label)
            out.append(fn(*a))
            self.ran[label] = self.ran.get(label, 0) + 1
        return out


@pytest.mark.parametrize(
    ("label", "after"), [("split keys", 4), ("split write", 0), ("split write", 5)]
)
def test_a_run_stopped_between_phases_resumes(tmp_path, label, after):
    posts = random_posts(random.Random(9), 200)
    cfg = config(tmp_path / "d", [posts[3].id])
    seed_stage(cfg, "pull", posts, shard_size=23)  # 9 input shards, 12 output shards
    with pytest.raises(Crash):
        Runner(cfg, CrashingExecutor(label, after)).run_stage(SplitStage(cfg))
    again = CrashingExecutor()
    Runner(cfg, again).run_stage(SplitStage(cfg))
    done_keys = after if label == "split keys" else 9
    assert again.ran.get("split keys", 0) == 9 - done_keys  # finished shards are not redone
    if label == "split write":
        assert again.ran["split write"] == 12 - after
    assert outputs(cfg) == in_memory(tmp_path / "ref", posts, [posts[3].id])


def test_a_changed_pinned_file_starts_over(tmp_path):
    """The keys files depend on the pinned ids: a crashed run's files are not reused once
    the file at ``export.fixed_test`` changes (its path, in the config, does not)."""
    posts = random_posts(random.Random(4), 120)
    cfg = config(tmp_path / "d", [posts[0].id])
    seed_stage(cfg, "pull", posts, shard_size=23)
    with pytest.raises(Crash):
        Runner(cfg, CrashingExecutor("split write", 1)).run_stage(SplitStage(cfg))
    cfg = config(tmp_path / "d", [posts[1].id, posts[2].id])
    Runner(cfg).run_stage(SplitStage(cfg))
    pins = {posts[1].id: "test", posts[2].id: "test"}
    got = {p.id: p.split for p in iter_stage(cfg, "split")}
    assert got == assign_splits(posts, (0.7, 0.2, 0.1), 5, pins)


@pytest.mark.slow
def test_dask_split_equals_local(tmp_path):
    pytest.importorskip("dask.distributed")
    posts = random_posts(random.Random(11), 300)
    fixed = [posts[5].id, posts[77].id]
    local = config(tmp_path / "local", fixed)
    dask = config(tmp_path / "dask", fixed, executor={"kind": "dask", "workers": 2})
    for cfg in (local, dask):
        seed_stage(cfg, "pull", posts, shard_size=23)
    Runner(local).run_stage(SplitStage(local))
    runner = Runner(dask)
    try:
        runner.run_stage(SplitStage(dask))
    finally:
        runner.executor.close()
    assert outputs(local) == outputs(dask)
    assert len(outputs(local)) == 18


KILLED_RUN = """
import sys
from mmnerd.config import PipelineConfig
from mmnerd.export.splits import SplitStage
from mmnerd.pipeline import Runner
cfg = PipelineConfig(data_dir=sys.argv[1], shard_size=17,
                     export={"ratios": (0.7, 0.2, 0.1), "seed": 5})
Runner(cfg).run_stage(SplitStage(cfg))
"""


@pytest.mark.slow
def test_kill_9_mid_split_then_rerun_equals_clean_run(tmp_path):
    """SIGKILL at seeded moments of a split run (keys, assignment or writes), then rerun:
    the same shards as a clean run, no temp file left."""
    import sys
    import time

    from tests.killing import fresh_copy, kill_after, kill_mid_run, temp_files

    posts = random_posts(random.Random(21), 3000)
    base = tmp_path / "seeded"
    seed_stage(config(base), "pull", posts, shard_size=40)
    argv = lambda d: [sys.executable, "-c", KILLED_RUN, str(d)]  # noqa: E731
    clean = fresh_copy(base, tmp_path / "clean")
    t0 = time.perf_counter()
    assert not kill_after(argv(clean), 600)
    took = time.perf_counter() - t0
    expected = outputs(config(clean))
    assert len(expected) == 177
    rng = random.Random(5)
    for trial in range(3):
        d = tmp_path / f"killed{trial}"
        start = lambda t, d=d: kill_after(argv(fresh_copy(base, d)), t)  # noqa: E731
        assert kill_mid_run(start, rng.uniform(0.3, 0.95) * took)
        cfg = config(d)
        Runner(cfg).run_stage(SplitStage(cfg))
        assert outputs(cfg) == expected, f"trial {trial}"
        assert not temp_files(d), f"trial {trial}: {temp_files(d)}"
