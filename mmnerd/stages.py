"""The stage groups behind the CLI commands and make targets.

collect : collect -> language -> normalize -> tokenize -> fetch
dedup   : dedup
annotate: push            (starts Label Studio if needed)
pull    : pull            (always reruns: annotations change)
export  : split -> Parquet + manifest + card
"""

from __future__ import annotations

import subprocess
import sys

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Runner, StageStats, iter_stage

ALL_STAGE_NAMES = (
    "collect",
    "language",
    "normalize",
    "tokenize",
    "fetch",
    "dedup",
    "push",
    "pull",
    "split",
)


def run_collect(config: PipelineConfig, force: bool = False) -> list[StageStats]:
    from mmnerd.images.fetch import FetchStage
    from mmnerd.sources import get_source
    from mmnerd.sources.collect import CollectStage
    from mmnerd.text.stages import LanguageStage, NormalizeStage, TokenizeStage

    stages = [CollectStage(), LanguageStage(), NormalizeStage(), TokenizeStage(), FetchStage()]
    with get_source(config).serving():
        return Runner(config).run(stages, force=force)


def run_dedup(config: PipelineConfig, force: bool = False) -> list[StageStats]:
    from mmnerd.dedup import DedupStage

    return Runner(config).run([DedupStage()], force=force)


def run_push(config: PipelineConfig, force: bool = False) -> list[StageStats]:
    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.push import PushStage

    server.up(config)
    return Runner(config).run([PushStage()], force=force)


def run_simulate(config: PipelineConfig) -> dict:
    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.simulate import simulate

    server.up(config)
    return simulate(config, list(iter_stage(config, "push")))


def run_pull(config: PipelineConfig) -> list[StageStats]:
    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.pull import PullStage

    server.up(config)
    return Runner(config).run([PullStage()], force=True)


def run_benchmark(config: PipelineConfig) -> int:
    """Run ``python -m baselines.benchmark`` on the export (mmnerd never imports baselines)."""
    from mmnerd.errors import StageError

    if not (config.export_dir / "manifest.json").exists():
        raise StageError(f"no export in {config.export_dir}: run `make export` first")
    b = config.benchmark
    cmd = [
        sys.executable,
        "-m",
        "baselines.benchmark",
        "--export",
        str(config.export_dir),
        "--report-dir",
        b.report_dir,
        "--mode",
        b.mode,
        "--models",
        ",".join(b.models),
        "--epochs",
        str(b.epochs),
        "--seeds",
        ",".join(str(s) for s in b.seeds),
    ]
    return subprocess.call(cmd)
