"""Write the split posts as Parquet files (one per split) plus a manifest.

Rows follow :func:`mmnerd.records.arrow_schema`; files are written to a temp
name and renamed, rows are sorted by id and written in row groups of
``export.row_group_size``, so the same input gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.io import atomic_write, copy_atomic, inside, remove_stale_temps, write_json
from mmnerd.records import LABEL2ID, SCHEMA_VERSION, SPLITS, Post, arrow_schema


def post_row(post: Post, image_root: Path, embed: bool, out_dir: Path) -> dict[str, Any]:
    """One Parquet row (a dict matching the schema) for an annotated post."""
    img = post.image if post.has_image else None  # text-only: null image columns
    image: dict[str, Any] | None = None
    if img is not None:
        src = inside(image_root, img.path)
        if embed:
            image = {"bytes": src.read_bytes(), "path": Path(img.path).name}
        else:
            rel = f"images/{Path(img.path).name}"
            copy_atomic(src, out_dir / rel)  # a killed export leaves no half-copied image
            image = {"bytes": None, "path": rel}
    return {
        "id": post.id,
        "lang": post.lang,
        "text": post.text,
        "tokens": post.tokens,
        "ner_tags": [LABEL2ID[t] for t in post.ner_tags],
        "ner_tags_str": post.ner_tags,
        "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in post.spans],
        "image": image,
        "image_sha256": img.sha256 if img else None,
        "image_phash": (img.phash or None) if img else None,
        "width": img.width if img else None,
        "height": img.height if img else None,
        "source": post.source,
        "source_id": post.source_id,
        "url": post.url,
        "created_at": post.created_at,
        "licence": post.licence,
        "author_hash": post.author_hash,
        "synthetic": post.synthetic,
        "annotator_count": post.annotator_count,
        "agreement": post.agreement,
        "image_decided": post.image_decided,
        "cluster_id": post.cluster_id,
        "split": post.split,
    }


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in rows:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_split(
    posts: Iterable[Post], path: Path, config: PipelineConfig, out_dir: Path
) -> dict[str, Any]:
    """Stream posts into one Parquet file, in row groups; returns manifest facts."""
    import pyarrow as pa

    embed = config.export.embed_images
    schema = arrow_schema(embed_images=embed)
    image_root = config.root / "images"
    rows = (post_row(p, image_root, embed, out_dir) for p in posts)
    tables = (
        pa.Table.from_pylist(b, schema=schema) for b in _batches(rows, config.export.row_group_size)
    )
    return write_row_groups(tables, path, schema)


def write_row_groups(tables: Iterable[Any], path: Path, schema: Any) -> dict[str, Any]:
    """Write each Arrow table of ``tables`` as one row group of the Parquet file ``path``
    (atomically); returns manifest facts (file, rows, sha256, bytes)."""
    import pyarrow.parquet as pq

    n = 0
    with atomic_write(path, "wb") as f, pq.ParquetWriter(f, schema, compression="zstd") as writer:
        for table in tables:
            writer.write_table(table)
            n += table.num_rows
        # an empty split gets no row group at all: readers (datasets) choke on a 0-row group
    return {"file": path.name, "rows": n, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_part(rows: list[dict[str, Any]], path: Path, schema: Any) -> None:
    """Rows of one split of one shard as an Arrow IPC file (LZ4 buffers): an executor task
    builds them, :func:`merge_parts` reads them back without decoding."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    options = ipc.IpcWriteOptions(compression="lz4")
    with (
        atomic_write(path, "wb", durable=False) as f,
        ipc.new_file(f, schema, options=options) as w,
    ):
        w.write_table(pa.Table.from_pylist(rows, schema=schema))


def merge_parts(
    parts: Iterable[Path], path: Path, schema: Any, row_group_size: int
) -> dict[str, Any]:
    """Concatenate IPC parts (in order) into the Parquet file ``path``, re-cut into row groups
    of ``row_group_size``: the same bytes as :func:`write_split` over the same posts.  Holds
    one row group (plus one part's batch) at a time."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def groups() -> Iterator[Any]:
        pending: list[Any] = []
        held = 0
        for part in parts:
            with pa.OSFile(str(part)) as source:  # read, not mapped: batches outlive it
                reader = ipc.open_file(source)
                for k in range(reader.num_record_batches):
                    batch = reader.get_batch(k)
                    pending.append(batch)
                    held += batch.num_rows
                    while held >= row_group_size:
                        table = pa.Table.from_batches(pending, schema=schema)
                        yield table.slice(0, row_group_size).combine_chunks()
                        rest = table.slice(row_group_size).combine_chunks()
                        pending = rest.to_batches() if rest.num_rows else []
                        held = rest.num_rows
        if held:
            yield pa.Table.from_batches(pending, schema=schema).combine_chunks()

    return write_row_groups(groups(), path, schema)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_parquet_splits(
    posts: Callable[[], Iterable[Post]], config: PipelineConfig
) -> dict[str, Any]:
    """Write ``<export_dir>/{train,validation,test}.parquet`` and ``manifest.json``.

    ``posts`` makes a fresh stream of split posts (in a deterministic order); it is read
    once per split, so memory stays flat however large the corpus is.
    """
    out = config.export_dir
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # left by an export that was killed
    remove_stale_temps(out / "images")
    files = []
    for split in SPLITS:
        members = (p for p in posts() if p.split == split)
        files.append(write_split(members, out / f"{split}.parquet", config, out))
    manifest = manifest_of(config, files)
    write_json(out / "manifest.json", manifest)
    return manifest


def manifest_of(config: PipelineConfig, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of the Parquet files (``files``: :func:`write_row_groups`' facts)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "pipeline": config.name,
        "image_mode": "embedded" if config.export.embed_images else "path",
        "image_hash": config.dedup.hash,  # the kind in image_phash (the audit hashes alike)
        "files": files,
    }
