"""Stages, the runner, completion markers and per-stage statistics.

A stage is a small class with one ``run(records, ctx)`` over a stream of
:class:`~mmnerd.records.Post`.  Shard-scoped stages see one shard at a time
(the executor decides where each shard runs); global stages (dedup, splits)
see every record.  Output lives in ``<data_dir>/stages/<stage>/``::

    shard-00000.jsonl        records kept (status ok), atomically written
    excluded-00000.jsonl     records dropped by this stage, with their reason
    _SUCCESS.json            completion marker: fingerprint + stats

Each stage also has a side folder, ``<data_dir>/side/<stage>/`` (:func:`side_dir`), for
its state and reports: the runner never clears it or sets it aside, so it survives reruns
and ``--force``.

A shard whose output file exists is done; a stage whose marker matches the
current config fingerprint is skipped.  So a rerun after a crash redoes only
the shards that did not finish, and never duplicates a record.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from mmnerd.config import PipelineConfig
from mmnerd.errors import EmptyOutputError, StageError
from mmnerd.io import read_json, read_posts, remove_stale_temps, write_json, write_posts
from mmnerd.progress import progress_bar, warn
from mmnerd.records import Post

MARKER = "_SUCCESS.json"
SIDE = "side"
"""``<data_dir>/side/<stage>/``: each stage's state and reports (:func:`side_dir`)."""

_LEGACY_SIDE: dict[str, dict[str, str]] = {
    "pull": {"annotation/pull-state.json": "pull-state.json"},
    "dedup": {"reports/dedup/report.json": "report.json",
              "reports/dedup/clusters.png": "clusters.png"},
}  # fmt: skip
"""Files stages kept elsewhere before issue 17 (relative to the data dir) and their name in
the side folder: moved in on first use, so an existing data dir keeps them."""


@dataclass
class StageStats:
    """What one stage did: items in/out, drops by reason, wall seconds."""

    stage: str
    items_in: int = 0
    items_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    flagged: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    skipped: bool = False

    def merge(self, other: StageStats) -> None:
        self.items_in += other.items_in
        self.items_out += other.items_out
        self.dropped.update(other.dropped)
        self.flagged.update(other.flagged)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "items_in": self.items_in,
            "items_out": self.items_out,
            "dropped": dict(sorted(self.dropped.items())),
            "flagged": dict(sorted(self.flagged.items())),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageStats:
        return cls(
            stage=d["stage"],
            items_in=d.get("items_in", 0),
            items_out=d.get("items_out", 0),
            dropped=Counter(d.get("dropped", {})),
            flagged=Counter(d.get("flagged", {})),
            seconds=d.get("seconds", 0.0),
        )


@dataclass
class StageContext:
    """What a stage may use besides its records: config, paths and a stats sink."""

    config: PipelineConfig
    stats: StageStats
    shard: str = ""

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def side(self) -> Path:
        """The stage's side folder (:func:`side_dir`): state and reports that outlive runs."""
        return side_dir(self.config, self.stats.stage)

    def flag(self, reason: str, n: int = 1) -> None:
        """Count a problem that did not drop the record (e.g. a snapped span)."""
        self.stats.flagged[reason] += n


class Stage:
    """Base class of pipeline stages.

    Subclasses set ``name``, ``input`` (the stage whose output they read, or
    None for a source stage), ``config_sections`` (config slices that, when
    changed, invalidate this stage's output) and implement :meth:`run`.
    """

    name: ClassVar[str] = ""
    input: ClassVar[str | None] = None
    scope: ClassVar[Literal["shard", "global"]] = "shard"
    config_sections: ClassVar[tuple[str, ...]] = ()

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        raise NotImplementedError

    def prepare(self, config: PipelineConfig) -> None:
        """Run once in the driver before any shard starts (no shard is running yet)."""

    def split_work(self, executor: Any) -> bool:
        """Run as tasks of ``executor`` (``run_partitioned(config, executor, folder)``, which
        writes the stage folder itself) rather than ``run`` over every record?"""
        return getattr(self, "run_partitioned", None) is not None

    def side(self, config: PipelineConfig) -> Path:
        """This stage's side folder (:func:`side_dir`), for its state and reports."""
        return side_dir(config, self.name)

    def fingerprint(self, config: PipelineConfig) -> str:
        return f"{type(self).__qualname__}|{config.fingerprint(*self.config_sections)}"


