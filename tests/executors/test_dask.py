"""The Dask executor gives the same outputs as the local one (2-worker LocalCluster), and a
lost worker or a crashed driver costs only the shard that was lost."""

from __future__ import annotations

import io
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.io import read_posts
from mmnerd.pipeline import MARKER, Runner, Stage, StageStats, seed_stage, shard_ids, stage_dir
from mmnerd.records import ImageRef, Post
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
    seed_stage(cfg, "collect", posts, shard_size=25)


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


# --------------------------------------------------------------------------- lost workers
class AttemptStage(Stage):
    """Copies its input; logs each shard attempt; the first attempt at ``kill_shard`` kills
    its worker process (as an OOM kill or a lost node would)."""

    name = "attempt"
    input = "collect"
    kill_shard = ""

    def run(self, records, ctx):  # type: ignore[no-untyped-def]
        root = ctx.root
        with open(root / "attempts.log", "a") as f:
            f.write(f"{ctx.shard} {os.getpid()}\n")
        time.sleep(0.3)  # let the other worker finish shards meanwhile
        if ctx.shard == self.kill_shard and not (root / "killed").exists():
            (root / "killed").touch()
            os._exit(1)  # the worker process dies mid-shard, nothing written
        yield from records


def attempts(cfg: PipelineConfig) -> Counter:
    lines = (cfg.root / "attempts.log").read_text().split("\n")
    return Counter(line.split()[0] for line in lines if line)


def dask_config(root: Path) -> PipelineConfig:
    return PipelineConfig(
        data_dir=str(root), shard_size=25, executor={"kind": "dask", "workers": 2}
    )


@pytest.mark.slow
def test_lost_worker_redoes_only_its_shard(tmp_path):
    cfg = dask_config(tmp_path / "d")
    seed_collect(cfg, n=200)  # 8 shards
    stage = AttemptStage()
    stage.kill_shard = "00003"
    runner = Runner(cfg)
    try:
        pids_before = set(runner.executor.client().run(os.getpid).values())
        stats = runner.run_stage(stage)
        pids_after = set(runner.executor.client().run(os.getpid).values())
    finally:
        runner.executor.close()
    assert (cfg.root / "killed").exists()
    assert len(pids_before - pids_after) == 1  # one worker process died (and was replaced)
    tries = attempts(cfg)
    assert tries.pop("00003") == 2  # the killed attempt and its rerun
    assert tries == {f"{k:05d}": 1 for k in range(8) if k != 3}  # nothing else redone
    assert stats.items_in == stats.items_out == 200
    ids = [p.id for sid in shard_ids(cfg, "attempt") for p in read_posts(
        stage_dir(cfg, "attempt") / f"shard-{sid}.jsonl")]  # fmt: skip
    assert ids == [f"t:{i:04d}" for i in range(200)]


@pytest.mark.slow
def test_rerun_after_a_crash_redoes_only_the_missing_shard(tmp_path):
    """The driver died after 5 of 6 shards: the rerun schedules only the 6th."""
    cfg = dask_config(tmp_path / "d")
    seed_collect(cfg, n=150)
    runner = Runner(cfg)
    try:
        runner.run_stage(AttemptStage())
        folder = stage_dir(cfg, "attempt")
        before = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.jsonl")}
        (folder / MARKER).unlink()  # as if the driver was killed before the marker
        for name in ("shard-00004.jsonl", "stats-00004.json"):
            (folder / name).unlink()
        stats = runner.run_stage(AttemptStage())
    finally:
        runner.executor.close()
    tries = attempts(cfg)
    assert tries.pop("00004") == 2
    assert set(tries.values()) == {1} and len(tries) == 5
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.jsonl")}
    assert {k for k in before if before[k] != after[k]} == {"shard-00004.jsonl"}
    assert stats.items_out == 150


def test_a_retried_task_reads_the_finished_shard_instead_of_redoing_it(tmp_path):
    """What a Dask retry/recompute of a finished shard costs: a file read (no cluster needed)."""
    from mmnerd.executors.dask import run_shard_once

    cfg = PipelineConfig(data_dir=str(tmp_path / "d"), shard_size=25)
    seed_collect(cfg, n=50)
    first = run_shard_once(cfg, AttemptStage(), "00001")
    again = run_shard_once(cfg, AttemptStage(), "00001")
    assert attempts(cfg) == {"00001": 1}
    assert again.to_dict() == first.to_dict()


