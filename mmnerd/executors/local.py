"""The default executor: shards run one after another in this process."""

from __future__ import annotations

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Stage, StageStats, run_shard
from mmnerd.progress import progress_bar


class LocalExecutor:
    """Run each pending shard of a stage in turn, with a progress bar."""

    def map_shards(
        self, config: PipelineConfig, stage: Stage, shard_ids: list[str]
    ) -> list[StageStats]:
        results = []
        with progress_bar(f"{stage.name} ({len(shard_ids)} shards)") as tick:
            for sid in shard_ids:
                results.append(run_shard(config, stage, sid, tick))
        return results
