"""mmnerd.load_export: an export made by the real export code, read back as pandas or datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mmnerd
from mmnerd.config import PipelineConfig
from mmnerd.errors import InputError, MmnerdError
from mmnerd.export.parquet import write_parquet_splits
from mmnerd.export.splits import assign_splits
from mmnerd.records import LABELS, arrow_schema
from tests.export.test_export import make_posts


def _export(tmp_path: Path, embed: bool = True) -> tuple[Path, dict, set[str]]:
    """60 posts, every third without an image (as imported corpora ship); returns the export
    folder, the manifest and the ids of the posts without an image."""
    cfg = PipelineConfig(
        data_dir=str(tmp_path / "d"), export={"row_group_size": 16, "embed_images": embed}
    )
    posts = make_posts(60, root=cfg.root)
    split = assign_splits(posts)
    no_image = set()
    for i, p in enumerate(posts):
        p.split = split[p.id]
        if i % 3 == 0:
            p.image = None
            no_image.add(p.id)
    manifest = write_parquet_splits(lambda: posts, cfg)
    return cfg.export_dir, manifest, no_image


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, dict, set[str]]:
    return _export(tmp_path)


def test_pandas_splits_rows_and_missing_images(export) -> None:
    root, manifest, no_image = export
    frames = mmnerd.load_export(root)
    assert list(frames) == ["train", "validation", "test"]
    assert {k: len(v) for k, v in frames.items()} == {
        f["file"].removesuffix(".parquet"): f["rows"] for f in manifest["files"]
    }
    df = frames["train"]
    assert list(df.columns) == arrow_schema().names
    for _, row in df.iterrows():
        if row["id"] in no_image:
            assert row["image"] is None and pd.isna(row["image_sha256"])  # text-only: null
        else:
            assert row["image"]["bytes"][:4] == b"\x89PNG" and len(row["image_sha256"]) == 64
    assert mmnerd.load_export(root, format="pandas").keys() == frames.keys()


def test_an_older_dev_file_and_partial_splits(export) -> None:
    root, _, _ = export
    (root / "validation.parquet").rename(root / "dev.parquet")  # an export of schema 1
    assert list(mmnerd.load_export(root)) == ["train", "dev", "test"]
    (root / "test.parquet").unlink()
    assert list(mmnerd.load_export(root)) == ["train", "dev"]


def test_errors_are_one_line(export, tmp_path: Path) -> None:
    root, _, _ = export
    with pytest.raises(InputError, match="export folder not found") as e:
        mmnerd.load_export(tmp_path / "nope")
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no split file in"):
        mmnerd.load_export(tmp_path / "empty")
    (root / "dev.parquet").write_bytes((root / "validation.parquet").read_bytes())
    with pytest.raises(InputError, match="both dev.parquet and validation.parquet"):
        mmnerd.load_export(root)
    (root / "dev.parquet").unlink()
    (root / "test.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="test.parquet: not a readable Parquet file"):
        mmnerd.load_export(root)
    with pytest.raises(ValueError, match="format must be one of pandas, datasets"):
        mmnerd.load_export(root, format="polars")


def test_datasets_dict_with_image_feature(export, monkeypatch, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    root, manifest, no_image = export
    monkeypatch.chdir(tmp_path)  # nothing depends on the working directory
    ds = mmnerd.load_export(root, format="datasets")
    assert isinstance(ds, datasets.DatasetDict) and list(ds) == ["train", "validation", "test"]
    assert {k: v.num_rows for k, v in ds.items()} == {
        f["file"].removesuffix(".parquet"): f["rows"] for f in manifest["files"]
    }
    train = ds["train"]
    assert isinstance(train.features["image"], datasets.Image)
    assert train.features["ner_tags"].feature.names == list(LABELS)
    seen = {True: 0, False: 0}
    for row in train:
        has = row["id"] not in no_image
        seen[has] += 1
        assert (row["image"] is not None) == has
        if has:
            assert row["image"].size == (8, 8)
        assert [LABELS[i] for i in row["ner_tags"]] == row["ner_tags_str"]
    assert seen[True] and seen[False]


def test_datasets_path_mode_resolves_inside_the_export(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("datasets")
    root, _, no_image = _export(tmp_path, embed=False)
    monkeypatch.chdir(tmp_path / "d")
    row = next(r for r in mmnerd.load_export(root, "datasets")["train"] if r["id"] not in no_image)
    assert row["image"].size == (8, 8)
    table = pq.read_table(root / "test.parquet").to_pylist()
    table[1]["image"] = {"bytes": None, "path": "../../outside.png"}
    pq.write_table(pa.Table.from_pylist(table, schema=arrow_schema(False)), root / "test.parquet")
    with pytest.raises(InputError, match="test.parquet: image path '../../outside.png' escapes"):
        mmnerd.load_export(root, "datasets")


def test_datasets_not_installed_is_one_line(export, monkeypatch) -> None:
    root, _, _ = export
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(MmnerdError, match="needs the Hugging Face datasets package: pip install"):
        mmnerd.load_export(root, format="datasets")


def test_import_mmnerd_stays_light() -> None:
    code = (
        "import sys, mmnerd; assert callable(mmnerd.load_export);"
        "print([m for m in ('pandas', 'pyarrow', 'datasets', 'mmnerd.export', 'pydantic')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
