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
import json
from dataclasses import dataclass, field
from typing import Any

ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
"""Entity types of MMNERD (Twitter-2015 calls MISC "OTHER")."""

LABELS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
"""Strict IOB2 tag set; the index of a tag is its class id in exports."""

LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}

SCHEMA_VERSION = "2.0"
"""Version of the exported Parquet schema (see docs/schema.md)."""

STATUS_OK = "ok"
STATUS_DROPPED = "dropped"

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The split names of an export, in order (Hugging Face's names)."""

_SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "validation",
                  "valid": "validation", "validation": "validation", "val": "validation",
                  "test": "test", "testing": "test"}  # fmt: skip


def canonical_split(name: str) -> str:
    """``train`` / ``validation`` / ``test`` for a published split name (``valid``, ``dev``,
    MMNERD's ``train_conll_format``, ...); "" when the name is not a split."""
    key = name.strip().lower().removesuffix("_conll_format").removesuffix(".txt")
    return _SPLIT_ALIASES.get(key, "")


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
    """The image attached to a post and what the image stages learnt about it.

    ``url`` is fetched over http(s); ``file`` is a local image, relative to the source's
    image folder, read as a file (never served over HTTP).  One of them is set.
    """

    url: str = ""
    alt: str = ""
    status: str = "pending"  # ok | http_404 | timeout | too_large | not_image | ...
    reason: str = ""
    sha256: str = ""
    path: str = ""  # relative to the pipeline's image store
    width: int = 0
    height: int = 0
    mime: str = ""
    phash: str = ""  # 16 hex digits (64-bit pHash, imagehash semantics)
    file: str = ""  # local source image, relative to the source's image folder

    @property
    def ok(self) -> bool:
        """The image was fetched, validated and stored (``path`` names it in the store)."""
        return self.status == "ok" and bool(self.path)


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
    image_decided: bool = False  # the annotator marked "the image decided an entity's type"


@dataclass
class LSRef:
    """Where a post lives in Label Studio: written by push, read by simulate and pull."""

    project: int  # the annotation project's id
    task: int  # the post's task id in that project
    overlap: int = 1  # annotators the task asks for (``labelstudio.overlap_k`` or 1)
    adjudication_project: int = 0  # the adjudication queue's project, once pull queued it


ADJUDICATION_NEEDED = "needed"
"""``Post.adjudication``: the annotators disagree; the post waits in the adjudication queue."""
ADJUDICATION_DONE = "done"
"""``Post.adjudication``: an adjudicator's annotation gives the final labels."""

_LEGACY_LS = {"ls_project_id": "project", "ls_task_id": "task", "ls_overlap": "overlap",
              "ls_adjudication_project_id": "adjudication_project"}  # fmt: skip
_LEGACY_EXTRA = frozenset(
    {*_LEGACY_LS, "dedup", "needs_adjudication", "adjudicated", "annotator_count", "duplicate_of"}
)
"""``extra`` keys of stage outputs written before issue 17, read into typed fields."""


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
    image_decided: bool | None = None  # the image decided an entity's type; None = unknown
    labels_from: str = ""  # who gave the final labels: annotators | simulated | source | ""
    cluster_id: str = ""  # near-duplicate cluster (image or text); "" = singleton
    duplicate_of: str = ""  # representative post id when this one is a duplicate
    duplicate_reason: str = ""  # duplicate_image | duplicate_text ("" = not a duplicate)
    ls: LSRef | None = None  # the post's Label Studio task (push)
    adjudication: str = ""  # "" | ADJUDICATION_NEEDED | ADJUDICATION_DONE (pull)
    split: str = ""
    status: str = STATUS_OK
    reason: str = ""
    pretokenized: bool = False  # tokens and text come from the source and are kept exactly
    source_split: str = ""  # train / dev / test as the source published it ("" = none)
    imgid: str = ""  # the post's IMGID in a published IMGID corpus (for the round trip)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def annotator_count(self) -> int:
        """Distinct annotators with a completed (not cancelled) annotation: those whose
        labels were combined (0 for the source's gold)."""
        return len({a.annotator for a in self.annotations if not a.cancelled})

    @property
    def has_image(self) -> bool:
        """A stored, validated image belongs to this post (else it is text-only)."""
        return self.image is not None and self.image.ok

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
        d["ls"] = dict(vars(self.ls)) if self.ls is not None else None
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
        d["image"] = (
            ImageRef(**{k: v for k, v in img.items() if k in _field_names(ImageRef)})
            if img
            else None
        )
        for key in ("gold_spans", "spans"):
            d[key] = [Span(**s) for s in d.get(key, [])]
        d["annotations"] = [
            Annotation(**{**a, "spans": [Span(**s) for s in a.get("spans", [])]})
            for a in d.get("annotations", [])
        ]
        d["token_offsets"] = list(map(tuple, d.get("token_offsets", ())))
        ls = d.get("ls")
        d["ls"] = LSRef(**ls) if ls else None
        extra = d.get("extra")
        if extra and not _LEGACY_EXTRA.isdisjoint(extra):
            _migrate_extra(d)
        known = _field_names(cls)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, line: str) -> Post:
        return cls.from_dict(json.loads(line))


