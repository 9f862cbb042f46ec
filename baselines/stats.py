"""Bootstrap confidence intervals and a paired bootstrap test over test posts.

Inputs are per-post counts ``[true positives, predicted, gold]`` (strict IOB2 entities, see
:func:`baselines.metrics.post_counts`) of one model's runs, an array ``[S, N, 3]`` (S seeds,
N test posts in the split's order).  The statistic is the micro F1 of a resampled set of posts,
averaged over the seeds (the benchmark's "mean over seeds"); resampling draws posts, the same
draw for every seed and, in a paired test, for both models (Koehn 2004; Berg-Kirkpatrick et al.
2012).  The seeds' spread is reported separately (mean ± std); these intervals are about the
finite test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RESAMPLES = 1000
"""Bootstrap resamples (percentile intervals; p-values resolve to 1/RESAMPLES)."""


def as_counts(runs: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
    """Per-seed post counts -> int64 array ``[S, N, 3]``."""
    return np.asarray(runs, dtype=np.int64).reshape(len(runs), -1, 3)


def _f1(sums: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts ``[..., 3]`` (0 where nothing is predicted or expected)."""
    denom = sums[..., 1] + sums[..., 2]
    return np.where(denom > 0, 2.0 * sums[..., 0] / np.maximum(denom, 1), 0.0)


def mean_f1(counts: np.ndarray, idx: Sequence[int] | None = None) -> float:
    """Mean over seeds of the micro F1 over the posts ``idx`` (all when None)."""
    c = counts if idx is None else counts[:, list(idx)]
    return float(_f1(c.sum(axis=1)).mean())


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _boot(counts: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Mean-over-seeds F1 of every resample: ``[R]``."""
    # counts [S, n, 3], draws [R, n] -> sums [S, R, 3]
    sums = np.stack([c[draws].sum(axis=1) for c in counts])
    return _f1(sums).mean(axis=0)


def bootstrap_ci(
    counts: np.ndarray,
    idx: Sequence[int] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[float] | None:
    """95% percentile interval ``[low, high]`` of the mean-over-seeds F1 (None: no post)."""
    c = counts if idx is None else counts[:, list(idx)]
    if c.shape[1] == 0:
        return None
    boot = _boot(c, _draws(c.shape[1], resamples, seed))
    return [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    idx: Sequence[int] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Paired bootstrap of ``F1(a) - F1(b)`` over the same posts: ``diff`` (observed),
    ``ci95`` (percentile interval) and a two-sided ``p`` (the share of resampled differences,
    centred on the observed one, at least as far from it as it is from 0).  None: no post."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"different test sets: {a.shape[1]} vs {b.shape[1]} posts")
    if idx is not None:
        a, b = a[:, list(idx)], b[:, list(idx)]
    n = a.shape[1]
    if n == 0:
        return None
    draws = _draws(n, resamples, seed)
    boot = _boot(a, draws) - _boot(b, draws)
    diff = mean_f1(a) - mean_f1(b)
    p = float(np.mean(np.abs(boot - diff) >= abs(diff) - 1e-12))
    return {
        "diff": diff,
        "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "p": p,
        "posts": n,
        "resamples": resamples,
    }
