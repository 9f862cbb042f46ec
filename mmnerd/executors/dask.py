"""Run shard tasks on a dask.distributed cluster (a LocalCluster unless an address is given).

Workers read and write the pipeline's ``data_dir`` directly, so on a real
cluster it must be a filesystem every worker mounts (NFS, a shared volume).
Each shard writes its own output and stats files, so a lost worker only
costs its shard: the rerun (or Dask's own retry) redoes just that one.
"""

from __future__ import annotations

from typing import Any

from mmnerd.config import ExecutorConfig, PipelineConfig
from mmnerd.errors import ConfigError
from mmnerd.pipeline import Stage, StageStats, run_shard
from mmnerd.progress import progress_bar


class DaskExecutor:
    """Submit one task per shard; wait for all; re-raise the first failure."""

    def __init__(self, cfg: ExecutorConfig):
        self.cfg = cfg
        self._client: Any = None
        self._cluster: Any = None

    def client(self) -> Any:
        if self._client is None:
            try:
                from dask.distributed import Client, LocalCluster
            except ImportError:
                raise ConfigError(
                    "field 'executor.kind': dask is not installed (pip install 'mmnerd[dask]')"
                ) from None
            if self.cfg.address:
                self._client = Client(self.cfg.address)
            else:
                self._cluster = LocalCluster(
                    n_workers=self.cfg.workers,
                    threads_per_worker=self.cfg.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
                self._client = Client(self._cluster)
        return self._client

    def map_shards(
        self, config: PipelineConfig, stage: Stage, shard_ids: list[str]
    ) -> list[StageStats]:
        if not shard_ids:
            return []
        from dask.distributed import as_completed

        client = self.client()
        futures = [
            client.submit(run_shard, config, stage, sid, key=f"{stage.name}-{sid}", retries=1)
            for sid in shard_ids
        ]
        results = []
        with progress_bar(f"{stage.name} (dask shards)", total=len(futures)) as advance:
            for fut in as_completed(futures):
                results.append(fut.result())
                advance(1)
        return results

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
