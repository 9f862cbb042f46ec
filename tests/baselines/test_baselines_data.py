"""Export loading, sub-word label alignment, image preprocessing, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from baselines.data import (
    IGNORE,
    ImageSpec,
    align_labels,
    collate,
    encode_subwords,
    load_export,
    preprocess_image,
    train_wordpiece,
)
from baselines.errors import BenchmarkError
from baselines.synthetic import draw_image, write_synthetic_export
from mmnerd.records import LABEL2ID, arrow_schema


def test_align_labels_first_subtoken_only() -> None:
    #          [CLS] Jor ##dan is  Par ##is [SEP]
    word_ids = [None, 0, 0, 1, 2, 2, None]
    tags = [LABEL2ID["B-PER"], LABEL2ID["O"], LABEL2ID["B-LOC"]]
    assert align_labels(word_ids, tags) == [IGNORE, 1, IGNORE, 0, 3, IGNORE, IGNORE]


def test_encode_subwords_with_trained_wordpiece() -> None:
    tok = train_wordpiece([["Paris", "is", "nice"], ["Berlin", "is", "big"]] * 5, vocab_size=60)
    tokens = ["Parisis", "is", "Zürich"]
    enc = encode_subwords(tok, tokens, ["B-LOC", "O", "B-LOC"], max_length=32)
    ids = enc.input_ids
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert len(ids) > len(tokens) + 2  # some words split into several sub-words
    assert enc.kept_words == [0, 1, 2]
    assert [enc.labels[p] for p in enc.word_index] == [3, 0, 3]
    assert sum(lab != IGNORE for lab in enc.labels) == 3
    # truncation drops the last words from kept_words
    short = encode_subwords(tok, tokens, ["B-LOC", "O", "B-LOC"], max_length=3)
    assert short.kept_words == [0]
    batch = collate([enc, short], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(ids))
    assert batch["word_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["attention_mask"][1].sum() == 3


def test_preprocess_image() -> None:
    import random

    spec = ImageSpec(16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    arr = preprocess_image(draw_image("PER", random.Random(0), 40), spec)
    assert arr.shape == (3, 16, 16) and arr.dtype == np.float32
    assert arr.min() >= -1.01 and arr.max() <= 1.01
    assert not preprocess_image(None, spec).any()
    assert not preprocess_image(b"not an image", spec).any()


def test_load_export_embedded_and_paths(tmp_path: Path) -> None:
    write_synthetic_export(tmp_path / "a", {"train": 5, "dev": 2, "test": 2}, embed_images=False)
    data = load_export(tmp_path / "a")
    assert [len(data.splits[s]) for s in ("train", "dev", "test")] == [5, 2, 2]
    ex = data.splits["train"][0]
    assert ex.image_key and data.images.get(ex.image_key)[:4] == b"\x89PNG"
    assert ex.image_decided is not None
    ids = {data.splits["dev"][0].id}
    data2 = load_export(tmp_path / "a", image_decided_ids=ids)
    assert [e.image_decided for e in data2.splits["dev"]] == [True, False]


def test_load_export_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not found"):
        load_export(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match="train.parquet"):
        load_export(tmp_path / "empty")
    for split in ("train", "dev", "test"):
        pq.write_table(arrow_schema().empty_table(), tmp_path / "empty" / f"{split}.parquet")
    with pytest.raises(BenchmarkError, match="no rows"):
        load_export(tmp_path / "empty")
    write_synthetic_export(tmp_path / "bad", {"train": 2, "dev": 1, "test": 1})
    t = pq.read_table(tmp_path / "bad" / "train.parquet").to_pylist()
    t[0]["ner_tags_str"] = ["B-FOO"] * len(t[0]["tokens"])
    pq.write_table(pa.Table.from_pylist(t), tmp_path / "bad" / "train.parquet")
    with pytest.raises(BenchmarkError, match=r"unknown tag\(s\) \['B-FOO'\]"):
        load_export(tmp_path / "bad")
    for row in t:
        del row["ner_tags_str"]  # class ids only: an id outside the label list
    t[0]["ner_tags"] = [99] * len(t[0]["tokens"])
    pq.write_table(pa.Table.from_pylist(t), tmp_path / "bad" / "train.parquet")
    with pytest.raises(BenchmarkError, match=r"unknown tag\(s\) \['99'\]"):
        load_export(tmp_path / "bad")


def test_unknown_columns_are_ignored(tmp_path: Path) -> None:
    write_synthetic_export(tmp_path, {"train": 3, "dev": 1, "test": 1})
    t = pq.read_table(tmp_path / "train.parquet")
    info = pa.array([{"note": "x", "scores": [1.0]}] * t.num_rows)
    pq.write_table(t.append_column("info", info), tmp_path / "train.parquet")
    assert len(load_export(tmp_path).splits["train"]) == 3


def test_validation_parquet_is_the_dev_split(tmp_path: Path) -> None:
    write_synthetic_export(tmp_path, {"train": 3, "dev": 2, "test": 1})
    (tmp_path / "dev.parquet").rename(tmp_path / "validation.parquet")
    data = load_export(tmp_path)
    assert len(data.splits["dev"]) == 2 and data.files["dev"] == "validation.parquet"
    assert data.stats()["dev"]["file"] == "validation.parquet"
    pq.write_table(pq.read_table(tmp_path / "validation.parquet"), tmp_path / "dev.parquet")
    with pytest.raises(BenchmarkError, match="remove the stale one"):
        load_export(tmp_path)
    (tmp_path / "dev.parquet").unlink()
    (tmp_path / "validation.parquet").unlink()
    with pytest.raises(BenchmarkError, match="dev.parquet or validation.parquet"):
        load_export(tmp_path)


def test_posts_without_image_and_coverage(tmp_path: Path) -> None:
    sizes = {"train": 20, "dev": 4, "test": 5}
    write_synthetic_export(tmp_path, sizes, image_share={"train": 0.5, "test": 0.0})
    row = pq.read_table(tmp_path / "test.parquet").to_pylist()[0]
    assert row["image"] == {"bytes": None, "path": None} and row["image_sha256"] == ""
    data = load_export(tmp_path)
    stats = data.stats()
    want = {"with_image": 0, "without_image": 5, "without_image_pct": 100.0}
    assert stats["test"].items() >= want.items()
    assert stats["dev"]["with_image"] == 4 and stats["dev"]["with_image_pct"] == 100.0
    train = stats["train"]
    assert 0 < train["without_image"] < 20
    assert train["with_image"] == data.with_image("train") == 20 - train["without_image"]
    assert train["with_image_pct"] == round(100 * train["with_image"] / 20, 1)
    assert all(not e.has_image for e in data.splits["test"])
