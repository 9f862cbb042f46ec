"""The export's per-shard tasks (mmnerd/export/shards.py) give the files a single streaming
pass writes, byte for byte, on the local executor and on 2 Dask workers."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmnerd
from mmnerd.config import PipelineConfig
from mmnerd.export import export
from mmnerd.export.card import write_card
from mmnerd.export.conll import id_map_writer, write_imgid_split
from mmnerd.export.parquet import write_parquet_splits
from mmnerd.pipeline import Runner, iter_stage, seed_stage
from tests.export.test_export import make_posts


def seeded(root: Path, embed: bool, **extra) -> PipelineConfig:
    """A finished dedup stage of 90 labelled posts (two in three with a picture, clusters
    of 3) in shards of 20, exported with the source's gold labels."""
    cfg = PipelineConfig(
        data_dir=str(root),
        shard_size=20,
        export={"labels": "source", "row_group_size": 16, "embed_images": embed},
        **extra,
    )
    posts = make_posts(90, root=cfg.root)
    for i, p in enumerate(posts):
        p.gold_spans, p.spans, p.ner_tags = p.spans, [], []
        if i % 3 == 2:
            p.image = None  # text-only
    seed_stage(cfg, "dedup", posts, shard_size=20)
    return cfg


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("embed", [True, False])
def test_shard_tasks_write_what_one_streaming_pass_writes(tmp_path, embed):
    cfg = seeded(tmp_path / "d", embed)
    manifest, _ = export(cfg)
    got = files(cfg.export_dir)
    assert ".parts" not in "".join(got)  # the parts are gone
    assert sum(f["rows"] for f in manifest["files"]) == 90
    if not embed:
        assert sum(k.startswith("images/") for k in got) == 60
    # the same stage output written in one pass by the streaming writers
    ref = PipelineConfig(
        data_dir=str(cfg.root),
        export={**cfg.export.model_dump(), "out_dir": str(tmp_path / "ref")},
    )
    posts = lambda: iter_stage(ref, "split")  # noqa: E731
    ref_manifest = write_parquet_splits(posts, ref)
    assert ref_manifest["files"] == manifest["files"]
    with id_map_writer(ref.export_dir / "imgid") as id_map:
        for split, name in (("train", "train.txt"), ("validation", "valid.txt"),
                            ("test", "test.txt")):  # fmt: skip
            write_imgid_split(
                (p for p in posts() if p.split == split),
                ref.export_dir / "imgid" / name,
                ref.root / "images",
                id_map=id_map,
            )
    write_card(ref, posts(), [])
    want = files(ref.export_dir)
    for name, data in want.items():
        if name not in ("README.md", "manifest.json"):  # the card's stage table differs
            assert got[name] == data, name
    assert set(got) == set(want)
    card, ref_card = got["README.md"].decode(), want["README.md"].decode()
    assert card.split("### Deduplication")[0] == ref_card.split("### Deduplication")[0]
    frames = mmnerd.load_export(cfg.export_dir)
    assert sum(len(f) for f in frames.values()) == 90
    export(cfg)  # a rerun gives the same bytes
    assert files(cfg.export_dir) == got


@pytest.mark.slow
def test_dask_export_equals_local(tmp_path):
    pytest.importorskip("dask.distributed")
    local = seeded(tmp_path / "local", embed=False)
    dask = seeded(tmp_path / "dask", embed=False, executor={"kind": "dask", "workers": 2})
    export(local)
    runner = Runner(dask)
    try:
        export(dask, runner)
    finally:
        runner.executor.close()
    assert files(local.export_dir) == files(dask.export_dir)
