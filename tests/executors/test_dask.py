"""The Dask executor gives the same outputs as the local one (2-worker LocalCluster)."""

from __future__ import annotations

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.io import write_json, write_posts
from mmnerd.pipeline import MARKER, Runner, stage_dir
from mmnerd.records import Post
from mmnerd.text.stages import LanguageStage, NormalizeStage, TokenizeStage

pytest.importorskip("dask.distributed")

TEXTS = [
    "Great game tonight with @anna in London, see https://x.org/a 😀",
    "Quelle belle soirée à Lyon avec les amis 🇫🇷 #Lyon",
    "Heute waren wir im Museum in Berlin, das Wetter war schlecht",
    "Hoy fuimos a la playa en Valencia con mi familia ☀️",
    "Oggi siamo andati al mare con gli amici a Napoli",
]


def seed_collect(cfg: PipelineConfig, n: int = 120) -> None:
    """Write a finished 'collect' stage by hand: 120 posts in shards of 25."""
    posts = [
        Post(id=f"t:{i:04d}", source="t", source_id=str(i), text=f"{TEXTS[i % 5]} {i}")
        for i in range(n)
    ]
    folder = stage_dir(cfg, "collect")
    for k in range(0, n, 25):
        write_posts(folder / f"shard-{k // 25:05d}.jsonl", posts[k : k + 25])
    write_json(
        folder / MARKER, {"fingerprint": "seeded", "run_id": "r1", "stats": {"stage": "collect"}}
    )


def outputs(cfg: PipelineConfig) -> dict[str, bytes]:
    root = cfg.root / "stages"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))}


@pytest.mark.slow
def test_dask_equals_local(tmp_path):
    local = PipelineConfig(data_dir=str(tmp_path / "local"), shard_size=25)
    dask = PipelineConfig(
        data_dir=str(tmp_path / "dask"), shard_size=25, executor={"kind": "dask", "workers": 2}
    )
    for cfg in (local, dask):
        seed_collect(cfg)
    stages = [LanguageStage(), NormalizeStage(), TokenizeStage()]
    stats_local = Runner(local).run(stages)
    runner = Runner(dask)
    try:
        stats_dask = runner.run(stages)
    finally:
        runner.executor.close()
    assert outputs(local) == outputs(dask)
    assert [s.to_dict()["dropped"] for s in stats_local] == [
        s.to_dict()["dropped"] for s in stats_dask
    ]
    assert stats_dask[0].dropped == {"lang:it": 24}
