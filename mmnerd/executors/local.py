"""The default executor: shards run one after another in this process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Stage, StageStats, count_records, run_shard
from mmnerd.progress import log_line, progress_bar


class LocalExecutor:
    """Run each pending shard of a stage in turn, with a progress bar over its posts (and,
    in logs, a line per finished shard)."""

    parallel = False

    def map_tasks(self, fn: Callable[..., Any], args: list[tuple], label: str) -> list[Any]:
        """Run ``fn(*a)`` for each ``a`` in turn, in this process."""
        results = []
        with progress_bar(label, total=len(args), unit="tasks") as tick:
            for a in args:
                results.append(fn(*a))
                tick(1)
        return results

    def map_shards(
        self, config: PipelineConfig, stage: Stage, shard_ids: list[str]
    ) -> list[StageStats]:
        results = []
        total = count_records(config, stage.input or "", shard_ids)
        with progress_bar(f"{stage.name} ({len(shard_ids)} shards)", total=total) as tick:
            for k, sid in enumerate(shard_ids, 1):
                stats = run_shard(config, stage, sid, tick)
                results.append(stats)
                log_line(f"{stage.name}: shard {sid} done ({k}/{len(shard_ids)}): "
                         f"{stats.items_in} in, {stats.items_out} kept")  # fmt: skip
        return results
