"""Importer for the IMGID CoNLL format of Twitter-2015 / Twitter-2017 and the MMNERD release.

The format::

    IMGID:<id>
    <token>\\t<label>
    <token>\\t<label>
    (blank line)
    IMGID:<id>
    ...

with the post's picture, when the corpus has pictures, at ``<images_dir>/<id>.jpg``
(:func:`find_image`).  Labels are BIO over the dataset's types; ``label_map`` renames
types (Twitter-2015's ``OTHER`` is MMNERD's ``MISC``) or drops them (``"O"``).

:func:`read_imgid` is the exact reader; :class:`ConllSource` turns blocks into posts
that keep the corpus **as published**: its tokens (``pretokenized``: never normalised
nor re-tokenised, invisible characters included), ``text`` = the tokens joined by
single spaces, gold spans from the BIO tags, the file's split (``source_split``), the
IMGID (repeats inside a split get ids ``<split>:<imgid>~2``, ``~3``, ...).  Orphan
``I-X`` tags are read as ``B-X`` (conlleval's reading), counted as
``bio_repair:orphan_inside`` and listed in ``<data_dir>/reports/import/bio-repairs.jsonl``.
Pictures are read as local files by the fetch stage (confined to ``images_dir``); a post
without a picture continues text-only when ``[images] required = false``.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from mmnerd.errors import ConfigError, InputError
from mmnerd.io import atomic_write
from mmnerd.records import ENTITY_TYPES, ImageRef, Post, canonical_split
from mmnerd.sources import Source, SourceOptions
from mmnerd.text.bio import bio_to_spans, iob2_problems

_UNSAFE_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")
"""Characters that make an IMGID name more than one file: separators, NUL, controls."""
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")


def imgid_problem(imgid: str) -> str:
    """Why ``imgid`` cannot name a file inside the image folder, or "" when it can.

    An IMGID is one path component: it is refused when it *is* ``.`` or ``..`` or holds a
    path separator, NUL or another control character.  Dots inside a name (MMNERD's
    ``Tapas...Marine-Tavern...1-L``), ``%2F``, ``?``, ``*``, ``~`` and commas are plain
    characters of a file name.
    """
    if imgid in (".", ".."):
        return f"IMGID {imgid!r} names a folder"
    bad = _UNSAFE_CHARS.search(imgid)
    if bad:
        return f"IMGID {imgid[:60]!r} holds {bad.group()!r} (a path separator or control character)"
    return ""


def image_candidates(imgid: str, ext: str = ".jpg") -> list[str]:
    """File names the picture of ``imgid`` may have, in the order they are tried.

    The reference loaders of Twitter-2015/2017 and MMNERD open ``<imgid>.jpg`` whatever the
    id, so that comes first; an id that already ends in an image extension (some MMNERD
    ids end in ``.jpg``) may also be stored under its own name.
    """
    names = [imgid + ext]
    if imgid.lower().endswith(IMAGE_EXTS):
        names.append(imgid)
    return names


def find_image(images_dir: Path, imgid: str, ext: str = ".jpg") -> Path | None:
    """The picture of ``imgid`` in ``images_dir`` (see :func:`image_candidates`), or None."""
    if imgid_problem(imgid):
        return None
    for name in image_candidates(imgid, ext):
        path = images_dir / name
        try:
            if path.is_file():
                return path
        except OSError:  # e.g. a name longer than the filesystem allows
            continue
    return None


def read_imgid(path: str | Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """Yield ``(imgid, tokens, labels)`` per post of an IMGID CoNLL file, exactly as written
    (see :func:`read_imgid_lines`)."""
    for imgid, tokens, labels, _lines in read_imgid_lines(path):
        yield imgid, tokens, labels


def read_imgid_lines(path: str | Path) -> Iterator[tuple[str, list[str], list[str], list[int]]]:
    """Yield ``(imgid, tokens, labels, line number of each token)`` per post.

    Accepts LF or CRLF line ends, a UTF-8 BOM, and blank lines anywhere between
    posts.  Raises :class:`InputError` naming file and line for a token line
    before any ``IMGID:``, an id that is not one file name (:func:`imgid_problem`),
    a line that is not ``token<TAB>label``, an empty token or label, a post without
    tokens, or bytes that are not UTF-8.
    """
    path = Path(path)
    name = _short(path)
    imgid: str | None = None
    start = 0
    tokens: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    if not path.is_file():
        raise InputError(f"{path}: no such IMGID file")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{name}:{lineno}: not UTF-8 ({e.reason})") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            line = line.removesuffix("\n").removesuffix("\r")
            if line.startswith("IMGID:"):
                if imgid is not None:
                    if not tokens:
                        raise InputError(f"{name}:{start}: IMGID:{imgid} has no tokens")
                    yield imgid, tokens, labels, lines
                imgid, start, tokens, labels, lines = line[6:].strip(), lineno, [], [], []
                if not imgid:
                    raise InputError(f"{name}:{lineno}: empty IMGID")
                problem = imgid_problem(imgid)
                if problem:
                    raise InputError(f"{name}:{lineno}: {problem}; refused")
                continue
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0] or not fields[1].strip():
                raise InputError(f"{name}:{lineno}: expected token<TAB>label, got {line[:60]!r}")
            if imgid is None:
                raise InputError(f"{name}:{lineno}: token line before the first IMGID: line")
            tokens.append(fields[0])
            labels.append(fields[1].strip())
            lines.append(lineno)
    if imgid is not None:
        if not tokens:
            raise InputError(f"{name}:{start}: IMGID:{imgid} has no tokens")
        yield imgid, tokens, labels, lines


def _short(path: Path) -> str:
    """``<parent>/<name>`` for messages (e.g. ``twitter2015/train.txt``)."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def map_labels(labels: list[str], label_map: dict[str, str]) -> list[str]:
    """Rename entity types (``B-OTHER`` -> ``B-MISC``); types mapped to ``O`` become ``O``."""
    out = []
    for label in labels:
        if label == "O":
            out.append(label)
            continue
        prefix, _, etype = label.partition("-")
        etype = label_map.get(etype, etype)
        out.append("O" if etype == "O" else f"{prefix}-{etype}")
    return out


