"""Text near-duplicates: the normalised text key, word shingles and an exact
set-similarity join over shingle sets.

:func:`text_edges` links posts whose normalised texts are identical (as a star) or whose
word k-shingle sets have an exact Jaccard similarity >= a threshold (prefix filtering,
every candidate verified), in bounded memory, optionally only across groups (splits).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

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
_PAIR_BYTES = 128  # working memory per candidate pair while generating and filtering
_TOKEN_BYTES = 48  # working memory per shingle gathered for verification
_SHINGLE_BYTES = 128  # working memory per shingle while ranking and sorting a run of sets
# runs longer than these are no faster (measured on 1M posts): caches are used better
_RUN_SHINGLES = 1 << 20  # shingles ranked per run
_RUN_PAIRS = 1 << 18  # candidate pairs generated per run
_RUN_TOKENS = 1 << 20  # shingles gathered per verification run


def _ramp(counts: np.ndarray) -> np.ndarray:
    """``concat([arange(c) for c in counts])`` without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


@dataclass
class Scan:
    """Texts normalised and shingled (:func:`scan_texts`), ready for :func:`join_scanned`.

    ``digest`` ``(n, 2) uint64``: blake2b-128 of each normalised text (zeros when empty);
    ``counts`` ``(n,) int64``: shingles per text (0 = empty normalised text); ``parts``:
    the ``uint64`` shingle hashes grouped by text (repeats kept), in consecutive pieces
    (one per pass or per shard, never concatenated, to spare a copy) whose text counts
    are ``sizes``.
    """

    digest: np.ndarray
    counts: np.ndarray
    parts: list[np.ndarray]
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


def scan_texts(texts: Sequence[str], k: int = 2, drop: Sequence[str] = ()) -> Scan:
    """Normalise and shingle ``texts`` in passes of :data:`_SCAN_TEXTS` (bounded Python
    lists); the part of :func:`text_edges` that reads the texts, so it can run per shard
    (on executor workers) while the join only sees the arrays."""
    n = len(texts)
    digest = np.zeros((n, 2), dtype=np.uint64)
    counts = np.zeros(n, dtype=np.int64)
    parts: list[np.ndarray] = []
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
        parts.append(hv)
        sizes.append(len(split))
        counts[lo : lo + len(split)] = c
    return Scan(digest, counts, parts, sizes)