def stage_dir(config: PipelineConfig, name: str) -> Path:
    return config.root / "stages" / name


def side_dir(config: PipelineConfig, name: str) -> Path:
    """``<data_dir>/side/<name>/``, stage ``name``'s state and reports (created on first
    use).  Unlike the stage folder, the runner never clears it or sets it aside (reruns,
    ``--force``, a changed config), so what a stage keeps there survives; files an older
    version kept elsewhere (:data:`_LEGACY_SIDE`) are moved in."""
    folder = config.root / SIDE / name
    folder.mkdir(parents=True, exist_ok=True)
    for old, new in _LEGACY_SIDE.get(name, {}).items():
        src = config.root / old
        if src.is_file() and not (folder / new).exists():
            os.replace(src, folder / new)
    return folder


def side_file(config: PipelineConfig, name: str, file: str) -> Path:
    """A file in stage ``name``'s side folder (e.g. the dedup report, read by export)."""
    return side_dir(config, name) / file


def _input_run(config: PipelineConfig, stage: Stage) -> str:
    """The run id of the stage's input: when the input is redone, this stage is stale."""
    if stage.input is None:
        return ""
    marker = read_json(stage_dir(config, stage.input) / MARKER) or {}
    return marker.get("run_id", "")


WORK = "_work"
"""The work folder of a global stage that splits its own work (``run_partitioned``)."""


def open_work(config: PipelineConfig, stage: Stage, folder: Path, **extra: str) -> Path:
    """``folder/_work``, ready for a (re)run of ``stage``'s partitioned phases: kept (with
    the phase files a killed run finished) when its stamp (config fingerprint, input run,
    ``extra``) is unchanged, else emptied with the stage's output shards; temp files of a
    killed run are removed either way."""
    work = folder / WORK
    stamp = {"fingerprint": stage.fingerprint(config), "input_run": _input_run(config, stage)}
    stamp.update(extra)
    if read_json(work / "stamp.json") != stamp:  # another config or input: start over
        shutil.rmtree(work, ignore_errors=True)
        for old in list(folder.glob("shard-*.jsonl")) + list(folder.glob("excluded-*")):
            old.unlink()
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(work)
    write_json(work / "stamp.json", stamp)
    return work


def is_done(config: PipelineConfig, stage: Stage) -> bool:
    marker = read_json(stage_dir(config, stage.name) / MARKER)
    return (
        bool(marker)
        and marker.get("fingerprint") == stage.fingerprint(config)
        and marker.get("input_run", "") == _input_run(config, stage)
    )


def shard_ids(config: PipelineConfig, name: str) -> list[str]:
    """Shard ids (e.g. "00003") written by stage ``name``, sorted."""
    folder = stage_dir(config, name)
    return sorted(p.stem.split("-", 1)[1] for p in folder.glob("shard-*.jsonl"))


def iter_stage(config: PipelineConfig, name: str, include_excluded: bool = False) -> Iterator[Post]:
    """All records a finished stage kept (and, if asked, those it dropped), in shard order."""
    folder = stage_dir(config, name)
    for sid in shard_ids(config, name):
        yield from read_posts(folder / f"shard-{sid}.jsonl")
        if include_excluded and (folder / f"excluded-{sid}.jsonl").exists():
            yield from read_posts(folder / f"excluded-{sid}.jsonl")


def iter_excluded(config: PipelineConfig, name: str) -> Iterator[Post]:
    for path in sorted(stage_dir(config, name).glob("excluded-*.jsonl")):
        yield from read_posts(path)