class ConllOptions(SourceOptions):
    """The ``[source]`` table with ``kind = "conll"``."""

    files: list[str] = Field(
        ...,
        min_length=1,
        description="IMGID files or glob patterns (e.g. twitter2015/*.txt); each file's name "
        "gives the posts' split (train, valid/dev, test; MMNERD's *_conll_format.txt too)",
    )
    images_dir: str = Field(
        "", description="folder with the <imgid>.jpg pictures ('' = the corpus has no images)"
    )
    image_ext: str = Field(".jpg", description="extension of the picture files")
    label_map: dict[str, str] = Field(
        default_factory=lambda: {"OTHER": "MISC"},
        description='entity type renames (Twitter-2015 "OTHER" -> "MISC"); map to "O" to drop',
    )
    dataset: str = Field("", description="name in post ids (default: the first file's folder)")
    lang: str = Field("en", description="language of the posts (the corpus is monolingual)")
    licence: str = Field(
        "research use only; see the dataset's own licence",
        description="licence note stored on every post",
    )

    @field_validator("label_map")
    @classmethod
    def _types(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            if dst != "O" and dst not in ENTITY_TYPES:
                raise ValueError(f"{src!r} -> {dst!r}: target must be one of {ENTITY_TYPES} or O")
        return v


REPAIRS_FILE = ("reports", "import", "bio-repairs.jsonl")
"""Where the list of repaired tags goes, under the data dir."""


class ConllSource(Source):
    """Posts as published in IMGID files: their tokens, gold spans, splits and pictures."""

    kind: ClassVar[str] = "conll"
    Options: ClassVar[type[SourceOptions]] = ConllOptions
    options: ConllOptions

    def paths(self) -> list[Path]:
        """The IMGID files, each pattern expanded and sorted; error if a pattern matches none."""
        out: list[Path] = []
        for pattern in self.options.files:
            hits = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not hits:
                raise ConfigError(f"field 'source.files': {pattern!r} matches no file")
            out += [Path(h) for h in hits]
        return out

    def local_images(self) -> Path | None:
        return Path(self.options.images_dir) if self.options.images_dir else None

    def posts(self) -> Iterator[Post]:
        o = self.options
        paths = self.paths()
        dataset = o.dataset or paths[0].resolve().parent.name or "conll"
        images = self.local_images()
        if images is not None and not images.is_dir():
            raise ConfigError(f"field 'source.images_dir': {images} is not a folder")
        known = {f"{p}-{t}" for t in ENTITY_TYPES for p in "BI"} | {"O"}
        repairs: list[dict[str, Any]] = []
        for path in paths:
            split = canonical_split(path.stem)
            seen: dict[str, int] = {}
            for imgid, tokens, raw_labels, lines in read_imgid_lines(path):
                labels = map_labels(raw_labels, o.label_map)
                for label, raw, lineno in zip(labels, raw_labels, lines, strict=True):
                    if label not in known:
                        raise InputError(
                            f"{_short(path)}:{lineno}: IMGID:{imgid}: label {raw!r} is not BIO "
                            f"over {'/'.join(ENTITY_TYPES)} (add it to source.label_map)"
                        )
                for k, problem in iob2_problems(labels):
                    self.flags["bio_repair:orphan_inside"] += 1
                    repairs.append(
                        {"file": str(path), "line": lines[k], "imgid": imgid, "token": tokens[k],
                         "tag": raw_labels[k], "read_as": f"B-{labels[k][2:]}", "why": problem}
                    )  # fmt: skip
                seen[imgid] = seen.get(imgid, 0) + 1
                sid = f"{split or path.stem}:{imgid}" + (
                    f"~{seen[imgid]}" if seen[imgid] > 1 else ""
                )
                if seen[imgid] == 2:
                    self.flags["repeated_imgid"] += 1
                post = self._post(dataset, sid, imgid, tokens, labels, images)
                post.source_split = split
                yield post
        self._write_repairs(repairs)

    def _post(
        self,
        dataset: str,
        sid: str,
        imgid: str,
        tokens: list[str],
        labels: list[str],
        images: Path | None,
    ) -> Post:
        offsets, pos = [], 0
        for t in tokens:
            offsets.append((pos, pos + len(t)))
            pos += len(t) + 1
        text = " ".join(tokens)
        try:
            spans, _ = bio_to_spans(labels, offsets, text)
        except ValueError as e:
            raise InputError(f"{dataset} post {imgid!r}: {e}") from None
        image = None
        if images is not None:
            found = find_image(images, imgid, self.options.image_ext)
            if found is not None:
                image = ImageRef(file=found.name)
            else:
                self.flags["image_missing"] += 1
        return Post(
            id=f"{dataset}:{sid}",
            source=dataset,
            source_id=sid,
            text=text,
            raw_text=text,
            licence=self.options.licence,
            lang_hint=self.options.lang,
            image=image,
            tokens=list(tokens),
            token_offsets=offsets,
            gold_spans=spans,
            pretokenized=True,
            imgid=imgid,
        )

    def _write_repairs(self, repairs: list[dict[str, Any]]) -> None:
        """List every repaired tag (file, line, IMGID, tag, how it was read), or remove a
        stale list when there is none."""
        path = self.config.root.joinpath(*REPAIRS_FILE)
        if not repairs:
            path.unlink(missing_ok=True)
            return
        with atomic_write(path) as f:
            for r in repairs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