def _scan(
    texts: Sequence[str], k: int, drop: Sequence[str]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """:func:`scan_texts` as ``(digest, parts, counts)`` (kept for the benchmarks' timing)."""
    sc = scan_texts(texts, k, drop)
    return sc.digest, sc.parts, sc.counts


def _run(parts: list[np.ndarray], ends: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Elements ``lo:hi`` of ``concatenate(parts)`` (``ends``: cumulative part lengths)."""
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(ends, hi - 1, side="right")) if hi > lo else first
    pieces = []
    for p in range(first, min(last, len(parts) - 1) + 1):
        start = int(ends[p]) - len(parts[p])
        pieces.append(parts[p][max(lo, start) - start : min(hi, int(ends[p])) - start])
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces or [np.zeros(0, np.uint64)])


def _classes(
    digest: np.ndarray, counts: np.ndarray, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group non-empty texts by (normalised text, label).

    Returns ``rep`` ``(m,) int64``: each class's first text, ascending (a class's id is
    its position here); ``copy`` and ``copy_of`` ``(c,) int64``: every other member and
    its class id, sorted by class then text.
    """
    live = np.flatnonzero(counts > 0)
    d0 = digest[live, 0].view(np.int64)
    order = np.argsort(d0, kind="stable")
    s = d0[order]
    same = s[1:] == s[:-1]
    in_run = np.zeros(len(s), dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    single = live[order[~in_run]]
    multi = live[order[in_run]]  # texts sharing the first 64 digest bits with another
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
    return rep, copy[o], copy_cls[o]


@dataclass
class _Sets:
    """Shingle sets in a global order, rare shingles first.

    A shingle seen once in the whole corpus (a hapax) can never be shared, so it is
    only counted (``nh``); the others are stored as ranks ``tok`` (ascending within a
    set) in CSR form (``ptr``).  ``size`` is the number of distinct shingles of a set
    and position ``nh[d] + j`` is the ``j``-th stored rank's place in set ``d``'s order.
    """

    size: np.ndarray  # (m,) int64
    nh: np.ndarray  # (m,) int64
    ptr: np.ndarray  # (m + 1,) int64
    tok: np.ndarray  # (stored,) int32 or int64, ranks in [0, n_tok)
    n_tok: int


def _order_sets(parts: list[np.ndarray], counts: np.ndarray, max_shingles: int) -> _Sets:
    """Rank shingle hashes (``concatenate(parts)``, grouped by set, ``counts`` per set)
    rarest first.

    Frequencies come from sorting the hashes in passes over ranges of their top bits
    (about ``max_shingles`` per pass, so no sorted copy of all of them is ever held);
    the sets are then ranked and sorted in runs of about ``max_shingles``.
    """
    m = len(counts)
    total = sum(len(p) for p in parts)
    bits = max(0, math.ceil(math.log2(max(1, total / max(1, max_shingles)))))
    shift = np.int64(64 - bits) if bits else None
    kept_values: list[np.ndarray] = []
    kept_freq: list[np.ndarray] = []
    # ranges of the signed top bits, in ascending int64 order: the values come out sorted
    for top in range(-(1 << bits >> 1), (1 << bits) - (1 << bits >> 1)) if bits else [0]:
        if shift is None:
            sel = [p.view(np.int64) for p in parts]
        else:
            sel = [p.view(np.int64)[(p.view(np.int64) >> shift) == top] for p in parts]
        s = np.concatenate(sel or [np.zeros(0, np.int64)])
        del sel
        s.sort()
        new = np.ones(len(s), dtype=bool)
        np.not_equal(s[1:], s[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        del new
        freq = np.diff(np.append(starts, len(s)))  # occurrences per distinct hash
        shared = freq > 1  # a hash seen once (a hapax) is never in two sets
        kept_values.append(s[starts[shared]])
        kept_freq.append(freq[shared])
        del s, starts, shared, freq
    values = np.concatenate(kept_values)
    freq = np.concatenate(kept_freq)
    del kept_values, kept_freq
    n_tok = len(values)
    dtype = np.int32 if n_tok < 2**31 else np.int64
    rank = np.empty(n_tok, dtype=dtype)
    rank[np.argsort(freq, kind="stable")] = np.arange(n_tok, dtype=dtype)
    del freq
    part_ends = np.cumsum([len(p) for p in parts])
    ends = np.cumsum(counts)
    nh = np.zeros(m, dtype=np.int64)
    nnz = np.zeros(m, dtype=np.int64)
    out: list[np.ndarray] = []
    d0 = 0
    while d0 < m:
        h0 = int(ends[d0] - counts[d0])
        d1 = max(d0 + 1, int(np.searchsorted(ends, h0 + max_shingles, side="right")))
        c = _run(parts, part_ends, h0, int(ends[d1 - 1])).view(np.int64)
        o = np.argsort(c)
        q = c[o]
        pos = np.minimum(np.searchsorted(values, q), max(n_tok - 1, 0))  # sorted queries
        hit = values[pos] == q if n_tok else np.zeros(len(q), dtype=bool)
        tok = np.full(len(c), -1, dtype=np.int64)
        tok[o[hit]] = rank[pos[hit]]
        del o, q, pos, hit
        doc = np.repeat(np.arange(d1 - d0, dtype=np.int64), counts[d0:d1])
        h = tok < 0
        nh[d0:d1] = np.bincount(doc[h], minlength=d1 - d0)
        code = doc[~h] * n_tok + tok[~h]
        del doc, tok, h
        code.sort()
        first = np.ones(len(code), dtype=bool)
        np.not_equal(code[1:], code[:-1], out=first[1:])
        code = code[first]  # a shingle repeated in a set counts once
        sdoc = code // max(n_tok, 1)
        nnz[d0:d1] = np.bincount(sdoc, minlength=d1 - d0)
        out.append((code - sdoc * n_tok).astype(dtype))
        d0 = d1
    ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(nnz, out=ptr[1:])
    stored = np.concatenate(out) if out else np.zeros(0, dtype)
    return _Sets(nh + nnz, nh, ptr, stored, max(n_tok, 1))


def _prefix(size: np.ndarray, t: float) -> np.ndarray:
    """Prefix length ``|x| - ceil(t |x|) + 1`` (``(m,) int64``, at least 1)."""
    need = np.ceil(t * size - _EPS).astype(np.int64)
    return np.clip(size - need + 1, 1, size)


@dataclass
class _Entries:
    """The prefix shingles of every set (``(e,)`` arrays), sorted by (label, rank, set
    size, set): the shingle's rank, its set, the set's size, its position in the set."""

    tok: np.ndarray  # int64
    size: np.ndarray  # int32
    doc: np.ndarray  # int32
    pos: np.ndarray  # int32
    key: np.ndarray  # int64: rank * (max size + 1) + size


def _entries(sets: _Sets, t: float, labels: np.ndarray | None) -> _Entries:
    """Each set's first ``|x| - ceil(t |x|) + 1`` shingles (stored ones only: a hapax
    is never shared), sorted for :func:`_ranges`."""
    if len(sets.size) >= 2**31 or sets.size.max(initial=0) >= 2**31:
        raise ValueError("text_edges: more than 2**31 texts or shingles in a text")
    probe = _prefix(sets.size, t)
    stored = np.diff(sets.ptr)
    per = np.clip(probe - sets.nh, 0, stored)  # stored shingles inside the prefix
    doc = np.repeat(np.arange(len(per), dtype=np.int64), per)
    j = _ramp(per)
    tok = sets.tok[sets.ptr[doc] + j].astype(np.int64)
    size = sets.size[doc]
    span = int(sets.size.max(initial=0)) + 1
    if sets.n_tok * span >= 2**62:
        raise ValueError("text_edges: too many distinct shingles for one join")
    key = tok * span + size
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

    Self-join (AllPairs): a set probes with its prefix the *index prefix* (``|y| -
    ceil(2t/(1+t) |y|) + 1`` shingles) of the sets before it in (size, set) order of
    size >= t |x|.  Cross-only: the entries of each label probe, with the plain prefix,
    the entries of every smaller label of size within [t |x|, |x| / t]; pairs inside a
    label are never enumerated.
    """
    width = int(sets.size.max(initial=0)) + 1
    minsize = np.maximum(1, np.ceil(t * ent.size - _EPS)).astype(np.int64)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
    if labels is None:
        idx_len = _prefix(sets.size, 2 * t / (1 + t))
        is_idx = ent.pos < idx_len[ent.doc]
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
    sets: _Sets, a: np.ndarray, b: np.ndarray, w: np.ndarray, t: float, max_tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Jaccard of candidate pairs ``(a, b)`` generated at shared rank ``w``; keeps a
    pair only if ``w`` is its rarest shared shingle (so each pair is kept once) and its
    Jaccard is ``>= t``.  Works in runs of about ``max_tokens`` gathered shingles."""
    keep_a, keep_b, keep_s = [], [], []
    nnz = np.diff(sets.ptr)
    vol = np.cumsum(nnz[a] + nnz[b])
    start = 0
    while start < len(a):
        base = int(vol[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(vol, base + max_tokens, side="right")))
        ca, cb, cw = a[start:stop], b[start:stop], w[start:stop]
        q = len(ca)
        la, lb = nnz[ca], nnz[cb]
        row = np.arange(q, dtype=np.int64) * sets.n_tok
        code = np.concatenate(
            [
                np.repeat(row, la) + sets.tok[np.repeat(sets.ptr[ca], la) + _ramp(la)],
                np.repeat(row, lb) + sets.tok[np.repeat(sets.ptr[cb], lb) + _ramp(lb)],
            ]
        )
        code.sort()
        shared = code[1:][code[1:] == code[:-1]]  # each shared shingle once, by pair
        pair = shared // sets.n_tok
        inter = np.bincount(pair, minlength=q)
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        rarest = np.full(q, -1, dtype=np.int64)
        rarest[pair[first]] = shared[first] - pair[first] * sets.n_tok
        jac = inter / (sets.size[ca] + sets.size[cb] - inter)
        ok = (rarest == cw) & (jac >= t)
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
    ``labels`` ``(m,)``, only pairs of unequal labels.  Candidates are generated and
    verified in runs sized to ``memory_bytes``."""
    ent = _entries(sets, t, labels)
    max_pairs = max(16, min(_RUN_PAIRS, memory_bytes // (2 * _PAIR_BYTES)))
    max_tokens = max(256, min(_RUN_TOKENS, memory_bytes // (2 * _TOKEN_BYTES)))
    alpha_f = t / (1 + t)
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ss: list[np.ndarray] = []
    m, span = len(sets.size), int(sets.size.max(initial=0)) + 1
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
            _, first = np.unique(ent.doc[p].astype(np.int64) * m + ent.doc[q], return_index=True)
            p, q = p[first], q[first]
            sp, sq = ent.size[p], ent.size[q]
            # positional filter: if this is the pair's rarest shared shingle, the overlap
            # is at most 1 + the shingles after it in the shorter remainder
            bound = np.minimum(sp - ent.pos[p], sq - ent.pos[q])
            alpha = np.ceil(alpha_f * (sp + sq) - _EPS)
            ok = bound >= alpha
            a, b, s = _verify(sets, ent.doc[q][ok], ent.doc[p][ok], ent.tok[p][ok], t, max_tokens)
            ii.append(np.minimum(a, b))
            jj.append(np.maximum(a, b))
            ss.append(s)
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(ss)


def text_edges(
    texts: Sequence[str],
    threshold: float = 0.8,
    k: int = 2,
    drop: Sequence[str] = (),
    groups: np.ndarray | Sequence[int] | None = None,
    memory_bytes: int = 2 << 30,
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
    each candidate verified by an exact intersection.  ``memory_bytes`` bounds the
    runs of ranking, candidate generation and verification (a larger corpus takes
    more runs, never more memory); the shingle arrays themselves take ~23 bytes per
    shingle at peak (measured: ~0.53 GB per 1M short posts).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"text_edges: threshold must be in (0, 1], got {threshold}")
    digest, parts, counts = _scan(texts, k, drop)  # via _scan: the benchmark times it
    sizes = [min(_SCAN_TEXTS, len(texts) - lo) for lo in range(0, len(texts), _SCAN_TEXTS)]
    return join_scanned(Scan(digest, counts, parts, sizes), threshold, groups, memory_bytes)


def join_scanned(
    scan: Scan,
    threshold: float = 0.8,
    groups: np.ndarray | Sequence[int] | None = None,
    memory_bytes: int = 2 << 30,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`text_edges` from texts already scanned (:func:`scan_texts`, possibly shard by
    shard and :meth:`Scan.concat`-ed): the same edges.  ``scan.parts`` is consumed (its
    pieces are filtered in place)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"text_edges: threshold must be in (0, 1], got {threshold}")
    digest, parts, counts = scan.digest, scan.parts, scan.counts
    n = len(counts)
    labels = None
    if groups is not None:
        labels = np.asarray(groups).astype(np.int64)
        if labels.shape != (n,):
            raise ValueError(f"text_edges: groups has shape {labels.shape}, expected ({n},)")
    rep, copy, copy_of = _classes(digest, counts, labels)
    if len(rep) < n:  # keep the shingles of each class's first text only
        first = np.zeros(n, dtype=bool)
        first[rep] = True
        lo = 0
        for p, size in enumerate(scan.sizes):
            hi = lo + size
            parts[p] = parts[p][np.repeat(first[lo:hi], counts[lo:hi])]
            lo = hi
    rep_labels = None if labels is None else labels[rep]
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ww: list[np.ndarray] = []
    if labels is None and len(copy):
        ii.append(rep[copy_of])
        jj.append(copy)
        ww.append(np.ones(len(copy)))
    run = max(64, min(_RUN_SHINGLES, memory_bytes // _SHINGLE_BYTES))
    sets = _order_sets(parts, counts[rep], run)
    del parts
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
            members = copy[np.repeat(start[mine], take) + _ramp(take)]
            partner = np.repeat(rep[other], take)
            ii.append(np.minimum(members, partner))
            jj.append(np.maximum(members, partner))
            ww.append(np.repeat(s, take))
    return (
        np.concatenate(ii).astype(np.int64),
        np.concatenate(jj).astype(np.int64),
        np.concatenate(ww).astype(float),
    )