def _migrate_extra(d: dict[str, Any]) -> None:
    """Move the cross-stage facts that outputs written before issue 17 kept in ``extra``
    into their typed fields (``d`` is a :meth:`Post.from_dict` dict, changed in place)."""
    extra = d["extra"] = dict(d["extra"])
    ls = {name: extra.pop(key) for key, name in _LEGACY_LS.items() if key in extra}
    if d.get("ls") is None and "project" in ls and "task" in ls:
        d["ls"] = LSRef(**{k: int(v) for k, v in ls.items() if v is not None})
    dedup = extra.pop("dedup", None)
    if isinstance(dedup, dict) and not d.get("duplicate_reason"):
        d["duplicate_reason"] = str(dedup.get("reason", ""))
    needed, done = extra.pop("needs_adjudication", None), extra.pop("adjudicated", None)
    if not d.get("adjudication"):
        d["adjudication"] = ADJUDICATION_DONE if done else ADJUDICATION_NEEDED if needed else ""
    extra.pop("annotator_count", None)  # derived: Post.annotator_count
    extra.pop("duplicate_of", None)  # push's copy of Post.duplicate_of


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


ExportColumn = tuple[str, str, str]
"""(name, type, description); types: string, bool, int16, int32, float32, tags, strings,
spans, image (see :func:`arrow_schema` and :func:`hf_features`)."""

EXPORT_COLUMNS: tuple[ExportColumn, ...] = (
    ("id", "string", "stable post id: <source>:<source id>"),
    ("lang", "string", "ISO 639-1 language of the post"),
    ("text", "string", "the post's text (normalised; a pre-tokenised corpus's tokens joined by "
                       "single spaces)"),
    ("tokens", "strings", "the tokens"),
    ("ner_tags", "tags", "one strict IOB2 tag per token, as class ids (ClassLabel over O, "
                         "B-PER, I-PER, B-LOC, I-LOC, B-ORG, I-ORG, B-MISC, I-MISC)"),
    ("ner_tags_str", "strings", "the same tags as strings (B-PER, ...)"),
    ("spans", "spans", "entity mentions: code-point offsets [start, end) into text, and type"),
    ("image", "image", "the post's picture (null for a text-only post)"),
    ("image_sha256", "string", "sha256 of the image bytes (null without image)"),
    ("image_phash", "string", "64-bit perceptual hash, 16 hex digits (null without image)"),
    ("width", "int32", "image width in pixels (null without image)"),
    ("height", "int32", "image height in pixels (null without image)"),
    ("source", "string", "where the post comes from (sample, mastodon, bluesky, a corpus name)"),
    ("source_id", "string", "the post's id in its source"),
    ("url", "string", "the post's public URL where the source publishes one"),
    ("created_at", "string", "ISO 8601 UTC time the post was written"),
    ("licence", "string", "licence or terms of the post"),
    ("author_hash", "string", "keyed pseudonym of the author (HMAC with a secret corpus key)"),
    ("synthetic", "bool", "true for machine-made posts (the bundled sample)"),
    ("annotator_count", "int16", "annotators whose labels were combined (0: source gold)"),
    ("agreement", "float32", "entity F1 between annotators (null: labelled once)"),
    ("image_decided", "bool", "the image decided an entity's type (annotators' choice, or the "
                              "source's flag); null: not recorded"),
    ("cluster_id", "string", "near-duplicate cluster ('' = none)"),
    ("split", "string", "train, validation or test"),
)  # fmt: skip
"""The export's columns in order (schema version :data:`SCHEMA_VERSION`)."""


