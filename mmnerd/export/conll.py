"""IMGID/CoNLL export in the Twitter-2015 / MMNERD layout, so existing MNER code runs on it.

    <export_dir>/imgid/train.txt, valid.txt, test.txt
    <export_dir>/imgid/images/<imgid>.jpg

Each post is an ``IMGID:<imgid>`` line, then one ``token<TAB>tag`` line per
token, then a blank line.  ``imgid`` is the post id with characters outside
``[A-Za-z0-9_-]`` replaced by ``_``.  Images keep their original bytes under a
``.jpg`` name (the loaders of that code open by content).  Twitter-2015 calls
MISC "OTHER": set ``export.conll_misc_label = "OTHER"`` for that corpus' tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mmnerd.io import atomic_write, copy_atomic, inside, remove_stale_temps
from mmnerd.records import Post

SPLIT_FILES = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}


def imgid(post_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", post_id)


def retag(tag: str, misc_label: str) -> str:
    return tag[:2] + misc_label if tag.endswith("-MISC") and misc_label != "MISC" else tag


def write_imgid_split(
    posts: Iterable[Post], path: Path, image_root: Path, misc_label: str = "MISC"
) -> int:
    """Write one split file (and copy its images beside it); returns the post count."""
    images = path.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)  # left by an export that was killed
    remove_stale_temps(images)
    n = 0
    with atomic_write(path) as f:
        for post in posts:
            iid = imgid(post.id)
            f.write(f"IMGID:{iid}\n")
            for token, tag in zip(post.tokens, post.ner_tags, strict=True):
                f.write(f"{token}\t{retag(tag, misc_label)}\n")
            f.write("\n")
            if post.image is not None and post.image.path:
                # atomic: a killed export leaves no half-copied image
                copy_atomic(inside(image_root, post.image.path), images / f"{iid}.jpg")
            n += 1
    return n
