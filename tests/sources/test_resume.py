"""Crash-safe resume: kill -9 a collecting process, rerun, get every post exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from pytest_httpserver import HTTPServer

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Runner, iter_stage
from mmnerd.records import Post
from mmnerd.sources.collect import CollectStage
from mmnerd.sources.state import SourceState
from tests.conftest import ROOT
from tests.sources.test_mastodon import FakeMastodon, post_ids, status

COLLECT = """
import sys
from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Runner
from mmnerd.sources.collect import CollectStage
Runner(PipelineConfig.model_validate_json(sys.argv[1])).run([CollectStage()])
"""


def test_kill_9_mid_collection_then_rerun(httpserver: HTTPServer, tmp_path: Path) -> None:
    fake = FakeMastodon(httpserver, [status(n) for n in range(1200, 1000, -1)])  # 200 statuses
    arrived, gate = threading.Event(), threading.Event()

    def block_fourth(count: int) -> None:
        if count == 4:  # three pages are committed; the killed process waits for the fourth
            arrived.set()
            gate.wait(30)

    fake.hook = block_fourth
    cfg = PipelineConfig.model_validate(
        {
            "name": "resume",
            "data_dir": str(tmp_path / "data"),
            "shard_size": 25,
            "source": {
                "kind": "mastodon",
                "instances": [httpserver.url_for("")],
                "limit": 20,
                "max_posts": 0,
                "min_interval": 0,
                "backoff": 0.01,
            },
        }
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", COLLECT, cfg.model_dump_json()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert arrived.wait(30), proc.stdout.read().decode() if proc.poll() is not None else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        gate.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    state = json.loads((cfg.root / "state" / "mastodon.json").read_text())
    cursor = state["cursors"][f"{httpserver.url_for('').rstrip('/')}|public"]
    assert cursor["max_id"] == "1141" and cursor["top"] == "1200"
    assert len(SourceState(cfg.root, "mastodon").seen) == 60
    assert not (cfg.root / "stages" / "collect" / "_SUCCESS.json").exists()

    fake.hook = None
    fake.requests.clear()
    stats = Runner(cfg).run([CollectStage()])[0]
    assert fake.requests[0].args["max_id"] == "1141"  # continued from the saved cursor
    assert all("max_id" in r.args for r in fake.requests)  # never restarted from the top
    assert len(fake.requests) == 8  # pages 4..10 and the empty last one
    ids = [p.id for p in iter_stage(cfg, "collect")]
    assert len(ids) == len(set(ids)) == 200 and stats.items_out == 200
    assert set(ids) == set(post_ids(cfg, range(1001, 1201)))


def test_uncommitted_journal_tail_is_cut_on_load(tmp_path: Path) -> None:
    state = SourceState(tmp_path, "x")
    posts = [Post(id=f"x:{i}", source="x", source_id=str(i), text="t") for i in range(3)]
    assert len(state.commit("s", posts[:2], {"max_id": "1"})) == 2
    with open(state.journal, "ab") as f:  # killed after writing a page, before the state file
        f.write(b'{"stream": "s", "post": {"id": "x:2", "source": "x"')
    again = SourceState(tmp_path, "x")
    assert again.seen == {"x:0", "x:1"} and again.cursor("s") == {"max_id": "1"}
    assert [p.id for p in again.replay(["s"])] == ["x:0", "x:1"]
    assert list(again.replay(["other"])) == []
    assert [p.id for p in again.commit("s", posts, {"max_id": "0"})] == ["x:2"]  # no duplicates
