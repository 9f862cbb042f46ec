"""The record types that flow through every stage, and their JSON / Arrow forms.

One :class:`Post` travels from collection to export; each stage fills in its
own fields and never removes provenance.  A post that a stage drops keeps
``status="dropped"`` and a ``reason`` (e.g. ``lang:it``, ``image:http_404``,
``duplicate_image``) and is written to that stage's exclusions file.

Offsets everywhere are Python ``str`` indices (Unicode code points) into
``Post.text``, half-open ``[start, end)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
"""Entity types of MMNERD (Twitter-2015 calls MISC "OTHER")."""

LABELS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
"""Strict IOB2 tag set; the index of a tag is its class id in exports."""

LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}

SCHEMA_VERSION = "1.0"
"""Version of the exported Parquet schema (see docs/schema.md)."""

STATUS_OK = "ok"
STATUS_DROPPED = "dropped"


@dataclass
class Span:
    """An entity mention: ``text[start:end]`` has type ``label``."""

    start: int
    end: int
    label: str
    text: str = ""

    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.label)


@dataclass
class ImageRef:
    """The image attached to a post and what the image stages learnt about it."""

    url: str
    alt: str = ""
    status: str = "pending"  # ok | http_404 | timeout | too_large | not_image | ...
    reason: str = ""
    sha256: str = ""
    path: str = ""  # relative to the pipeline's image store
    width: int = 0
    height: int = 0
    mime: str = ""
    phash: str = ""  # 16 hex digits (64-bit pHash, imagehash semantics)


@dataclass
class Annotation:
    """One annotator's completed labelling of a post (from Label Studio)."""

    annotator: str  # hashed annotator id, never an e-mail
    spans: list[Span] = field(default_factory=list)
    annotation_id: int = 0
    created_at: str = ""
    updated_at: str = ""
    lead_time: float = 0.0  # seconds spent, as Label Studio reports it
    cancelled: bool = False
    flags: list[str] = field(default_factory=list)  # span problems found on pull


@dataclass
class Post:
    """A social-media post with one image, its provenance and its labels."""

    id: str  # "<source>:<source_id>", stable across runs
    source: str
    source_id: str
    text: str
    url: str = ""
    author_hash: str = ""
    created_at: str = ""  # ISO 8601, UTC
    licence: str = ""
    synthetic: bool = False
    lang_hint: str = ""  # what the source claims
    lang: str = ""  # what our detector says
    lang_score: float = 0.0
    image: ImageRef | None = None
    raw_text: str = ""  # text before normalisation (kept for audits)
    tokens: list[str] = field(default_factory=list)
    token_offsets: list[tuple[int, int]] = field(default_factory=list)
    gold_spans: list[Span] = field(default_factory=list)  # from the source, if any
    annotations: list[Annotation] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)  # final (adjudicated) spans
    ner_tags: list[str] = field(default_factory=list)
    agreement: float | None = None
    cluster_id: str = ""  # near-duplicate cluster (image or text); "" = singleton
    duplicate_of: str = ""  # representative post id when this one is a duplicate
    split: str = ""
    status: str = STATUS_OK
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def drop(self, reason: str) -> Post:
        """Mark the post as dropped with a machine-readable reason; returns self."""
        self.status = STATUS_DROPPED
        self.reason = reason
        return self

    # --- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested records as dicts).  Lists are shallow copies; this is
        ~10x faster than ``dataclasses.asdict``, which deep-copies every token and offset
        and dominated the cost of writing stage outputs."""
        d = dict(vars(self))
        d["image"] = dict(vars(self.image)) if self.image is not None else None
        d["tokens"] = list(self.tokens)
        d["token_offsets"] = [tuple(o) for o in self.token_offsets]
        d["gold_spans"] = [dict(vars(s)) for s in self.gold_spans]
        d["spans"] = [dict(vars(s)) for s in self.spans]
        d["ner_tags"] = list(self.ner_tags)
        d["annotations"] = [
            {**vars(a), "spans": [dict(vars(s)) for s in a.spans], "flags": list(a.flags)}
            for a in self.annotations
        ]
        d["extra"] = dict(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Post:
        d = dict(d)
        img = d.get("image")
        d["image"] = ImageRef(**img) if img else None
        for key in ("gold_spans", "spans"):
            d[key] = [Span(**s) for s in d.get(key, [])]
        d["annotations"] = [
            Annotation(**{**a, "spans": [Span(**s) for s in a.get("spans", [])]})
            for a in d.get("annotations", [])
        ]
        d["token_offsets"] = list(map(tuple, d.get("token_offsets", ())))
        known = _field_names(cls)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, line: str) -> Post:
        return cls.from_dict(json.loads(line))


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def hash_author(author: str, salt: str = "mmnerd") -> str:
    """Deprecated: sha256 of a constant salt + author (16 hex digits) -- anyone holding an
    account name can recompute it, so it is *not* a private pseudonym.  Use the keyed
    :class:`mmnerd.privacy.Pseudonymizer` (``Source.pseudonym``); kept only until the
    Mastodon and Bluesky sources are moved over."""
    if not author:
        return ""
    return hashlib.sha256(f"{salt}:{author}".encode()).hexdigest()[:16]


def arrow_schema(embed_images: bool = True):  # -> pyarrow.Schema
    """The exported Parquet schema (version :data:`SCHEMA_VERSION`).

    ``image`` is a struct ``{bytes, path}``, the layout of the Hugging Face
    ``Image`` feature; ``ner_tag_ids`` index into :data:`LABELS`, which is also
    stored in the schema metadata as JSON under ``mmnerd.labels``.
    """
    import pyarrow as pa

    span = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())])
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("lang", pa.string()),
        pa.field("text", pa.string()),
        pa.field("tokens", pa.list_(pa.string())),
        pa.field("ner_tags", pa.list_(pa.string())),
        pa.field("ner_tag_ids", pa.list_(pa.int8())),
        pa.field("spans", pa.list_(span)),
        pa.field("image", image),
        pa.field("image_sha256", pa.string()),
        pa.field("image_phash", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("source", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("url", pa.string()),
        pa.field("created_at", pa.string()),
        pa.field("licence", pa.string()),
        pa.field("author_hash", pa.string()),
        pa.field("synthetic", pa.bool_()),
        pa.field("annotator_count", pa.int16()),
        pa.field("agreement", pa.float32()),
        pa.field("cluster_id", pa.string()),
        pa.field("split", pa.string()),
    ]
    meta = {
        b"mmnerd.schema_version": SCHEMA_VERSION.encode(),
        b"mmnerd.labels": json.dumps(list(LABELS)).encode(),
        b"mmnerd.image_mode": b"embedded" if embed_images else b"path",
    }
    return pa.schema(fields, metadata=meta)
