"""The dedup stage: mark exact and near duplicates of the fetched posts (never deleted).

Through the runner it works in three phases, so the driver never holds ``Post`` objects:

1. *keys* (one task per input shard, on the executor): hash the shard's images (unless
   their sha256 is cached), normalise and shingle its texts, and save the per-post arrays
   (:class:`~mmnerd.dedup.keys.PostKeys`) as ``_work/keys-<shard>.npz``;
2. *clusters* (the driver, over arrays): the exact image and text searches, connected
   components, representatives; writes the report, the hash cache and
   ``_work/marks.npz`` (cluster id, representative, reason of each post in a cluster);
3. *write* (one task per output shard, on the executor): read the shard's posts again,
   set ``image.phash`` and the marks, write ``shard-<n>.jsonl`` (the same re-sharding as
   any global stage, so the outputs are byte-identical to an in-memory run).

The report (``report.json``, ``clusters.png``) goes to the stage's side folder,
``<data_dir>/side/dedup/`` (:func:`mmnerd.pipeline.side_dir`).

Each phase's files mark it done: a rerun after a crash redoes only what is missing
(``_work/stamp.json`` ties them to the config and the input run).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmnerd.config import PipelineConfig
from mmnerd.dedup.clusters import (
    DedupResult,
    Marks,
    apply_marks,
    cluster_members,
    deduplicate,
    find_clusters,
    member_keys,
    pick_representatives,
)
from mmnerd.dedup.report import write_report
from mmnerd.heap import trim
from mmnerd.io import remove_stale_temps
from mmnerd.pipeline import (
    WORK,
    Stage,
    StageContext,
    StageStats,
    open_work,
    shard_ids,
    stage_dir,
    write_shard,
)
from mmnerd.pipeline import read_shard_lines as read_lines
from mmnerd.pipeline import shard_pieces as _pieces
from mmnerd.records import Post


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _cache_path(config: PipelineConfig) -> Path:
    cfg = config.dedup
    return Path(cfg.index_path) if cfg.index_path else config.root / "index" / f"{cfg.hash}.npz"


def _drop_words(config: PipelineConfig) -> list[str]:
    return [config.normalize.url_placeholder, config.normalize.mention_placeholder]


def extract_shard(config: PipelineConfig, input_stage: str, sid: str, hash_workers: int) -> int:
    """Phase 1 for one input shard (runs on a worker): save its :class:`PostKeys`."""
    from mmnerd.dedup.keys import HashCache, post_keys

    work = stage_dir(config, "dedup") / WORK
    posts = list(read_lines(stage_dir(config, input_stage) / f"shard-{sid}.jsonl"))
    cache = HashCache.load(work / "cache.npz")
    keys = post_keys(
        posts, config.dedup.hash, cache, config.root / "images", _drop_words(config), hash_workers
    )
    keys.save(work / f"keys-{sid}.npz")
    return len(posts)


def write_output_shard(
    config: PipelineConfig, input_stage: str, index: int, pieces: list[tuple[str, int, int, int]]
) -> int:
    """Phase 3 for one output shard (runs on a worker): ``pieces`` are ``(input shard,
    first, end, global position of first)``; returns the posts written."""
    from mmnerd.images.hashing import hash_hex

    folder = stage_dir(config, "dedup")
    posts: list[Post] = []
    for sid, lo, hi, _ in pieces:
        with np.load(folder / WORK / f"keys-{sid}.npz") as z:
            h, valid, has_image = z["hash"], z["valid"], z["has_image"]
        chunk = list(read_lines(stage_dir(config, input_stage) / f"shard-{sid}.jsonl", lo, hi))
        for k, p in enumerate(chunk, lo):
            if has_image[k]:
                assert p.image is not None
                p.image.phash = hash_hex(int(h[k])) if valid[k] else ""
        posts += chunk
    with np.load(folder / WORK / "marks.npz") as z:
        marks = Marks(z["idx"], z["cluster_id"], z["duplicate_of"], z["reason"])
    apply_marks(posts, pieces[0][3] if pieces else 0, marks)
    write_shard(folder, f"{index:05d}", posts, StageStats("dedup"))
    return len(posts)


class DedupStage(Stage):
    """Mark exact and near duplicates (image and text); yields every post, none dropped."""

    name: ClassVar[str] = "dedup"
    input: ClassVar[str | None] = "fetch"
    scope: ClassVar = "global"
    config_sections: ClassVar[tuple[str, ...]] = ("dedup",)

    def prepare(self, config: PipelineConfig) -> None:
        """Delete the temp files a killed run left in the default hash cache folder (the
        runner clears those of the side folder, e.g. a half-drawn clusters.png)."""
        remove_stale_temps(config.root / "index")

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        """In memory (every post at once): for direct use and small corpora."""
        posts = list(records)
        cfg = ctx.config.dedup
        image_root = ctx.root / "images"
        result = deduplicate(
            posts,
            cfg,
            image_root=image_root,
            workers=_workers(),
            drop_words=_drop_words(ctx.config),
            cache_path=_cache_path(ctx.config),
        )
        _flag(ctx.stats, result.to_dict()["duplicates"], len(result.hash_failed))
        write_report(ctx.side, result, posts, image_root, cfg)
        yield from posts

    # ------------------------------------------------------------------ partitioned
    def run_partitioned(self, config: PipelineConfig, executor: Any, folder: Path) -> StageStats:
        """The three phases (module docstring) with ``executor``; returns the stats."""
        assert self.input is not None
        work = open_work(config, self, folder)
        sids = shard_ids(config, self.input)
        if not (work / "cache.npz").exists():
            _write_worker_cache(config, work)
        hash_workers = 1 if getattr(executor, "parallel", False) else _workers()
        todo = [s for s in sids if not (work / f"keys-{s}.npz").exists()]
        executor.map_tasks(
            extract_shard, [(config, self.input, s, hash_workers) for s in todo], "dedup keys"
        )
        if not (work / "marks.npz").exists():
            self._cluster(config, sids, work, executor)
        with np.load(work / "marks.npz") as z:
            sizes = z["sizes"].tolist()
            figures = json.loads(str(z["figures"]))
        n = int(sum(sizes))
        size = config.shard_size
        tasks = []
        for index, start in enumerate(range(0, n, size)):
            if not (folder / f"shard-{index:05d}.jsonl").exists():
                tasks.append((config, self.input, index, _pieces(sids, sizes, start, size)))
        executor.map_tasks(write_output_shard, tasks, "dedup write")
        stats = StageStats(self.name, items_in=n, items_out=n)
        _flag(stats, figures["duplicates"], figures["hash_failed"])
        return stats

    def _cluster(self, config: PipelineConfig, sids: list[str], work: Path, executor: Any) -> None:
        """Phase 2 (the driver, arrays only): search, cluster, report, cache, marks.  On a
        parallel executor (Dask) the image search's pair work runs as its tasks, over
        files in ``work/imagesearch`` (:mod:`mmnerd.images.partitioned`)."""
        from mmnerd.dedup.images import _load_cache, _save_cache
        from mmnerd.dedup.text import Scan
        from mmnerd.images.partitioned import PartitionedSearch

        cfg = config.dedup
        cols, book, sizes = _load_keys(work, sids)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(offsets[-1])
        empty = {"sha": np.zeros((0, 2), np.uint64), "digest": np.zeros((0, 2), np.uint64)}

        def cat(name: str) -> np.ndarray:
            parts = cols.pop(name, [])
            return np.concatenate(parts) if parts else empty.get(name, np.zeros(0))

        # the shingle hashes stay in the keys files: the join reads them a shard at a time
        paths: list[np.ndarray | Path] = [work / f"keys-{sid}.npz" for sid in sids]
        scan = Scan(cat("digest"), cat("counts").astype(np.int64, copy=False), paths, sizes)
        # the image columns hold the posts with an image only (``at``, ascending)
        at = cat("at").astype(np.int64)
        hashes = cat("hash").astype(np.uint64)
        valid = cat("valid").astype(bool)
        sha = cat("sha").astype(np.uint64)
        star = cat("star").astype(bool)
        res = DedupResult(n_posts=n, n_images=len(at))
        new_cache, hashed = _hash_figures(book, offsets, at, sha, star, res)
        if hashed:
            cache_path = _cache_path(config)
            _save_cache(cache_path, cfg.hash, {**_load_cache(cache_path, cfg.hash), **new_cache})
        partitioned = None
        shutil.rmtree(work / "imagesearch", ignore_errors=True)  # a killed run's block files
        if getattr(executor, "parallel", False):
            partitioned = PartitionedSearch(executor, work / "imagesearch")
        labels, img_linked = find_clusters(
            hashes, valid, sha, star, scan, cfg, _workers(), res, work, partitioned, at
        )
        del scan, sha, star
        trim()
        idx, lab = cluster_members(labels)
        del labels
        # the keep-policy keys of the cluster members only, read from their shards
        area: dict[int, int] = {}
        created: dict[int, str] = {}
        ids_all: dict[int, str] = {}
        shard_of = np.searchsorted(offsets, idx, side="right") - 1
        for s in np.unique(shard_of).tolist():
            here = idx[shard_of == s]
            local, here = here - offsets[s], here.tolist()
            with np.load(work / f"keys-{sids[s]}.npz") as z:
                area.update(zip(here, z["area"][local].tolist(), strict=True))
                created.update(zip(here, z["created"][local].tolist(), strict=True))
                ids_all.update(zip(here, z["ids"][local].tolist(), strict=True))
        keys, names = member_keys(idx, area, created, ids_all, cfg.keep)
        del area, created, ids_all
        marks = pick_representatives(idx, lab, keys, names, img_linked, res)
        self._report(config, sids, offsets, res, marks, names, at, hashes, valid)
        figures = res.to_dict()
        tmp = work / ".marks.tmp.npz"
        np.savez(
            tmp,
            idx=marks.idx,
            cluster_id=marks.cluster_id,
            duplicate_of=marks.duplicate_of,
            reason=marks.reason,
            sizes=np.array(sizes, np.int64),
            figures=np.str_(json.dumps(figures)),
        )
        os.replace(tmp, work / "marks.npz")
        trim()  # the write phase starts from what the driver holds, not its high-water mark

    def _report(
        self,
        config: PipelineConfig,
        sids: list[str],
        offsets: np.ndarray,
        res: DedupResult,
        marks: Marks,
        names: dict[int, str],
        at: np.ndarray,
        hashes: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        """The report needs the posts of the largest clusters only (the contact sheet's
        captions compare each shown member with every member): read just those.  ``at``:
        the posts with an image, whose ``hashes`` and ``valid`` these are."""
        from mmnerd.images.hashing import hash_hex

        assert self.input is not None
        clusters = list(res.clusters.values())
        by_size = sorted(clusters, key=lambda m: -len(m))[:20]
        sheet = sorted(clusters, key=lambda m: (-len(m), names[m[0]]))[:12]
        need = sorted({k for m in by_size for k in m[:20]} | {k for m in sheet for k in m})
        posts: dict[int, Post] = {}
        need_arr = np.array(need, dtype=np.int64)
        shard_of = np.searchsorted(offsets, need_arr, side="right") - 1
        for s in np.unique(shard_of).tolist():
            wanted = set((need_arr[shard_of == s] - offsets[s]).tolist())
            path = stage_dir(config, self.input) / f"shard-{sids[s]}.jsonl"
            for k, p in enumerate(read_lines(path, 0, max(wanted) + 1)):
                if k in wanted:
                    g = int(offsets[s]) + k
                    i = int(np.searchsorted(at, g))
                    if i < len(at) and at[i] == g:
                        assert p.image is not None
                        p.image.phash = hash_hex(int(hashes[i])) if valid[i] else ""
                    apply_marks([p], g, marks)
                    posts[g] = p
        image_root = config.root / "images"
        write_report(
            self.side(config),
            res,
            posts,  # type: ignore[arg-type]
            image_root,
            config.dedup,
            sheet_clusters={m[0]: m for m in sheet},
        )


def _load_keys(
    work: Path, sids: list[str]
) -> tuple[dict[str, list[np.ndarray]], list[tuple], list[int]]:
    """The per-shard key arrays by column (the image columns and ``at``, the posts'
    global indices, for the posts with an image only), per shard (new cache entries:
    sha256 list and hash list, failures: index -> message, failed post ids: index -> id,
    hashed indices), and the shards' sizes."""
    cols: dict[str, list[np.ndarray]] = {}
    book = []  # per shard: new cache entries, failures, hashed (small)
    sizes: list[int] = []
    offset = 0
    for sid in sids:
        with np.load(work / f"keys-{sid}.npz") as z:
            pos = np.flatnonzero(z["has_image"])
            cols.setdefault("at", []).append(pos + offset)
            for name in ("hash", "valid", "sha", "star"):
                cols.setdefault(name, []).append(z[name][pos])
            for name in ("digest", "counts"):
                cols.setdefault(name, []).append(z[name])
            fi = dict(zip(z["failed_idx"].tolist(), z["failed_msg"].tolist(), strict=True))
            failed_ids = {k: str(z["ids"][k]) for k in fi}
            book.append((z["new_sha"].tolist(), z["new_hash"].tolist(), fi, failed_ids,
                         z["hashed"].tolist()))  # fmt: skip
            sizes.append(len(z["has_image"]))
        offset += sizes[-1]
    return cols, book, sizes


