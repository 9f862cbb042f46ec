"""Train/dev/test assignment: leakage-free stratified splits, or the source's own.

``export.splits = "stratified"`` (new data): posts are grouped by near-duplicate
cluster (``Post.cluster_id``; a singleton is its own group) so a cluster never
straddles splits.  Groups are stratified by (language, set of entity types present)
and, inside each stratum, visited in an order fixed by the seed and given to the split
furthest below its target share.  The same posts and seed always give the same
assignment.

``export.splits = "source"`` (published corpora): every post keeps the split its
source gave it (``Post.source_split``), so scores stay comparable with the literature;
clusters that straddle splits are reported (``straddling_clusters`` in the stage's
flags and ``<export>/straddling.json``), never moved.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmnerd.config import PipelineConfig
from mmnerd.errors import InputError
from mmnerd.pipeline import Stage, StageContext, StageStats, iter_stage, run_whole
from mmnerd.records import SPLITS, Post


def group_key(post: Post) -> str:
    return post.cluster_id or post.id


@dataclass(frozen=True)
class Item:
    """What the split assignment needs of a post (kept small: one per post in memory)."""

    id: str
    group: str
    lang: str
    types: frozenset[str]

    @classmethod
    def of(cls, post: Post) -> Item:
        return cls(post.id, group_key(post), post.lang, frozenset(s.label for s in post.spans))


def stratum(members: list[Item]) -> tuple[str, str]:
    """(majority language, sorted entity types present) of a group."""
    lang = Counter(m.lang for m in members).most_common(1)[0][0]
    return lang, "+".join(sorted(set().union(*(m.types for m in members)))) or "none"


def _order(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _pinned_split(members: list[Item], fixed: dict[str, str]) -> str:
    """The split of a group touching a pinned post (test wins on conflict), else ""."""
    pinned = {fixed[m.id] for m in members if m.id in fixed}
    if not pinned:
        return ""
    return "test" if "test" in pinned else sorted(pinned)[0]


def pick_split(counts: list[int], size: int, ratios: tuple[float, float, float]) -> int:
    """The split (index into :data:`SPLITS`) with the largest shortfall against its target
    share after adding a group of ``size`` posts to ``counts`` (posts per split so far);
    ties go to the first split."""
    total = sum(counts) + size
    return max(range(3), key=lambda sp: (ratios[sp] * total - counts[sp], -sp))


def assign_splits(
    posts: Iterable[Post | Item],
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 13,
    fixed: dict[str, str] | None = None,
) -> dict[str, str]:
    """Return {post id: split}.  ``fixed`` pins groups (by any member's id) to a split,
    e.g. to keep an earlier test set unchanged while new data arrives."""
    fixed = fixed or {}
    items = sorted((p if isinstance(p, Item) else Item.of(p) for p in posts), key=lambda i: i.id)
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:  # sorted: input order must not matter
        groups[item.group].append(item)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    assignment: dict[str, str] = {}
    for key, members in groups.items():
        if split := _pinned_split(members, fixed):
            for m in members:
                assignment[m.id] = split
        else:
            strata[stratum(members)].append(key)
    # Strata of one language are visited one after another with running counts over the
    # language, so each language hits its ratios within one group, and so does each stratum
    # within a few groups (rounding errors do not pile up in train).
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for s in sorted(strata):
        keys = sorted(strata[s], key=lambda k: _order(seed, k))
        counts_lang = counts[s[0]]
        for key in keys:
            size = len(groups[key])
            total = sum(counts_lang.values()) + size
            # the split with the largest shortfall against its target after adding this group
            split = max(
                SPLITS,
                key=lambda sp: (
                    ratios[SPLITS.index(sp)] * total - counts_lang[sp],
                    -SPLITS.index(sp),
                ),
            )
            counts_lang[split] += size
            for m in groups[key]:
                assignment[m.id] = split
    return assignment


class SplitKeys:
    """What :func:`assign_splits` needs of each post, as compact arrays (~20 bytes a post:
    the UTF-8 id, a language code, an entity-type bit mask; cluster ids only for posts in
    a cluster), filled by :meth:`add` in stream order."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._batch: list[bytes] = []
        self.lang = array("h")  # code into self.langs
        self.types = array("q")  # bit mask over self.labels
        self.clustered: dict[int, str] = {}  # stream index -> cluster id
        self.langs: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.n = 0

    def add(self, post: Post) -> None:
        self._batch.append(post.id.encode("utf-8"))
        if len(self._batch) >= 1 << 16:
            self._flush()
        self.lang.append(self.langs.setdefault(post.lang, len(self.langs)))
        mask = 0
        for s in post.spans:
            mask |= 1 << self.labels.setdefault(s.label, len(self.labels))
        self.types.append(mask)
        if post.cluster_id:
            self.clustered[self.n] = post.cluster_id
        self.n += 1

    def _flush(self) -> None:
        if self._batch:
            self._ids.append(np.array(self._batch, dtype=bytes))
            self._batch = []

    def ids(self) -> np.ndarray:
        """``(n,)`` UTF-8 ids (bytes order = code point order, as ``str`` sorts)."""
        self._flush()
        if not self._ids:
            return np.zeros(0, dtype="S1")
        width = max(a.dtype.itemsize for a in self._ids)
        self._ids = [np.concatenate([a.astype(f"S{width}") for a in self._ids])]
        return self._ids[0]


def _order_words(seed: int, keys: Iterable[str], n: int) -> np.ndarray:
    """``(n,) uint64``: the first 8 bytes (big-endian) of :func:`_order`'s sha256 per key,
    which sort as the hex digests do, ties aside (see :func:`_visit_order`)."""
    buf = bytearray(8 * n)
    for k, key in enumerate(keys):
        buf[8 * k : 8 * k + 8] = hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8]
    return np.frombuffer(buf, dtype=">u8").astype(np.uint64)


