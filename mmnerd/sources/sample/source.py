"""The ``sample`` source: generates the sample under the data dir once, then yields its
posts (pictures as local files)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from mmnerd.io import atomic_write, read_json, read_posts, write_json, write_posts
from mmnerd.records import Post
from mmnerd.sources import Source, SourceOptions
from mmnerd.sources.sample.generate import generate
from mmnerd.sources.sample.options import GENERATOR_VERSION, LICENCE, SampleOptions

# ---------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------


class SampleSource(Source):
    """Synthetic multilingual posts with pictures read from disk (see module doc)."""

    kind: ClassVar[str] = "sample"
    Options: ClassVar[type[SourceOptions]] = SampleOptions
    options: SampleOptions

    # --- files -----------------------------------------------------------
    @property
    def folder(self) -> Path:
        """``<data_dir>/raw/sample``."""
        return Path(self.config.root) / "raw" / "sample"

    @property
    def images_dir(self) -> Path:
        return self.folder / "images"

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def posts_path(self) -> Path:
        return self.folder / "posts.jsonl"

    def _is_current(self) -> bool:
        manifest = read_json(self.manifest_path)
        if not manifest or manifest.get("fingerprint") != self.options.fingerprint():
            return False
        if not self.posts_path.is_file():
            return False
        for name, digest in manifest.get("files", {}).items():
            f = self.images_dir / name
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                return False
        return True

    def ensure_generated(self) -> bool:
        """Generate the sample unless an identical one is on disk; True if it (re)generated."""
        if self._is_current():
            return False
        sample = generate(self.options)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        write_posts(self.posts_path, sample.posts)
        for name, data in sample.files.items():
            with atomic_write(self.images_dir / name, "wb") as f:
                f.write(data)
        for stale in self.images_dir.iterdir():  # e.g. a file that must now be a 404
            if stale.is_file() and stale.name not in sample.files:
                stale.unlink()
        write_json(
            self.manifest_path,
            {
                "synthetic": True,
                "licence": LICENCE,
                "generator": f"mmnerd.sources.sample v{GENERATOR_VERSION}",
                "fingerprint": self.options.fingerprint(),
                "options": self.options.model_dump(mode="json"),
                "posts": len(sample.posts),
                "files": {
                    n: hashlib.sha256(d).hexdigest() for n, d in sorted(sample.files.items())
                },
            },
        )
        return True

    def local_images(self) -> Path:
        return self.images_dir

    def posts(self) -> Iterator[Post]:
        """Yield the synthetic posts (pictures as files in :meth:`local_images`) with their
        accounts pseudonymised with the corpus key."""
        self.ensure_generated()
        for post in read_posts(self.posts_path):
            post.author_hash = self.pseudonym(post.extra.pop("account", ""))
            yield post
