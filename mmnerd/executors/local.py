"""The default executor: shards run one after another in this process."""

from __future__ import annotations

from collections.abc import Iterable

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Stage, StageStats, run_shard
from mmnerd.progress import progress_bar
from mmnerd.records import Post


class LocalExecutor:
    """Run each pending shard of a stage in turn, with a progress bar."""

    def map_shards(
        self, config: PipelineConfig, stage: Stage, shards: Iterable[tuple[str, list[Post]]]
    ) -> list[StageStats]:
        results = []
        with progress_bar(stage.name) as advance:
            for sid, records in shards:
                results.append(run_shard(config, stage, sid, records))
                advance(len(records))
        return results