def _chunked(a: np.ndarray, size: int = 1 << 16) -> Iterator[int]:
    """The items of ``a`` as Python ints, converted a chunk at a time (a list of n ints
    costs ~36 bytes each)."""
    for lo in range(0, len(a), size):
        yield from a[lo : lo + size].tolist()


def assign_split_codes(
    keys: SplitKeys,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 13,
    fixed: dict[str, str] | None = None,
) -> np.ndarray:
    """:func:`assign_splits` over :class:`SplitKeys`: ``(n,) int8`` index into
    :data:`SPLITS` per post, in stream order; the same assignment, in arrays (a Python loop
    over clusters and pinned groups only, and the one sequential pass over the groups)."""
    fixed = fixed or {}
    n = keys.n
    ids = keys.ids()
    idx = np.int32 if n < 2**31 - 1 else np.int64
    # group of each post: itself, or its cluster (numbered n + k)
    group = np.arange(n, dtype=np.int64)
    cluster_no: dict[str, int] = {}
    for i, cid in keys.clustered.items():
        group[i] = n + cluster_no.setdefault(cid, len(cluster_no))
    if cluster_no:  # a post whose id is a cluster id is in that group (grouped by key)
        named = np.flatnonzero(np.isin(ids, [c.encode("utf-8") for c in cluster_no]))
        for i in named.tolist():
            if i not in keys.clustered:
                group[i] = n + cluster_no[ids[i].decode("utf-8")]
    order = np.argsort(ids, kind="stable").astype(idx)  # by id: input order must not matter
    g_sorted = group[order]
    del group
    _, first_pos, inv = np.unique(g_sorted, return_index=True, return_inverse=True)
    del g_sorted
    rank = np.empty(len(first_pos), idx)  # groups in order of their first member by id
    rank[np.argsort(first_pos, kind="stable")] = np.arange(len(first_pos), dtype=idx)
    del first_pos
    gidx = rank[inv].astype(idx)  # (n,) group number of each post in id order
    n_groups = len(rank)
    del inv, rank
    members = np.argsort(gidx, kind="stable").astype(idx)
    starts = np.searchsorted(gidx[members], np.arange(n_groups + 1)).astype(idx)
    del gidx
    by_group = order[members]  # stream indices, grouped by group, id order inside
    del order, members
    sizes = np.diff(starts).astype(np.int32)
    first = by_group[starts[:-1]]  # (n_groups,) first member by id
    lang = np.frombuffer(keys.lang, dtype=np.int16) if n else np.zeros(0, np.int16)
    types = np.frombuffer(keys.types, dtype=np.int64) if n else np.zeros(0, np.int64)
    g_lang = lang[first].astype(np.int64)
    g_mask = types[first].copy()
    for g in np.flatnonzero(sizes > 1).tolist():  # clusters: majority language, all types
        post = by_group[starts[g] : starts[g + 1]]
        g_lang[g] = Counter(lang[post].tolist()).most_common(1)[0][0]
        g_mask[g] = np.bitwise_or.reduce(types[post])
    g_split = np.full(n_groups, -1, dtype=np.int8)
    if fixed:
        pinned_posts = np.flatnonzero(np.isin(ids, [f.encode("utf-8") for f in fixed]))
        g_of_post = np.empty(n, idx)
        g_of_post[by_group] = np.repeat(np.arange(n_groups, dtype=idx), sizes)
        for g in np.unique(g_of_post[pinned_posts]).tolist():
            post = by_group[starts[g] : starts[g + 1]]
            pinned = {fixed[i] for i in (ids[k].decode("utf-8") for k in post) if i in fixed}
            # a group touching a pinned post goes where the pin says (test wins on conflict)
            g_split[g] = SPLITS.index("test" if "test" in pinned else sorted(pinned)[0])
        del g_of_post
    # strata: (language name, entity types present), visited in name order
    n_labels = len(keys.labels)
    if n_labels > 47:
        raise InputError(f"{n_labels} entity labels in the split's input: at most 47 are supported")
    combos, s_of_g = np.unique(g_lang << n_labels | g_mask, return_inverse=True)
    del g_mask
    g_lang = g_lang.astype(np.int16)
    lang_names = {v: k for k, v in keys.langs.items()}
    label_names = {v: k for k, v in keys.labels.items()}
    names = []
    for c in combos.tolist():
        present = sorted(label_names[b] for b in label_names if c >> b & 1)
        names.append((lang_names[c >> n_labels], "+".join(present) or "none"))
    s_rank = np.empty(len(names), np.int32)
    s_rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    s_of_g = s_rank[s_of_g.reshape(-1)].astype(np.int32)

    # a group's key: its cluster id (every member has it), else its one post's id
    def key_of(f: int) -> str:
        return keys.clustered.get(f) or ids[f].decode("utf-8")

    words = _order_words(seed, (key_of(f) for f in _chunked(first)), n_groups)
    free = np.flatnonzero(g_split < 0).astype(idx)
    visit = free[np.lexsort((words[free], s_of_g[free]))]
    del free
    _break_ties(visit, words, s_of_g, lambda g: _order(seed, key_of(int(first[g]))))
    del words, s_of_g
    counts: dict[int, list[int]] = {}
    g_lang_l = g_lang.tolist()  # small ints: 8 bytes a group
    sizes_l = sizes.tolist()
    for g in _chunked(visit):
        counts_lang = counts.setdefault(g_lang_l[g], [0, 0, 0])
        size = sizes_l[g]
        k = pick_split(counts_lang, size, ratios)
        counts_lang[k] += size
        g_split[g] = k
    code = np.empty(n, dtype=np.int8)
    code[by_group] = np.repeat(g_split, sizes)
    return code


