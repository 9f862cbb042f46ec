"""What dedup needs of each post, as compact arrays computed shard by shard.

:func:`post_keys` turns a list of posts into :class:`PostKeys`: the image hash (looked up
in the sha256 -> hash cache or computed from the stored file), the file's sha256 prefix,
the text's normalised digest and shingle hashes, and the keep-policy keys.  The dedup
stage runs it on each input shard (on the executor's workers) and saves the arrays, so
the global search and clustering read arrays, never ``Post`` objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmnerd.dedup.text import Scan, scan_texts
from mmnerd.images.hashing import hash_files_report
from mmnerd.records import Post


def sha_words(sha: str) -> tuple[int, int]:
    """The first 128 bits of a sha256 hex digest as two uint64 words (0, 0 if empty)."""
    if not sha:
        return 0, 0
    return int(sha[:16], 16), int(sha[16:32], 16)


class HashCache:
    """sha256 -> image hash, read-only, as sorted arrays (binary search; no dict of the
    whole cache in every worker).  Keys are the first 128 bits of the sha256."""

    def __init__(self, words: np.ndarray, hashes: np.ndarray):
        order = np.lexsort((words[:, 1], words[:, 0])) if len(words) else np.zeros(0, np.int64)
        self.words = np.ascontiguousarray(words[order])  # (m, 2) uint64
        self.hashes = np.ascontiguousarray(hashes[order])  # (m,) uint64

    @classmethod
    def from_ids(cls, ids: Sequence[str], hashes: np.ndarray) -> HashCache:
        words = np.array([sha_words(s) for s in ids], dtype=np.uint64).reshape(-1, 2)
        return cls(words, np.asarray(hashes, dtype=np.uint64))

    def get(self, sha: str) -> int | None:
        if not sha or not len(self.words):
            return None
        hi, lo = sha_words(sha)
        col = self.words[:, 0]
        a = int(np.searchsorted(col, np.uint64(hi), side="left"))
        b = int(np.searchsorted(col, np.uint64(hi), side="right"))
        for k in range(a, b):
            if int(self.words[k, 1]) == lo:
                return int(self.hashes[k])
        return None

    def save(self, path: Path) -> None:
        np.savez(path, words=self.words, hashes=self.hashes)

    @classmethod
    def load(cls, path: Path) -> HashCache:
        with np.load(path) as z:
            out = cls.__new__(cls)
            out.words, out.hashes = z["words"], z["hashes"]
            return out


@dataclass
class PostKeys:
    """Per-post dedup keys of ``n`` posts (all ``(n,)`` unless noted).

    ``hash``/``valid``: the image hash, valid where it was computed or cached;
    ``has_image``: the post has a stored image (``status == "ok"`` and a path) — those
    get ``image.phash`` written back; ``sha``: ``(n, 2) uint64`` first 128 bits of the
    sha256 of posts whose image status is ok (``star`` marks them: identical files);
    ``text``: the normalised-text scan (:func:`mmnerd.dedup.text.scan_texts`);
    ``area``, ``created``, ``ids``: the keep policy's keys.  Hashing bookkeeping:
    ``new_cache`` (sha256 -> hash computed here), ``failed`` (local index -> error, one
    per content), ``hashed`` (local indices hashed here, one per content).
    """

    hash: np.ndarray
    valid: np.ndarray
    has_image: np.ndarray
    sha: np.ndarray
    star: np.ndarray
    text: Scan
    area: np.ndarray
    created: np.ndarray
    ids: np.ndarray
    new_cache: dict[str, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    hashed: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.hash)

    def save(self, path: Path) -> None:
        """Write every array to one ``.npz`` (atomically: temp file + rename)."""
        tmp = path.with_name(f".{path.name}.tmp.npz")
        shas = list(self.new_cache)
        np.savez(
            tmp,
            hash=self.hash,
            valid=self.valid,
            has_image=self.has_image,
            sha=self.sha,
            star=self.star,
            digest=self.text.digest,
            counts=self.text.counts,
            shingles=np.concatenate(self.text.parts or [np.zeros(0, np.uint64)]),
            area=self.area,
            created=self.created,
            ids=self.ids,
            new_sha=np.array(shas, dtype="U64"),
            new_hash=np.array([self.new_cache[s] for s in shas], dtype=np.uint64),
            failed_idx=np.array(list(self.failed), dtype=np.int64),
            failed_msg=np.array(list(self.failed.values()), dtype=str),
            hashed=np.array(self.hashed, dtype=np.int64),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, text: bool = True) -> PostKeys:
        with np.load(path) as z:
            n = len(z["hash"])
            scan = (
                Scan(z["digest"], z["counts"], [z["shingles"]], [n])
                if text
                else Scan(np.zeros((0, 2), np.uint64), np.zeros(0, np.int64), [], [])
            )
            return cls(
                z["hash"],
                z["valid"],
                z["has_image"],
                z["sha"],
                z["star"],
                scan,
                z["area"],
                z["created"],
                z["ids"],
                dict(zip(z["new_sha"].tolist(), z["new_hash"].tolist(), strict=True)),
                dict(zip(z["failed_idx"].tolist(), z["failed_msg"].tolist(), strict=True)),
                z["hashed"].tolist(),
            )


def post_keys(
    posts: Sequence[Post],
    kind: str,
    cache: HashCache | dict[str, int],
    image_root: str | os.PathLike | None,
    drop_words: Sequence[str] = (),
    workers: int = 1,
) -> PostKeys:
    """The :class:`PostKeys` of ``posts``: images hashed from ``image_root`` unless their
    sha256 is in ``cache`` (one file per content), texts normalised and shingled."""
    n = len(posts)
    hashes = np.zeros(n, dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    has_image = np.zeros(n, dtype=bool)
    sha = np.zeros((n, 2), dtype=np.uint64)
    star = np.zeros(n, dtype=bool)
    lookup = cache.get
    found: dict[str, int] = {}
    todo: list[int] = []
    seen: set[str] = set()
    for k, p in enumerate(posts):
        img = p.image
        if img is None or img.status != "ok":
            continue
        if img.sha256:
            sha[k] = sha_words(img.sha256)
            star[k] = True
        if not img.path:
            continue
        has_image[k] = True
        s = img.sha256
        if s and s in found:
            continue
        if s and (h := lookup(s)) is not None:
            found[s] = h
        elif not s or s not in seen:
            todo.append(k)
            seen.add(s)
    out = PostKeys(
        hashes,
        valid,
        has_image,
        sha,
        star,
        scan_texts([p.text for p in posts], drop=drop_words),
        np.array([p.image.width * p.image.height if p.image else 0 for p in posts], np.int64),
        np.array([p.created_at for p in posts], dtype=str),
        np.array([p.id for p in posts], dtype=str),
    )
    if todo:
        root = Path(image_root) if image_root is not None else Path(".")
        paths = [root / posts[k].image.path for k in todo]  # type: ignore[union-attr]
        w = workers if len(paths) >= 256 else 1
        rep = hash_files_report(paths, kind=kind, workers=w)
        for local, k in enumerate(todo):
            s = posts[k].image.sha256  # type: ignore[union-attr]
            out.hashed.append(k)
            if local in rep.failed:
                out.failed[k] = rep.failed[local]
            elif s:
                found[s] = out.new_cache[s] = int(rep.hashes[local])
            else:
                hashes[k], valid[k] = rep.hashes[local], True
    for k in np.flatnonzero(has_image).tolist():
        s = posts[k].image.sha256  # type: ignore[union-attr]
        if s in found:
            hashes[k], valid[k] = np.uint64(found[s]), True
    return out
