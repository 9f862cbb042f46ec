"""Inputs for ``mmnerd audit-leakage``: our Parquet export, or an external IMGID corpus.

Both become ``{split: [Post, ...]}`` with text, image sha256 and pHash filled,
which :func:`mmnerd.dedup.audit_leakage` checks for near-duplicates that
straddle splits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmnerd.errors import InputError
from mmnerd.records import ImageRef, Post

IMGID_SPLITS = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}


def posts_from_export(export_dir: Path) -> dict[str, list[Post]]:
    """Read train/dev/test.parquet (text, image hashes) of an mmnerd export."""
    import pyarrow.parquet as pq

    out: dict[str, list[Post]] = {}
    for split in ("train", "dev", "test"):
        path = export_dir / f"{split}.parquet"
        if not path.exists():
            raise InputError(f"{path}: missing (is {export_dir} an mmnerd export?)")
        cols = ["id", "text", "image_sha256", "image_phash"]
        rows = pq.read_table(path, columns=cols).to_pylist()
        out[split] = [
            Post(
                id=r["id"],
                source="export",
                source_id=r["id"],
                text=r["text"] or "",
                image=ImageRef(
                    url="", sha256=r["image_sha256"] or "", phash=r["image_phash"] or ""
                ),
            )
            for r in rows
        ]
    return out


def posts_from_imgid(
    folder: Path, images: Path | None, kind: str = "phash"
) -> dict[str, list[Post]]:
    """Read ``train.txt``/``valid.txt``/``test.txt`` in the Twitter-2015/MMNERD layout and hash
    each post's image ``<images>/<imgid>.jpg`` (missing images are skipped for the image check)."""
    from mmnerd.images.hashing import hash_files_report, hash_hex
    from mmnerd.sources.conll import read_imgid

    out: dict[str, list[Post]] = {}
    for split, name in IMGID_SPLITS.items():
        path = folder / name
        if not path.exists():
            raise InputError(f"{path}: missing (expected {', '.join(IMGID_SPLITS.values())})")
        posts = []
        for imgid, tokens, _labels in read_imgid(path):
            if "/" in imgid or "\\" in imgid or imgid in ("", ".", ".."):
                raise InputError(f"{path}: IMGID {imgid!r} is not a plain file name")
            posts.append(
                Post(
                    id=f"{split}:{imgid}",
                    source="imgid",
                    source_id=imgid,
                    text=" ".join(tokens),
                    image=ImageRef(url=""),
                )
            )
        out[split] = posts
    if images is not None:
        todo = [(p, images / f"{p.source_id}.jpg") for ps in out.values() for p in ps]
        todo = [(p, f) for p, f in todo if f.is_file()]
        report = hash_files_report([str(f) for _, f in todo], kind=kind)
        for k, (post, f) in enumerate(todo):
            if k in report.failed:
                continue
            assert post.image is not None
            post.image.phash = hash_hex(int(report.hashes[k]))
            post.image.sha256 = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
