"""Export: leakage-free splits, Parquet files, a manifest and the dataset card."""

from __future__ import annotations

from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.io import read_json, write_json
from mmnerd.pipeline import Runner, iter_stage, side_file, stage_stats

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

    from .card import write_card
    from .conll import ID_MAP, SPLIT_FILES, clean_temps, id_map_writer, write_imgid_split
    from .parquet import write_parquet_splits
    from .splits import SplitStage

    runner = runner or Runner(config)
    stats = []
    if config.export.labels == "source":
        stats.append(runner.run_stage(GoldStage(), force=force))
    stats.append(runner.run_stage(SplitStage(config), force=force))
    manifest = write_parquet_splits(lambda: iter_stage(config, "split"), config)
    keep_ids = all(p.imgid for p in iter_stage(config, "split"))  # a pure IMGID import
    clean_temps(config.export_dir / "imgid")
    with id_map_writer(config.export_dir / "imgid") as id_map:
        for split, name in SPLIT_FILES.items():
            write_imgid_split(
                (p for p in iter_stage(config, "split") if p.split == split),
                config.export_dir / "imgid" / name,
                config.root / "images",
                config.export.conll_misc_label,
                keep_ids=keep_ids,
                id_map=id_map,
            )
    manifest["imgid"] = {
        "files": [f"imgid/{name}" for name in SPLIT_FILES.values()],
        "ids": "published" if keep_ids else "encoded",
        "id_map": f"imgid/{ID_MAP}",
    }
    write_json(config.export_dir / "manifest.json", manifest)
    history = [s for name in PIPELINE_STAGES if (s := stage_stats(config, name))]
    dedup_report = read_json(side_file(config, "dedup", "report.json"))
    write_card(config, iter_stage(config, "split"), history, dedup_report)
    return manifest, stats
