"""Options and constants of the synthetic sample."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from pydantic import Field, field_validator

from mmnerd.sources import SourceOptions

GENERATOR_VERSION = "3"  # 2: accounts pseudonymised on read; 3: pictures as local files
"""Bump when the generator's output changes, so cached samples are regenerated."""

LICENCE = "CC0-1.0 (synthetic)"
TARGET_LANGS: tuple[str, ...] = ("en", "fr", "de", "es")
OTHER_LANGS: tuple[str, ...] = ("it", "pt", "nl")
AMBIGUOUS_SHARE = 0.30
"""Share of target-language posts built around an image-decided ambiguous mention."""

FAULT_KINDS: tuple[str, ...] = ("truncated", "missing", "html", "missing")
"""Cycle of image faults: broken (truncated JPEG, HTML page) and missing (no file)."""

NEAR_DUPLICATE_MAX_DISTANCE = 8
"""Near-duplicate copies are re-drawn until their pHash is within this many bits of the original."""
UNRELATED_MIN_DISTANCE = 14
"""Unrelated pictures are re-drawn until their pHash is at least this far from every other one,
so the dedup stage (default threshold 10) finds exactly the recorded near-duplicates."""

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


class SampleOptions(SourceOptions):
    """Options of the synthetic sample (the ``[source]`` table with ``kind = "sample"``)."""

    posts: int = Field(300, ge=1, le=100_000, description="number of posts to generate")
    seed: int = Field(13, description="random seed; same seed -> byte-identical posts and images")
    other_language_share: float = Field(
        0.10, ge=0.0, le=0.9, description="share of posts in it/pt/nl (the language stage drops)"
    )
    near_duplicate_share: float = Field(
        0.10,
        ge=0.0,
        le=0.5,
        description="share of posts reusing a cropped/rescaled/re-encoded copy of another image",
    )
    broken_images: int = Field(
        4,
        ge=0,
        le=1000,
        description="posts with a bad image, cycling truncated JPEG, missing file, HTML page, "
        "missing file",
    )
    image_size: tuple[int, int] = Field(
        (320, 240), description="width, height of generated pictures in pixels"
    )

    @field_validator("image_size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(32 <= x <= 4096 for x in v):
            raise ValueError("width and height must be between 32 and 4096")
        return v

    def fingerprint(self) -> str:
        """Hash of the options that change generated files."""
        keep = self.model_dump(mode="json")
        keep["generator_version"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
