"""The Python API: what the CLI does, as functions (``import mmnerd`` exposes them lazily).

    import mmnerd

    cfg = mmnerd.load_config("pipelines/import-mmnerd.toml", ["data_dir='data/x'"])
    mmnerd.run(cfg, "collect")                 # a command: its stages, resumable
    mmnerd.run_stage(cfg, "dedup")             # or one stage by name
    mmnerd.run(cfg, "export")
    splits = mmnerd.load_export(cfg.export_dir)
    report = mmnerd.audit_leakage(cfg.export_dir, against="data/twitter2017")
    mmnerd.image_hash("photo.jpg")             # 16 hex digits (pHash)

Every function raises :class:`mmnerd.errors.MmnerdError` subclasses with one-line messages,
as the CLI prints them.  See docs/api.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the config module loads pydantic: only when a function needs it
    from mmnerd.config import PipelineConfig

COMMANDS = ("collect", "dedup", "annotate", "pull", "export")
"""What :func:`run` accepts (the make targets of a pipeline, in order)."""


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """A validated pipeline config from a TOML file, with ``section.field=value`` overrides
    (as ``--set``)."""
    from mmnerd.config import load_config as load

    return load(path, overrides)


def run(config: PipelineConfig, command: str, force: bool = False) -> list[Any]:
    """Run a command's stages (``collect``, ``dedup``, ``annotate`` (push), ``pull`` or
    ``export``), skipping finished ones unless ``force``; returns their stats.  Fails like
    the CLI when the last stage keeps no post (:class:`~mmnerd.errors.EmptyOutputError`)."""
    from mmnerd import stages
    from mmnerd.errors import ConfigError
    from mmnerd.pipeline import require_output

    if command == "export":
        from mmnerd.export import export

        _, stats = export(config, force=force)
    elif command in ("collect", "dedup", "annotate", "pull"):
        fn = {"collect": stages.run_collect, "dedup": stages.run_dedup,
              "annotate": stages.run_push}.get(command)  # fmt: skip
        stats = fn(config, force=force) if fn else stages.run_pull(config)
    else:
        raise ConfigError(f"unknown command {command!r}; one of {', '.join(COMMANDS)}")
    require_output(stats, command)
    return stats


def run_stage(config: PipelineConfig, name: str, force: bool = False) -> Any:
    """Run one stage by name (its input stage must have finished); returns its stats."""
    from mmnerd.stages import run_one

    return run_one(config, name, force=force)


def load_export(path: str | Path, format: str = "pandas") -> Any:
    """The splits of an export folder: pandas DataFrames, or a ``datasets.DatasetDict`` with
    ``format="datasets"`` (see :func:`mmnerd.export.load.load_export`)."""
    from mmnerd.export.load import load_export as load

    return load(path, format)


def audit_leakage(
    corpus: str | Path,
    against: str | Path | None = None,
    images: str | Path | None = None,
    against_images: str | Path | None = None,
    threshold: int = 10,
    text_threshold: float = 0.8,
    clean_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The leakage audit of an export or IMGID folder (optionally ``against`` a reference
    corpus counted as training data); returns the report, whose ``leaks`` lists every
    leaking post (see docs/audit.md).  ``clean_dir``: also write the corpus without them."""
    from mmnerd.audit import corpus_format, run_audit

    p = Path(corpus)
    return run_audit(
        p, corpus_format(p), Path(images) if images else None,
        Path(against) if against else None, Path(against_images) if against_images else None,
        threshold, text_threshold, Path(clean_dir) if clean_dir else None,
    )  # fmt: skip


def image_hash(path: str | Path, kind: str = "phash") -> str:
    """The perceptual hash of an image file, 16 hex digits (imagehash semantics; ``kind``:
    one of :data:`mmnerd.images.hashing.KINDS`: phash, dhash, whash, ahash)."""
    from mmnerd.images.hashing import hash_hex, hash_image

    return hash_hex(hash_image(str(path), kind))


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hashes given as hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
