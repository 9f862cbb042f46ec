"""Progress where nobody watches a terminal (nohup, Slurm, CI): log lines with counts, totals,
rate and time left; and the stage warning for heavy drops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmnerd import progress
from mmnerd.pipeline import StageStats, drop_warning
from tests.conftest import ROOT


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_interval_with_rate_and_time_left(monkeypatch, capsys) -> None:
    clock = FakeClock()
    monkeypatch.setattr("time.monotonic", clock)
    log = progress.LogProgress("fetch", total=100, unit="posts", interval=10.0)
    for _ in range(16):  # 16 posts in 8 s: no line yet
        clock.now += 0.5
        log.advance(1)
    assert capsys.readouterr().err == ""
    clock.now += 2.0
    log.advance(9)  # 25 posts at 10 s: 2.5/s, 75 left -> 30 s
    assert capsys.readouterr().err == (
        "mmnerd: fetch: 25/100 posts (25%), 2.5 posts/s, about 30 s left\n"
    )
    clock.now += 30.0
    log.advance(75)
    log.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == "mmnerd: fetch: 100/100 posts (100%), 2.5 posts/s, done in 40 s"


def test_unknown_total_still_counts(monkeypatch, capsys) -> None:
    clock = FakeClock()
    monkeypatch.setattr("time.monotonic", clock)
    log = progress.LogProgress("collect", total=None, unit="posts", interval=0.0)
    clock.now += 2.0
    log.advance(17)
    assert capsys.readouterr().err == "mmnerd: collect: 17 posts, 8.5 posts/s\n"


def test_a_redirected_collect_shows_progress_lines(tmp_path: Path) -> None:
    mmnerd = ROOT / "tests/data/imgid/mmnerd/train_valid_test/train_valid_test_en"
    files = json.dumps([str(p) for p in sorted(mmnerd.glob("*.txt"))])
    env = {**os.environ, progress.LOG_INTERVAL_ENV: "0"}
    res = subprocess.run(
        [sys.executable, "-m", "mmnerd.cli", "collect", "-p",
         str(ROOT / "pipelines/import-mmnerd.toml"), "--set", f'data_dir="{tmp_path}"',
         "--set", f"source.files={files}"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "mmnerd: collect: 13 posts" in err  # a source's total is unknown in advance
    for stage in ("language", "normalize", "tokenize", "fetch"):
        assert f"mmnerd: {stage} (1 shards): 13/13 posts (100%)" in err, stage
        assert f"mmnerd: {stage}: shard 00000 done (1/1): 13 in, 13 kept" in err, stage


@pytest.mark.parametrize(
    "dropped, expected",
    [
        ({"no_image": 6}, ""),  # 6 of 12 is not more than half
        ({"no_image": 7}, "stage 'fetch' dropped 7 of 12 posts (58%): no_image: 7; posts "
                          "without images are kept with [images] required = false"),
        ({"lang:it": 5, "lang:pt": 3, "empty_text": 1, "too_long": 1},
         "stage 'fetch' dropped 10 of 12 posts (83%): lang:it: 5, lang:pt: 3, empty_text: 1"),
    ],
)  # fmt: skip
def test_heavy_drops_are_announced_with_their_main_reasons(dropped, expected) -> None:
    from collections import Counter

    stats = StageStats("fetch", items_in=12, dropped=Counter(dropped))
    assert drop_warning(stats, 0.5) == expected
