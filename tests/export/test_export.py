"""Splits, Parquet files, manifest and card, on posts built in the test."""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections import Counter

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmnerd.config import PipelineConfig
from mmnerd.export.card import write_card
from mmnerd.export.parquet import write_parquet_splits
from mmnerd.export.splits import SPLITS, assign_splits
from mmnerd.records import EXPORT_COLUMNS, LABELS, ImageRef, Post, Span, arrow_schema

LANGS = ["en", "fr", "de", "es"]


def make_posts(n: int, seed: int = 0, root=None) -> list[Post]:
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        lang = LANGS[i % 4]
        tokens = ["Visit", "Paris", "now", str(i)]
        label = rng.choice(["LOC", "PER", "ORG", "MISC"])
        p = Post(
            id=f"t:{i:05d}",
            source="t",
            source_id=str(i),
            text=" ".join(tokens),
            lang=lang,
            tokens=tokens,
            token_offsets=[(0, 5), (6, 11), (12, 15), (16, 16 + len(str(i)))],
            spans=[Span(6, 11, label, "Paris")],
            ner_tags=["O", f"B-{label}", "O", "O"],
            created_at=f"2026-01-{1 + i % 28:02d}T00:00:00Z",
            synthetic=True,
            image_decided=(None, True, False)[i % 3],
            labels_from=("simulated", "source", "simulated", "annotators")[i % 4],
        )
        if i % 10 == 0 and i:  # clusters of 3 near-duplicates
            for j in (i - 1, i - 2):
                posts[j].cluster_id = f"c{i}"
            p.cluster_id = f"c{i}"
        if root is not None:
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(buf, "PNG")
            data = buf.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            (root / "images").mkdir(parents=True, exist_ok=True)
            (root / "images" / f"{sha}.png").write_bytes(data)
            p.image = ImageRef(
                url="http://x/a.png", status="ok", sha256=sha, path=f"{sha}.png", width=8, height=8
            )
        posts.append(p)
    return posts


def test_clusters_never_straddle_and_ratios_hold():
    posts = make_posts(1000)
    a = assign_splits(posts, (0.8, 0.1, 0.1), seed=1)
    by_cluster: dict[str, set[str]] = {}
    for p in posts:
        if p.cluster_id:
            by_cluster.setdefault(p.cluster_id, set()).add(a[p.id])
    assert by_cluster and all(len(s) == 1 for s in by_cluster.values())
    for lang in LANGS:  # stratified: every language near 80/10/10
        c = Counter(a[p.id] for p in posts if p.lang == lang)
        n = sum(c.values())
        assert abs(c["train"] / n - 0.8) < 0.03 and abs(c["test"] / n - 0.1) < 0.03
    for label in ("PER", "LOC", "ORG", "MISC"):  # and by entity types present
        c = Counter(a[p.id] for p in posts if p.spans[0].label == label)
        n = sum(c.values())
        assert abs(c["test"] / n - 0.1) < 0.04, (label, c)


def test_deterministic_for_a_seed_and_different_across_seeds():
    posts = make_posts(300)
    assert assign_splits(posts, seed=5) == assign_splits(list(reversed(posts)), seed=5)
    assert assign_splits(posts, seed=5) != assign_splits(posts, seed=6)


def test_fixed_test_set_survives_new_data():
    old = make_posts(300)
    a = assign_splits(old, seed=2)
    test_ids = {i: "test" for i, s in a.items() if s == "test"}
    b = assign_splits(make_posts(600), seed=2, fixed=test_ids)
    assert all(b[i] == "test" for i in test_ids)


