"""The leakage audit (``mmnerd audit-leakage``) and its inputs: our Parquet export, or an
external IMGID corpus.

Both become ``{split: [Post, ...]}`` with text, image sha256 and pHash filled,
which :func:`audit_leakage` checks for near-duplicates that straddle splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmnerd.dedup.clusters import connected_components
from mmnerd.dedup.images import _star, image_edges
from mmnerd.dedup.text import text_edges
from mmnerd.errors import InputError
from mmnerd.images.hashing import hex_to_int
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
    each post's image (:func:`mmnerd.sources.conll.find_image`; posts whose image is missing
    take part through their text only)."""
    from mmnerd.images.hashing import hash_files_report, hash_hex
    from mmnerd.sources.conll import find_image, read_imgid

    out: dict[str, list[Post]] = {}
    for split, name in IMGID_SPLITS.items():
        path = folder / name
        if not path.exists():
            raise InputError(f"{path}: missing (expected {', '.join(IMGID_SPLITS.values())})")
        posts = []
        for imgid, tokens, _labels in read_imgid(path):
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
        found = [(p, find_image(images, p.source_id)) for ps in out.values() for p in ps]
        todo = [(p, f) for p, f in found if f is not None]
        report = hash_files_report([str(f) for _, f in todo], kind=kind)
        for k, (post, f) in enumerate(todo):
            if k in report.failed:
                continue
            assert post.image is not None
            post.image.phash = hash_hex(int(report.hashes[k]))
            post.image.sha256 = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def audit_leakage(
    posts_by_split: dict[str, list[Post]],
    threshold: int = 10,
    text_threshold: float = 0.8,
    max_examples: int = 20,
    drop_words: Sequence[str] = ("URL",),
) -> dict[str, Any]:
    """Near-duplicates (image: same sha256 or pHash hex within ``threshold``; text:
    :func:`text_edges`) whose clusters straddle splits.

    Returns ``{"ok": bool, "image": {...}, "text": {...}, "leaking_posts": {split: n}}``
    where each part has ``clusters`` (straddling clusters), ``posts`` per split
    and ``examples`` of cross-split pairs ``{a, a_split, b, b_split, score}``.
    """
    posts: list[Post] = []
    split_of: list[str] = []
    for split, items in posts_by_split.items():
        posts.extend(items)
        split_of.extend([split] * len(items))
    n = len(posts)
    splits = np.array(split_of, dtype=object)
    hashes = np.zeros(n, dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    for k, p in enumerate(posts):
        if p.image is not None and p.image.phash:
            hashes[k] = hex_to_int(p.image.phash)
            valid[k] = True
    ei, ej = _star([p.image.sha256 if p.image is not None else "" for p in posts])
    ni, nj, nd = image_edges(hashes, valid, threshold)
    img = (
        np.concatenate([ei, ni]),
        np.concatenate([ej, nj]),
        np.concatenate([np.zeros(len(ei)), nd.astype(float)]),
    )
    txt = text_edges([p.text for p in posts], text_threshold, drop=drop_words)
    out: dict[str, Any] = {"threshold": threshold, "text_threshold": text_threshold}
    leaking = np.zeros(n, dtype=bool)
    for name, (ii, jj, score) in (("image", img), ("text", txt)):
        labels = connected_components(n, ii, jj)
        straddle: dict[int, set[str]] = {}
        for lab, sp in zip(labels.tolist(), split_of, strict=True):
            straddle.setdefault(lab, set()).add(sp)
        bad = {lab for lab, s in straddle.items() if len(s) > 1}
        in_bad = np.array([lab in bad for lab in labels.tolist()], dtype=bool)
        leaking |= in_bad
        cross = np.flatnonzero(splits[ii] != splits[jj]) if len(ii) else np.zeros(0, np.int64)
        out[name] = {
            "clusters": len(bad),
            "posts": dict(Counter(splits[in_bad].tolist())),
            "cross_split_edges": int(len(cross)),
            "examples": [
                {
                    "a": posts[int(ii[e])].id,
                    "a_split": split_of[int(ii[e])],
                    "b": posts[int(jj[e])].id,
                    "b_split": split_of[int(jj[e])],
                    "score": float(score[e]),
                }
                for e in cross[:max_examples]
            ],
        }
    out["leaking_posts"] = dict(Counter(splits[leaking].tolist()))
    out["ok"] = not bool(leaking.any())
    return out


def leakage_json(report: dict[str, Any]) -> str:
    """The audit as pretty JSON (for the CLI)."""
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False)