# --------------------------------------------------------------------------- fetch + dedup
def jpeg(seed: int) -> bytes:
    import random

    from PIL import Image

    rng = random.Random(seed)
    img = Image.frombytes("RGB", (8, 6), bytes(rng.getrandbits(8) for _ in range(144)))
    buf = io.BytesIO()
    img.resize((64, 48), Image.BILINEAR).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.mark.slow
def test_fetch_and_dedup_on_dask_equal_local(tmp_path, httpserver):
    """Images over loopback (some shared, one 404), fetched on 2 workers, then dedup."""
    from mmnerd.dedup import DedupStage
    from mmnerd.images.fetch import FetchStage

    for k in range(30):
        httpserver.expect_request(f"/m/{k}.jpg").respond_with_data(
            jpeg(k), content_type="image/jpeg"
        )
    httpserver.expect_request("/m/missing.jpg").respond_with_data("gone", status=404)
    posts = []
    for i in range(80):
        path = "/m/missing.jpg" if i == 17 else f"/m/{i % 30}.jpg"
        url = httpserver.url_for(path).replace("127.0.0.1", "localhost")
        posts.append(
            Post(
                id=f"t:{i:04d}",
                source="t",
                source_id=str(i),
                text=f"{TEXTS[i % 4]} {i // 2}",
                image=ImageRef(url=url),
            )
        )
    images = {"allow_hosts": ["localhost"], "workers": 2}
    local = PipelineConfig(data_dir=str(tmp_path / "local"), shard_size=20, images=images)
    dask = PipelineConfig(
        data_dir=str(tmp_path / "dask"),
        shard_size=20,
        images=images,
        executor={"kind": "dask", "workers": 2},
    )
    for cfg in (local, dask):
        seed_stage(cfg, "tokenize", posts)
    stages = [FetchStage(), DedupStage()]
    stats_local = Runner(local).run(stages)
    runner = Runner(dask)
    try:
        stats_dask = runner.run(stages)
    finally:
        runner.executor.close()
    out_local, out_dask = outputs(local), outputs(dask)
    assert out_local == out_dask
    assert any(k.startswith("dedup/") for k in out_local)
    files = {
        str(p.relative_to(cfg.root / "images")): p.read_bytes()
        for cfg in (local,)
        for p in (cfg.root / "images").rglob("*")
        if p.is_file()
    }
    assert files == {
        str(p.relative_to(dask.root / "images")): p.read_bytes()
        for p in (dask.root / "images").rglob("*")
        if p.is_file()
    }

    def comparable(s: StageStats) -> dict:
        # how many images a shard found already stored depends on which shards ran at once
        s.flagged.pop("image_reused", None)
        return s.to_dict() | {"seconds": 0}

    assert [comparable(s) for s in stats_local] == [comparable(s) for s in stats_dask]
    assert stats_dask[0].dropped == {"image:http_404": 1}
    assert stats_dask[1].flagged["duplicate_image"] > 0


DRIVER_ONLY = """
from mmnerd.pipeline import Stage


class Copy(Stage):
    name = "copy"
    input = "collect"

    def run(self, records, ctx):
        yield from records
"""


@pytest.mark.slow
def test_a_stage_the_workers_cannot_load_is_a_clear_error(tmp_path, monkeypatch):
    """A stage class only the driver can import (defined in a script, say) used to kill
    every worker that received it, and the map waited forever; now: one line, at once."""
    import types

    from mmnerd.errors import StageError

    module = types.ModuleType("driver_only_stages")
    exec(DRIVER_ONLY, module.__dict__)
    monkeypatch.setitem(sys.modules, "driver_only_stages", module)
    cfg = dask_config(tmp_path / "d")
    seed_collect(cfg, n=50)
    runner = Runner(cfg)
    try:
        with pytest.raises(StageError) as err:
            runner.run_stage(module.Copy())
        assert len(runner.executor.client().run(os.getpid)) == 2  # no worker was lost
    finally:
        runner.executor.close()
    message = str(err.value)
    assert "stage 'copy' (driver_only_stages.Copy) cannot be loaded on Dask worker" in message
    assert "No module named 'driver_only_stages'" in message and "\n" not in message
    assert not list(stage_dir(cfg, "copy").glob("shard-*.jsonl"))
