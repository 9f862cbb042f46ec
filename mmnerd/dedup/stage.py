"""The dedup stage: mark exact and near duplicates of the fetched posts (never deleted)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from mmnerd.config import PipelineConfig
from mmnerd.dedup.clusters import deduplicate
from mmnerd.dedup.report import write_report
from mmnerd.io import remove_stale_temps
from mmnerd.pipeline import Stage, StageContext
from mmnerd.records import Post

REPORT_DIR = ("reports", "dedup")


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class DedupStage(Stage):
    """Mark exact and near duplicates (image and text); yields every post, none dropped."""

    name: ClassVar[str] = "dedup"
    input: ClassVar[str | None] = "fetch"
    scope: ClassVar = "global"
    config_sections: ClassVar[tuple[str, ...]] = ("dedup",)

    def prepare(self, config: PipelineConfig) -> None:
        """Delete the temp files a killed run left in the report folder (e.g. a
        half-drawn clusters.png) and in the default hash cache folder."""
        remove_stale_temps(config.root.joinpath(*REPORT_DIR))
        remove_stale_temps(config.root / "index")

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        posts = list(records)
        cfg = ctx.config.dedup
        norm = ctx.config.normalize
        image_root = ctx.root / "images"
        cache = Path(cfg.index_path) if cfg.index_path else ctx.root / "index" / f"{cfg.hash}.npz"
        result = deduplicate(
            posts,
            cfg,
            image_root=image_root,
            workers=_workers(),
            drop_words=[norm.url_placeholder, norm.mention_placeholder],
            cache_path=cache,
        )
        for reason, n in (
            ("duplicate_image", result.duplicate_image),
            ("duplicate_text", result.duplicate_text),
        ):
            if n:
                ctx.flag(reason, n)
        if result.hash_failed:
            ctx.flag("image_hash_failed", len(result.hash_failed))
        write_report(ctx.root.joinpath(*REPORT_DIR), result, posts, image_root, cfg)
        yield from posts
