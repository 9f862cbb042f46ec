"""Read an export folder's Parquet splits back into Python (``mmnerd.load_export``).

The splits are the files that exist among ``train.parquet``, ``dev.parquet`` or
``validation.parquet`` (the same split under its new name) and ``test.parquet``; each is keyed
by its file stem.  pandas and pyarrow are imported when called, ``datasets`` only for
``format="datasets"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmnerd.errors import InputError, MmnerdError

SPLIT_FILES: tuple[tuple[str, ...], ...] = (("train",), ("dev", "validation"), ("test",))
"""Split file stems in order; the names of one tuple are the same split."""
FORMATS: tuple[str, ...] = ("pandas", "datasets")


def split_files(root: Path) -> dict[str, Path]:
    """``{stem: path}`` of the split files in ``root``, in split order.

    Raises :class:`InputError` if ``root`` is not a folder, holds no split file, or holds both
    ``dev.parquet`` and ``validation.parquet``."""
    if not root.is_dir():
        raise InputError(f"export folder not found: {root} (run `mmnerd export` first)")
    found: dict[str, Path] = {}
    for names in SPLIT_FILES:
        present = [n for n in names if (root / f"{n}.parquet").is_file()]
        if len(present) > 1:
            raise InputError(
                f"{root} holds both {present[0]}.parquet and {present[1]}.parquet (the same "
                "split): remove the stale one"
            )
        if present:
            found[present[0]] = root / f"{present[0]}.parquet"
    if not found:
        raise InputError(
            f"no split file in {root}: expected train.parquet, dev.parquet or "
            "validation.parquet, test.parquet (run `mmnerd export` first)"
        )
    return found


def _read(path: Path):  # -> pyarrow.Table
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None


def load_export(path: str | Path, format: str = "pandas") -> Any:
    """The splits of the export folder ``path``; see :func:`mmnerd.load_export`."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    root = Path(path)
    files = split_files(root)
    if format == "pandas":
        return {stem: _read(file).to_pandas() for stem, file in files.items()}
    try:
        import datasets
    except ImportError:
        raise MmnerdError(
            "format='datasets' needs the Hugging Face datasets package: pip install datasets"
        ) from None
    return datasets.DatasetDict(
        {stem: _dataset(_read(file), root, file) for stem, file in files.items()}
    )


def _dataset(table: Any, root: Path, file: Path) -> Any:
    """An in-memory ``datasets.Dataset`` of one split table: ``image`` as an ``Image`` feature
    (null for a post without an image; a relative path resolved inside ``root``) and the tags
    as ``ClassLabel`` ids over the export's labels (schema 2: ``ner_tags``, from the features
    the Parquet metadata carries; schema 1: ``ner_tag_ids``)."""
    import json

    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    features = datasets.Features.from_arrow_schema(table.schema)  # reads the HF metadata
    meta = table.schema.metadata or {}
    if "ner_tag_ids" in features and b"mmnerd.labels" in meta:  # a schema 1 export
        names = json.loads(meta[b"mmnerd.labels"])
        features["ner_tag_ids"] = datasets.Sequence(datasets.ClassLabel(names=names))
    if "image" in table.column_names:
        images = [_image(v, root, file) for v in table.column("image").to_pylist()]
        col = pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        table = table.set_column(table.column_names.index("image"), "image", col)
        features["image"] = datasets.Image()
    table = table.cast(features.arrow_schema)
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))


def _image(value: dict[str, Any] | None, root: Path, file: Path) -> dict[str, Any] | None:
    """One ``image`` struct for the ``Image`` feature: None when the post has no image (both
    fields null), an absolute path when the bytes are not embedded."""
    from mmnerd.io import inside

    if not value or (value.get("bytes") is None and not value.get("path")):
        return None
    if value.get("bytes") is None:
        try:
            return {"bytes": None, "path": str(inside(root, value["path"]))}
        except InputError as exc:
            raise InputError(f"{file}: image {exc}") from None
    return value