def _break_ties(
    visit: np.ndarray, words: np.ndarray, stratum: np.ndarray, full: Callable[[int], str]
) -> None:
    """Re-sort, in place, the runs of ``visit`` whose stratum and first digest word are
    equal by the full hex digest ``full(g)`` (stable, as ``sorted`` over all groups is)."""
    w, st = words[visit], stratum[visit]
    same = np.flatnonzero((w[1:] == w[:-1]) & (st[1:] == st[:-1]))
    for i in same.tolist():  # rare: 64-bit prefix collisions
        j = i
        while j + 1 < len(visit) and w[j + 1] == w[i] and st[j + 1] == st[i]:
            j += 1
        visit[i : j + 1] = sorted(visit[i : j + 1].tolist(), key=full)


def label_stage(config: PipelineConfig) -> str:
    """The stage whose output holds the final labels: ``pull`` (Label Studio) or ``gold``
    (the source's own labels, ``export.labels = "source"``)."""
    return "gold" if config.export.labels == "source" else "pull"


class SplitStage(Stage):
    """Give every labelled post its split (stored in ``Post.split``)."""

    name = "split"
    input = "pull"
    scope = "global"
    config_sections = ("export",)

    def __init__(self, config: PipelineConfig | None = None):
        if config is not None:
            self.input = label_stage(config)

    def run_partitioned(self, config: PipelineConfig, executor: Any, folder: Path) -> StageStats:
        """Through the runner: keys per input shard and output shards as ``executor``
        tasks, the assignment in the driver with memory flat in the corpus size
        (:mod:`mmnerd.export.split_shards`); ``export.splits = "source"`` streams as
        :meth:`run` does."""
        if config.export.splits == "source":
            return run_whole(config, self, folder)
        from mmnerd.export.split_shards import run_partitioned

        return run_partitioned(config, self, executor, folder)

    def run(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        """In memory (compact keys, then a second pass over the input): for direct use."""
        cfg = ctx.config.export
        if cfg.splits == "source":
            yield from self._source_splits(records, ctx)
            return
        fixed = load_fixed_test(cfg.fixed_test) if cfg.fixed_test else None
        # two passes over the input: compact keys first, then the posts, so memory stays flat
        keys = SplitKeys()
        for p in records:
            keys.add(p)
        codes = assign_split_codes(keys, cfg.ratios, cfg.seed, fixed)
        if fixed:
            present = set(
                np.char.decode(
                    keys.ids()[np.isin(keys.ids(), [f.encode() for f in fixed])]
                ).tolist()
            )
            _check_fixed_found(fixed, dict.fromkeys(present, ""), cfg.fixed_test, ctx)
        del keys
        for k, p in enumerate(iter_stage(ctx.config, self.input or "")):
            p.split = SPLITS[codes[k]]
            yield p

    def _source_splits(self, records: Iterable[Post], ctx: StageContext) -> Iterator[Post]:
        """Keep each post's published split; record clusters that straddle splits."""
        from mmnerd.io import write_json

        clusters: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for p in records:
            if p.source_split not in SPLITS:
                raise InputError(
                    f"post {p.id}: no source split ({p.source_split or 'none'!r}); "
                    "export.splits = 'source' needs a source that publishes train/dev/test "
                    "(e.g. an IMGID corpus), else use export.splits = 'stratified'"
                )
            p.split = p.source_split
            if p.cluster_id:
                clusters[p.cluster_id][p.split].append(p.id)
            yield p
        straddling = {
            cid: {s: ids for s, ids in by.items()} for cid, by in clusters.items() if len(by) > 1
        }
        if straddling:
            ctx.flag("straddling_clusters", len(straddling))
            n_posts = sum(len(ids) for by in straddling.values() for ids in by.values())
            ctx.flag("posts_in_straddling_clusters", n_posts)
        write_json(
            ctx.config.export_dir / "straddling.json",
            {"splits": "source", "clusters": len(straddling), "straddling": straddling},
        )


def _check_fixed_found(
    fixed: dict[str, str], assignment: dict[str, str], path: str, ctx: StageContext
) -> None:
    """Pinned ids missing from this corpus are never silent: none found is an error (a
    wrong file?); some missing are counted (``fixed_test_missing``) and warned about."""
    import sys

    from mmnerd.errors import ConfigError

    missing = sorted(i for i in fixed if i not in assignment)
    if not missing:
        return
    if len(missing) == len(fixed):
        raise ConfigError(
            f"field 'export.fixed_test': none of the {len(fixed)} ids in {path} is a post "
            f"of this corpus (e.g. {missing[0][:80]!r}); is it the right file?"
        )
    ctx.flag("fixed_test_missing", len(missing))
    print(
        f"warning: {len(missing)} of {len(fixed)} export.fixed_test ids are not in this "
        f"corpus (e.g. {', '.join(repr(m[:80]) for m in missing[:3])}); the fixed test set "
        f"is smaller than before",
        file=sys.stderr,
    )


def load_fixed_test(path: str) -> dict[str, str]:
    """Read a file of post ids (one per line, or a test.parquet) to pin to the test split."""
    from mmnerd.errors import ConfigError

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"field 'export.fixed_test': {path} does not exist")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        ids = pq.read_table(p, columns=["id"]).column("id").to_pylist()
    else:
        ids = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    if not any(ids):
        raise ConfigError(f"field 'export.fixed_test': {path} holds no post ids")
    return {i: "test" for i in ids if i}
