"""Run shard tasks on a dask.distributed cluster (a LocalCluster unless an address is given).

Workers read and write the pipeline's ``data_dir`` directly, so on a real
cluster it must be a filesystem every worker mounts (NFS, a shared volume).
Each shard writes its own output and stats files, so a lost worker only
costs its shard:

* the shard it was running is rescheduled by Dask on another worker (a task
  that raises is retried once more);
* shards it had finished are not redone: their results are gathered and
  released as soon as they complete (so the scheduler has nothing in that
  worker's memory to recompute), and a task that still runs again finds its
  output on disk and returns the stats written there (:func:`run_shard_once`);
* if the driver itself dies, the rerun's ``Runner`` schedules only the shards
  without an output file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from mmnerd.config import ExecutorConfig, PipelineConfig
from mmnerd.errors import ConfigError, StageError
from mmnerd.io import read_json
from mmnerd.pipeline import Stage, StageStats, run_shard, stage_dir
from mmnerd.progress import progress_bar


def run_shard_once(config: PipelineConfig, stage: Stage, sid: str) -> StageStats:
    """:func:`run_shard`, unless the shard's output and stats are already on disk.

    A Dask task can run twice: retried after its worker died, or recomputed
    because its result was held by a worker that was lost.  The second run
    then costs a file read, not the shard's work again.
    """
    folder = stage_dir(config, stage.name)
    if (folder / f"shard-{sid}.jsonl").exists():
        stats = read_json(folder / f"stats-{sid}.json")
        if stats:
            return StageStats.from_dict(stats)
    return run_shard(config, stage, sid)


def load_error(blob: bytes) -> str:
    """Run on a worker: '' if ``blob`` (Dask-pickled) loads there, else why not (one line)."""
    from distributed.protocol import pickle

    try:
        pickle.loads(blob)
    except Exception as e:  # a module the driver has and the worker lacks, mostly
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return ""


def check_loadable(client: Any, config: PipelineConfig, stage: Stage) -> None:
    """Raise :class:`StageError` unless every worker can load ``(config, stage)``.

    A task a worker cannot unpickle (a stage class defined in a script or module
    only the driver has) kills the worker process in Dask instead of failing the
    task, and the map would wait forever for workers that never come back.
    """
    from distributed.protocol import pickle

    blob = pickle.dumps((config, stage))
    for worker, error in sorted(client.run(load_error, blob).items()):
        if error:
            raise StageError(
                f"stage '{stage.name}' ({type(stage).__module__}.{type(stage).__qualname__}) "
                f"cannot be loaded on Dask worker {worker}: {error}; define it in a module "
                f"every worker can import"
            )


class DaskExecutor:
    """Submit one task per shard; wait for all; re-raise the first failure."""

    parallel = True

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
                try:
                    self._client = Client(self.cfg.address, timeout=30)
                except OSError as e:
                    raise ConfigError(
                        f"field 'executor.address': no Dask scheduler at {self.cfg.address} "
                        f"({e}); start one with `dask scheduler` or leave address empty"
                    ) from None
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
        check_loadable(client, config, stage)
        run = uuid.uuid4().hex[:8]  # fresh keys: never reuse a result of an earlier map
        pending = as_completed(
            [
                client.submit(
                    run_shard_once, config, stage, sid, key=f"{stage.name}-{sid}-{run}", retries=1
                )
                for sid in shard_ids
            ]
        )
        results = []
        with progress_bar(f"{stage.name} (dask)", total=len(shard_ids), unit="shards") as advance:
            for fut in pending:
                results.append(fut.result())
                fut.release()  # nothing left on the worker to recompute if it is lost later
                advance(1)
        return results

    def map_tasks(self, fn: Callable[..., Any], args: list[tuple], label: str) -> list[Any]:
        """Submit ``fn(*a)`` for each ``a`` (retried once, like shard tasks); results in
        order, each gathered and released as it completes."""
        if not args:
            return []
        from dask.distributed import as_completed

        client = self.client()
        run = uuid.uuid4().hex[:8]
        futures = [
            client.submit(fn, *a, key=f"{label.replace(' ', '-')}-{k}-{run}", retries=1)
            for k, a in enumerate(args)
        ]
        where = {f.key: k for k, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        with progress_bar(f"{label} (dask)", total=len(futures), unit="tasks") as advance:
            for fut in as_completed(futures):
                results[where[fut.key]] = fut.result()
                fut.release()
                advance(1)
        return results

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