def count_records(config: PipelineConfig, name: str, shard_ids: Sequence[str]) -> int:
    """Records in the given shards of stage ``name`` (one per line; a fast byte count, for
    progress totals)."""
    folder = stage_dir(config, name)
    n = 0
    for sid in shard_ids:
        try:
            with open(folder / f"shard-{sid}.jsonl", "rb") as f:
                n += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            continue
    return n


def stage_stats(config: PipelineConfig, name: str) -> StageStats | None:
    marker = read_json(stage_dir(config, name) / MARKER)
    return StageStats.from_dict(marker["stats"]) if marker else None


def _chunks(records: Iterable[Post], size: int) -> Iterator[list[Post]]:
    batch: list[Post] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def reason_key(reason: str) -> str:
    """The countable part of a drop reason: ``"image:http_404: Not Found"`` -> ``"image:http_404"``.

    Reasons are ``key`` or ``key: free-text detail``.
    """
    return reason.split(": ", 1)[0]


def write_shard(
    folder: Path, sid: str, produced: Iterable[Post], stats: StageStats, with_stats: bool = False
) -> None:
    """Split a stage's output into kept / excluded files for one shard and count them
    (``with_stats``: also write the shard's ``stats-<sid>.json``).

    The kept file is written last: its existence marks the shard done, so a crash
    before it (after the excluded or stats file) redoes the shard cleanly.
    """
    kept: list[Post] = []
    dropped: list[Post] = []
    for p in produced:
        (kept if p.ok else dropped).append(p)
    for p in dropped:
        stats.dropped[reason_key(p.reason)] += 1
    stats.items_out += len(kept)
    if dropped:
        write_posts(folder / f"excluded-{sid}.jsonl", dropped)
    if with_stats:
        write_json(folder / f"stats-{sid}.json", stats.to_dict())
    write_posts(folder / f"shard-{sid}.jsonl", kept)


def seed_stage(
    config: PipelineConfig,
    name: str,
    posts: Sequence[Post],
    shard_size: int | None = None,
    run_id: str = "seeded",
) -> StageStats:
    """Write ``posts`` as the finished output of stage ``name``, in shards of ``shard_size``
    (default: the config's), with a marker whose fingerprint is ``"seeded"``.

    For records made outside the pipeline (tests, benchmarks, imported corpora): the
    stages after ``name`` read them as usual; ``name`` itself counts as stale if run.
    """
    folder = stage_dir(config, name)
    folder.mkdir(parents=True, exist_ok=True)
    size = shard_size or config.shard_size
    stats = StageStats(name)
    for k in range(0, len(posts), size):
        write_shard(folder, f"{k // size:05d}", posts[k : k + size], stats)
    write_json(
        folder / MARKER, {"fingerprint": "seeded", "run_id": run_id, "stats": stats.to_dict()}
    )
    return stats


def _ticking(records: Iterable[Post], tick: Callable[[int], None] | None) -> Iterator[Post]:
    for r in records:
        if tick is not None:
            tick(1)
        yield r


def read_shard_lines(path: Path, lo: int = 0, hi: int | None = None) -> Iterator[Post]:
    """Posts ``lo:hi`` of a JSONL shard, parsing only those lines."""
    with open(path, encoding="utf-8") as f:
        k = 0
        for line in f:
            if not line.strip():
                continue
            if hi is not None and k >= hi:
                return
            if k >= lo:
                yield Post.from_json(line)
            k += 1


def shard_pieces(
    sids: list[str], sizes: list[int], start: int, size: int
) -> list[tuple[str, int, int, int]]:
    """The input-shard ranges ``(shard, first, end, global first)`` holding global posts
    ``[start, start + size)`` (a global stage's output shard: ``size`` = shard size)."""
    out = []
    off = 0
    for sid, n in zip(sids, sizes, strict=True):
        lo, hi = max(start, off), min(start + size, off + n)
        if lo < hi:
            out.append((sid, lo - off, hi - off, lo))
        off += n
    return out


