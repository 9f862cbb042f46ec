"""kill -9 during `mmnerd dedup` and `mmnerd export` at seeded random moments, rerun, and
compare with an uninterrupted run: identical stage records and byte-identical Parquet,
IMGID and manifest files, no temp file left anywhere under the data dir.

The kill moments are drawn (seeded) between 30 % and 100 % of the clean run's wall time,
so they land in start-up, in the work and in the writes.  Each trial works on a copy of
the same collected data, so every run starts from identical input.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmnerd.config import load_config
from mmnerd.pipeline import MARKER, iter_stage, stage_dir
from tests.conftest import ROOT, free_port
from tests.killing import fresh_copy, kill_after, kill_mid_run, temp_files

pytestmark = pytest.mark.slow

TRIALS = 2
SAMPLE = ROOT / "pipelines/sample.toml"


def cmd(command: str, data_dir: Path, port: int, pipeline: Path = SAMPLE) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mmnerd.cli",
        command,
        "-p",
        str(pipeline),
        "--set",
        f'data_dir="{data_dir}"',
        "--set",
        "source.posts=80",
        "--set",
        "shard_size=20",
        "--set",
        "export.row_group_size=10",
    ]


def run(command: str, data_dir: Path, port: int, pipeline: Path = SAMPLE) -> float:
    """Run a command to completion; returns its wall time."""
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd(command, data_dir, port, pipeline), capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return time.perf_counter() - t0


def kill_at(command: str, data_dir: Path, port: int, delay: float, pipeline: Path = SAMPLE) -> bool:
    """Start the command and SIGKILL it after ``delay`` s; True if it was still running."""
    return kill_after(cmd(command, data_dir, port, pipeline), delay)


def stage_files(data_dir: Path, stage: str) -> dict[str, bytes]:
    folder = data_dir / "stages" / stage
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


def export_files(data_dir: Path) -> dict[str, bytes]:
    out = data_dir / "export"
    keep = (".parquet", ".txt", ".jpg")
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix in keep
    }
    files["manifest.json"] = (out / "manifest.json").read_bytes()
    return files


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, int]:
    """Collected sample data (80 posts, 4 shards); never modified by the tests."""
    base = tmp_path_factory.mktemp("kill") / "collected"
    port = free_port()
    run("collect", base, port)
    return base, port


def test_kill_9_during_dedup_then_rerun_equals_clean_run(collected, tmp_path):
    base, port = collected
    clean = fresh_copy(base, tmp_path / "clean")
    took = run("dedup", clean, port)
    expected = stage_files(clean, "dedup")
    assert expected and not temp_files(clean)
    rng = random.Random(4401)
    killed = 0
    for trial in range(TRIALS):
        d = tmp_path / f"killed{trial}"
        killed += kill_mid_run(
            lambda t, d=d: kill_at("dedup", fresh_copy(base, d), port, t),
            rng.uniform(0.2, 0.7) * took,
        )
        run("dedup", d, port)
        assert stage_files(d, "dedup") == expected, f"trial {trial}"
        assert not temp_files(d), f"trial {trial}: {temp_files(d)}"
    assert killed == TRIALS  # every trial really interrupted the run


def seed_pull(data_dir: Path, port: int) -> None:
    """Stand-in for push + pull (tested against Label Studio in tests/labelstudio/): the
    deduplicated posts with their gold spans as final labels, marked as a finished pull."""
    from mmnerd.io import write_json
    from mmnerd.pipeline import StageStats, write_shard
    from mmnerd.text.bio import spans_to_bio

    cfg = load_config(ROOT / "pipelines/sample.toml", [f'data_dir="{data_dir}"'])
    posts = [p for p in iter_stage(cfg, "dedup") if not p.duplicate_of]
    for p in posts:
        al = spans_to_bio(p.gold_spans, p.token_offsets, p.text)
        p.spans, p.ner_tags = al.spans, al.tags
    for name in ("push", "pull"):
        folder = stage_dir(cfg, name)
        folder.mkdir(parents=True, exist_ok=True)
        stats = StageStats(name)
        write_shard(folder, "00000", posts, stats)
        write_json(
            folder / MARKER, {"fingerprint": "seeded", "run_id": name, "stats": stats.to_dict()}
        )


@pytest.fixture(scope="module")
def pulled_data(collected, tmp_path_factory) -> tuple[Path, int]:
    """The collected data, deduplicated and with a seeded pull stage."""
    base, port = collected
    pulled = fresh_copy(base, tmp_path_factory.mktemp("kill") / "pulled")
    run("dedup", pulled, port)
    seed_pull(pulled, port)
    return pulled, port


@pytest.mark.parametrize("embed", [True, False], ids=["embedded", "image_paths"])
def test_kill_9_during_export_then_rerun_equals_clean_run(pulled_data, tmp_path, embed):
    pulled, port = pulled_data
    pipeline = SAMPLE
    if not embed:  # images copied beside the Parquet files: a kill can cut a copy short
        pipeline = tmp_path / "noembed.toml"
        pipeline.write_text(
            SAMPLE.read_text().replace("embed_images = true", "embed_images = false")
        )
    clean = fresh_copy(pulled, tmp_path / "clean")
    took = run("export", clean, port, pipeline)
    expected = export_files(clean)
    assert any(k.endswith(".parquet") for k in expected)
    assert embed or any(k.startswith("images/") for k in expected)
    rng = random.Random(4402 + embed)
    killed = 0
    for trial in range(TRIALS):
        d = tmp_path / f"killed{trial}"
        killed += kill_mid_run(
            lambda t, d=d: kill_at("export", fresh_copy(pulled, d), port, t, pipeline),
            rng.uniform(0.2, 0.7) * took,
        )
        run("export", d, port, pipeline)
        assert export_files(d) == expected, f"trial {trial}"
        assert stage_files(d, "split") == stage_files(clean, "split")
        assert not temp_files(d), f"trial {trial}: {temp_files(d)}"
    assert killed == TRIALS
