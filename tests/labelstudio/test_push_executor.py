"""Push on Dask (issue 16): each input shard's task payloads are built, and its output shard
written, by tasks on the workers; the driver only sends.  It equals the local (streamed) push:
one task per post, the same records but for the project's ids (real Label Studio)."""

from __future__ import annotations

import pytest

from mmnerd.labelstudio.client import LSClient
from mmnerd.labelstudio.push import PushStage
from mmnerd.pipeline import Runner, iter_excluded, iter_stage, seed_stage, stage_dir

from .conftest import make_posts

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def _push(cfg, posts) -> tuple[list[dict], dict[str, int], object]:
    seed_stage(cfg, "dedup", posts)
    runner = Runner(cfg)
    try:
        stats = runner.run_stage(PushStage())
    finally:
        close = getattr(runner.executor, "close", None)
        if close is not None:
            close()
    records = []
    for p in iter_stage(cfg, "push"):
        d = p.to_dict()
        d["ls"] = {"overlap": d["ls"]["overlap"]}  # task and project ids differ per project
        records.append(d)
    client = LSClient.from_config(cfg, start=False)
    project = client.find_project(cfg.labelstudio.project_title)
    tasks: dict[str, int] = {}
    for t in client.iter_tasks(project["id"]):
        tasks[t["data"]["post_id"]] = tasks.get(t["data"]["post_id"], 0) + 1
    return records, tasks, stats


def test_push_on_dask_workers_equals_the_local_push(make_config):
    pytest.importorskip("dask.distributed")
    posts = make_posts(100, seed=9)
    posts[7].duplicate_of = posts[6].id
    got = {}
    for kind in ("local", "dask"):
        cfg = make_config(batch_size=30, overlap_share=0.3, overlap_k=2)
        cfg.shard_size = 40
        cfg.executor.kind = kind
        cfg.executor.workers = 2
        got[kind] = _push(cfg, [p for p in posts])
        assert sorted(f.name for f in stage_dir(cfg, "push").glob("shard-*")) == [
            "shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"
        ]  # fmt: skip
        assert [p.id for p in iter_excluded(cfg, "push")] == [posts[7].id]
    (local, local_tasks, local_stats), (dask, dask_tasks, dask_stats) = got["local"], got["dask"]
    assert len(local) == 99 and local == dask
    assert set(local_tasks.values()) == {1} and local_tasks == dask_tasks
    assert 10 <= sum(d["ls"]["overlap"] == 2 for d in local) <= 50
    for stats in (local_stats, dask_stats):
        assert stats.items_in == 100 and stats.items_out == 99
        assert stats.dropped == {"duplicate": 1} and stats.flagged["imported"] == 99