def test_fixed_test_ids_missing_from_the_corpus_are_never_silent(tmp_path, capsys):
    """Issue 20.7: ids of ``export.fixed_test`` that are not in the corpus were ignored
    silently.  Some missing: counted (``fixed_test_missing``) and warned about; none
    found (a wrong file) or an empty file: one-line error naming the field."""
    from mmnerd.errors import ConfigError
    from mmnerd.export.splits import SplitStage
    from mmnerd.pipeline import Runner, iter_stage, seed_stage

    ids = tmp_path / "test-ids.txt"
    cfg = PipelineConfig.model_validate(
        {"data_dir": str(tmp_path / "d"), "export": {"fixed_test": str(ids)}}
    )
    seed_stage(cfg, "pull", make_posts(40))
    ids.write_text("t:00003\nt:00007\ngone:1\ngone:2\n")
    stats = Runner(cfg).run_stage(SplitStage())
    assert stats.flagged["fixed_test_missing"] == 2
    assert "2 of 4 export.fixed_test ids are not in this corpus" in capsys.readouterr().err
    split = {p.id: p.split for p in iter_stage(cfg, "split")}
    assert split["t:00003"] == split["t:00007"] == "test"
    for content, expected in (("gone:1\ngone:2\n", "none of the 2 ids"), ("\n", "no post ids")):
        ids.write_text(content)
        with pytest.raises(ConfigError, match=expected) as e:
            Runner(cfg).run_stage(SplitStage(), force=True)
        assert "export.fixed_test" in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def exported(tmp_path):
    cfg = PipelineConfig(data_dir=str(tmp_path / "d"), export={"row_group_size": 16})
    posts = make_posts(120, root=cfg.root)
    a = assign_splits(posts)
    for p in posts:
        p.split = a[p.id]
    manifest = write_parquet_splits(lambda: posts, cfg)
    dedup = {
        "config": {"hash": "phash", "threshold": 10, "text_threshold": 0.8},
        "clusters": 7,
        "posts": 120,
        "posts_in_clusters": 21,
        "cluster_size_histogram": {"3": 7},
        "duplicates": {"duplicate_image": 14, "duplicate_text": 0},
    }
    write_card(cfg, posts, [], dedup)
    return cfg, posts, manifest


def test_parquet_schema_rows_and_manifest(exported):
    cfg, posts, manifest = exported
    total = 0
    for entry in manifest["files"]:
        path = cfg.export_dir / entry["file"]
        table = pq.read_table(path)
        meta = table.schema.metadata
        assert json.loads(meta[b"mmnerd.labels"]) == list(LABELS)
        assert table.num_rows == entry["rows"]
        assert pq.ParquetFile(path).metadata.num_row_groups == -(-entry["rows"] // 16)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        row = table.slice(0, 1).to_pylist()[0]
        assert row["ner_tags"] == [LABELS.index(t) for t in row["ner_tags_str"]]
        assert table.schema.names == [name for name, _, _ in EXPORT_COLUMNS]
        assert Image.open(io.BytesIO(row["image"]["bytes"])).size == (8, 8)
        by_id = {p.id: p for p in posts}
        flags = table.select(["id", "image_decided"]).to_pylist()
        assert all(r["image_decided"] is by_id[r["id"]].image_decided for r in flags)
        total += table.num_rows
    assert total == len(posts)


def test_same_input_gives_byte_identical_files(exported, tmp_path):
    cfg, posts, manifest = exported
    cfg2 = PipelineConfig(
        data_dir=str(cfg.root), export={"row_group_size": 16, "out_dir": str(tmp_path / "again")}
    )
    again = write_parquet_splits(lambda: posts, cfg2)
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in manifest["files"]]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_export_folder_is_a_hugging_face_dataset(exported, hf_cache):
    """load_dataset(<export folder>) as is: the splits run_ner.py expects, ClassLabel tags,
    Image pictures, every column (the card's features must match the Parquet files)."""
    import datasets

    cfg, posts, manifest = exported
    ds = datasets.load_dataset(str(cfg.export_dir))
    assert list(ds) == ["train", "validation", "test"]
    assert {s: ds[s].num_rows for s in ds} == {
        f["file"].removesuffix(".parquet"): f["rows"] for f in manifest["files"]
    }
    features = ds["train"].features
    assert list(features) == [name for name, _, _ in EXPORT_COLUMNS]
    assert isinstance(features["ner_tags"].feature, datasets.ClassLabel)
    assert features["ner_tags"].feature.names == list(LABELS)
    assert isinstance(features["image"], datasets.Image)
    row = ds["train"][0]
    assert row["image"].size == (8, 8)  # a PIL image
    assert [LABELS[i] for i in row["ner_tags"]] == row["ner_tags_str"]
    # run_ner.py: text_column "tokens", label_column "ner_tags", a ClassLabel to name labels
    assert {"tokens", "ner_tags"} <= set(ds["validation"].column_names)
    # the Parquet files alone carry the same features (load_dataset("parquet", ...))
    files = {s: str(cfg.export_dir / f"{s}.parquet") for s in SPLITS}
    again = datasets.load_dataset("parquet", data_files=files)
    assert again["train"].features == features