def run_shard(
    config: PipelineConfig, stage: Stage, sid: str, tick: Callable[[int], None] | None = None
) -> StageStats:
    """Run a shard-scoped stage on one shard of its input and write the output.

    This is the unit of work an executor schedules, in this process or on a Dask
    worker; it reads and writes ``config.root``, which workers must share.
    """
    assert stage.input is not None
    records = list(read_posts(stage_dir(config, stage.input) / f"shard-{sid}.jsonl"))
    stats = StageStats(stage.name, items_in=len(records))
    ctx = StageContext(config, stats, shard=sid)
    produced = _ticking(stage.run(records, ctx), tick)
    write_shard(stage_dir(config, stage.name), sid, produced, stats, with_stats=True)
    return stats


class Runner:
    """Runs stages in order with an executor, skipping finished ones.

    ``force`` reruns a stage even if its marker matches.
    """

    def __init__(self, config: PipelineConfig, executor: Any = None):
        from mmnerd.executors import make_executor

        self.config = config
        self.executor = executor or make_executor(config)

    def run(self, stages: list[Stage], force: bool = False) -> list[StageStats]:
        results = []
        for stage in stages:
            results.append(self.run_stage(stage, force=force))
        return results

    def run_stage(self, stage: Stage, force: bool = False) -> StageStats:
        """Run ``stage`` unless done.  A finished output that must be redone (``force``, or
        a changed config or input) is moved aside, not deleted, and removed only once the
        new output is complete: a run that fails (a bad input line, say) puts it back."""
        folder = stage_dir(self.config, stage.name)
        aside = folder.with_name(f".{stage.name}.old")
        if aside.exists() and not folder.exists():
            aside.rename(folder)  # killed right after moving the old output aside
        if not force and is_done(self.config, stage):
            stats = stage_stats(self.config, stage.name) or StageStats(stage.name)
            stats.skipped = True
            return stats
        if stage.input is not None and not (stage_dir(self.config, stage.input) / MARKER).exists():
            raise StageError(needs_message(stage.name, stage.input))
        marker = read_json(folder / MARKER)
        if marker:  # config or input changed, or forced: start over, keeping the old aside
            shutil.rmtree(aside, ignore_errors=True)
            folder.rename(aside)
        elif force:  # a crashed run's partial output (the last finished one may be aside)
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder)
        try:
            stats = self._run(stage, folder)
        except BaseException:
            if aside.exists():  # the new output is incomplete: the old one stays current
                shutil.rmtree(folder, ignore_errors=True)
                aside.rename(folder)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return stats

    def _run(self, stage: Stage, folder: Path) -> StageStats:
        for tmp in side_dir(self.config, stage.name).rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # left by a killed run writing its state or reports
        stage.prepare(self.config)
        t0 = time.perf_counter()
        if stage.split_work(self.executor):  # a global stage that splits its own work
            split = stage.run_partitioned  # type: ignore[attr-defined]
            stats = split(self.config, self.executor, folder)
        elif stage.scope == "global" or stage.input is None:
            stats = run_whole(self.config, stage, folder)
        else:
            self.executor.map_shards(self.config, stage, self._pending(stage))
            stats = self._shard_totals(stage)
        stats.seconds = time.perf_counter() - t0
        if message := drop_warning(stats, self.config.drop_warning):
            warn(message)
        write_json(
            folder / MARKER,
            {
                "fingerprint": stage.fingerprint(self.config),
                "input_run": _input_run(self.config, stage),
                "run_id": uuid.uuid4().hex,
                "stats": stats.to_dict(),
            },
        )
        return stats

    def _shard_totals(self, stage: Stage) -> StageStats:
        """Sum the per-shard stats files, so resumed and fresh runs report alike."""
        total = StageStats(stage.name)
        folder = stage_dir(self.config, stage.name)
        for sid in shard_ids(self.config, stage.name):
            total.merge(StageStats.from_dict(read_json(folder / f"stats-{sid}.json")))
        return total

    def _pending(self, stage: Stage) -> list[str]:
        """Input shards this stage has not written yet (a shard without its stats file, as
        a crash left it before the stats were written first, is not done)."""
        assert stage.input is not None
        folder = stage_dir(self.config, stage.name)
        done = {
            sid
            for sid in shard_ids(self.config, stage.name)
            if (folder / f"stats-{sid}.json").exists()
        }
        return [sid for sid in shard_ids(self.config, stage.input) if sid not in done]


