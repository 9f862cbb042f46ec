"""The export's heavy work as executor tasks, one per shard of the split stage; the driver
only merges their outputs and small summaries.

Each shard is read twice, on the executor (local: in this process; Dask: on workers):

1. :func:`rows_task` builds the Parquet rows of its posts (copying pictures into
   ``images/`` in path mode) and writes them per split as an Arrow IPC part
   ``<export>/.parts/<split>/<shard>.arrow``; it returns the rows per split, the card's
   figures (:class:`~mmnerd.export.card.CardTables`) and whether every post has a
   published IMGID.
2. :func:`imgid_task`, once the driver knows whether the IMGIDs are published or encoded
   (every post of the corpus must have one to keep them), writes the shard's IMGID lines
   and ``ids.tsv`` lines per split and copies its pictures into ``imgid/images/``.

The driver concatenates the parts in shard order: the IPC parts into one Parquet file per
split (:func:`~mmnerd.export.parquet.merge_parts`: re-cut into row groups, no row is
decoded into Python), the text parts by a byte copy; it merges the card's figures and
writes the manifest and the card.  The files are those a single streaming pass writes
(same bytes), whichever executor ran the tasks; ``.parts/`` is removed at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.io import atomic_write, read_posts, remove_stale_temps
from mmnerd.pipeline import shard_ids, stage_dir
from mmnerd.records import SPLITS, arrow_schema

from .card import CardTables
from .conll import ID_MAP, SPLIT_FILES, clean_temps, write_imgid_split
from .parquet import manifest_of, merge_parts, post_row, write_part

PARTS = ".parts"
STAGE = "split"


def _shard(config: PipelineConfig, sid: str) -> Path:
    return stage_dir(config, STAGE) / f"shard-{sid}.jsonl"


def rows_task(config: PipelineConfig, sid: str) -> dict[str, Any]:
    """Phase 1 for shard ``sid`` (runs on the executor): Parquet rows per split as IPC
    parts; returns ``{"rows": {split: n}, "tables": CardTables, "all_imgid": bool}``."""
    out = config.export_dir
    embed = config.export.embed_images
    schema = arrow_schema(embed_images=embed)
    image_root = config.root / "images"
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    tables = CardTables()
    all_imgid = True
    for post in read_posts(_shard(config, sid)):
        tables.add(post)
        all_imgid = all_imgid and bool(post.imgid)
        if post.split in rows:
            rows[post.split].append(post_row(post, image_root, embed, out))
    for split, split_rows in rows.items():
        if split_rows:
            write_part(split_rows, out / PARTS / split / f"{sid}.arrow", schema)
    return {
        "rows": {s: len(r) for s, r in rows.items()},
        "tables": tables,
        "all_imgid": all_imgid,
    }


def imgid_task(config: PipelineConfig, sid: str, keep_ids: bool) -> None:
    """Phase 2 for shard ``sid`` (runs on the executor): its IMGID lines and ``ids.tsv``
    lines per split (``<export>/.parts/imgid/<split>/<shard>.txt|.tsv``), its pictures
    copied into ``imgid/images/``."""
    out = config.export_dir
    posts = list(read_posts(_shard(config, sid)))  # one shard
    for split in SPLIT_FILES:
        members = [p for p in posts if p.split == split]
        if not members:
            continue
        folder = out / PARTS / "imgid" / split
        with atomic_write(folder / f"{sid}.tsv", durable=False) as id_map:
            write_imgid_split(
                members,
                folder / f"{sid}.txt",
                config.root / "images",
                config.export.conll_misc_label,
                keep_ids=keep_ids,
                id_map=id_map,
                images=out / "imgid" / "images",
                durable=False,  # a part: the concatenated file is synced
            )


def _concat(parts: list[Path], path: Path, header: bytes = b"") -> None:
    """Byte-concatenate ``parts`` (those that exist, in order) into ``path``, atomically."""
    with atomic_write(path, "wb") as f:
        f.write(header)
        for part in parts:
            if part.exists():
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)


def write_export_files(config: PipelineConfig, executor: Any) -> tuple[dict[str, Any], dict]:
    """Write the Parquet splits and the IMGID files of the finished split stage with
    ``executor``; returns (the manifest to write, the card's merged figures as a dict)."""
    out = config.export_dir
    parts = out / PARTS
    shutil.rmtree(parts, ignore_errors=True)  # left by an export that was killed
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    remove_stale_temps(out / "images")
    sids = shard_ids(config, STAGE)
    results = executor.map_tasks(rows_task, [(config, s) for s in sids], "export rows")
    schema = arrow_schema(embed_images=config.export.embed_images)
    files = []
    for split in SPLITS:
        have = [parts / split / f"{s}.arrow" for s, r in zip(sids, results, strict=True)
                if r["rows"][split]]  # fmt: skip
        files.append(
            merge_parts(have, out / f"{split}.parquet", schema, config.export.row_group_size)
        )
    manifest = manifest_of(config, files)
    tables = CardTables()
    for r in results:
        tables.merge(r["tables"])
    keep_ids = all(r["all_imgid"] for r in results)  # a pure IMGID import
    imgid = out / "imgid"
    clean_temps(imgid)
    (imgid / "images").mkdir(parents=True, exist_ok=True)
    executor.map_tasks(imgid_task, [(config, s, keep_ids) for s in sids], "export imgid")
    for split, name in SPLIT_FILES.items():
        _concat([parts / "imgid" / split / f"{s}.txt" for s in sids], imgid / name)
    tsv = [parts / "imgid" / split / f"{s}.tsv" for split in SPLIT_FILES for s in sids]
    _concat(tsv, imgid / ID_MAP, b"imgid\tpost_id\tsplit\tlang\n")
    shutil.rmtree(parts, ignore_errors=True)
    manifest["imgid"] = {
        "files": [f"imgid/{name}" for name in SPLIT_FILES.values()],
        "ids": "published" if keep_ids else "encoded",
        "id_map": f"imgid/{ID_MAP}",
    }
    return manifest, tables.to_dict()
