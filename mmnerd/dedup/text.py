"""Text near-duplicates: the normalised text key, word shingles and an exact
set-similarity join over shingle sets.

:func:`text_edges` links posts whose normalised texts are identical (as a star) or whose
word k-shingle sets have an exact Jaccard similarity >= a threshold (prefix filtering,
every candidate verified), in bounded memory, optionally only across groups (splits).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mmnerd.heap import trim

# --------------------------------------------------------------------------- text
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@])@[\w.]+(?:@[\w.-]+)?", re.UNICODE)
_PUNCT: dict[int, str] | None = None


def _punct_table() -> dict[int, str]:
    """``str.translate`` table mapping every Unicode punctuation character (P*) to a space."""
    global _PUNCT
    if _PUNCT is None:
        import unicodedata

        # punctuation outside the BMP (historic scripts) is not worth a 1 s table build
        _PUNCT = {c: " " for c in range(0x10000) if unicodedata.category(chr(c))[0] == "P"}
    return _PUNCT


def _words(text: str, drop: frozenset[str]) -> list[str]:
    """The words of :func:`normalize_text` (``drop`` already casefolded)."""
    if "://" in text or "www." in text.lower():  # the URL pattern needs one of these
        text = _URL_RE.sub(" ", text)
    if "@" in text:
        text = _MENTION_RE.sub(" ", text)
    words = text.casefold().translate(_punct_table()).split()  # split() == re's \s
    return [w for w in words if w not in drop] if drop else words


def _folded(drop: Sequence[str]) -> frozenset[str]:
    return frozenset(d.casefold() for d in drop if d)


def normalize_text(text: str, drop: Sequence[str] = ()) -> str:
    """Text key for duplicates: URLs and @mentions removed, casefolded, punctuation
    (Unicode P*) removed, whitespace collapsed; whole words in ``drop`` (e.g. the
    "URL" placeholder) removed too.  Emoji are kept; "#" goes with the punctuation."""
    return " ".join(_words(text, _folded(drop)))


def shingles(norm_text: str, k: int = 2) -> list[str]:
    """Word ``k``-grams of a normalised text (the whole text if it has fewer words)."""
    words = norm_text.split()
    if len(words) <= k:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + k]) for i in range(len(words) - k + 1)]


def _hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over ``uint64`` (a bijection that spreads every input bit)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shingle_hashes(norm_texts: Sequence[str], k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word ``k``-shingles of each text (as :func:`shingles`: a text
    with fewer than ``k`` words is one shingle), vectorised over word hashes.

    Returns ``hv`` ``(total,) uint64`` grouped by text and ``counts`` ``(n,) int64``.
    """
    return _shingle_hashes([t.split() for t in norm_texts], k, {})