def run_whole(config: PipelineConfig, stage: Stage, folder: Path) -> StageStats:
    """Global and source stages: one pass over everything, re-sharded on output."""
    for old in list(folder.glob("shard-*.jsonl")) + list(folder.glob("excluded-*.jsonl")):
        old.unlink()
    stats = StageStats(stage.name)
    ctx = StageContext(config, stats)
    upstream: Iterable[Post] = ()
    if stage.input is not None:
        upstream = _counting(iter_stage(config, stage.input), stats)
    total = None
    if stage.input is not None and (before := stage_stats(config, stage.input)):
        total = before.items_out
    with progress_bar(stage.name, total=total) as tick:
        produced = _ticking(stage.run(upstream, ctx), tick)
        for i, batch in enumerate(_chunks(produced, config.shard_size)):
            write_shard(folder, f"{i:05d}", batch, stats)
    if stage.input is None:
        stats.items_in = stats.items_out + sum(stats.dropped.values())
    return stats


COMMAND_OF_STAGE = {
    "collect": "collect", "language": "collect", "normalize": "collect", "tokenize": "collect",
    "fetch": "collect", "dedup": "dedup", "push": "annotate push", "pull": "pull",
    "gold": "export", "split": "export",
}  # fmt: skip
"""The ``mmnerd`` command that runs each stage."""


def needs_message(stage: str, needed: str) -> str:
    """What to run before ``stage`` can: the command of the stage it reads."""
    command = COMMAND_OF_STAGE.get(needed, needed)
    msg = (f"stage '{stage}' needs stage '{needed}', which has not run: run `mmnerd {command}` "
           "(same -p and --set) first")  # fmt: skip
    if needed == "pull":
        msg += (", or export the source's own gold labels without Label Studio with "
                "--set export.labels=source")  # fmt: skip
    return msg


def _main_reasons(stats: StageStats, n: int = 3) -> str:
    return ", ".join(f"{k}: {c}" for k, c in stats.dropped.most_common(n))


def drop_warning(stats: StageStats, share: float) -> str:
    """A loud one-line warning when ``stats`` dropped more than ``share`` of its input
    (with the three main reasons), else ""."""
    dropped = sum(stats.dropped.values())
    if stats.skipped or stats.items_in == 0 or dropped <= share * stats.items_in:
        return ""
    main = _main_reasons(stats)
    hint = ""
    if stats.dropped.get("no_image", 0) * 2 > dropped:
        hint = "; posts without images are kept with [images] required = false"
    return (
        f"stage '{stats.stage}' dropped {dropped} of {stats.items_in} posts "
        f"({dropped / stats.items_in:.0%}): {main}{hint}"
    )


def require_output(stats: Sequence[StageStats], command: str) -> None:
    """Raise :class:`EmptyOutputError` when the last stage of ``command`` kept no post,
    naming the stages that dropped them and why."""
    if not stats or stats[-1].items_out > 0:
        return
    losses = [f"{s.stage} dropped {sum(s.dropped.values())} ({_main_reasons(s)})"
              for s in stats if s.dropped]  # fmt: skip
    why = "; ".join(losses) if losses else f"stage '{stats[-1].stage}' received no posts"
    hint = ""
    if any(s.dropped.get("no_image") for s in stats):
        hint = " (to keep posts without images: [images] required = false)"
    raise EmptyOutputError(f"{command} produced no posts: {why}{hint}")


def _counting(records: Iterable[Post], stats: StageStats) -> Iterator[Post]:
    for r in records:
        stats.items_in += 1
        yield r
