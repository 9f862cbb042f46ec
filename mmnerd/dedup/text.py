"""Text near-duplicates: the normalised text key, word shingles, MinHash and LSH candidates.

:func:`text_edges` links posts whose normalised texts are identical (as a star) or whose
word 2-shingle sets are near-identical (Jaccard similarity >= a threshold).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

import numpy as np

from mmnerd.images.index import triangle_pairs

# --------------------------------------------------------------------------- text
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@])@[\w.]+(?:@[\w.-]+)?", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")
_PUNCT: dict[int, str] | None = None


def _punct_table() -> dict[int, str]:
    """``str.translate`` table mapping every Unicode punctuation character (P*) to a space."""
    global _PUNCT
    if _PUNCT is None:
        import unicodedata

        # punctuation outside the BMP (historic scripts) is not worth a 1 s table build
        _PUNCT = {c: " " for c in range(0x10000) if unicodedata.category(chr(c))[0] == "P"}
    return _PUNCT


def normalize_text(text: str, drop: Sequence[str] = ()) -> str:
    """Text key for duplicates: URLs and @mentions removed, casefolded, punctuation
    (Unicode P*) removed, whitespace collapsed; whole words in ``drop`` (e.g. the
    "URL" placeholder) removed too.  Emoji are kept; "#" goes with the punctuation."""
    t = _URL_RE.sub(" ", text)
    t = _MENTION_RE.sub(" ", t)
    t = t.casefold().translate(_punct_table())
    if drop:
        gone = {d.casefold() for d in drop if d}
        t = " ".join(w for w in t.split() if w not in gone)
    return _SPACE_RE.sub(" ", t).strip()


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
    cache: dict[str, int] = {}
    word_h: list[int] = []
    lengths = np.zeros(len(norm_texts), dtype=np.int64)
    for d, t in enumerate(norm_texts):
        words = t.split()
        lengths[d] = len(words)
        for w in words:
            h = cache.get(w)
            if h is None:
                h = cache[w] = _hash64(w)
            word_h.append(h)
    if not word_h:
        return np.zeros(0, np.uint64), np.zeros(len(norm_texts), np.int64)
    wh = np.concatenate([np.array(word_h, dtype=np.uint64), np.zeros(k, np.uint64)])
    n_words = len(word_h)
    doc = np.repeat(np.arange(len(norm_texts)), lengths)
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
    return _mix64(acc), np.bincount(doc[idx], minlength=len(norm_texts)).astype(np.int64)


def minhash_from_hashes(
    hv: np.ndarray, counts: np.ndarray, num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """``(n, num_perm) uint32`` MinHash signatures of ``n`` sets given as 64-bit element
    hashes ``hv`` grouped by set (``counts`` per set); empty sets get all-ones rows.

    Permutation ``p``: ``((a_p * x + b_p) mod 2**64) >> 32`` (multiply-shift, ``a_p``
    odd), datasketch-style but vectorised.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    sig = np.full((len(counts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    docs = np.flatnonzero(counts > 0)
    if len(docs) == 0:
        return sig
    starts = (np.cumsum(counts) - counts)[docs]
    budget = max(1, (1 << 20) // num_perm)  # elements per chunk (~4 MB of uint32)
    group = starts // budget
    cuts = np.flatnonzero(np.diff(group)) + 1
    for chunk in np.split(np.arange(len(docs)), cuts):
        lo = int(starts[chunk[0]])
        hi = int(starts[chunk[-1]] + counts[docs[chunk[-1]]])
        ph = ((a[:, None] * hv[None, lo:hi] + b[:, None]) >> np.uint64(32)).astype(np.uint32)
        sig[docs[chunk]] = np.minimum.reduceat(ph, starts[chunk] - lo, axis=1).T
    return sig


def minhash_signatures(
    shingle_sets: Sequence[Sequence[str]], num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """``(n, num_perm) uint32`` MinHash signatures of string sets (see
    :func:`minhash_from_hashes`; strings are hashed with blake2b-64)."""
    uniq = [sorted(set(s)) for s in shingle_sets]
    counts = np.array([len(s) for s in uniq], dtype=np.int64)
    hv = np.array([_hash64(x) for s in uniq for x in s], dtype=np.uint64)
    return minhash_from_hashes(hv, counts, num_perm, seed)


def lsh_params(threshold: float, num_perm: int = 128) -> tuple[int, int]:
    """(bands, rows) with ``bands * rows <= num_perm`` minimising equal-weight false
    positive + false negative areas around ``threshold`` (datasketch's rule)."""
    s = np.linspace(0.0, 1.0, 1001)
    best, best_err = (1, num_perm), math.inf
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - s**rows) ** bands
        fp = np.trapezoid(np.where(s < threshold, p, 0.0), s)
        fn = np.trapezoid(np.where(s >= threshold, 1.0 - p, 0.0), s)
        if fp + fn < best_err:
            best, best_err = (bands, rows), fp + fn
    return best


def text_edges(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    k: int = 2,
    drop: Sequence[str] = (),
    max_bucket: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, jaccard)`` between texts that are duplicates.

    Identical normalised texts are linked as a star (jaccard 1.0); distinct
    normalised texts are compared by MinHash/LSH and linked when the estimated
    Jaccard similarity of their word ``k``-shingles is ``>= threshold``.  Empty
    normalised texts never match.  An LSH bucket larger than ``max_bucket`` is
    checked as a chain (each member against the next and the first) to bound
    the work, so near-duplicate recall inside giant buckets is approximate.
    """
    norms = [normalize_text(t, drop) for t in texts]
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ww: list[np.ndarray] = []
    first: dict[str, int] = {}
    reps: list[int] = []
    for idx, t in enumerate(norms):
        if not t:
            continue
        if t in first:
            ii.append(np.array([first[t]]))
            jj.append(np.array([idx]))
            ww.append(np.array([1.0]))
        else:
            first[t] = idx
            reps.append(idx)
    if len(reps) >= 2 and threshold < 1.0:
        hv, counts = shingle_hashes([norms[r] for r in reps], k)
        sig = minhash_from_hashes(hv, counts, num_perm)
        bands, rows = lsh_params(threshold, num_perm)
        rng = np.random.default_rng(7)
        mult = rng.integers(1, 2**63, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        cand: list[np.ndarray] = []
        for band in range(bands):
            part = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
            key = (part * mult[None, :]).sum(axis=1, dtype=np.uint64)
            order = np.argsort(key, kind="stable")
            ks = key[order]
            cuts = np.flatnonzero(np.diff(ks)) + 1
            starts = np.concatenate([[0], cuts])
            sizes = np.diff(np.concatenate([starts, [len(ks)]]))
            small = (sizes >= 2) & (sizes <= max_bucket)
            a, b = triangle_pairs(starts[small], sizes[small])  # all pairs, every small bucket
            pairs = [(order[a], order[b])]
            for st, sz in zip(starts[sizes > max_bucket], sizes[sizes > max_bucket], strict=True):
                members = order[st : st + sz]  # giant bucket: a chain plus a star
                pairs.append(
                    (
                        np.concatenate([members[:-1], np.repeat(members[0], sz - 2)]),
                        np.concatenate([members[1:], members[2:]]),
                    )
                )
            for pa, pb in pairs:
                lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
                cand.append(lo.astype(np.int64) * len(reps) + hi)
        if cand:
            codes = np.unique(np.concatenate(cand))
            ca, cb = codes // len(reps), codes % len(reps)
            sim = (sig[ca] == sig[cb]).mean(axis=1)
            keep = sim >= threshold
            rep_arr = np.array(reps, dtype=np.int64)
            ii.append(rep_arr[ca[keep]])
            jj.append(rep_arr[cb[keep]])
            ww.append(sim[keep])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return (
        np.concatenate(ii).astype(np.int64),
        np.concatenate(jj).astype(np.int64),
        np.concatenate(ww).astype(float),
    )
