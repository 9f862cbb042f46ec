"""Executors decide where shard tasks run: in this process (local) or on Dask workers.

Both take the same stage objects and call :func:`mmnerd.pipeline.run_shard`
once per pending shard, so their outputs are identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from mmnerd.config import PipelineConfig


class Executor(Protocol):
    parallel: bool  # tasks run in parallel elsewhere (a task should then use one core)

    def map_shards(self, config: PipelineConfig, stage: Any, shard_ids: list[str]) -> list[Any]:
        """Run ``stage`` on each shard id; return the per-shard stats."""
        ...

    def map_tasks(self, fn: Callable[..., Any], args: list[tuple], label: str) -> list[Any]:
        """``[fn(*a) for a in args]``, run where the executor runs shards (``fn`` a
        module-level function, its arguments and result small and picklable)."""
        ...


def make_executor(config: PipelineConfig) -> Executor:
    if config.executor.kind == "dask":
        from mmnerd.executors.dask import DaskExecutor

        return DaskExecutor(config.executor)
    from mmnerd.executors.local import LocalExecutor

    return LocalExecutor()
