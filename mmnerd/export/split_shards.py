"""The split stage's work as executor tasks, with driver memory flat in the corpus size.

Through the runner (:meth:`~mmnerd.export.splits.SplitStage.run_partitioned`) the
stratified assignment of :func:`~mmnerd.export.splits.assign_splits` (the same result, for
every input) works in three phases; the driver never holds ``Post`` objects:

1. *keys* (:func:`keys_task`, one task per input shard, on the executor): read the shard
   and save ``_work/keys-<shard>.npz``: for each post outside a cluster and not pinned
   (``export.fixed_test``), i.e. a group of its own, its position in the shard, the
   sha256 digest of ``"<seed>:<post id>"`` (32 bytes: its visit order inside its stratum)
   and its stratum (an index into the shard's table of languages and entity-type sets);
   for each clustered or pinned post, its position, id, cluster id, language and entity
   types.
2. *assign* (:func:`assign_codes`, the driver): clusters and pinned groups are built in
   memory from the clustered and pinned posts (only those posts are held, ~200 bytes
   each); every other group is one post and is streamed.  The groups to visit are sorted
   by (stratum, digest) with an external sort: sorted runs of at most ``run_records``
   records (52 bytes each: 4-byte stratum rank, 32-byte digest, size, post or cluster)
   written to ``_work/run-<k>.bin``, then a k-way merge, read a block at a time, which
   feeds the greedy (largest shortfall, running counts per language) as it streams.  Each
   post's split goes into one int8 array (1 byte a post: the one thing in the driver that
   grows with the corpus), saved as ``_work/codes.bin``.
3. *write* (:func:`write_task`, one task per output shard, on the executor): read the
   input posts again, set ``Post.split`` and write ``shard-<n>.jsonl`` (the re-sharding of
   any global stage: byte-identical to the in-memory :meth:`SplitStage.run`).

Each phase's files mark it done: a rerun after a crash redoes only what is missing
(``_work/stamp.json`` ties them to the config, the input run and the pinned-ids file's
content).  ``_work`` is removed once every output shard is written.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import shutil
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmnerd.config import PipelineConfig
from mmnerd.io import atomic_write, read_json, write_json
from mmnerd.pipeline import (
    WORK,
    StageContext,
    StageStats,
    open_work,
    read_shard_lines,
    shard_ids,
    shard_pieces,
    stage_dir,
    write_shard,
)
from mmnerd.progress import log_line
from mmnerd.records import SPLITS

from .splits import Item, _check_fixed_found, _pinned_split, load_fixed_test, pick_split, stratum

STAGE = "split"
RUN_RECORDS = 1 << 17
"""Records per sorted run of the external sort (52 bytes each: ~6.5 MiB a run)."""
MERGE_RECORDS = 1 << 16
"""Records the k-way merge holds in its read blocks, over all runs (at least 256 a run)."""
RECORD = np.dtype([("key", "S36"), ("size", "<i8"), ("ref", "<i8")])
"""A group to visit: key = big-endian stratum rank + sha256 digest (sorts as the strata
names, then as :func:`~mmnerd.export.splits._order`'s hex digest); ref = global position of
a one-post group, or ``-1 - k`` for the k-th cluster."""


def _digest(seed: int, key: str) -> bytes:
    """The 32 bytes whose hex is :func:`~mmnerd.export.splits._order` (same order)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def _types_json(labels: Any) -> str:
    return json.dumps(sorted(set(labels)), ensure_ascii=False)


def _stratum_name(lang: str, types: list[str]) -> tuple[str, str]:
    return lang, "+".join(types) or "none"


# ---------------------------------------------------------------------------- phase 1
def keys_task(config: PipelineConfig, input_stage: str, sid: str) -> int:
    """Phase 1 for input shard ``sid`` (runs on the executor): save its keys (module
    docstring); returns its posts."""
    cfg = config.export
    fixed = load_fixed_test(cfg.fixed_test) if cfg.fixed_test else {}
    strata: dict[tuple[str, str], int] = {}  # (language, types as JSON) -> index
    pos, s_idx, digests = array("q"), array("i"), bytearray()
    mem: dict[str, list] = {"m_pos": [], "m_id": [], "m_cluster": [], "m_lang": [], "m_types": []}
    n = 0
    for k, p in enumerate(read_shard_lines(stage_dir(config, input_stage) / f"shard-{sid}.jsonl")):
        n += 1
        types = _types_json(s.label for s in p.spans)
        if p.cluster_id or p.id in fixed:
            for name, v in zip(mem, (k, p.id, p.cluster_id or "", p.lang, types), strict=True):
                mem[name].append(v)
            continue
        pos.append(k)
        s_idx.append(strata.setdefault((p.lang, types), len(strata)))
        digests += _digest(cfg.seed, p.id)
    work = stage_dir(config, STAGE) / WORK
    with atomic_write(work / f"keys-{sid}.npz", "wb", durable=False) as f:
        np.savez(
            f,
            n=np.int64(n),
            pos=np.frombuffer(pos, np.int64) if pos else np.zeros(0, np.int64),
            stratum=np.frombuffer(s_idx, np.int32) if s_idx else np.zeros(0, np.int32),
            digest=np.frombuffer(bytes(digests), np.uint8).reshape(-1, 32),
            s_lang=np.array([s[0] for s in strata], dtype=str),
            s_types=np.array([s[1] for s in strata], dtype=str),
            m_pos=np.array(mem["m_pos"], dtype=np.int64),
            **{k: np.array(v, dtype=str) for k, v in mem.items() if k != "m_pos"},
        )
    return n


# ---------------------------------------------------------------------------- phase 2
class _Members:
    """The posts held in memory (clustered, pinned, and the rare one-post group whose key
    is one of theirs) as flat columns: group key, post id, language and entity-type-set
    codes, global position (~150 bytes a post while grouping)."""

    def __init__(self) -> None:
        self.key: list[str] = []
        self.id: list[str] = []
        self.lang, self.types, self.pos = array("i"), array("i"), array("q")
        self.langs: dict[str, int] = {}
        self.type_sets: dict[str, int] = {}  # sorted labels as JSON -> code

    def add(self, key: str, pid: str, lang: str, types: str, position: int) -> None:
        self.key.append(key)
        self.id.append(pid)
        self.lang.append(self.langs.setdefault(lang, len(self.langs)))
        self.types.append(self.type_sets.setdefault(types, len(self.type_sets)))
        self.pos.append(position)

    def groups(self) -> Iterator[tuple[str, list[Item], list[int]]]:
        """``(key, members by id, their global positions)`` per group, in key order."""
        langs = list(self.langs)
        sets = [frozenset(json.loads(t)) for t in self.type_sets]
        order = sorted(range(len(self.id)), key=self.id.__getitem__)  # by id ...
        order.sort(key=self.key.__getitem__)  # ... inside each group (stable)
        i = 0
        while i < len(order):
            key, j = self.key[order[i]], i
            while j < len(order) and self.key[order[j]] == key:
                j += 1
            ks = order[i:j]
            items = [Item(self.id[k], key, langs[self.lang[k]], sets[self.types[k]]) for k in ks]
            yield key, items, [self.pos[k] for k in ks]
            i = j


def _load_members(work: Path, sids: list[str]) -> tuple[_Members, list[int], set[tuple[str, str]]]:
    """Pass 1 over the keys files: the posts held in memory, the posts per shard and the
    strata names of the streamed posts."""
    members = _Members()
    sizes: list[int] = []
    names: set[tuple[str, str]] = set()
    offset = 0
    for sid in sids:
        with np.load(work / f"keys-{sid}.npz") as z:
            for lang, types in zip(z["s_lang"].tolist(), z["s_types"].tolist(), strict=True):
                names.add(_stratum_name(lang, json.loads(types)))
            cols = [z[c].tolist() for c in ("m_pos", "m_id", "m_cluster", "m_lang", "m_types")]
            for k, pid, cid, lang, types in zip(*cols, strict=True):
                members.add(cid or pid, pid, lang, types, offset + k)
            sizes.append(int(z["n"]))
        offset += sizes[-1]
    return members, sizes, names


def _joiners(
    work: Path, sids: list[str], sizes: list[int], members: _Members, seed: int
) -> dict[str, np.ndarray]:
    """Streamed posts whose id is the key of an in-memory group (a post id equal to a
    cluster id or to a pinned post's id: :func:`assign_splits` groups by that string) join
    it; returns ``{shard: indices into its streamed records}`` to skip."""
    keys = sorted(set(members.key))
    if not keys:
        return {}
    wanted = np.array([_digest(seed, k) for k in keys], dtype="S32")
    by_digest = np.argsort(wanted)
    skip: dict[str, np.ndarray] = {}
    offset = 0
    for sid, n in zip(sids, sizes, strict=True):
        with np.load(work / f"keys-{sid}.npz") as z:
            digest = z["digest"].view("S32").reshape(-1)
            hits = np.flatnonzero(np.isin(digest, wanted))
            if len(hits):
                langs, types = z["s_lang"].tolist(), z["s_types"].tolist()
                for i in hits.tolist():
                    at = by_digest[np.searchsorted(wanted[by_digest], digest[i])]
                    s = int(z["stratum"][i])
                    key = keys[at]
                    members.add(key, key, langs[s], types[s], offset + int(z["pos"][i]))
                skip[sid] = hits
        offset += n
    return skip


def _key_bytes(rank: np.ndarray, digest: np.ndarray) -> np.ndarray:
    """``(m,) S36`` sort keys from ``(m,)`` stratum ranks and ``(m, 32) uint8`` digests."""
    out = np.empty((len(rank), 36), np.uint8)
    out[:, :4] = rank.astype(">u4").view(np.uint8).reshape(-1, 4)
    out[:, 4:] = digest
    return out.view("S36").reshape(-1)


class _Runs:
    """Sorted runs of :data:`RECORD`: records are buffered (``run_records`` at most) and
    each full buffer is sorted by key and written to ``work/run-<k>.bin``."""

    def __init__(self, work: Path, run_records: int):
        self.work = work
        self.buf = np.empty(run_records, RECORD)
        self.fill = 0
        self.paths: list[Path] = []

    def add(self, key: np.ndarray, size: np.ndarray, ref: np.ndarray) -> None:
        lo = 0
        while lo < len(key):
            take = min(len(key) - lo, len(self.buf) - self.fill)
            part = self.buf[self.fill : self.fill + take]
            part["key"], part["size"], part["ref"] = (
                key[lo : lo + take],
                size[lo : lo + take],
                ref[lo : lo + take],
            )
            self.fill += take
            lo += take
            if self.fill == len(self.buf):
                self.flush()

    def flush(self) -> None:
        if self.fill:
            recs = self.buf[: self.fill]
            path = self.work / f"run-{len(self.paths):05d}.bin"
            recs[np.argsort(recs["key"], kind="stable")].tofile(path)
            self.paths.append(path)
            self.fill = 0

    def merged(self, merge_records: int = MERGE_RECORDS) -> Iterator[tuple[bytes, int, int]]:
        """Every record in key order: ``(key, size, ref)`` (the key's trailing zero bytes
        dropped, as numpy gives ``S`` values: the order is unchanged)."""
        self.flush()
        self.buf = np.empty(0, RECORD)
        block = max(256, merge_records // max(1, len(self.paths)))
        return heapq.merge(*(_read_run(p, block) for p in self.paths))


def _read_run(path: Path, block: int) -> Iterator[tuple[bytes, int, int]]:
    with open(path, "rb") as f:
        while data := f.read(block * RECORD.itemsize):
            yield from np.frombuffer(data, RECORD).tolist()


def assign_codes(
    config: PipelineConfig,
    sids: list[str],
    work: Path,
    run_records: int = RUN_RECORDS,
    merge_records: int = MERGE_RECORDS,
) -> dict[str, Any]:
    """Phase 2 (the driver): the split of every post from the keys files (module
    docstring), saved as ``work/codes.bin`` (int8 index into :data:`SPLITS` per post, in
    input order); returns and saves ``work/summary.json`` (posts per shard, flags)."""
    cfg = config.export
    fixed = load_fixed_test(cfg.fixed_test) if cfg.fixed_test else {}
    members, sizes, names = _load_members(work, sids)
    skip = _joiners(work, sids, sizes, members, cfg.seed)
    codes = np.full(sum(sizes), -1, np.int8)
    found: set[str] = set()
    c_name: list[tuple[str, str]] = []  # per cluster (an unpinned in-memory group): stratum
    c_digest = bytearray()  # ... its order digest (32 bytes)
    c_size = array("q")
    c_pos, c_start = array("q"), array("q", [0])  # its posts' positions: c_pos[start:end]
    for key, items, where in members.groups():
        found.update(m.id for m in items if m.id in fixed)
        if split := _pinned_split(items, fixed):
            codes[where] = SPLITS.index(split)
        else:
            c_name.append(stratum(items))
            c_digest += _digest(cfg.seed, key)
            c_size.append(len(items))
            c_pos.extend(where)
            c_start.append(len(c_pos))
    del members
    names.update(c_name)
    ordered = sorted(names)
    rank = {name: r for r, name in enumerate(ordered)}
    runs = _Runs(work, run_records)
    for old in work.glob("run-*.bin"):
        old.unlink()
    offset = 0
    for sid, n in zip(sids, sizes, strict=True):
        with np.load(work / f"keys-{sid}.npz") as z:
            langs, types = z["s_lang"].tolist(), z["s_types"].tolist()
            table = [
                rank[_stratum_name(a, json.loads(b))] for a, b in zip(langs, types, strict=True)
            ]
            s_rank = np.array(table, np.int64)[z["stratum"]]
            digest, pos = z["digest"], z["pos"]
            if sid in skip:
                keep = np.ones(len(pos), bool)
                keep[skip[sid]] = False
                s_rank, digest, pos = s_rank[keep], digest[keep], pos[keep]
            runs.add(_key_bytes(s_rank, digest), np.ones(len(pos), np.int64), offset + pos)
        offset += n
    if c_name:
        c_rank = np.array([rank[name] for name in c_name], np.int64)
        digest = np.frombuffer(bytes(c_digest), np.uint8).reshape(-1, 32)
        runs.add(_key_bytes(c_rank, digest), np.frombuffer(c_size, np.int64),
                 -1 - np.arange(len(c_name)))  # fmt: skip
    del c_name, c_digest, c_size
    positions = np.frombuffer(c_pos, np.int64) if c_pos else np.zeros(0, np.int64)
    counts: dict[str, list[int]] = {}
    lang_of = [name[0] for name in ordered]
    for key, size, ref in runs.merged(merge_records):
        counts_lang = counts.setdefault(lang_of[int.from_bytes(key[:4].ljust(4, b"\0"))], [0, 0, 0])
        k = pick_split(counts_lang, size, cfg.ratios)
        counts_lang[k] += size
        if ref >= 0:
            codes[ref] = k
        else:
            codes[positions[c_start[-1 - ref] : c_start[-ref]]] = k
    for path in runs.paths:
        path.unlink()
    assert not (codes < 0).any(), "a post got no split"
    stats = StageStats(STAGE)
    if fixed:
        _check_fixed_found(
            fixed, dict.fromkeys(found, ""), cfg.fixed_test, StageContext(config, stats)
        )
    summary = {"sizes": sizes, "flagged": dict(stats.flagged)}
    write_json(work / "summary.json", summary)
    with atomic_write(work / "codes.bin", "wb") as f:  # written last: marks phase 2 done
        f.write(codes.tobytes())
    return summary


# ---------------------------------------------------------------------------- phase 3
def write_task(
    config: PipelineConfig, input_stage: str, index: int, pieces: list[tuple[str, int, int, int]]
) -> int:
    """Phase 3 for output shard ``index`` (runs on the executor): ``pieces`` are ``(input
    shard, first, end, global position of first)``; returns the posts written."""
    folder = stage_dir(config, STAGE)
    posts = []
    with open(folder / WORK / "codes.bin", "rb") as codes:
        for sid, lo, hi, start in pieces:
            codes.seek(start)
            chunk = list(
                read_shard_lines(stage_dir(config, input_stage) / f"shard-{sid}.jsonl", lo, hi)
            )
            for p, c in zip(chunk, codes.read(hi - lo), strict=True):
                p.split = SPLITS[c]
            posts += chunk
    write_shard(folder, f"{index:05d}", posts, StageStats(STAGE))
    return len(posts)


# ---------------------------------------------------------------------------- driver
def _fixed_digest(config: PipelineConfig) -> str:
    """sha256 of the pinned-ids file (its content, not only its name, decides the keys)."""
    path = config.export.fixed_test
    if not path or not Path(path).is_file():
        return ""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_partitioned(config: PipelineConfig, stage: Any, executor: Any, folder: Path) -> StageStats:
    """The three phases (module docstring) with ``executor``; returns the stage's stats."""
    input_stage = stage.input
    work = open_work(config, stage, folder, fixed_test=_fixed_digest(config))
    sids = shard_ids(config, input_stage)
    todo = [s for s in sids if not (work / f"keys-{s}.npz").exists()]
    executor.map_tasks(keys_task, [(config, input_stage, s) for s in todo], "split keys")
    summary = read_json(work / "summary.json")
    if summary is None or not (work / "codes.bin").exists():
        t0 = time.perf_counter()
        summary = assign_codes(config, sids, work, RUN_RECORDS, MERGE_RECORDS)
        secs = time.perf_counter() - t0
        log_line(f"split: assigned {sum(summary['sizes'])} posts in {secs:.1f} s")
    sizes = summary["sizes"]
    n = sum(sizes)
    tasks = []
    for index, start in enumerate(range(0, n, config.shard_size)):
        if not (folder / f"shard-{index:05d}.jsonl").exists():
            pieces = shard_pieces(sids, sizes, start, config.shard_size)
            tasks.append((config, input_stage, index, pieces))
    executor.map_tasks(write_task, tasks, "split write")
    shutil.rmtree(work, ignore_errors=True)
    return StageStats(STAGE, items_in=n, items_out=n, flagged=Counter(summary["flagged"]))
