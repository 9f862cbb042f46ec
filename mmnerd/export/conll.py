"""IMGID/CoNLL export in the Twitter-2015 / MMNERD layout, so existing MNER code runs on it.

    <export_dir>/imgid/train.txt, valid.txt, test.txt
    <export_dir>/imgid/images/<imgid>.<ext>   the picture, with its real format's extension
    <export_dir>/imgid/ids.tsv                IMGID, post id, split, language (one line a post)

Each post is an ``IMGID:<imgid>`` line, then one ``token<TAB>tag`` line per token, then a
blank line.  When every post comes from a published IMGID corpus the IMGIDs are the
corpus's own (repeats included), so IMGID -> Parquet -> IMGID gives back the published
files (orphan ``I-`` tags aside: they come back repaired as ``B-``).  Otherwise every
IMGID is :func:`encode_imgid` of the post id: ``[A-Za-z0-9-]`` kept, every other byte
written ``_XX`` (hex), which is injective, so two posts never share an IMGID or a
picture (``x.1``, ``x_1``, ``x/1`` and ``x 1`` stay apart).  Pictures are copied with the
extension of their real format (``.jpg``, ``.png``, ...); loaders that open
``<imgid>.jpg`` whatever the format need a rename (the bytes open by content).
Twitter-2015 calls MISC "OTHER": set ``export.conll_misc_label = "OTHER"`` for that
corpus' tags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from mmnerd.io import atomic_write, copy_atomic, inside, remove_stale_temps
from mmnerd.records import Post

SPLIT_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
ID_MAP = "ids.tsv"
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def encode_imgid(post_id: str) -> str:
    """An IMGID for any post id, safe as a file name and injective: ``[A-Za-z0-9-]`` bytes
    stay, every other UTF-8 byte becomes ``_XX`` (``sample:00001`` -> ``sample_3A00001``)."""
    return "".join(chr(b) if b in _PLAIN else f"_{b:02X}" for b in post_id.encode("utf-8"))


def retag(tag: str, misc_label: str) -> str:
    return tag[:2] + misc_label if tag.endswith("-MISC") and misc_label != "MISC" else tag


def write_imgid_split(
    posts: Iterable[Post],
    path: Path,
    image_root: Path,
    misc_label: str = "MISC",
    keep_ids: bool = False,
    id_map: IO[str] | None = None,
    images: Path | None = None,
    durable: bool = True,
) -> int:
    """Write one split file (and copy its images beside it); returns the post count.
    ``keep_ids``: write each post's own published IMGID (every post must have one); else
    :func:`encode_imgid` of the post id.  ``id_map`` gets an ``imgid, post id, split`` line
    per post (see :func:`id_map_writer`).  Pictures go to ``images`` (default: the
    ``images`` folder beside ``path``); ``durable=False`` skips the fsync (a temporary
    part)."""
    images = images or path.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_write(path, durable=durable) as f:
        for post in posts:
            iid = post.imgid if keep_ids else encode_imgid(post.id)
            f.write(f"IMGID:{iid}\n")
            for token, tag in zip(post.tokens, post.ner_tags, strict=True):
                f.write(f"{token}\t{retag(tag, misc_label)}\n")
            f.write("\n")
            if post.has_image:
                assert post.image is not None
                src = inside(image_root, post.image.path)
                # atomic: a killed export leaves no half-copied image
                copy_atomic(src, images / f"{iid}{src.suffix or '.jpg'}")
            if id_map is not None:
                id_map.write(f"{iid}\t{post.id}\t{post.split}\t{post.lang}\n")
            n += 1
    return n


def clean_temps(folder: Path) -> None:
    """Remove temp files an export killed while writing ``folder`` left (before writing)."""
    remove_stale_temps(folder)
    remove_stale_temps(folder / "images")


def id_map_writer(folder: Path) -> contextlib.AbstractContextManager[IO[str]]:
    """Atomically written ``ids.tsv`` (header ``imgid, post_id, split, lang``) for
    :func:`write_imgid_split`'s ``id_map``."""
    return _id_map(folder / ID_MAP)


@contextlib.contextmanager
def _id_map(path: Path) -> Iterator[IO[str]]:
    with atomic_write(path) as f:
        f.write("imgid\tpost_id\tsplit\tlang\n")
        yield f