def _hash_figures(
    book: list[tuple],
    offsets: np.ndarray,
    at: np.ndarray,
    sha: np.ndarray,
    star: np.ndarray,
    res: DedupResult,
) -> tuple[dict[str, int], int]:
    """Merge the shards' new cache entries and count images hashed and failed (a file two
    shards hashed counts once) into ``res``; returns (new cache entries, hashed).
    ``sha`` and ``star`` are those of the posts ``at`` (the posts with an image)."""
    new_cache: dict[str, int] = {}
    failed: list[tuple[int, str, str]] = []  # (global index, post id, error)
    hashed = 0
    seen_sha: set[tuple[int, int]] = set()
    failed_sha: set[tuple[int, int]] = set()
    for (new_sha, new_hash, fi, failed_ids, done), off in zip(book, offsets.tolist(), strict=False):
        for sh, h in zip(new_sha, new_hash, strict=True):
            new_cache.setdefault(sh, h)
        where = np.searchsorted(at, off + np.asarray(done, dtype=np.int64)).tolist()
        for k, i in zip(done, where, strict=True):  # one per content in the shard, in order
            key = (int(sha[i, 0]), int(sha[i, 1])) if star[i] else None
            if key is not None and key in seen_sha:
                continue  # an earlier shard hashed the same file: count it once
            if key is not None:
                seen_sha.add(key)
            hashed += 1
            if k in fi and (key is None or key not in failed_sha):
                failed.append((off + k, failed_ids[k], fi[k]))
                if key is not None:
                    failed_sha.add(key)
    res.hashed = hashed - len(failed)
    res.hash_failed = {pid: msg for _, pid, msg in sorted(failed)}
    return new_cache, hashed


def _flag(stats: StageStats, duplicates: dict[str, int], hash_failed: int) -> None:
    for reason in ("duplicate_image", "duplicate_text"):
        if duplicates.get(reason):
            stats.flagged[reason] += duplicates[reason]
    if hash_failed:
        stats.flagged["image_hash_failed"] += hash_failed


def _write_worker_cache(config: PipelineConfig, work: Path) -> None:
    """The sha256 -> hash cache as sorted arrays the workers binary-search."""
    from mmnerd.dedup.keys import HashCache
    from mmnerd.images.index import HashIndex

    path = _cache_path(config)
    cache = HashCache(np.zeros((0, 2), np.uint64), np.zeros(0, np.uint64))
    if path.exists():
        index = HashIndex.load(path)
        if index.kind == config.dedup.hash:
            cache = HashCache.from_ids(index.ids.tolist(), index.hashes)
    tmp = work / ".cache.tmp.npz"
    cache.save(tmp)
    os.replace(tmp, work / "cache.npz")
