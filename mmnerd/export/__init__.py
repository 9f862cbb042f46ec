"""Export: leakage-free splits, Parquet files, a manifest and the dataset card."""

from __future__ import annotations

from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.io import read_json
from mmnerd.pipeline import Runner, iter_stage, stage_stats

PIPELINE_STAGES = ("collect", "language", "normalize", "tokenize", "fetch", "dedup", "push", "pull")


def export(
    config: PipelineConfig, runner: Runner | None = None, force: bool = False
) -> tuple[dict[str, Any], Any]:
    """Assign splits (a resumable stage), then write Parquet, manifest and card.

    Returns (manifest, split stage stats).
    """
    from .card import write_card
    from .conll import SPLIT_FILES, write_imgid_split
    from .parquet import write_parquet_splits
    from .splits import SplitStage

    runner = runner or Runner(config)
    stats = runner.run_stage(SplitStage(), force=force)
    manifest = write_parquet_splits(lambda: iter_stage(config, "split"), config)
    for split, name in SPLIT_FILES.items():
        write_imgid_split(
            (p for p in iter_stage(config, "split") if p.split == split),
            config.export_dir / "imgid" / name,
            config.root / "images",
            config.export.conll_misc_label,
        )
    history = [s for name in PIPELINE_STAGES if (s := stage_stats(config, name))]
    dedup_report = read_json(config.root / "reports" / "dedup" / "report.json")
    write_card(config, iter_stage(config, "split"), history, dedup_report)
    return manifest, stats
