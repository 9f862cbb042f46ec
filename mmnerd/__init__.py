"""mmnerd: build and benchmark multilingual, multimodal named-entity datasets.

The Python API (docs/api.md), loaded on first use so ``import mmnerd`` stays instant:

    load_config(path, overrides)        a validated pipeline config
    run(config, command)                collect / dedup / annotate / pull / export
    run_stage(config, name)             one stage by name
    load_export(path, format)           an export's splits: pandas or datasets
    audit_leakage(corpus, against=...)  the leakage audit's report
    image_hash(path, kind), hamming(a, b)   perceptual hashes
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it)
USER_AGENT = (
    f"mmnerd/{__version__} (+https://github.com/mmnerd/mmnerd; research dataset builder; "
    "collects public posts for a named-entity corpus)"
)
"""The User-Agent of every request mmnerd makes (image downloads and API sources)."""
__all__ = [
    "__version__",
    "audit_leakage",
    "hamming",
    "image_hash",
    "load_config",
    "load_export",
    "run",
    "run_stage",
]


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from mmnerd import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmnerd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