def test_card_yaml_is_valid_and_its_features_are_the_files(exported):
    import yaml
    from datasets import Features

    cfg, posts, _ = exported
    card = (cfg.export_dir / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["language"] == sorted(LANGS) and header["multilinguality"] == "multilingual"
    assert header["task_ids"] == ["named-entity-recognition"]
    for key in ("license", "annotations_creators", "source_datasets", "size_categories"):
        assert header[key]
    yaml_features = Features._from_yaml_list(header["dataset_info"]["features"])
    assert yaml_features == Features.from_arrow_schema(arrow_schema())
    assert [c["split"] for c in header["configs"][0]["data_files"]] == list(SPLITS)
    for section in ("## Loading", "### Data instances", "### Data fields", "### Data splits",
                    "## Personal and sensitive information", "## Citation", "arXiv:2404.17122",
                    "load_dataset("):  # fmt: skip
        assert section in card, section
    assert "SYNTHETIC" in card
    # who labelled what: simulated annotators, the source's gold, people; the image flag
    assert "- **60 posts were labelled by SIMULATED annotators**" in card
    assert "- 30 posts nobody annotated keep the source's own gold labels" in card
    assert "- 30 posts were labelled by annotators" in card
    assert "- `image_decided`: 40 posts whose image decided" in card and "40 not recorded" in card
    n_fr = sum(1 for p in posts if p.lang == "fr")
    assert f"| fr | {n_fr} |" in card
    assert (cfg.export_dir / "label_distribution.png").stat().st_size > 1000
    assert "7 clusters over 21 of 120 posts" in card and "14 by image" in card


@pytest.mark.parametrize("name", ["my corpus: v2 #1", "quote ' and \" and - dash", "[x]"])
def test_any_pipeline_name_gives_valid_yaml(tmp_path, name):
    import yaml

    cfg = PipelineConfig(name=name, data_dir=str(tmp_path), export={"out_dir": str(tmp_path)})
    posts = make_posts(8)
    for p in posts:
        p.split = "train"
    write_card(cfg, posts, [])
    header = yaml.safe_load((tmp_path / "README.md").read_text().split("---\n")[1])
    assert header["pretty_name"] == f"{name} (synthetic)"


@pytest.mark.parametrize("seed", [1, 7])
def test_compact_split_keys_give_the_same_assignment(seed):
    """The split stage's arrays (SplitKeys, assign_split_codes) give assign_splits' result:
    clusters, ties in the majority language, several entity types, pinned posts."""
    from mmnerd.export.splits import SplitKeys, assign_split_codes

    posts = make_posts(700)
    for k, p in enumerate(posts):
        p.lang = ["en", "fr", "de"][k % 3] if k % 11 else "es"
        if k % 7 == 0:
            p.cluster_id = f"img-c{k % 40}"  # clusters of mixed languages
    fixed = {posts[3].id: "test", posts[50].id: "test"}
    keys = SplitKeys()
    for p in reversed(posts):  # the stream order must not matter either
        keys.add(p)
    codes = assign_split_codes(keys, (0.7, 0.15, 0.15), seed, fixed)
    expected = assign_splits(posts, (0.7, 0.15, 0.15), seed, fixed)
    assert {p.id: SPLITS[c] for p, c in zip(reversed(posts), codes, strict=True)} == expected


def test_split_codes_when_order_digest_prefixes_collide(monkeypatch):
    """The arrays sort groups by the first 8 bytes of their order digest; equal prefixes
    (forced here: 4 distinct values) fall back to the full digest, as assign_splits sorts."""
    from mmnerd.export import splits

    words = splits._order_words
    monkeypatch.setattr(splits, "_order_words", lambda *a: words(*a) >> 62)
    posts = make_posts(400)
    keys = splits.SplitKeys()
    for p in posts:
        keys.add(p)
    codes = splits.assign_split_codes(keys, (0.6, 0.2, 0.2), 3)
    expected = assign_splits(posts, (0.6, 0.2, 0.2), 3)
    assert {p.id: SPLITS[c] for p, c in zip(posts, codes, strict=True)} == expected