def _shingle_hashes(
    split: Sequence[list[str]], k: int, cache: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shingle_hashes` of texts given as word lists; ``cache`` (word -> hash)
    is filled and may be shared between calls."""
    lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    words = list(chain.from_iterable(split))
    if not words:
        return np.zeros(0, np.uint64), np.zeros(len(split), np.int64)
    for w in dict.fromkeys(words).keys() - cache.keys():
        cache[w] = _hash64(w)
    wh = np.concatenate(
        [
            np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words)),
            np.zeros(k, np.uint64),
        ]
    )
    n_words = len(words)
    doc = np.repeat(np.arange(len(split)), lengths)
    pos = np.arange(n_words) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    left = lengths[doc] - pos  # words from here to the end of the text
    emit = (left >= k) | ((pos == 0) & (lengths[doc] < k))
    idx = np.flatnonzero(emit)
    rng = np.random.default_rng(11)
    mult = rng.integers(1, 2**63, k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    acc = np.zeros(len(idx), dtype=np.uint64)
    for m in range(k):
        use = (m < left[idx]).astype(np.uint64)
        acc += wh[idx + m] * mult[m] * use
    return _mix64(acc), np.bincount(doc[idx], minlength=len(split)).astype(np.int64)


# --------------------------------------------------------------------------- the join
_EPS = 1e-9  # slack on every filter bound, so float rounding can only add candidates
_SCAN_TEXTS = 1 << 14  # texts normalised and shingled per pass (bounds Python lists)
_WORD_CACHE = 1 << 18  # word hashes kept between passes (~40 MB at most)
# the memory plan: bytes per element of each structure (measured peaks, with temporaries)
_TEXT_BYTES = 96  # per text, held through the join: digest, counts, classes, set sizes, offsets
_TABLE_BYTES = 24  # per distinct shared shingle while ranking (hash, count, rank, argsort)
_READ_BYTES = 24  # per shingle of a chunk read from a file and filtered
_FREQ_BYTES = 32  # per shingle selected and sorted in a frequency pass
_SHINGLE_BYTES = 128  # per shingle while ranking and sorting a run of sets
_ENTRY_BYTES = 160  # per prefix entry of a candidate pass (entries, their sort, the ranges)
_PAIR_BYTES = 128  # per candidate pair while generating and filtering
_TOKEN_BYTES = 48  # per shingle gathered for verification
_MAX_PASSES = 256  # passes over a file are capped: a tiny budget costs memory, not hours
# the join's working set beside its per-text arrays: passes and runs are sized to at most
# this (or to what the budget leaves, if less), so below the budget a larger corpus takes
# more passes, not more memory; passes read files partitioned in one read (_Buckets)
_WORK_BYTES = 32 << 20
# runs longer than these are no faster (measured on 1M posts): caches are used better
_RUN_SHINGLES = 1 << 20  # shingles ranked per run
_RUN_PAIRS = 1 << 18  # candidate pairs generated per run
_RUN_TOKENS = 1 << 20  # shingles gathered per verification run
_RUN_READ = 1 << 22  # shingles read from a file per chunk

log = logging.getLogger(__name__)


def _ramp(counts: np.ndarray) -> np.ndarray:
    """``concat([arange(c) for c in counts])`` without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _segments(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concat([values[s : s + c] for s, c in zip(starts, counts)])`` without a loop."""
    return values[np.repeat(starts, counts) + _ramp(counts)]


def _size(room: int, per: int, lo: int, hi: int) -> int:
    """Elements of ``per`` bytes that fit ``room`` bytes, within ``[lo, hi]``."""
    return int(max(lo, min(hi, room // per)))


def _room(memory_bytes: int, held: int) -> int:
    """Bytes a pass may use: what ``memory_bytes`` leaves beside ``held``, at most
    :data:`_WORK_BYTES`."""
    return max(0, min(memory_bytes - held, _WORK_BYTES))


class _Buckets:
    """Records spread over ``n`` files by bucket in one read of their source, so that
    passes over the buckets read each record once however many passes there are;
    records keep their order within a bucket.  Files ``folder/<name>-<b>.bin``; each is
    deleted when :meth:`take` reads it."""

    def __init__(self, folder: Path, name: str, n: int, dtype: np.dtype | type) -> None:
        self.dtype = np.dtype(dtype)
        self.paths = [folder / f"{name}-{b:04d}.bin" for b in range(n)]
        self.files: list[BinaryIO] | None = [open(p, "wb") for p in self.paths]  # noqa: SIM115

    def add(self, bucket: np.ndarray, records: np.ndarray) -> None:
        """Append ``records`` ``(r,)`` to the files of their ``bucket`` ``(r,) int``."""
        assert self.files is not None
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(len(self.files) + 1))
        rec = records[order]
        for b in np.flatnonzero(np.diff(bounds)).tolist():
            rec[bounds[b] : bounds[b + 1]].tofile(self.files[b])

    def close(self) -> None:
        for f in self.files or []:
            f.close()
        self.files = None

    def take(self, b: int) -> np.ndarray:
        """Bucket ``b``'s records (the files are closed first); its file is deleted."""
        self.close()
        out = np.fromfile(self.paths[b], dtype=self.dtype)
        self.paths[b].unlink()
        return out


@dataclass
class Scan:
    """Texts normalised and shingled (:func:`scan_texts`), ready for :func:`join_scanned`.

    ``digest`` ``(n, 2) uint64``: blake2b-128 of each normalised text (zeros when empty);
    ``counts`` ``(n,) int64``: shingles per text (0 = empty normalised text); ``parts``:
    the ``uint64`` shingle hashes grouped by text (repeats kept), in consecutive pieces
    (one per pass or per shard, never concatenated, to spare a copy) whose text counts
    are ``sizes``.  A piece is an array, a raw ``uint64`` file (``Path``) or a ``.npz``
    file whose ``shingles`` member holds it (a dedup keys file): files are read a chunk
    or a shard at a time, so the join never holds every shingle hash.
    """

    digest: np.ndarray
    counts: np.ndarray
    parts: list[np.ndarray | Path]
    sizes: list[int]

    @staticmethod
    def concat(scans: Sequence[Scan]) -> Scan:
        """The scans of consecutive text ranges (e.g. shards) as one."""
        return Scan(
            np.concatenate([s.digest for s in scans] or [np.zeros((0, 2), np.uint64)]),
            np.concatenate([s.counts for s in scans] or [np.zeros(0, np.int64)]),
            [p for s in scans for p in s.parts],
            [z for s in scans for z in s.sizes],
        )

    def release(self) -> None:
        """Drop the per-text arrays (:func:`join_scanned` does, once it has read them,
        so they are not held through the join by whoever made the scan)."""
        self.digest = np.zeros((0, 2), np.uint64)
        self.counts = np.zeros(0, np.int64)


def scan_texts(
    texts: Sequence[str], k: int = 2, drop: Sequence[str] = (), out: BinaryIO | None = None
) -> Scan:
    """Normalise and shingle ``texts`` in passes of :data:`_SCAN_TEXTS` (bounded Python
    lists); the part of :func:`text_edges` that reads the texts, so it can run per shard
    (on executor workers) while the join only sees the arrays.  With ``out`` (a binary
    file) the shingle hashes are written there, in text order, instead of kept in
    ``parts`` (which is then empty)."""
    n = len(texts)
    digest = np.zeros((n, 2), dtype=np.uint64)
    counts = np.zeros(n, dtype=np.int64)
    parts: list[np.ndarray | Path] = []
    sizes: list[int] = []
    zero = bytes(16)
    gone = _folded(drop)
    cache: dict[str, int] = {}  # word hashes, shared by the passes while small
    for lo in range(0, n, _SCAN_TEXTS):
        if len(cache) > _WORD_CACHE:
            cache.clear()
        split = [_words(t, gone) for t in texts[lo : lo + _SCAN_TEXTS]]
        raw = b"".join(
            hashlib.blake2b(" ".join(w).encode("utf-8"), digest_size=16).digest() if w else zero
            for w in split
        )
        digest[lo : lo + len(split)] = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2)
        hv, c = _shingle_hashes(split, k, cache)
        if out is None:
            parts.append(hv)
            sizes.append(len(split))
        else:
            hv.tofile(out)
        counts[lo : lo + len(split)] = c
    return Scan(digest, counts, parts, sizes)


def _scan(
    texts: Sequence[str], k: int, drop: Sequence[str], out: BinaryIO | None = None
) -> tuple[np.ndarray, list[np.ndarray | Path], np.ndarray]:
    """:func:`scan_texts` as ``(digest, parts, counts)`` (kept for the benchmarks' timing)."""
    sc = scan_texts(texts, k, drop, out)
    return sc.digest, sc.parts, sc.counts


def _text_runs(counts: np.ndarray, max_elems: int) -> Iterator[tuple[int, int, int, int]]:
    """Consecutive text ranges ``(d0, d1, e0, e1)`` of about ``max_elems`` elements (at
    least one text each): texts ``d0:d1`` own elements ``e0:e1`` (``counts`` per text)."""
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    yield from _ptr_runs(ptr, max_elems)


def _ptr_runs(ptr: np.ndarray, max_elems: int) -> Iterator[tuple[int, int, int, int]]:
    """:func:`_text_runs` from the offsets ``ptr`` ``(m + 1,)`` (text ``d`` owns elements
    ``ptr[d]:ptr[d + 1]``), with no ``(m,)`` temporary."""
    d0 = 0
    while d0 < len(ptr) - 1:
        e0 = int(ptr[d0])
        d1 = max(d0 + 1, int(np.searchsorted(ptr, e0 + max_elems, side="right")) - 1)
        yield d0, d1, e0, int(ptr[d1])
        d0 = d1


def _read(f: BinaryIO, dtype: type, e0: int, e1: int) -> np.ndarray:
    """Elements ``e0:e1`` of a raw file of ``dtype``."""
    size = np.dtype(dtype).itemsize
    f.seek(e0 * size)
    out = np.fromfile(f, dtype=dtype, count=e1 - e0)
    if len(out) != e1 - e0:
        raise ValueError(f"text_edges: {f.name} is shorter than its counts say")
    return out


def _classes(
    digest: np.ndarray, counts: np.ndarray, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group non-empty texts by (normalised text, label).

    Returns ``rep`` ``(m,)``: each class's first text, ascending (a class's id is its
    position here; ``int32`` below 2**31 texts, as it is held through the join);
    ``copy`` and ``copy_of`` ``(c,) int64``: every other member and its class id, sorted
    by class then text.
    """
    live = np.flatnonzero(counts > 0)
    d0 = digest[live, 0].view(np.int64)
    order = np.argsort(d0, kind="stable")
    s = d0[order]
    del d0
    same = s[1:] == s[:-1]
    in_run = np.zeros(len(s), dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    del s, same
    single = live[order[~in_run]]
    multi = live[order[in_run]]  # texts sharing the first 64 digest bits with another
    del live, order, in_run
    lab = labels[multi] if labels is not None else np.zeros(len(multi), np.int64)
    mo = np.lexsort((multi, lab, digest[multi, 1], digest[multi, 0]))
    ms, ml = multi[mo], lab[mo]
    new = np.ones(len(ms), dtype=bool)
    new[1:] = (
        (digest[ms[1:], 0] != digest[ms[:-1], 0])
        | (digest[ms[1:], 1] != digest[ms[:-1], 1])
        | (ml[1:] != ml[:-1])
    )
    firsts = ms[new]
    rep = np.sort(np.concatenate([single, firsts]))
    class_of_first = np.searchsorted(rep, firsts)
    copy_cls = class_of_first[np.cumsum(new)[~new] - 1]
    copy = ms[~new]
    o = np.lexsort((copy, copy_cls))
    if len(digest) < 2**31:
        rep = rep.astype(np.int32)
    return rep, copy[o], copy_cls[o]


@dataclass
class _Sets:
    """Shingle sets in a global order, rare shingles first.

    A shingle seen once in the whole corpus (a hapax) can never be shared, so it is
    only counted (``nh``); the others are stored as ranks (ascending within a set) in
    CSR form (``ptr``) in the file ``path`` (int32), which candidate passes read.
    ``size`` is the number of distinct shingles of a set and position ``nh[d] + j`` is
    the ``j``-th stored rank's place in set ``d``'s order.  ``hist`` is what a
    candidate pass holds (bytes: each prefix entry, :func:`_prefix`, and its set's
    ranks) per bucket of ``1 << shift`` ranks.
    """

    size: np.ndarray  # (m,) int32
    nh: np.ndarray  # (m,) int32
    ptr: np.ndarray  # (m + 1,) int64
    n_tok: int
    path: Path
    hist: np.ndarray  # (buckets,) int64, bytes
    shift: int


@dataclass
class _Store:
    """The stored ranks of some sets, in memory: sets ``docs`` (ascending), set
    ``docs[i]``'s ranks ``tok[ptr[i]:ptr[i + 1]]``."""

    docs: np.ndarray  # (s,) int64
    ptr: np.ndarray  # (s + 1,) int64
    tok: np.ndarray  # (stored,) int32

    @staticmethod
    def of(docs: np.ndarray, lengths: np.ndarray, tok: np.ndarray) -> _Store:
        ptr = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=ptr[1:])
        return _Store(docs.astype(np.int64), ptr, tok)

    @staticmethod
    def concat(stores: Sequence[_Store]) -> _Store:
        """Stores of ascending, disjoint set ranges as one."""
        return _Store.of(
            np.concatenate([st.docs for st in stores] or [np.zeros(0, np.int64)]),
            np.concatenate([np.diff(st.ptr) for st in stores] or [np.zeros(0, np.int64)]),
            np.concatenate([st.tok for st in stores] or [np.zeros(0, np.int32)]),
        )

    def ranks(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ranks of the sets ``d`` (each in the store) concatenated, and their counts."""
        i = np.searchsorted(self.docs, d)
        n = self.ptr[i + 1] - self.ptr[i]
        return _segments(self.tok, self.ptr[i], n), n


def _spool(
    scan: Scan, keep: np.ndarray, path: Path, max_elems: int
) -> tuple[np.ndarray, np.ndarray]:
    """Write the shingle hashes of the texts where ``keep`` ``(n,) bool`` to the raw file
    ``path``, reading ``scan.parts`` a chunk (or a shard's ``.npz``) at a time.  Returns
    the kept texts' shingle counts and the total."""
    lo = 0
    with open(path, "wb") as out:
        for part, size in zip(scan.parts, scan.sizes, strict=True):
            hi = lo + size
            c = scan.counts[lo:hi]
            if isinstance(part, Path) and part.suffix == ".npz":
                with np.load(part) as z:
                    part = z["shingles"]
            f = open(part, "rb") if isinstance(part, Path) else None  # noqa: SIM115
            try:
                for d0, d1, e0, e1 in _text_runs(c, max_elems):
                    chunk = part[e0:e1] if f is None else _read(f, np.uint64, e0, e1)
                    chunk[np.repeat(keep[lo + d0 : lo + d1], c[d0:d1])].tofile(out)
            finally:
                if f is not None:
                    f.close()
            lo = hi
    kept = scan.counts[keep].astype(np.int64)
    return kept, np.int64(kept.sum())


def _freq_bits(total: int, room: int) -> int:
    """Top bits whose ranges split ``total`` hashes into frequency passes of about
    ``room`` bytes each (``1 << bits`` passes, at most :data:`_MAX_PASSES`)."""
    need = total * _FREQ_BYTES / max(1, room)
    cap = max(0, _MAX_PASSES.bit_length() - 1)
    return min(cap, max(0, math.ceil(math.log2(max(1.0, need)))))


def _frequencies(path: Path, total: int, room: int) -> tuple[np.ndarray, np.ndarray]:
    """The hashes (``int64`` view, ascending) seen more than once in the raw file
    ``path`` (``total`` ``uint64`` hashes) and their counts (``int32``).

    Counted by sorting the hashes in passes over ranges of their top bits, each about
    ``room / _FREQ_BYTES`` of them (at most :data:`_MAX_PASSES` passes): with more than
    one pass the file is first read once into one file per range (:class:`_Buckets`),
    so no sorted copy of all of them is ever held and the file is read once."""
    bits = _freq_bits(total, room)
    read = _size(room // 4, _READ_BYTES, 1 << 16, _RUN_READ)  # a chunk and its bucketing
    kept: list[tuple[np.ndarray, np.ndarray]] = []

    def count(s: np.ndarray) -> None:
        s.sort()
        new = np.ones(len(s), dtype=bool)
        np.not_equal(s[1:], s[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        del new
        freq = np.diff(np.append(starts, len(s)))  # occurrences per distinct hash
        shared = freq > 1  # a hash seen once (a hapax) is never in two sets
        kept.append((s[starts[shared]], freq[shared].astype(np.int32)))

    with open(path, "rb") as f:
        if not bits:
            count(_read(f, np.int64, 0, total))
        else:
            # ranges of the signed top bits, in ascending int64 order: values come out sorted
            buckets = _Buckets(path.parent, "freq", 1 << bits, np.int64)
            try:
                shift, half = np.int64(64 - bits), np.int64(1 << bits >> 1)
                for e0 in range(0, total, read):
                    v = _read(f, np.int64, e0, min(total, e0 + read))
                    buckets.add((v >> shift) + half, v)
                    del v
                for b in range(1 << bits):
                    count(buckets.take(b))
            finally:
                buckets.close()
    values = np.concatenate([v for v, _ in kept] or [np.zeros(0, np.int64)])
    return values, np.concatenate([c for _, c in kept] or [np.zeros(0, np.int32)])


def _order_sets(
    spool: Path, counts: np.ndarray, total: int, t: float, memory_bytes: int, folder: Path
) -> _Sets:
    """Rank the shingle hashes of the raw file ``spool`` (grouped by set, ``counts`` per
    set) rarest first and write each set's sorted ranks to ``folder / "ranks.i32"``.

    Frequencies come from :func:`_frequencies`; the sets are then ranked and sorted in
    runs of texts sized to what ``memory_bytes`` leaves beside the per-text arrays and
    the rank table (the hash and rank of each shingle seen twice or more).
    """
    m = len(counts)
    held = m * _TEXT_BYTES
    values, freq = _frequencies(spool, total, _room(memory_bytes, held))
    n_tok = len(values)
    if n_tok >= 2**31:
        raise ValueError("text_edges: more than 2**31 distinct shared shingles")
    rank = np.empty(n_tok, dtype=np.int32)
    rank[np.argsort(freq, kind="stable")] = np.arange(n_tok, dtype=np.int32)
    del freq
    room = _room(memory_bytes, held + n_tok * _TABLE_BYTES)
    run = _size(room, _SHINGLE_BYTES, 64, _RUN_SHINGLES)
    run = max(run, -(-total // (_MAX_PASSES * 64)))  # a tiny budget: bounded run count
    shift = max(0, (max(n_tok, 1) - 1).bit_length() - 20)  # <= 1M histogram buckets
    hist = np.zeros((max(n_tok - 1, 0) >> shift) + 1, dtype=np.int64)
    nh = np.zeros(m, dtype=np.int32)
    nnz = np.zeros(m, dtype=np.int64)
    tok_path = folder / "ranks.i32"
    with open(spool, "rb") as f, open(tok_path, "wb") as out:
        for d0, d1, h0, h1 in _text_runs(counts, run):
            c = _read(f, np.int64, h0, h1)
            o = np.argsort(c)
            q = c[o]
            pos = np.minimum(np.searchsorted(values, q), max(n_tok - 1, 0))  # sorted queries
            hit = values[pos] == q if n_tok else np.zeros(len(q), dtype=bool)
            tok = np.full(len(c), -1, dtype=np.int64)
            tok[o[hit]] = rank[pos[hit]]
            del c, o, q, pos, hit
            doc = np.repeat(np.arange(d1 - d0, dtype=np.int64), counts[d0:d1])
            h = tok < 0
            nh[d0:d1] = np.bincount(doc[h], minlength=d1 - d0)
            code = doc[~h] * max(n_tok, 1) + tok[~h]
            del doc, tok, h
            code.sort()
            first = np.ones(len(code), dtype=bool)
            np.not_equal(code[1:], code[:-1], out=first[1:])
            code = code[first]  # a shingle repeated in a set counts once
            sdoc = code // max(n_tok, 1)
            here = np.bincount(sdoc, minlength=d1 - d0)
            nnz[d0:d1] = here
            ranks = (code - sdoc * max(n_tok, 1)).astype(np.int32)
            del code, sdoc, first
            ranks.tofile(out)
            # the prefix entries of these sets, counted per bucket of ranks
            per = _stored_prefix(nh[d0:d1] + here, nh[d0:d1], here, t)
            starts = np.cumsum(here) - here
            pre = _segments(ranks, starts, per)
            held = _ENTRY_BYTES + 4 * np.repeat(here, per)  # an entry and its set's ranks
            hist += np.bincount(pre >> shift, held, len(hist)).astype(np.int64)
    del values, rank
    size = nh + nnz
    if size.max(initial=0) >= 2**31:
        raise ValueError("text_edges: more than 2**31 shingles in a text")
    ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(nnz, out=ptr[1:])
    return _Sets(size.astype(np.int32), nh, ptr, max(n_tok, 1), tok_path, hist, shift)


def _prefix(size: np.ndarray, t: float) -> np.ndarray:
    """Prefix length ``|x| - ceil(t |x|) + 1`` (``(m,) int64``, at least 1)."""
    size = np.asarray(size, dtype=np.int64)
    need = np.ceil(t * size - _EPS).astype(np.int64)
    return np.clip(size - need + 1, 1, size)


def _stored_prefix(size: np.ndarray, nh: np.ndarray, stored: np.ndarray, t: float) -> np.ndarray:
    """A set's stored prefix entries: its prefix (:func:`_prefix` of ``size``) less its
    ``nh`` hapaxes, within its ``stored`` ranks (per set, ``int64``).  Computed for a run
    of sets where needed, so the join holds no ``(m,)`` array of them."""
    return np.clip(_prefix(size, t) - nh, 0, stored)


def _rank_passes(sets: _Sets, max_bytes: int) -> list[tuple[int, int]]:
    """Consecutive rank ranges ``[r0, r1)`` whose passes hold about ``max_bytes`` each
    (prefix entries and their sets' ranks; whole histogram buckets; at most about
    :data:`_MAX_PASSES` of them)."""
    cum = np.cumsum(sets.hist)
    total = int(cum[-1]) if len(cum) else 0
    step = max(max_bytes, -(-total // _MAX_PASSES), 1)
    out = []
    b0 = 0
    while b0 < len(cum):
        base = int(cum[b0 - 1]) if b0 else 0
        b1 = max(b0 + 1, int(np.searchsorted(cum, base + step, side="right")))
        out.append((b0 << sets.shift, b1 << sets.shift))
        b0 = b1
    return out


@dataclass
class _Entries:
    """The prefix shingles of the sets in one rank range (``(e,)`` arrays), sorted by
    (label, rank, set size, set): the shingle's rank, its set, the set's size, its
    position in the set."""

    tok: np.ndarray  # int64
    size: np.ndarray  # int32
    doc: np.ndarray  # int32
    pos: np.ndarray  # int32
    key: np.ndarray  # int64: rank * (max size + 1) + size


def _prefix_entries(
    sets: _Sets, t: float, read: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, _Store]]:
    """The stored prefix shingles (:func:`_stored_prefix`; a hapax is never shared) as
    ``(rank, set, position among the set's stored ranks)`` ``int64`` arrays, read from the
    ranks file ``read`` ranks at a time, with the stored ranks of each read's sets that
    have prefix entries: ``(rank, set, position, store)``."""
    with open(sets.path, "rb") as f:
        for d0, d1, e0, e1 in _ptr_runs(sets.ptr, read):
            stored = sets.ptr[d0 + 1 : d1 + 1] - sets.ptr[d0:d1]
            p = _stored_prefix(sets.size[d0:d1], sets.nh[d0:d1], stored, t)
            if not p.any():
                continue
            arr = _read(f, np.int32, e0, e1)
            doc = np.repeat(np.arange(d0, d1, dtype=np.int64), p)
            j = _ramp(p)
            have = np.flatnonzero(p) + d0
            n = stored[have - d0]
            store = _Store.of(have, n, _segments(arr, sets.ptr[have] - e0, n))
            yield arr[sets.ptr[doc] - e0 + j].astype(np.int64), doc, j, store


_ENTRY = np.dtype([("tok", "<i4"), ("doc", "<i4"), ("j", "<i4")])
_SET = np.dtype([("doc", "<i4"), ("n", "<i4")])


def _entry_passes(
    sets: _Sets,
    t: float,
    passes: list[tuple[int, int]],
    labels: np.ndarray | None,
    read: int,
) -> Iterator[tuple[_Entries, _Store]]:
    """The prefix entries of each rank range of ``passes``, sorted (:func:`_entries`),
    with the stored ranks of their sets (what verifying the pass's candidates needs:
    a pair meets at a rank of the pass, so both its sets have entries there).  With more
    than one pass the ranks file is read once into files per range (:class:`_Buckets`,
    next to it: the entries, and each set's ranks once per range it has entries in), so
    more passes cost no more reading and no pass holds more than its own sets."""
    if len(passes) <= 1:
        parts = list(_prefix_entries(sets, t, read))
        cols = [np.concatenate([p[c] for p in parts] or [np.zeros(0, np.int64)]) for c in range(3)]
        store = _Store.concat([p[3] for p in parts])
        del parts
        yield _entries(cols, sets, labels), store  # (not bound here: the caller frees them)
        return
    starts = np.array([r0 for r0, _ in passes], dtype=np.int64)
    folder, n_pass = sets.path.parent, len(passes)
    entries = _Buckets(folder, "entries", n_pass, _ENTRY)
    members = _Buckets(folder, "sets", n_pass, _SET)
    stored = _Buckets(folder, "ranks", n_pass, np.int32)
    try:
        for tok, doc, j, run in _prefix_entries(sets, t, read):
            bucket = np.searchsorted(starts, tok, side="right") - 1
            rec = np.empty(len(tok), dtype=_ENTRY)
            rec["tok"], rec["doc"], rec["j"] = tok, doc, j
            entries.add(bucket, rec)
            key = np.unique(doc * n_pass + bucket)  # each (set, pass) once, by set
            d, b = key // n_pass, key % n_pass
            ranks, n = run.ranks(d)
            rec = np.empty(len(d), dtype=_SET)
            rec["doc"], rec["n"] = d, n
            members.add(b, rec)
            stored.add(np.repeat(b, n), ranks)
            del rec, run
        trim()
        for b in range(n_pass):
            rec = entries.take(b)
            cols = [rec[c].astype(np.int64) for c in ("tok", "doc", "j")]
            rec = members.take(b)
            store = _Store.of(rec["doc"], rec["n"], stored.take(b))
            del rec
            yield _entries(cols, sets, labels), store
    finally:
        for buckets in (entries, members, stored):
            buckets.close()


def _entries(cols: list[np.ndarray], sets: _Sets, labels: np.ndarray | None) -> _Entries:
    """Prefix entries ``cols`` = ``[rank, set, position among its stored ranks]``
    (``int64``; the list is emptied, so the arrays go when this returns) sorted for
    :func:`_ranges`."""
    tok, doc, j = cols
    cols.clear()
    size = sets.size[doc].astype(np.int64)
    key = tok * (int(sets.size.max(initial=0)) + 1) + size
    order = np.argsort(key, kind="stable")  # sets stay in input order within ties
    if labels is not None:
        order = order[np.argsort(labels[doc[order]], kind="stable")]
    pos = sets.nh[doc[order]] + j[order]
    return _Entries(
        tok[order],
        size[order].astype(np.int32),
        doc[order].astype(np.int32),
        pos.astype(np.int32),
        key[order],
    )


def _ranges(
    ent: _Entries, sets: _Sets, t: float, labels: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Candidate ranges as ``(probe, lo, count, index)``: entry ``probe[r]`` pairs with
    entries ``index[lo[r] : lo[r] + count[r]]`` (``index`` None = the entries themselves).

    Self-join (AllPairs): a set probes with its prefix the *index prefix* (:func:`_prefix`
    at ``2t/(1+t)``: ``|y| - ceil(2t/(1+t) |y|) + 1`` shingles) of the sets before it in (size, set)
    order of size >= t |x|.  Cross-only: the entries of each label probe, with the plain
    prefix, the entries of every smaller label of size within [t |x|, |x| / t]; pairs
    inside a label are never enumerated.  Entries pair only within a rank, so a pass
    over a range of ranks finds exactly that range's candidates.
    """
    width = int(sets.size.max(initial=0)) + 1
    minsize = np.maximum(1, np.ceil(t * ent.size - _EPS)).astype(np.int64)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
    if labels is None:
        is_idx = ent.pos < _prefix(ent.size, 2 * t / (1 + t))
        before = np.cumsum(is_idx) - is_idx  # index entries before each entry
        index = np.flatnonzero(is_idx)
        lo = np.searchsorted(ent.key[index], ent.tok * width + minsize, side="left")
        count = np.maximum(before - lo, 0)
        probe = np.flatnonzero(count)
        out.append((probe, lo[probe], count[probe], index))
        return out
    maxsize = np.minimum(np.floor(ent.size / t + _EPS), width - 1).astype(np.int64)
    lab = labels[ent.doc]
    cuts = np.flatnonzero(np.diff(lab)) + 1
    bounds = np.concatenate([[0], cuts, [len(lab)]])
    for b in range(len(bounds) - 2):
        bs, be = int(bounds[b]), int(bounds[b + 1])
        block = ent.key[bs:be]
        q = slice(be, len(lab))
        lo = np.searchsorted(block, ent.tok[q] * width + minsize[q], side="left")
        hi = np.searchsorted(block, ent.tok[q] * width + maxsize[q], side="right")
        count = hi - lo
        probe = np.flatnonzero(count > 0)
        out.append((probe + be, lo[probe] + bs, count[probe], None))
    return out


def _chunks(count: np.ndarray, max_pairs: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split the pairs ``(r, o)``, ``o < count[r]``, into runs of at most ``max_pairs``."""
    cum = np.cumsum(count)
    total = int(cum[-1]) if len(cum) else 0
    start = 0
    while start < total:
        stop = min(total, start + max_pairs)
        r0 = int(np.searchsorted(cum, start, side="right"))
        r1 = int(np.searchsorted(cum, stop - 1, side="right"))
        rows = np.arange(r0, r1 + 1)
        first = cum[rows] - count[rows]
        take = np.minimum(cum[rows], stop) - np.maximum(first, start)
        r = np.repeat(rows, take)
        o = np.arange(start, stop, dtype=np.int64) - np.repeat(first, take)
        yield r, o
        start = stop


def _verify(
    sets: _Sets,
    a: np.ndarray,
    b: np.ndarray,
    w: np.ndarray,
    t: float,
    max_tokens: int,
    store: _Store,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Jaccard of candidate pairs ``(a, b)`` generated at shared rank ``w``; keeps a
    pair only if ``w`` is its rarest shared shingle (so each pair is kept once) and its
    Jaccard is ``>= t``.  The sets' ranks come from ``store`` (the pass's sets); works in
    runs of about ``max_tokens`` gathered ranks."""
    keep_a, keep_b, keep_s = [], [], []

    def stored(d: np.ndarray) -> np.ndarray:  # ranks stored per set (no (m,) temporary)
        return sets.ptr[d + 1] - sets.ptr[d]

    vol = np.cumsum(stored(a) + stored(b))
    start = 0
    while start < len(a):
        base = int(vol[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(vol, base + max_tokens, side="right")))
        ca, cb, cw = a[start:stop], b[start:stop], w[start:stop]
        q = len(ca)
        ta, la = store.ranks(ca)
        tb, lb = store.ranks(cb)
        row = np.arange(q, dtype=np.int64) * sets.n_tok
        code = np.concatenate([np.repeat(row, la) + ta, np.repeat(row, lb) + tb])
        del ta, tb
        code.sort()
        shared = code[1:][code[1:] == code[:-1]]  # each shared shingle once, by pair
        pair = shared // sets.n_tok
        inter = np.bincount(pair, minlength=q)
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        rarest = np.full(q, -1, dtype=np.int64)
        rarest[pair[first]] = shared[first] - pair[first] * sets.n_tok
        size_a = sets.size[ca].astype(np.int64)
        jac = inter / (size_a + sets.size[cb] - inter)
        ok = (rarest == cw) & (jac >= t)
        if ok.any():  # (millions of runs may keep nothing: no empty arrays piled up)
            keep_a.append(ca[ok])
            keep_b.append(cb[ok])
            keep_s.append(jac[ok])
        start = stop
    if not keep_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(keep_a), np.concatenate(keep_b), np.concatenate(keep_s)


def _join(
    sets: _Sets, t: float, labels: np.ndarray | None, memory_bytes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``a < b`` of ``sets`` with Jaccard ``>= t``, and their Jaccard; with
    ``labels`` ``(m,)``, only pairs of unequal labels.

    Candidates are generated in passes over ranges of prefix ranks (each pass holds the
    prefix entries of its ranks and the ranks of their sets, :func:`_entry_passes`),
    enumerated and verified in runs: all sized to what ``memory_bytes`` leaves beside the
    per-text arrays, at most :data:`_WORK_BYTES`."""
    m = len(sets.size)
    room = _room(memory_bytes, m * _TEXT_BYTES)
    # the room, shared by what is alive at once: a pass (its entries and its sets' ranks,
    # a half), the reads, candidate runs and gathered ranks (an eighth each)
    pass_bytes = max(room // 2, 64 * _ENTRY_BYTES)
    read = _size(room // 8, _READ_BYTES, 1 << 12, _RUN_READ)
    max_pairs = _size(room // 8, _PAIR_BYTES, 16, _RUN_PAIRS)
    max_tokens = _size(room // 8, _TOKEN_BYTES, 256, _RUN_TOKENS)
    alpha_f = t / (1 + t)
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ss: list[np.ndarray] = []
    span = int(sets.size.max(initial=0)) + 1
    if sets.n_tok * span >= 2**62:
        raise ValueError("text_edges: too many distinct shingles for one join")
    passes = _rank_passes(sets, pass_bytes)
    for ent, store in _entry_passes(sets, t, passes, labels, read):
        for probe, lo, count, index in _ranges(ent, sets, t, labels):
            # a set's prefix shingles in a row, so the repeats of a pair (one per shared
            # prefix shingle) mostly fall in one run: only the first (rarest) is verified
            by_set = np.argsort(ent.doc[probe].astype(np.int64) * span + ent.pos[probe])
            probe, lo, count = probe[by_set], lo[by_set], count[by_set]
            for r, o in _chunks(count, max_pairs):
                p = probe[r]
                q = lo[r] + o
                if index is not None:
                    q = index[q]
                pair = ent.doc[p].astype(np.int64) * m + ent.doc[q]
                _, first = np.unique(pair, return_index=True)
                p, q = p[first], q[first]
                sp, sq = ent.size[p], ent.size[q]
                # positional filter: if this is the pair's rarest shared shingle, the
                # overlap is at most 1 + the shingles after it in the shorter remainder
                bound = np.minimum(sp - ent.pos[p], sq - ent.pos[q])
                alpha = np.ceil(alpha_f * (sp.astype(np.int64) + sq) - _EPS)
                ok = bound >= alpha
                a, b, s = _verify(
                    sets, ent.doc[q][ok].astype(np.int64), ent.doc[p][ok].astype(np.int64),
                    ent.tok[p][ok], t, max_tokens, store,
                )  # fmt: skip
                if len(a):
                    ii.append(np.minimum(a, b))
                    jj.append(np.maximum(a, b))
                    ss.append(s)
        del ent, store
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(ss)


def join_floor_bytes(n_texts: int) -> int:
    """The text join's floor (bytes) for ``n_texts``: the per-text arrays any budget
    must hold; below it the join runs at its minimum run sizes (a warning says so)."""
    return n_texts * _TEXT_BYTES


@contextmanager
def _folder(parent: str | os.PathLike | None) -> Iterator[Path]:
    """A fresh folder for the join's files, removed afterwards: ``parent/textjoin``
    (what a killed run left there is removed first) or a new temporary folder."""
    if parent is None:
        path = Path(tempfile.mkdtemp(prefix="mmnerd-textjoin-"))
    else:
        path = Path(parent) / "textjoin"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def text_edges(
    texts: Sequence[str],
    threshold: float = 0.8,
    k: int = 2,
    drop: Sequence[str] = (),
    groups: np.ndarray | Sequence[int] | None = None,
    memory_bytes: int = 2 << 30,
    work_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, jaccard)``, ``i < j``, between duplicate texts, found exactly.

    Identical normalised texts (:func:`normalize_text`) are linked as a star to their
    first occurrence (jaccard 1.0); distinct normalised texts are linked, first
    occurrence to first occurrence, when the exact Jaccard similarity of their word
    ``k``-shingle sets (:func:`shingles`, as 64-bit hashes) is ``>= threshold``
    (``0 < threshold <= 1``).  Empty normalised texts never match.

    ``groups`` ``(n,)`` ints (e.g. split ids): return only pairs whose labels differ.
    Texts with the same normalised text *and* label are then represented by their
    first occurrence, and each pair of such classes (a, b) found similar gives the
    edges ``(first a, first b)``, ``(every other a, first b)`` and ``(first a, every
    other b)``: every text with a partner in another group appears in an edge.  Pairs
    inside a group are never enumerated.

    Method: an exact set-similarity join by prefix filtering (AllPairs/PPJoin with
    length and positional filters) over shingle sets in a rare-first global order,
    each candidate verified by an exact intersection.  The shingle hashes and each
    set's ranks live in files under ``work_dir`` (default: a temporary folder), read a
    chunk at a time; ``memory_bytes`` sizes every pass and run (a larger corpus takes
    more passes, never more memory) beyond a floor of ~96 bytes per text
    (:func:`join_floor_bytes`) and, while ranking, ~24 bytes per distinct shingle seen
    twice or more.  The edges returned are the output and are not bounded.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"text_edges: threshold must be in (0, 1], got {threshold}")
    with _folder(work_dir) as folder:
        raw = folder / "scan.u64"
        with open(raw, "wb") as out:
            digest, _, counts = _scan(texts, k, drop, out)  # via _scan: the benchmark times it
        scan = Scan(digest, counts, [raw], [len(texts)])
        del digest, counts  # the join releases the scan's arrays (Scan.release)
        return join_scanned(scan, threshold, groups, memory_bytes, folder)


def join_scanned(
    scan: Scan,
    threshold: float = 0.8,
    groups: np.ndarray | Sequence[int] | None = None,
    memory_bytes: int = 2 << 30,
    work_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`text_edges` from texts already scanned (:func:`scan_texts`, possibly shard by
    shard and :meth:`Scan.concat`-ed, its parts arrays or files): the same edges.  The
    join's files go to ``work_dir / "textjoin"`` (default: a temporary folder).  The scan
    is consumed: its per-text arrays are released (:meth:`Scan.release`) once read."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"text_edges: threshold must be in (0, 1], got {threshold}")
    n = len(scan.counts)
    if memory_bytes < join_floor_bytes(n):
        log.warning(
            "text_edges: a budget of %.2f MiB is below the join's floor for %d texts "
            "(%.2f MiB); running at the minimum pass sizes",
            memory_bytes / 2**20, n, join_floor_bytes(n) / 2**20,
        )  # fmt: skip
    labels = None
    if groups is not None:
        labels = np.asarray(groups).astype(np.int64)
        if labels.shape != (n,):
            raise ValueError(f"text_edges: groups has shape {labels.shape}, expected ({n},)")
    rep, copy, copy_of = _classes(scan.digest, scan.counts, labels)
    trim()  # the classes' temporaries: handed back, not kept in the heap for the join
    rep_labels = None if labels is None else labels[rep]
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ww: list[np.ndarray] = []
    if labels is None and len(copy):
        ii.append(rep[copy_of])
        jj.append(copy)
        ww.append(np.ones(len(copy)))
    first = np.zeros(n, dtype=bool)
    first[rep] = True  # only each class's first text goes on
    room = _room(memory_bytes, n * _TEXT_BYTES)
    with _folder(work_dir) as folder:
        spool = folder / "shingles.u64"
        rep_counts, total = _spool(scan, first, spool, _size(room // 4, _READ_BYTES, 1 << 12,
                                                              _RUN_READ))  # fmt: skip
        del first
        scan.release()
        sets = _order_sets(spool, rep_counts, int(total), threshold, memory_bytes, folder)
        del rep_counts
        spool.unlink()
        trim()
        a, b, s = _join(sets, threshold, rep_labels, memory_bytes)
    ii.append(rep[a])
    jj.append(rep[b])
    ww.append(s)
    if labels is not None and len(copy) and len(a):
        # the other members of each class get an edge to the first member of its partner
        start = np.searchsorted(copy_of, np.arange(len(rep)), side="left")
        ncopy = np.searchsorted(copy_of, np.arange(len(rep)), side="right") - start
        for mine, other in ((a, b), (b, a)):
            take = ncopy[mine]
            members = _segments(copy, start[mine], take)
            partner = np.repeat(rep[other], take)
            ii.append(np.minimum(members, partner))
            jj.append(np.maximum(members, partner))
            ww.append(np.repeat(s, take))
    return (
        np.concatenate(ii).astype(np.int64),
        np.concatenate(jj).astype(np.int64),
        np.concatenate(ww).astype(float),
    )