def _arrow_type(kind: str):  # -> pyarrow.DataType
    import pyarrow as pa

    span = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string())])
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return {
        "string": pa.string(), "bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(),
        "float32": pa.float32(), "tags": pa.list_(pa.int64()), "strings": pa.list_(pa.string()),
        "spans": pa.list_(span), "image": image,
    }[kind]  # fmt: skip


def hf_features() -> dict[str, Any]:
    """The Hugging Face ``datasets`` features of the export, in their JSON form (``Sequence``
    spelled the way every datasets version reads): tags are ``ClassLabel`` ids over
    :data:`LABELS`, ``image`` an ``Image``."""

    def value(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "_type": "Value"}

    def feature(kind: str) -> dict[str, Any]:
        if kind == "tags":
            return {"feature": {"names": list(LABELS), "_type": "ClassLabel"}, "_type": "Sequence"}
        if kind == "strings":
            return {"feature": value("string"), "_type": "Sequence"}
        if kind == "spans":
            return {"feature": {"start": value("int32"), "end": value("int32"),
                                "label": value("string")}, "_type": "List"}  # fmt: skip
        if kind == "image":
            return {"_type": "Image"}
        return value(kind)

    return {name: feature(kind) for name, kind, _ in EXPORT_COLUMNS}


def hf_features_yaml() -> list[dict[str, Any]]:
    """``dataset_info.features`` of the dataset card (the YAML form of :func:`hf_features`)."""
    out: list[dict[str, Any]] = []
    for name, kind, _ in EXPORT_COLUMNS:
        if kind == "tags":
            names = {str(i): label for i, label in enumerate(LABELS)}
            out.append({"name": name, "sequence": {"class_label": {"names": names}}})
        elif kind == "strings":
            out.append({"name": name, "sequence": "string"})
        elif kind == "spans":
            out.append({"name": name, "list": [{"name": "start", "dtype": "int32"},
                                               {"name": "end", "dtype": "int32"},
                                               {"name": "label", "dtype": "string"}]})  # fmt: skip
        else:
            out.append({"name": name, "dtype": kind})
    return out


def arrow_schema(embed_images: bool = True):  # -> pyarrow.Schema
    """The exported Parquet schema (version :data:`SCHEMA_VERSION`, columns
    :data:`EXPORT_COLUMNS`).

    ``image`` is a struct ``{bytes, path}``, the layout of the Hugging Face ``Image``
    feature; ``ner_tags`` are int64 ids into :data:`LABELS` (also stored in the metadata as
    JSON under ``mmnerd.labels``).  The metadata carries the Hugging Face features under
    ``huggingface``, so ``datasets`` reads ClassLabel tags and Image pictures from the
    Parquet files alone.
    """
    import pyarrow as pa

    fields = [pa.field(name, _arrow_type(kind), nullable=name != "id")
              for name, kind, _ in EXPORT_COLUMNS]  # fmt: skip
    meta = {
        b"mmnerd.schema_version": SCHEMA_VERSION.encode(),
        b"mmnerd.labels": json.dumps(list(LABELS)).encode(),
        b"mmnerd.image_mode": b"embedded" if embed_images else b"path",
        b"huggingface": json.dumps({"info": {"features": hf_features()}}).encode(),
    }
    return pa.schema(fields, metadata=meta)
