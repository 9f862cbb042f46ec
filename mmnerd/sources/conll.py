"""Importer for the IMGID CoNLL format of Twitter-2015 / Twitter-2017 and the MMNERD release.

The format::

    IMGID:<id>
    <token>\\t<label>
    <token>\\t<label>
    (blank line)
    IMGID:<id>
    ...

with the post's picture at ``<images_dir>/<id>.jpg`` (Twitter-2017 ids such as
``O_1234`` likewise).  Labels are BIO over the dataset's types; ``label_map``
renames types (Twitter-2015's ``OTHER`` is MMNERD's ``MISC``) or drops them
(``"O"``).  :func:`read_imgid` is the exact reader (the CoNLL exporter's round
trip relies on it); :class:`ConllSource` turns blocks into posts with gold
spans: ``text`` = the tokens joined by single spaces, spans from BIO in code
points.

Images are served over a loopback HTTP server while the pipeline runs
(``serving()``, like the sample source), because the fetch stage speaks
http(s) only; the pipeline must allow-list the loopback host
(``[images] allow_hosts = ["127.0.0.1"]``).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import re
import socket
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field, field_validator

from mmnerd.errors import ConfigError, InputError
from mmnerd.records import ENTITY_TYPES, ImageRef, Post
from mmnerd.sources import Source, SourceOptions
from mmnerd.sources.loopback import serve_in_background
from mmnerd.text.bio import bio_to_spans

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
        if path.is_file():
            return path
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
        ..., min_length=1, description="IMGID files or glob patterns (e.g. twitter2015/*.txt)"
    )
    images_dir: str = Field("", description="folder with <imgid>.jpg pictures ('' = no images)")
    image_ext: str = Field(".jpg", description="extension added to ids that have none")
    label_map: dict[str, str] = Field(
        default_factory=lambda: {"OTHER": "MISC"},
        description='entity type renames (Twitter-2015 "OTHER" -> "MISC"); map to "O" to drop',
    )
    dataset: str = Field("", description="name in post ids (default: the first file's folder)")
    lang: str = Field("en", description="language hint of the posts (Twitter-2015/2017: en)")
    licence: str = Field(
        "research use only; see the dataset's own licence",
        description="licence note stored on every post",
    )
    image_host: str = Field("127.0.0.1", description="loopback address serving images_dir")
    image_port: int = Field(
        18766, ge=0, le=65535, description="port of the image server; 0 = a free one"
    )

    @field_validator("label_map")
    @classmethod
    def _types(cls, v: dict[str, str]) -> dict[str, str]:
        for src, dst in v.items():
            if dst != "O" and dst not in ENTITY_TYPES:
                raise ValueError(f"{src!r} -> {dst!r}: target must be one of {ENTITY_TYPES} or O")
        return v


@functools.cache
def _free_port(host: str, folder: str) -> int:
    """One free port per (host, folder) for this process: every source instance agrees."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class ConllSource(Source):
    """Posts with gold spans from IMGID files; images served on a loopback port."""

    kind: ClassVar[str] = "conll"
    Options: ClassVar[type[SourceOptions]] = ConllOptions
    options: ConllOptions

    def __init__(self, options: SourceOptions, config: Any):
        super().__init__(options, config)
        self._server: ThreadingHTTPServer | None = None

    def paths(self) -> list[Path]:
        """The IMGID files, each pattern expanded and sorted; error if a pattern matches none."""
        out: list[Path] = []
        for pattern in self.options.files:
            hits = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not hits:
                raise ConfigError(f"field 'source.files': {pattern!r} matches no file")
            out += [Path(h) for h in hits]
        return out

    @property
    def port(self) -> int:
        o = self.options
        return o.image_port or _free_port(o.image_host, str(Path(o.images_dir).resolve()))

    @property
    def base_url(self) -> str:
        return f"http://{self.options.image_host}:{self.port}"

    def posts(self) -> Iterator[Post]:
        o = self.options
        paths = self.paths()
        dataset = o.dataset or paths[0].resolve().parent.name or "conll"
        images = Path(o.images_dir) if o.images_dir else None
        known = {f"{p}-{t}" for t in ENTITY_TYPES for p in "BI"} | {"O"}
        for path in paths:
            split = path.stem
            seen: dict[str, int] = {}
            for imgid, tokens, raw_labels, lines in read_imgid_lines(path):
                labels = map_labels(raw_labels, o.label_map)
                for label, raw, lineno in zip(labels, raw_labels, lines, strict=True):
                    if label not in known:
                        raise InputError(
                            f"{_short(path)}:{lineno}: IMGID:{imgid}: label {raw!r} is not BIO "
                            f"over {'/'.join(ENTITY_TYPES)} (add it to source.label_map)"
                        )
                seen[imgid] = seen.get(imgid, 0) + 1
                sid = f"{split}:{imgid}" + (f"~{seen[imgid]}" if seen[imgid] > 1 else "")
                yield self._post(dataset, sid, imgid, split, tokens, labels, images)

    def _post(
        self,
        dataset: str,
        sid: str,
        imgid: str,
        split: str,
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
            spans, issues = bio_to_spans(labels, offsets, text)
        except ValueError as e:
            raise InputError(f"{dataset} post {imgid!r}: {e}") from None
        repairs = len(issues)
        image = None
        extra: dict[str, Any] = {"imgid": imgid, "split": split, "dataset": dataset}
        if repairs:
            extra["bio_repairs"] = repairs
        if images is not None:
            found = find_image(images, imgid, self.options.image_ext)
            if found is not None:
                image = ImageRef(url=f"{self.base_url}/{quote(found.name)}")
            else:
                extra["image_missing"] = True
        return Post(
            id=f"{dataset}:{sid}",
            source=dataset,
            source_id=sid,
            text=text,
            licence=self.options.licence,
            lang_hint=self.options.lang,
            image=image,
            tokens=list(tokens),
            token_offsets=offsets,
            gold_spans=spans,
            extra=extra,
        )

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Serve ``images_dir`` on ``image_host:port`` until the block exits."""
        o = self.options
        if self._server is not None or not o.images_dir:
            yield
            return
        folder = Path(o.images_dir)
        if not folder.is_dir():
            raise ConfigError(f"field 'source.images_dir': {folder} is not a folder")
        handler = functools.partial(_QuietHandler, directory=str(folder))
        try:
            server = ThreadingHTTPServer((o.image_host, self.port), handler)
        except OSError as e:
            raise ConfigError(
                f"field 'source.image_port': cannot serve images on {o.image_host}:{self.port} "
                f"({e.strerror}); set a free port or 0"
            ) from None
        server.daemon_threads = True
        self._server = server
        try:
            with serve_in_background(server, f"mmnerd-conll-images:{self.port}"):
                yield
        finally:
            self._server = None
