"""mmnerd: build and benchmark multilingual, multimodal named-entity datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__version__ = "0.1.0"
__all__ = ["__version__", "load_export"]


def load_export(path: str | Path, format: str = "pandas") -> Any:
    """Load the Parquet splits of an export folder (``mmnerd export`` output).

    Reads the split files that exist among ``train.parquet``, ``validation.parquet`` (or
    ``dev.parquet`` in an export of schema 1) and ``test.parquet``, keyed by file stem;
    columns as in docs/schema.md.  Everything is read into memory.

    - ``format="pandas"`` (default): ``dict[str, pandas.DataFrame]``, rows as stored (``image``
      is a dict ``{"bytes", "path"}``, both None for a post without an image; in path mode
      ``path`` is relative to the export folder).
    - ``format="datasets"``: a ``datasets.DatasetDict``; ``image`` is a ``datasets.Image``
      feature (PIL image on access, None for a post without an image; paths resolved inside
      the export folder) and ``ner_tags`` a sequence of ``ClassLabel`` over the labels.

    Raises :class:`mmnerd.errors.InputError` (one line) if the folder is missing, holds no
    split file, holds both ``dev`` and ``validation``, or a file is not Parquet;
    :class:`mmnerd.errors.MmnerdError` if ``datasets`` is asked for but not installed.

        import mmnerd
        splits = mmnerd.load_export("data/sample/export")   # {"train": DataFrame, ...}
        ds = mmnerd.load_export("data/sample/export", format="datasets")
    """
    from mmnerd.export.load import load_export as _load

    return _load(path, format)
