"""The 2M-NER reference trainer and its baselines, reading MMNERD-style Parquet exports.

Run ``python -m baselines.benchmark --export DIR --report-dir DIR`` (see docs/benchmark.md).
Nothing here is imported by :mod:`mmnerd`; the trainer reads only the exported files and
:mod:`mmnerd.records` (labels and Arrow schema).  torch / transformers load lazily.
"""

from __future__ import annotations

from baselines.errors import BenchmarkError

__all__ = ["BenchmarkError"]
