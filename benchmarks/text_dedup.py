"""Benchmark text near-duplicate search: mmnerd's exact join vs MinHash/LSH (the old
mmnerd code, copied here) and datasketch MinHashLSH + exact verification.

    .venv/bin/python benchmarks/text_dedup.py [--n 25000] [--scale 1000000]
                                              [--small-budget-mb 64] [--thresholds 0.7,0.8,0.9]

Corpus: ``--n`` seeded synthetic short posts (tweet/caption-like English: a
30k-word vocabulary with Zipf-Mandelbrot frequencies, 8-40 words, hashtags,
@mentions, URLs, emoji, ~3% from slot-filled templates).  About 30% of the posts
are planted near-duplicates of an earlier post (sometimes of an earlier copy, so
chains form): an exact repost, or 1-30% of the words substituted, inserted or
deleted, plus case, punctuation, URL and mention changes that normalisation
removes.  So many pairs lie around Jaccard 0.5-0.95.

Reference: exact Jaccard of the tool's own shingle sets (``normalize_text`` then
``shingles``, as strings) of every pair of distinct normalised texts, by brute
force: a scipy sparse binary text x shingle matrix X, intersections X.X^T in row
blocks.  Each method's near pairs (between first occurrences of distinct
normalised texts) are scored against it: recall, precision, and for mmnerd the
exact pair set and scores.

Methods, each in its own process (clean wall time and peak RSS; corpus loading
is not timed), ``--repeat`` times; every run's seconds are reported (``runs_s``), the
table's figure is their median and the peak RSS their largest:

* mmnerd ``text_edges`` (exact prefix-filtering join), from raw texts;
* the old mmnerd MinHash/LSH (128 permutations, datasketch's (bands, rows) rule,
  giant-bucket chains, kept when the *estimated* Jaccard >= t), from raw texts;
* datasketch ``MinHashLSH`` tuned for recall (rows per band: the largest r whose
  miss probability at J = t with b = 128 // r bands is <= 1e-3) + exact
  verification with Python sets, in benchmarks/.venv-bench (created here if
  missing), from the shingle lists (normalisation not timed: an advantage to it).

Scale: ``--scale`` texts (same generator) through ``text_edges`` at t = 0.8 with
the default memory budget and with ``--small-budget-mb``; time, peak RSS and
whether the two pair sets are identical.

Prints a table, writes benchmarks/results/text_dedup.json, and exits 1 when
mmnerd's recall is < 0.99 or its pair set or scores differ from the reference, or when
datasketch cannot be installed or its run fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    BENCH_PY,
    BenchSetupError,
    ensure_packages,
    median_run,
    peak_rss_mb,
    save,
)


def hwm_mb() -> float:
    """Peak RSS of this process image, MiB: VmHWM, because ru_maxrss keeps the parent's
    peak across fork + exec (a child of a big benchmark process would report its size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


BENCH_PACKAGES = ["datasketch", "numpy"]
NUM_PERM = 128


# --------------------------------------------------------------------------- corpus
_FUNCTION = (  # split into words by _vocab
    "the a to of and in is for on you it this my with i at be so we that are just have "
    "your from not me all out new up now our get like can will by was one what do more "
    "day love today about time no if an when good they how see go here know great back "
    "best only got make first still us last night people much need over free big happy"
)
_SYLLABLES = (
    "ka lo mi ne ru sa ti vo be da fe gu ha ji po ze xo ly cha sho thi an el in or us "
    "ber ton mar les vin dor pel qui ran sol tek bri cam dex fro gal hin jor kel lum nor"
)
_EMOJI = ["😀", "😂", "🔥", "❤️", "👍", "🎉", "😍", "🙏", "✨", "🇫🇷"]
_PUNCT = ["!", "!!", "...", "?", " :)", ".", ""]


def _vocab(rng: np.random.Generator, size: int) -> list[str]:
    words = _FUNCTION.split()
    syllables = _SYLLABLES.split()
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(syllables, int(rng.integers(1, 5))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_corpus(n: int, seed: int = 0, dup_share: float = 0.3) -> list[str]:
    """``n`` short English-like posts with planted near-duplicates (see the module doc)."""
    return list(iter_corpus(n, seed, dup_share))


def iter_corpus(n: int, seed: int = 0, dup_share: float = 0.3) -> Iterator[str]:
    """:func:`make_corpus`'s posts one at a time (each post's words kept as one string,
    so 10M posts fit a few GB)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(_vocab(rng, 30_000), dtype=object)
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / (ranks + 2.7) ** 1.05
    pool = rng.choice(len(vocab), size=n * 30 + 1000, p=p / p.sum())
    tags = [f"#{w}" for w in vocab[100:600]]
    templates = [list(vocab[rng.choice(len(vocab), 12, p=p / p.sum())]) for _ in range(200)]
    cursor = 0
    words_of: list[str] = []

    def draw(k: int) -> list[str]:
        nonlocal cursor
        if cursor + k > len(pool):
            cursor = 0
        w = list(vocab[pool[cursor : cursor + k]])
        cursor += k
        return w

    grades = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.3])
    grade_p = np.array([0.15, 0.2, 0.2, 0.2, 0.15, 0.1])
    for i in range(n):
        if i and rng.random() < dup_share:
            src = i - 1 - int(rng.integers(0, min(i, 2000))) if rng.random() < 0.7 else None
            if src is None:
                src = int(rng.integers(0, i))
            words = words_of[src].split(" ")
            frac = float(rng.choice(grades, p=grade_p)) * float(rng.uniform(0.5, 1.5))
            for _ in range(int(round(frac * len(words)))):
                op = rng.random()
                if op < 0.4 and words:
                    words[int(rng.integers(0, len(words)))] = draw(1)[0]
                elif op < 0.7:
                    words.insert(int(rng.integers(0, len(words) + 1)), draw(1)[0])
                elif len(words) > 3:
                    words.pop(int(rng.integers(0, len(words))))
        elif rng.random() < 0.03:
            t = templates[int(rng.integers(0, len(templates)))]
            words = list(t)
            for _ in range(3):
                words[int(rng.integers(0, len(words)))] = draw(1)[0]
        else:
            words = draw(int(rng.integers(8, 41)))
            if rng.random() < 0.3:
                words.insert(int(rng.integers(0, len(words) + 1)), tags[int(rng.integers(0, 500))])
            if rng.random() < 0.2:
                words.append(_EMOJI[int(rng.integers(0, len(_EMOJI)))])
        # surface forms that normalisation removes
        text = " ".join(words)
        words_of.append(text)
        r = rng.random()
        if r < 0.1:
            text = text.upper()
        elif r < 0.25:
            text = text.capitalize()
        elif r < 0.3:
            text = text.title()
        text += _PUNCT[int(rng.integers(0, len(_PUNCT)))]
        if rng.random() < 0.2:
            text += f" https://t.co/{int(rng.integers(0, 1 << 40)):x}"
        if rng.random() < 0.15:
            text = f"RT @user{int(rng.integers(0, 10_000))}: " + text
        yield text


# --------------------------------------------------------------------------- reference
def distinct(texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
    """First occurrence of each distinct non-empty normalised text, and its shingle list."""
    from mmnerd.dedup.text import normalize_text, shingles

    seen: dict[str, int] = {}
    reps: list[int] = []
    sh: list[list[str]] = []
    for i, t in enumerate(texts):
        norm = normalize_text(t)
        if norm and norm not in seen:
            seen[norm] = i
            reps.append(i)
            sh.append(sorted(set(shingles(norm))))
    return np.array(reps, dtype=np.int64), sh


def reference(sh: list[list[str]], t_min: float, block: int = 1000) -> dict[str, np.ndarray]:
    """Every pair (a < b) of shingle sets with exact Jaccard >= ``t_min``: brute force with
    a sparse text x shingle matrix (intersections X.X^T in row blocks)."""
    from scipy.sparse import csr_matrix

    ids: dict[str, int] = {}
    indices = [ids.setdefault(s, len(ids)) for row in sh for s in row]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in sh])])
    m = len(sh)
    x = csr_matrix(
        (np.ones(len(indices), np.int32), np.array(indices, np.int64), indptr), shape=(m, len(ids))
    )
    xt = x.T.tocsr()
    size = np.diff(indptr)
    aa, bb, jj = [], [], []
    for r0 in range(0, m, block):
        prod = (x[r0 : r0 + block] @ xt).tocoo()
        a = prod.row.astype(np.int64) + r0
        b = prod.col.astype(np.int64)
        inter = prod.data.astype(np.int64)
        upper = b > a
        a, b, inter = a[upper], b[upper], inter[upper]
        jac = inter / (size[a] + size[b] - inter)
        ok = jac >= t_min
        aa.append(a[ok])
        bb.append(b[ok])
        jj.append(jac[ok])
    return {"a": np.concatenate(aa), "b": np.concatenate(bb), "j": np.concatenate(jj)}


def codes(a: np.ndarray, b: np.ndarray, m: int) -> np.ndarray:
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    return np.unique(lo * m + hi)


# --------------------------------------------------------------------------- old method
def old_lsh_params(threshold: float, num_perm: int = 128) -> tuple[int, int]:
    """(bands, rows) minimising equal-weight false positive + negative areas (old code)."""
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


def old_minhash(hv: np.ndarray, counts: np.ndarray, num_perm: int = 128) -> np.ndarray:
    """``(n, num_perm) uint32`` MinHash signatures over 64-bit element hashes (old code)."""
    rng = np.random.default_rng(1)
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    sig = np.full((len(counts), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    docs = np.flatnonzero(counts > 0)
    if len(docs) == 0:
        return sig
    starts = (np.cumsum(counts) - counts)[docs]
    budget = max(1, (1 << 20) // num_perm)
    group = starts // budget
    cuts = np.flatnonzero(np.diff(group)) + 1
    for chunk in np.split(np.arange(len(docs)), cuts):
        lo = int(starts[chunk[0]])
        hi = int(starts[chunk[-1]] + counts[docs[chunk[-1]]])
        ph = ((a[:, None] * hv[None, lo:hi] + b[:, None]) >> np.uint64(32)).astype(np.uint32)
        sig[docs[chunk]] = np.minimum.reduceat(ph, starts[chunk] - lo, axis=1).T
    return sig


def old_text_edges(
    texts: Sequence[str],
    threshold: float,
    num_perm: int = 128,
    max_bucket: int = 300,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mmnerd's text_edges before the exact join (MinHash + LSH, estimated Jaccard);
    ``timings["scan_s"]`` gets the normalise + shingle seconds."""
    from mmnerd.dedup.text import normalize_text, shingle_hashes
    from mmnerd.images.index import triangle_pairs

    t0 = time.perf_counter()
    scan_s = 0.0
    norms = [normalize_text(t) for t in texts]
    scan_s += time.perf_counter() - t0
    ii, jj, ww = [], [], []
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
        t0 = time.perf_counter()
        hv, counts = shingle_hashes([norms[r] for r in reps])
        scan_s += time.perf_counter() - t0
        sig = old_minhash(hv, counts, num_perm)
        bands, rows = old_lsh_params(threshold, num_perm)
        rng = np.random.default_rng(7)
        mult = rng.integers(1, 2**63, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        cand = []
        for band in range(bands):
            part = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
            key = (part * mult[None, :]).sum(axis=1, dtype=np.uint64)
            order = np.argsort(key, kind="stable")
            ks = key[order]
            cuts = np.flatnonzero(np.diff(ks)) + 1
            starts = np.concatenate([[0], cuts])
            sizes = np.diff(np.concatenate([starts, [len(ks)]]))
            small = (sizes >= 2) & (sizes <= max_bucket)
            a, b = triangle_pairs(starts[small], sizes[small])
            pairs = [(order[a], order[b])]
            for st, sz in zip(starts[sizes > max_bucket], sizes[sizes > max_bucket], strict=True):
                members = order[st : st + sz]
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
            cc = np.unique(np.concatenate(cand))
            ca, cb = cc // len(reps), cc % len(reps)
            sim = (sig[ca] == sig[cb]).mean(axis=1)
            keep = sim >= threshold
            rep_arr = np.array(reps, dtype=np.int64)
            ii.append(rep_arr[ca[keep]])
            jj.append(rep_arr[cb[keep]])
            ww.append(sim[keep])
    if timings is not None:
        timings["scan_s"] = scan_s
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(ww).astype(float)


# --------------------------------------------------------------------------- datasketch
def recall_params(t: float, num_perm: int = NUM_PERM, miss: float = 1e-3) -> tuple[int, int]:
    """(bands, rows): the largest ``rows`` whose miss probability at J = t, with
    ``num_perm // rows`` bands, is <= ``miss`` (fewest false candidates at that recall)."""
    best = (num_perm, 1)
    for rows in range(1, num_perm // 2 + 1):
        bands = num_perm // rows
        if (1.0 - t**rows) ** bands <= miss:
            best = (bands, rows)
    return best


def datasketch_main(spec: dict[str, Any]) -> None:
    """Inside the bench venv: MinHash + MinHashLSH + exact verification; one JSON line."""
    from datasketch import MinHash, MinHashLSH

    sh = json.loads(Path(spec["shingles"]).read_text())
    sets = [frozenset(s) for s in sh]
    rss0 = hwm_mb()
    t0 = time.perf_counter()
    mhs = MinHash.bulk([[s.encode("utf-8") for s in row] for row in sh], num_perm=NUM_PERM)
    t_minhash = time.perf_counter() - t0
    out = {}
    for t in spec["thresholds"]:
        t1 = time.perf_counter()
        bands, rows = recall_params(t)
        lsh = MinHashLSH(num_perm=NUM_PERM, params=(bands, rows))
        aa, bb, cand = [], [], 0
        for i, m in enumerate(mhs):
            for j in lsh.query(m):
                cand += 1
                inter = len(sets[i] & sets[j])
                if inter / (len(sets[i]) + len(sets[j]) - inter) >= t:
                    aa.append(j)
                    bb.append(i)
            lsh.insert(i, m, check_duplication=False)
        secs = time.perf_counter() - t1
        path = Path(spec["out"]) / f"datasketch-{t}.npy"
        np.save(path, np.array([aa, bb], dtype=np.int64).reshape(2, -1))
        out[str(t)] = {
            "seconds": t_minhash + secs,
            "minhash_s": t_minhash,
            "lsh_verify_s": secs,
            "params": [bands, rows],
            "candidates": cand,
            "pairs_file": str(path),
        }
    print(json.dumps({"runs": out, "peak_rss_mb": hwm_mb(), "rss_after_load_mb": rss0}))


def ensure_bench_env() -> str:
    """Create/extend benchmarks/.venv-bench with datasketch; its version or "unavailable: ..."."""
    try:
        ensure_packages(BENCH_PACKAGES, timeout=600)
    except BenchSetupError as e:
        return f"unavailable: {e}"
    r = subprocess.run(
        [str(BENCH_PY), "-c", "import datasketch; print(datasketch.__version__)"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else "unavailable: " + r.stderr.strip()[-300:]


# --------------------------------------------------------------------------- runs
def run_main(spec: dict[str, Any]) -> None:
    """Inside a fresh process: one mmnerd method on the corpus file; one JSON line."""
    with open(spec["corpus"], encoding="utf-8") as f:  # line by line: no giant string
        texts = [line.rstrip("\n") for line in f]
    from mmnerd.dedup import text as text_mod  # imports are not timed
    from mmnerd.images import index  # noqa: F401  (the old method's triangle_pairs)

    rss0 = hwm_mb()
    timings = {"scan_s": 0.0}
    cpu0 = os.times()
    t0 = time.perf_counter()
    if spec["method"] == "mmnerd":
        scan = text_mod._scan

        def timed_scan(*args: Any) -> Any:  # the normalise + shingle share of the call
            t1 = time.perf_counter()
            out = scan(*args)
            timings["scan_s"] += time.perf_counter() - t1
            return out

        text_mod._scan = timed_scan
        i, j, w = text_mod.text_edges(
            texts,
            spec["threshold"],
            memory_bytes=spec["memory_mb"] << 20,
            work_dir=spec.get("work"),
        )
    else:
        i, j, w = old_text_edges(texts, spec["threshold"], timings=timings)
    secs = time.perf_counter() - t0
    cpu1 = os.times()
    peak = hwm_mb()
    np.save(spec["out"], np.stack([i, j, np.round(w * 2**40).astype(np.int64)]))
    out = {"seconds": secs, "peak_rss_mb": peak, "rss_after_load_mb": rss0} | timings
    out["cpu_s"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(json.dumps(out))


def gen_main(spec: dict[str, Any]) -> None:
    """Inside a fresh process: write :func:`iter_corpus` to a file, one post a line."""
    t0 = time.perf_counter()
    with open(spec["out"], "w", encoding="utf-8") as f:
        for k, text in enumerate(iter_corpus(spec["n"], spec["seed"])):
            f.write(("\n" if k else "") + text)
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": hwm_mb()}))


def check_main(spec: dict[str, Any]) -> None:
    """Inside a fresh process: brute-force neighbours of random query texts.

    Every text is scanned again (``scan_texts``, its shingle hashes spooled to a file);
    the queries are ``queries`` random first occurrences of distinct normalised texts
    plus up to ``queries // 2`` first occurrences that have an edge in the join's output.
    A query's neighbours are the other texts with its normalised text and the first
    occurrences of other normalised texts whose exact Jaccard with it (intersection of
    the shingle-hash sets, counted against *every* text) is >= t; they must equal the
    texts the join linked to it, with the same Jaccard.  One JSON line."""
    from mmnerd.dedup.text import scan_texts

    t0 = time.perf_counter()
    work = Path(spec["work"])
    hv_path = work / "check-hashes.u64"
    digests, counts = [], []
    block: list[str] = []
    with open(spec["corpus"], encoding="utf-8") as f, open(hv_path, "wb") as out:
        for line in f:
            block.append(line.rstrip("\n"))
            if len(block) == 100_000:
                sc = scan_texts(block, out=out)
                digests.append(sc.digest)
                counts.append(sc.counts)
                block = []
        if block:
            sc = scan_texts(block, out=out)
            digests.append(sc.digest)
            counts.append(sc.counts)
    digest = np.concatenate(digests)
    count = np.concatenate(counts)
    del digests, counts
    n = len(count)
    t_scan = time.perf_counter() - t0
    # classes of identical normalised texts: first occurrence of each digest
    live = np.flatnonzero(count > 0)
    key = digest[live].copy().view([("a", np.uint64), ("b", np.uint64)]).ravel()
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    cls = np.full(n, -1, dtype=np.int64)
    cls[live] = inverse.ravel()
    rep_of_cls = live[first]
    del key, first, inverse, digest
    is_rep = np.zeros(n, dtype=bool)
    is_rep[rep_of_cls] = True
    edges = np.load(spec["edges"])
    rng = np.random.default_rng(spec["seed"])
    picked = rng.choice(rep_of_cls, size=min(spec["queries"], len(rep_of_cls)), replace=False)
    linked = np.unique(np.concatenate([edges[0], edges[1]]))
    linked = linked[is_rep[linked]]
    extra = rng.choice(linked, size=min(spec["queries"] // 2, len(linked)), replace=False)
    queries = np.unique(np.concatenate([picked, extra]))
    qpos = np.full(n, -1, dtype=np.int64)
    qpos[queries] = np.arange(len(queries))
    offsets = np.concatenate([[0], np.cumsum(count)])
    # the queries' distinct shingle hashes: a sparse binary query x hash matrix
    from scipy.sparse import csr_matrix

    qh, qq = [], []
    with open(hv_path, "rb") as f:
        for k, d in enumerate(queries.tolist()):
            f.seek(int(offsets[d]) * 8)
            h = np.unique(np.fromfile(f, dtype=np.uint64, count=int(count[d])))
            qh.append(h)
            qq.append(np.full(len(h), k, dtype=np.int64))
    uh, col = np.unique(np.concatenate(qh), return_inverse=True)
    qrow = np.concatenate(qq)
    qsize = np.bincount(qrow, minlength=len(queries))
    qt = csr_matrix(
        (np.ones(len(qrow), np.int32), (col.ravel(), qrow)), shape=(len(uh), len(queries))
    )
    found_a, found_b, found_j = [], [], []
    step = 1 << 20
    with open(hv_path, "rb") as f:
        d0 = 0
        while d0 < n:
            d1 = max(d0 + 1, int(np.searchsorted(offsets, offsets[d0] + step, side="right")) - 1)
            f.seek(int(offsets[d0]) * 8)
            h = np.fromfile(f, dtype=np.uint64, count=int(offsets[d1] - offsets[d0]))
            doc = np.repeat(np.arange(d1 - d0, dtype=np.int64), count[d0:d1])
            o = np.lexsort((h, doc))
            h, doc = h[o], doc[o]
            new = np.ones(len(h), dtype=bool)
            new[1:] = (h[1:] != h[:-1]) | (doc[1:] != doc[:-1])
            h, doc = h[new], doc[new]
            size = np.bincount(doc, minlength=d1 - d0)  # distinct shingles per text
            pos = np.minimum(np.searchsorted(uh, h), len(uh) - 1)
            hit = uh[pos] == h
            x = csr_matrix(
                (np.ones(int(hit.sum()), np.int32), (doc[hit], pos[hit])),
                shape=(d1 - d0, len(uh)),
            )
            prod = (x @ qt).tocoo()  # intersections of every text with every query
            t_loc, qk, inter = prod.row.astype(np.int64), prod.col, prod.data
            jac = inter / (qsize[qk] + size[t_loc] - inter)
            ok = jac >= spec["threshold"]
            found_a.append(t_loc[ok] + d0)
            found_b.append(qk[ok])
            found_j.append(jac[ok])
            d0 = d1
    text = np.concatenate(found_a)
    q = queries[np.concatenate(found_b)]
    jac = np.concatenate(found_j)
    near = is_rep[text] & (cls[text] != cls[q])
    brute: dict[int, set[tuple[int, int]]] = {int(x): set() for x in queries}
    for a, b, j in zip(q[near].tolist(), text[near].tolist(), jac[near].tolist(), strict=True):
        brute[a].add((b, round(j * 2**40)))
    members = np.flatnonzero(np.isin(cls, cls[queries]))
    for x in members.tolist():
        r = int(rep_of_cls[cls[x]])
        if x != r:
            brute[r].add((x, 1 << 40))
    join: dict[int, set[tuple[int, int]]] = {int(x): set() for x in queries}
    for a, b, w in zip(*edges.tolist(), strict=True):
        if qpos[a] >= 0:
            join[a].add((b, w))
        if qpos[b] >= 0:
            join[b].add((a, w))
    hv_path.unlink()
    bad = [x for x in brute if brute[x] != join[x]]
    print(
        json.dumps(
            {
                "queries": len(queries),
                "queries_with_neighbours": sum(1 for x in brute if brute[x]),
                "neighbours": sum(len(v) for v in brute.values()),
                "mismatches": len(bad),
                "first_mismatch": (
                    {
                        "query": bad[0],
                        "brute": sorted(brute[bad[0]])[:5],
                        "join": sorted(join[bad[0]])[:5],
                    }
                    if bad
                    else None
                ),  # fmt: skip
                "seconds": time.perf_counter() - t0,
                "scan_s": t_scan,
                "peak_rss_mb": hwm_mb(),
            }
        )
    )


def subrun(py: Path | str, mode: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run this script as ``py script mode spec``; its last JSON line or {"error": ...}."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    try:
        r = subprocess.run(
            [str(py), __file__, mode, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout (> {timeout:.0f} s)"}
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return {"error": f"exit {r.returncode}: {r.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def every_run(
    repeat: int, py: Path | str, mode: str, spec: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """``repeat`` runs, all reported (:func:`common.median_run`: the median run's figures,
    ``runs_s`` every run's seconds) with ``peak_rss_mb`` the largest; the first error if
    any run fails."""
    runs = [subrun(py, mode, spec, timeout) for _ in range(max(1, repeat))]
    bad = [r for r in runs if "error" in r]
    if bad:
        return bad[0]
    return median_run(runs) | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def score(
    found: np.ndarray, truth: np.ndarray, t_codes: dict[float, np.ndarray], t: float
) -> dict[str, Any]:
    """Recall and precision of ``found`` pair codes against the reference at ``t``."""
    ref = t_codes[t]
    hit = len(np.intersect1d(found, ref, assume_unique=True))
    return {
        "pairs": len(found),
        "recall": round(hit / max(1, len(ref)), 4),
        "precision": round(hit / max(1, len(found)), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=25_000, help="posts in the scored corpus")
    ap.add_argument(
        "--scale", type=int, default=1_000_000, help="posts in the scale rows (0 = skip)"
    )
    ap.add_argument("--small-budget-mb", type=int, default=64, help="the scale row's small budget")
    ap.add_argument("--memory-mb", type=int, default=2048, help="the default budget")
    ap.add_argument("--thresholds", default="0.7,0.8,0.9")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per method (all reported)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per method run")
    ap.add_argument(
        "--big",
        default="3000000",
        help="sizes of the budget-checked runs, comma-separated (0 = skip; --big 10000000 "
        "is the issue's 10M run, ~25 minutes here)",
    )
    ap.add_argument("--queries", type=int, default=2000, help="random queries checked per size")
    ap.add_argument("--big-timeout", type=float, default=5400, help="seconds per big-size step")
    ap.add_argument("--name", default="text_dedup", help="writes benchmarks/results/NAME.json")
    args = ap.parse_args()
    thresholds = [float(x) for x in args.thresholds.split(",")]
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmnerd-textbench-") as tmp:
        work = Path(tmp)
        print(f"corpus: {args.n:,} posts (seed {args.seed}) ...", flush=True)
        texts = make_corpus(args.n, args.seed)
        corpus = work / "corpus.txt"
        corpus.write_text("\n".join(texts), encoding="utf-8")
        t0 = time.perf_counter()
        reps, sh = distinct(texts)
        t_norm = time.perf_counter() - t0
        m = len(reps)
        (work / "shingles.json").write_text(json.dumps(sh))
        print(f"  {m:,} distinct normalised texts; normalise + shingle {t_norm:.1f} s", flush=True)
        t0 = time.perf_counter()
        ref = reference(sh, min(0.5, *thresholds))  # from 0.5: the histogram below
        t_ref = time.perf_counter() - t0
        t_codes = {
            t: codes(ref["a"][ref["j"] >= t], ref["b"][ref["j"] >= t], m) for t in thresholds
        }
        order = np.argsort(np.minimum(ref["a"], ref["b"]) * m + np.maximum(ref["a"], ref["b"]))
        ref_code = (np.minimum(ref["a"], ref["b"]) * m + np.maximum(ref["a"], ref["b"]))[order]
        ref_jac = ref["j"][order]
        hist = np.histogram(ref["j"], bins=[0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.01])[0]
        print(f"  reference (brute force, scipy X.X^T): {t_ref:.1f} s", flush=True)
        for t in thresholds:
            print(f"    J >= {t}: {len(t_codes[t]):,} pairs", flush=True)
        rep_pos = np.full(len(texts), -1, dtype=np.int64)
        rep_pos[reps] = np.arange(m)

        def near_codes(path: Path) -> tuple[np.ndarray, np.ndarray]:
            arr = np.load(path)
            a, b = rep_pos[arr[0]], rep_pos[arr[1]]
            ok = (a >= 0) & (b >= 0)  # star edges to repeated texts are not near pairs
            c = np.minimum(a[ok], b[ok]) * m + np.maximum(a[ok], b[ok])
            o = np.argsort(c)
            return c[o], arr[2][ok][o] / 2**40

        for t in thresholds:
            for method, label in (("mmnerd", "mmnerd exact join"), ("old", "old MinHash/LSH")):
                out = work / f"{method}-{t}.npy"
                spec = {
                    "method": method,
                    "corpus": str(corpus),
                    "threshold": t,
                    "out": str(out),
                    "memory_mb": args.memory_mb,
                }
                r = every_run(args.repeat, sys.executable, "_run", spec, args.timeout)
                row: dict[str, Any] = {"corpus": f"{args.n // 1000}k", "threshold": t}
                row["method"] = label
                if "error" in r:
                    row["error"] = r["error"]
                    if method == "mmnerd":
                        failures.append(f"mmnerd at t={t}: {r['error']}")
                    rows.append(row)
                    continue
                found, scores = near_codes(out)
                row |= score(found, t_codes[t], t_codes, t)
                row["seconds"] = round(r["seconds"], 2)
                row["s_excl_normalise"] = round(max(0.0, r["seconds"] - r["scan_s"]), 2)
                row["runs_s"] = [round(x, 2) for x in r["runs_s"]]
                row["peak_rss_mb"] = round(r["peak_rss_mb"])
                row["rss_after_load_mb"] = round(r["rss_after_load_mb"])
                if method == "mmnerd":
                    want = ref_code[ref_jac >= t]
                    same = len(found) == len(want) and bool(np.array_equal(found, want))
                    exact = same and bool(
                        np.allclose(scores, ref_jac[ref_jac >= t], rtol=0, atol=1e-9)
                    )
                    row["exact_pair_set"] = same and exact
                    if row["recall"] < 0.99 or not row["exact_pair_set"]:
                        failures.append(f"mmnerd at t={t}: recall {row['recall']}, exact={exact}")
                rows.append(row)
                print(f"  {_fmt(row)}", flush=True)
        print("datasketch (bench venv) ...", flush=True)
        version = ensure_bench_env()
        if version.startswith("unavailable"):
            failures.append(f"datasketch {version[:300]}")  # a missing competitor fails
            rows += [
                {"corpus": f"{args.n // 1000}k", "threshold": t, "method": "datasketch"}
                | {"error": version}
                for t in thresholds
            ]
        else:
            spec = {"shingles": str(work / "shingles.json"), "thresholds": thresholds}
            spec["out"] = str(work)
            runs = [
                subrun(BENCH_PY, "_datasketch", spec, args.timeout * len(thresholds))
                for _ in range(args.repeat)
            ]
            r = next((x for x in runs if "error" in x), runs[-1])
            if "error" not in r:  # per threshold: every repeat reported, the median run
                r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
                for t in thresholds:
                    r["runs"][str(t)] = median_run([x["runs"][str(t)] for x in runs])
            for t in thresholds:
                row = {"corpus": f"{args.n // 1000}k", "threshold": t}
                row["method"] = f"datasketch {version} MinHashLSH + exact verify"
                if "error" in r:
                    rows.append(row | {"error": r["error"]})
                    failures.append(f"datasketch at t={t}: {r['error'][:300]}")
                    continue
                run = r["runs"][str(t)]
                arr = np.load(run["pairs_file"])
                found = codes(arr[0], arr[1], m)
                row |= score(found, t_codes[t], t_codes, t)
                row["seconds"] = round(run["seconds"], 2)
                row["s_excl_normalise"] = row["seconds"]
                row["peak_rss_mb"] = round(r["peak_rss_mb"])
                row["rss_after_load_mb"] = round(r["rss_after_load_mb"])
                row["runs_s"] = [round(x, 2) for x in run["runs_s"]]
                row["minhash_s"] = round(run["minhash_s"], 2)
                row["bands_rows"] = "x".join(map(str, run["params"]))
                row["candidates"] = run["candidates"]
                rows.append(row)
                print(f"  {_fmt(row)}", flush=True)
        if args.scale:
            print(f"scale: {args.scale:,} posts ...", flush=True)
            big = work / "big.txt"
            big.write_text("\n".join(make_corpus(args.scale, args.seed + 1)), encoding="utf-8")
            sums = {}
            for mb in (args.memory_mb, args.small_budget_mb):
                out = work / f"big-{mb}.npy"
                spec = {"method": "mmnerd", "corpus": str(big), "threshold": 0.8}
                spec |= {"out": str(out), "memory_mb": mb}
                r = subrun(sys.executable, "_run", spec, args.timeout)
                row = {"corpus": f"{args.scale / 1e6:g}M", "threshold": 0.8}
                row["method"] = f"mmnerd exact join, budget {mb} MiB"
                if "error" in r:
                    rows.append(row | {"error": r["error"]})
                    failures.append(f"scale run, budget {mb} MiB: {r['error']}")
                    continue
                arr = np.load(out)
                key = np.sort(arr[0] * args.scale + arr[1])
                sums[mb] = hashlib.sha256(key.tobytes()).hexdigest()[:16]
                row |= {"pairs": int(arr.shape[1]), "seconds": round(r["seconds"], 1)}
                row["s_excl_normalise"] = round(max(0.0, r["seconds"] - r["scan_s"]), 1)
                row["peak_rss_mb"] = round(r["peak_rss_mb"])
                row["rss_after_load_mb"] = round(r["rss_after_load_mb"])
                rows.append(row)
                print(f"  {_fmt(row)}", flush=True)
            if len(sums) == 2:
                same = len(set(sums.values())) == 1
                rows[-1]["same_pairs_as_default"] = same
                if not same:
                    failures.append("scale: the small budget changed the pair set")
        for n_big in [int(x) for x in args.big.split(",") if int(x)]:
            rows.append(big_run(n_big, args, work, failures))
    notes = (
        f"{args.n:,} posts, {m:,} distinct normalised texts; reference pairs by exact Jaccard: "
        + ", ".join(f"J>={t}: {len(t_codes[t]):,}" for t in thresholds)
        + "; reference J histogram [0.5,0.6,0.7,0.8,0.9,0.95,1.0,1]: "
        + " ".join(str(int(h)) for h in hist)
        + f". Brute-force reference {t_ref:.1f} s (+ {t_norm:.1f} s for string shingles). "
        "'seconds' of mmnerd and the old MinHash include normalising and shingling the raw "
        "texts; 's_excl_normalise' subtracts that step (timed inside the same call); "
        "datasketch starts from the shingle lists. Peak RSS: VmHWM of each method's process "
        "(corpus loaded, 'rss_after_load_mb'). "
        f"Total {time.perf_counter() - t_start:.0f} s, load {os.getloadavg()[0]:.1f}."
    )
    save(args.name, rows, notes)
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def big_run(n: int, args: argparse.Namespace, work: Path, failures: list[str]) -> dict[str, Any]:
    """One budget-checked size: generate ``n`` posts (a child process), run text_edges at
    t = 0.8 with the default budget (a child: wall, CPU, VmHWM), then check the edges of
    random queries against brute force (a third child).  Fails if the peak RSS exceeds
    the budget plus the loaded texts (the child's VmHWM right after loading them) or the
    check finds a difference."""
    label = f"{n / 1e6:g}M"
    print(f"budget-checked run: {n:,} posts ...", flush=True)
    row: dict[str, Any] = {"corpus": label, "threshold": 0.8}
    row["method"] = f"mmnerd exact join, budget {args.memory_mb} MiB, checked"
    corpus = work / f"big-{n}.txt"
    g = subrun(
        sys.executable, "_gen", {"n": n, "seed": args.seed + 1, "out": str(corpus)},
        args.big_timeout,
    )  # fmt: skip
    if "error" in g:
        failures.append(f"{label}: corpus generation: {g['error']}")
        return row | {"error": g["error"]}
    print(f"  corpus generated in {g['seconds']:.0f} s", flush=True)
    edges = work / f"big-{n}.npy"
    spec = {"method": "mmnerd", "corpus": str(corpus), "threshold": 0.8, "out": str(edges)}
    spec |= {"memory_mb": args.memory_mb, "work": str(work)}
    load0 = os.getloadavg()[0]
    r = subrun(sys.executable, "_run", spec, args.big_timeout)
    if "error" in r:
        failures.append(f"{label}: {r['error']}")
        return row | {"error": r["error"]}
    arr = np.load(edges)
    limit = args.memory_mb + r["rss_after_load_mb"]
    row |= {"pairs": int(arr.shape[1]), "seconds": round(r["seconds"], 1)}
    row["cpu_s"] = round(r["cpu_s"], 1)
    row["s_excl_normalise"] = round(max(0.0, r["seconds"] - r["scan_s"]), 1)
    row["peak_rss_mb"] = round(r["peak_rss_mb"])
    row["rss_after_load_mb"] = round(r["rss_after_load_mb"])
    row["peak_limit_mb"] = round(limit)
    row["within_budget"] = bool(r["peak_rss_mb"] <= limit)
    row["load"] = f"{load0:.1f} -> {os.getloadavg()[0]:.1f}"
    print(f"  {_fmt(row)}", flush=True)
    if not row["within_budget"]:
        failures.append(f"{label}: peak {r['peak_rss_mb']:.0f} MiB > {limit:.0f} MiB")
    spec = {"corpus": str(corpus), "edges": str(edges), "threshold": 0.8, "work": str(work)}
    spec |= {"queries": args.queries, "seed": args.seed + 7}
    c = subrun(sys.executable, "_check", spec, args.big_timeout)
    if "error" in c:
        failures.append(f"{label}: check: {c['error']}")
        return row | {"check_error": c["error"]}
    row["queries"] = c["queries"]
    row["queries_with_neighbours"] = c["queries_with_neighbours"]
    row["neighbours_checked"] = c["neighbours"]
    row["mismatches"] = c["mismatches"]
    row["check_s"] = round(c["seconds"], 1)
    print(
        f"  check: {c['queries']:,} queries ({c['queries_with_neighbours']:,} with neighbours,"
        f" {c['neighbours']:,} neighbours): {c['mismatches']} mismatches, {c['seconds']:.0f} s",
        flush=True,
    )
    if c["mismatches"]:
        failures.append(f"{label}: {c['mismatches']} queries differ: {c['first_mismatch']}")
    for f in (corpus, edges):
        f.unlink(missing_ok=True)
    return row


def _fmt(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"t={r['threshold']} {r['method']:<45} {r['error']}"
    return (
        f"t={r['threshold']} {r['method']:<45} {r.get('seconds', 0):7.2f} s  "
        f"(runs {r.get('runs_s', '-')})  "
        f"pairs {r.get('pairs', 0):,}  recall {r.get('recall', '-')}  "
        f"precision {r.get('precision', '-')}  peak {r.get('peak_rss_mb', '-')} MiB"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_run":
        run_main(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "_gen":
        gen_main(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "_check":
        check_main(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "_datasketch":
        datasketch_main(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
