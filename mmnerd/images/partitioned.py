"""The exact Hamming search (:func:`mmnerd.images.index.join`) run as executor tasks.

The threaded join builds each block's sorted, bucketed arrays (:class:`~mmnerd.images.
index._Side`) in memory and runs the block's tasks on threads.  :class:`PartitionedSearch`
does the same work through an executor's ``map_tasks`` (local or Dask) over a folder every
task can read (the dedup stage's work folder on the shared filesystem):

1. the driver writes the distinct values once (``a.npy``, and ``b.npy`` for a bipartite
   join);
2. one task per block (:func:`build_block`) sorts and buckets the values by that block's
   key and writes the side's arrays as ``.npy`` files (``<block>-<side>-<field>.npy``);
   it returns the few numbers that decide the block's task ranges;
3. one task per key-tile, key or overflow range (:func:`join_range`) memory-maps the
   block's arrays (only the pages its range touches are read) and runs the same kernel
   as the threads, returning its pairs as small arrays.

So the driver holds the distinct values and the pairs; the workers the sorting and the
pair work.  The pairs are the same set as the threaded join's (the tests check it); the
memory budget means the same (``memory_bytes / 4`` of padded rows per block).
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmnerd.images.index import Plan, _run_task, _Side, _task_specs

_ARRAYS = ("sv", "key", "order", "start", "rows", "overflow", "ukeys", "pstart")
Triple = tuple[np.ndarray, np.ndarray, np.ndarray]  # (id a, id b, dist)


@dataclass
class PartitionedSearch:
    """Run a join's block tasks with ``executor.map_tasks`` over files in ``folder``.

    ``executor``: anything with ``map_tasks(fn, args, label)``
    (:mod:`mmnerd.executors`); ``folder``: a directory every task can read and write
    (each join uses a fresh subfolder, removed when it ends); ``tasks_per_block``: how
    many ranges a block's tile (or key) work is cut into (its overflow items in a
    quarter as many).
    """

    executor: Any
    folder: Path
    tasks_per_block: int = 16

    def run(
        self, values_a: np.ndarray, values_b: np.ndarray | None, plan: Plan, memory_bytes: int
    ) -> list[Triple]:
        """The ``(id a, id b, dist)`` arrays of every task of ``plan`` (``values_b`` None:
        a self-join of ``values_a``); as :func:`~mmnerd.images.index.join` takes them."""
        run = Path(self.folder) / f"search-{uuid.uuid4().hex[:12]}"
        run.mkdir(parents=True)
        try:
            _save(run / "a.npy", values_a)
            if values_b is not None:
                _save(run / "b.npy", values_b)
            self_join = values_b is None
            blocks = range(len(plan.blocks))
            shapes = self.executor.map_tasks(
                build_block,
                [(str(run), plan, bi, self_join, memory_bytes) for bi in blocks],
                "image search blocks",
            )
            args = [
                (str(run), plan, bi, self_join, width, kind, lo, hi)
                for bi, (width, n_keys_a, n_over) in zip(blocks, shapes, strict=True)
                for kind, lo, hi in _task_specs(
                    plan.blocks[bi], width, n_keys_a, n_over, self.tasks_per_block
                )
            ]
            return self.executor.map_tasks(join_range, args, "image search")
        finally:
            shutil.rmtree(run, ignore_errors=True)


def _save(path: Path, arr: np.ndarray) -> None:
    """``np.save`` to a temp name, then rename (a retried task never sees half a file)."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.npy")
    np.save(tmp, np.ascontiguousarray(arr))
    os.replace(tmp, path)


def _load(path: Path) -> np.ndarray:
    """The array at ``path``, memory-mapped (copy-on-write: the kernels take the same
    writable array types as in memory, and never write)."""
    arr = np.load(path, mmap_mode="c")
    return np.asarray(arr)  # a plain ndarray over the mapping


def _save_side(run: Path, bi: int, name: str, side: _Side) -> None:
    for f in _ARRAYS:
        arr = getattr(side, f)
        if arr is not None:
            _save(run / f"{bi}-{name}-{f}.npy", arr)


def _load_side(run: Path, bi: int, name: str, width: int) -> _Side:
    got = {f: run / f"{bi}-{name}-{f}.npy" for f in _ARRAYS}
    arrays = {f: _load(p) for f, p in got.items() if p.exists()}
    return _Side(**arrays, width=width)


def build_block(
    run: str, plan: Plan, bi: int, self_join: bool, memory_bytes: int
) -> tuple[int, int, int]:
    """Task: sort and bucket the values by block ``bi``'s key and write the sides' arrays
    to ``run``; returns ``(row width (0 for a wide block), side A's distinct keys, side
    B's overflow items)``, which decide the block's task ranges."""
    folder = Path(run)
    block = plan.blocks[bi]
    values_b = np.load(folder / ("a.npy" if self_join else "b.npy"))
    side = _Side.build(values_b, block, rows=True, max_bytes=memory_bytes // 4)
    del values_b
    _save_side(folder, bi, "b", side)
    width = side.width if side.dense else 0
    n_over = 0 if side.overflow is None else len(side.overflow)
    if not self_join:  # one side in memory at a time
        del side
        side = _Side.build(np.load(folder / "a.npy"), block, False, 0)
        _save_side(folder, bi, "a", side)
    return width, 0 if side.ukeys is None else len(side.ukeys), n_over


def join_range(
    run: str, plan: Plan, bi: int, self_join: bool, width: int, kind: str, lo: int, hi: int
) -> Triple:
    """Task: the pairs of one ``(kind, lo, hi)`` range of block ``bi``
    (:func:`~mmnerd.images.index._task_specs`; ``width`` as :func:`build_block` returned
    it), over the block's memory-mapped arrays."""
    folder = Path(run)
    b = _load_side(folder, bi, "b", width)
    a = b if self_join else _load_side(folder, bi, "a", 0)
    ia, ib, dd = _run_task(plan, bi, a, b, self_join, kind, lo, hi)
    return ia.copy(), ib.copy(), dd.copy()
