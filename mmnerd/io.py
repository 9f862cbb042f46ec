"""Atomic file writes and JSONL record streams.

Every file the pipeline writes goes through :func:`atomic_write` (temp file in
the same folder, fsync, rename), so a crash leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mmnerd.records import Post


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", perms: int | None = None, durable: bool = True
) -> Iterator[IO]:
    """Open a temp file beside ``path``; on success fsync (if ``durable``) and rename it
    over ``path``.  Without fsync the rename is still atomic for a killed process (the
    page cache survives it); only a power loss could leave an empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if perms is not None:
            os.fchmod(fd, perms)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` unless ``dst`` exists, via temp file + rename (no fsync:
    for derived copies that a rerun can recreate; one fsync per image dominated export)."""
    import shutil

    if Path(dst).exists():
        return
    with atomic_write(dst, "wb", durable=False) as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out)


def write_json(path: str | Path, obj: Any, perms: int | None = None) -> None:
    with atomic_write(path, perms=perms) as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def write_posts(path: str | Path, posts: Iterable[Post]) -> int:
    """Write posts as JSON lines atomically; returns the count."""
    n = 0
    with atomic_write(path) as f:
        for p in posts:
            f.write(p.to_json())
            f.write("\n")
            n += 1
    return n


def read_posts(path: str | Path) -> Iterator[Post]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Post.from_json(line)


def remove_stale_temps(folder: Path) -> int:
    """Delete ``.*.tmp`` files a killed process left behind; returns how many."""
    n = 0
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def inside(root: str | Path, rel: str | Path) -> Path:
    """``root / rel``, refusing a ``rel`` that escapes ``root`` (absolute, ``..``, symlinks).

    Raises :class:`~mmnerd.errors.InputError`: paths in records come from files a
    user may have edited, and must never make the pipeline read or write elsewhere.
    """
    from mmnerd.errors import InputError

    base = Path(root).resolve()
    full = (base / rel).resolve()
    if not full.is_relative_to(base):
        raise InputError(f"path {str(rel)[:120]!r} escapes {root}; refused")
    return full
