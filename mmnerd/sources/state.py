"""Persisted collection state of an API source, for incremental runs and crash-safe resume.

Two files per source under ``<config.root>/state/``:

``<source>.json``
    cursors per stream (e.g. ``"https://mastodon.social|tag:paris"``), the
    committed length of the journal and the streams the last run had to skip
    (server unavailable or rate-limited), rewritten atomically after every page.
``<source>.posts.jsonl``
    the journal: every post collected so far, one ``{"stream", "post"}`` line
    each, appended and fsynced *before* the state file points past it.  It is
    also the set of seen ids.

A page is committed in that order (journal, then state), so after ``kill -9``
at any moment the journal holds at most one page beyond the committed length;
:meth:`SourceState.load` cuts it off, and the source refetches that page from
the saved cursor.  The collect stage reruns whole after a crash, so a source
first replays the journal (:meth:`replay`) and then continues fetching: every
post is present once, none is fetched twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmnerd.errors import InputError
from mmnerd.io import read_json, write_json
from mmnerd.records import Post

STATE_VERSION = 1


class SourceState:
    """Cursors and collected posts of one source (``kind``) under ``<root>/state``."""

    def __init__(self, root: str | Path, source: str):
        self.dir = Path(root) / "state"
        self.path = self.dir / f"{source}.json"
        self.journal = self.dir / f"{source}.posts.jsonl"
        self.cursors: dict[str, dict[str, Any]] = {}
        self.skipped: dict[str, str] = {}  # stream -> why the last run skipped it
        self.committed = 0  # bytes of the journal that the state file vouches for
        self.seen: set[str] = set()
        self._by_stream: dict[str, int] = {}
        self.load()

    # --- loading -----------------------------------------------------------------
    def load(self) -> None:
        """Read the state file, cut the journal back to its committed length, rebuild seen ids."""
        data = read_json(self.path) or {}
        if data and data.get("version") != STATE_VERSION:
            raise InputError(
                f"{self.path}: state version {data.get('version')!r} is not {STATE_VERSION}; "
                f"move the file away to start collecting afresh"
            )
        self.cursors = dict(data.get("cursors", {}))
        self.skipped = dict(data.get("skipped", {}))
        self.committed = int(data.get("journal_bytes", 0))
        self.seen = set()
        self._by_stream = {}
        if not self.journal.exists():
            if self.committed:
                raise InputError(
                    f"{self.journal}: missing, but {self.path} says {self.committed} bytes were "
                    f"collected; restore it or delete {self.path} to start afresh"
                )
            return
        size = self.journal.stat().st_size
        if size < self.committed:
            raise InputError(
                f"{self.journal}: {size} bytes, but {self.path} says {self.committed} were "
                f"committed; the journal was truncated (restore it or delete both files)"
            )
        if size > self.committed:  # a page written but never committed (killed mid-page)
            with open(self.journal, "r+b") as f:
                f.truncate(self.committed)
                os.fsync(f.fileno())
        for stream, post in self._entries():
            self.seen.add(post["id"])
            self._by_stream[stream] = self._by_stream.get(stream, 0) + 1

    def _entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self.journal.exists():
            return
        with open(self.journal, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    yield entry["stream"], entry["post"]
                except (ValueError, KeyError, TypeError):
                    raise InputError(
                        f"{self.journal}:{lineno}: not a journal entry; delete {self.path} and "
                        f"{self.journal} to start afresh"
                    ) from None

    @staticmethod
    def skipped_streams(root: str | Path, source: str) -> dict[str, str]:
        """The streams the last run of ``source`` skipped, read from the state file only."""
        data = read_json(Path(root) / "state" / f"{source}.json") or {}
        return dict(data.get("skipped", {}))

    # --- reading -----------------------------------------------------------------
    def cursor(self, stream: str) -> dict[str, Any]:
        """A copy of the cursor of ``stream`` (empty dict if never collected)."""
        return dict(self.cursors.get(stream, {}))

    def count(self, stream: str) -> int:
        """Posts in the journal for ``stream``."""
        return self._by_stream.get(stream, 0)

    def replay(self, streams: Iterable[str] | None = None) -> Iterator[Post]:
        """Posts collected by earlier (possibly killed) runs, optionally only from ``streams``."""
        keep = set(streams) if streams is not None else None
        for stream, post in self._entries():
            if keep is None or stream in keep:
                yield Post.from_dict(post)

    # --- writing -----------------------------------------------------------------
    def commit(self, stream: str, posts: list[Post], cursor: dict[str, Any]) -> list[Post]:
        """Durably add one page: journal the unseen posts, then save the new cursor.

        Returns the posts that were new (the caller yields those).
        """
        fresh: list[Post] = []
        for p in posts:
            if p.id not in self.seen:
                self.seen.add(p.id)
                fresh.append(p)
        if fresh:
            self.dir.mkdir(parents=True, exist_ok=True)
            blob = "".join(
                json.dumps({"stream": stream, "post": p.to_dict()}, ensure_ascii=False) + "\n"
                for p in fresh
            ).encode("utf-8")
            with open(self.journal, "ab") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            self.committed += len(blob)
            self._by_stream[stream] = self._by_stream.get(stream, 0) + len(fresh)
        self.cursors[stream] = dict(cursor)
        self.save()
        return fresh

    def set_cursor(self, stream: str, cursor: dict[str, Any]) -> None:
        """Replace the cursor of ``stream`` and save."""
        self.cursors[stream] = dict(cursor)
        self.save()

    def mark_skipped(self, stream: str, why: str) -> None:
        """Record that this run skipped ``stream`` (its cursor stays); saved at once."""
        self.skipped[stream] = why[:300]
        self.save()

    def clear_skipped(self, stream: str) -> None:
        """``stream`` ran without error this time."""
        if self.skipped.pop(stream, None) is not None:
            self.save()

    def save(self) -> None:
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "journal_bytes": self.committed,
            "cursors": self.cursors,
        }
        if self.skipped:
            data["skipped"] = self.skipped
        write_json(self.path, data)
