"""Export: leakage-free splits, Parquet files, a manifest and the dataset card."""

from __future__ import annotations

from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.io import read_json, write_json
from mmnerd.pipeline import Runner, side_file, stage_stats

PIPELINE_STAGES = (
    "collect", "language", "normalize", "tokenize", "fetch", "dedup", "push", "pull", "gold"
)  # fmt: skip


def export(
    config: PipelineConfig, runner: Runner | None = None, force: bool = False
) -> tuple[dict[str, Any], list[Any]]:
    """Take the final labels (Label Studio's, or the source's gold with ``export.labels =
    "source"``), assign splits (resumable stages), then write Parquet, manifest and card.

    Returns (manifest, stats of the stages run: [gold,] split).
    """
    from mmnerd.sources.gold import GoldStage

    from .card import write_card_tables
    from .shards import write_export_files
    from .splits import SplitStage

    runner = runner or Runner(config)
    stats = []
    if config.export.labels == "source":
        stats.append(runner.run_stage(GoldStage(), force=force))
    stats.append(runner.run_stage(SplitStage(config), force=force))
    # rows, IMGID lines and card figures are built per shard on the executor (shards.py)
    manifest, tables = write_export_files(config, runner.executor)
    write_json(config.export_dir / "manifest.json", manifest)
    history = [s for name in PIPELINE_STAGES if (s := stage_stats(config, name))]
    dedup_report = read_json(side_file(config, "dedup", "report.json"))
    write_card_tables(config, tables, history, dedup_report)
    return manifest, stats
