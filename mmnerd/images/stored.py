"""Images earlier runs stored, by URL, so reruns (and ``--force``) do not download again.

Instances purge the remote media they cached, so an image that was fetched once may
answer 404 on a rerun; the content-addressed store still holds its bytes.  The index
``<data_dir>/state/images.sqlite`` maps each URL fetched successfully to the stored
file (sha256, path, size, type) and the storing options it was made with.  Before
downloading, the fetcher asks it:

* URL known, stored file present, same options, ``images.refetch = false`` (default):
  the stored image is used, nothing is downloaded;
* otherwise the URL is downloaded; if that fails and a stored copy exists (any
  options), the stored copy is kept (``ok``, the reason says what the origin answered).

SQLite (standard library) keeps lookups O(log n) at millions of URLs and is safe for
several fetch processes at once (each shard opens its own connection; writes wait for
the lock).  The index is a cache: deleting it only costs downloads.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmnerd.config import ImagesConfig
    from mmnerd.images.fetch import Outcome

INDEX = Path("state") / "images.sqlite"
_SCHEMA = """CREATE TABLE IF NOT EXISTS fetched (
    url TEXT PRIMARY KEY, options TEXT NOT NULL, sha256 TEXT NOT NULL, path TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, mime TEXT NOT NULL)"""
_BATCH = 500


def options_key(cfg: ImagesConfig) -> str:
    """The storing options that change the stored bytes."""
    return f"{cfg.store}|{cfg.max_side}|{cfg.jpeg_quality}"


class StoredImages:
    """The URL index of one data dir (a context manager; one per fetch run or shard)."""

    def __init__(self, root: str | Path, cfg: ImagesConfig):
        self.root = Path(root)
        self.store = self.root / "images"
        self.path = self.root / INDEX
        self.options = options_key(cfg)
        self.refetch = cfg.refetch
        self.flags: Counter = Counter()  # image_reused, image_kept
        self._pending: list[tuple[str, Outcome]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute(_SCHEMA)
        self._db.commit()

    def __enter__(self) -> StoredImages:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def lookup(self, urls: Iterable[str]) -> dict[str, tuple[Outcome, bool]]:
        """url -> (stored outcome, made with the current options) for URLs whose stored
        file still exists."""
        from mmnerd.images.fetch import Outcome

        urls = list(dict.fromkeys(urls))
        out: dict[str, tuple[Outcome, bool]] = {}
        for i in range(0, len(urls), _BATCH):
            chunk = urls[i : i + _BATCH]
            rows = self._db.execute(
                "SELECT url, options, sha256, path, width, height, mime FROM fetched "
                f"WHERE url IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for url, options, sha, path, width, height, mime in rows:
                file = self.store / path
                if Path(path).name.startswith(sha) and file.is_file() and file.stat().st_size:
                    outcome = Outcome("ok", "", sha, path, width, height, mime)
                    out[url] = (outcome, options == self.options)
        return out

    def reusable(self, known: tuple[Outcome, bool] | None) -> bool:
        """Whether a known image is used without downloading."""
        return known is not None and known[1] and not self.refetch

    def record(self, url: str, outcome: Outcome) -> None:
        """Remember a successful download (written in batches, and on close)."""
        if outcome.status == "ok":
            self._pending.append((url, outcome))
            if len(self._pending) >= _BATCH:
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO fetched VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (url, self.options, o.sha256, o.path, o.width, o.height, o.mime)
                    for url, o in self._pending
                ],
            )
        self._pending.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()
