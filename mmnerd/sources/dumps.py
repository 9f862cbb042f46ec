"""Importers for post dumps: JSON lines, CSV and Parquet, with a column mapping.

``[source.columns]`` names the dump's column for each post field::

    id, text, lang, image_url, image_path, image_alt, created_at, author, url, licence

``text`` is required, the others optional ("" = the dump has no such column).  A picture is
an http(s) URL (``image_url``, downloaded) or a file on disk (``image_path``, relative to
``images_dir``, read as a file and confined to that folder: no HTTP server needed).
In JSONL a column may be a dotted path into nested objects (``user.screen_name``).
``author`` is pseudonymised with the corpus key (:mod:`mmnerd.privacy`), never stored;
``created_at`` may be ISO 8601 or epoch seconds and is stored as UTC ISO.  A malformed
file gets an :class:`InputError` naming the file and the line (for Parquet: the row).
"""

from __future__ import annotations

import codecs
import csv
import glob
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmnerd.errors import ConfigError, InputError
from mmnerd.records import ImageRef, Post
from mmnerd.safejson import JsonTooDeep, loads_json
from mmnerd.sources import Source, SourceOptions
from mmnerd.sources.mastodon import utc_iso


class Columns(BaseModel):
    """Dump column for each post field ("" = absent)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field("id", description='post id column ("" = file name + line number)')
    text: str = Field("text", min_length=1, description="post text column (required)")
    lang: str = Field("lang", description="language hint column")
    image_url: str = Field("image_url", description="http(s) image URL column")
    image_path: str = Field(
        "image_path", description="local image column: a path relative to source.images_dir"
    )
    image_alt: str = Field("", description="image alt-text column")
    created_at: str = Field("created_at", description="ISO 8601 or epoch seconds")
    author: str = Field("author", description="author column (keyed pseudonym, never stored)")
    url: str = Field("url", description="post URL column")
    licence: str = Field("licence", description="per-post licence column")


class DumpOptions(SourceOptions):
    """The ``[source]`` table with ``kind = "jsonl" | "csv" | "parquet"``."""

    path: str = Field(..., description="dump file or glob pattern (e.g. dumps/*.jsonl)")
    name: str = Field("", description="source name in post ids (default: the kind)")
    columns: Columns = Field(default_factory=Columns)
    licence: str = Field("", description="licence note for posts whose licence column is empty")
    require_image: bool = Field(
        False, description="posts without an image (URL or path) are dropped at collect"
    )
    images_dir: str = Field(
        "", description="folder the image_path column is relative to (pictures read as files)"
    )
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter")
    encoding: str = Field("utf-8", description="text encoding of JSONL / CSV files")

    @field_validator("encoding")
    @classmethod
    def _known_text_encoding(cls, v: str) -> str:
        try:
            info = codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v[:40]!r} (e.g. utf-8, latin-1, cp1252)") from None
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"{v[:40]!r} is not a text encoding")
        return v


def _get(row: dict[str, Any], column: str) -> Any:
    """``row[column]``, following dots into nested objects; None if absent."""
    if not column:
        return None
    if column in row:
        return row[column]
    node: Any = row
    for part in column.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _str(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _timestamp(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):  # an int to Python: `true` would become 1970-01-01
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, datetime):
        return utc_iso(value.isoformat())
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        if isinstance(value, float) and math.isnan(value):
            return ""
        return utc_iso(datetime.fromtimestamp(float(value), UTC).isoformat())
    datetime.fromisoformat(str(value).replace("Z", "+00:00"))  # ValueError if not ISO 8601
    return utc_iso(str(value))


def _undecodable(path: Path, encoding: str, e: UnicodeDecodeError) -> InputError:
    """An :class:`InputError` naming the first line of ``path`` that is not ``encoding``."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as f:
        for line, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as bad:
                return InputError(f"{path}:{line}: not {encoding} ({bad.reason})")
    return InputError(f"{path}: not {encoding} ({e.reason})")


class DumpSource(Source):
    """Base of the dump importers: subclasses yield ``(line, row)`` per file."""

    Options: ClassVar[type[SourceOptions]] = DumpOptions
    options: DumpOptions

    def local_images(self) -> Path | None:
        return Path(self.options.images_dir) if self.options.images_dir else None

    def paths(self) -> list[Path]:
        p = self.options.path
        hits = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
        if not hits:
            raise ConfigError(f"field 'source.path': {p!r} matches no file")
        for h in hits:
            if not Path(h).is_file():
                raise InputError(f"{h}: no such dump file")
        return [Path(h) for h in hits]

    def rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        raise NotImplementedError

    def posts(self) -> Iterator[Post]:
        o = self.options
        cols = o.columns
        name = o.name or self.kind
        for path in self.paths():
            checked = False
            for line, row in self.rows(path):
                where = f"{path}:{line}"
                if not checked:  # the mapping must match the file's columns
                    for field, col in cols.model_dump().items():
                        if col and field in ("text", "id") and _get(row, col) is None:
                            raise InputError(
                                f"{where}: no column {col!r} for {field} (columns: "
                                f"{', '.join(sorted(row))[:200]}); set source.columns.{field}"
                            )
                    checked = True
                text = _get(row, cols.text)
                if text is not None and not isinstance(text, str):
                    raise InputError(f"{where}: column {cols.text!r} is not text")
                for col in (cols.id, cols.url, cols.author, cols.licence, cols.lang,
                            cols.image_url, cols.image_alt, cols.created_at):  # fmt: skip
                    if isinstance(_get(row, col), dict | list):
                        raise InputError(f"{where}: column {col!r} holds a list or an object")
                sid = _str(_get(row, cols.id)) if cols.id else f"{path.name}:{line}"
                if not sid:
                    raise InputError(f"{where}: empty id in column {cols.id!r}")
                try:
                    created = _timestamp(_get(row, cols.created_at))
                except (ValueError, OverflowError, OSError):
                    raise InputError(f"{where}: bad timestamp in {cols.created_at!r}") from None
                image_url = _str(_get(row, cols.image_url))
                image_path = _str(_get(row, cols.image_path))
                alt = _str(_get(row, cols.image_alt))
                image = None
                if image_path and o.images_dir:
                    image = ImageRef(file=image_path, alt=alt)
                elif image_path:
                    raise InputError(f"{where}: column {cols.image_path!r} holds a path but "
                                     "source.images_dir is not set")  # fmt: skip
                elif image_url:
                    image = ImageRef(url=image_url, alt=alt)
                post = Post(
                    id=f"{name}:{sid}",
                    source=name,
                    source_id=sid,
                    text=_str(text),
                    url=_str(_get(row, cols.url)),
                    author_hash=self.pseudonym(_str(_get(row, cols.author))),
                    created_at=created,
                    licence=_str(_get(row, cols.licence)) or o.licence,
                    lang_hint=_str(_get(row, cols.lang)).split("-")[0].lower(),
                    image=image,
                    extra={"file": path.name, "line": line},
                )
                if image is None and o.require_image:
                    post.drop("no_image")
                yield post


class JsonlSource(DumpSource):
    """One JSON object per line."""

    kind: ClassVar[str] = "jsonl"

    def rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        with open(path, encoding=self.options.encoding, errors="strict") as f:
            try:
                for line, raw in enumerate(f, 1):
                    if not raw.strip():
                        continue
                    try:
                        row = loads_json(raw)
                    except JsonTooDeep:
                        raise InputError(f"{path}:{line}: JSON nested too deeply") from None
                    except ValueError as e:  # JSONDecodeError, or an int over 4300 digits
                        why = getattr(e, "msg", None) or str(e).split(":")[0]
                        raise InputError(f"{path}:{line}: not valid JSON ({why})") from None
                    if not isinstance(row, dict):
                        raise InputError(f"{path}:{line}: expected a JSON object per line")
                    yield line, row
            except UnicodeDecodeError as e:
                raise _undecodable(path, self.options.encoding, e) from None


class CsvSource(DumpSource):
    """CSV with a header row; line numbers count physical lines (quoted newlines included)."""

    kind: ClassVar[str] = "csv"

    def rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        # a field over csv's default 131,072 characters would stop the whole import; read
        # it, so that post alone is dropped (too_long), as it is from JSONL
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
        with open(path, encoding=self.options.encoding, newline="") as f:
            reader = csv.reader(f, delimiter=self.options.delimiter, strict=True)
            try:
                header = next(reader, None)
                if not header:
                    return
                start = reader.line_num + 1
                for row in reader:
                    if not row:
                        start = reader.line_num + 1
                        continue
                    if len(row) != len(header):
                        raise InputError(
                            f"{path}:{start}: {len(row)} fields, the header has {len(header)}"
                        )
                    yield start, dict(zip(header, row, strict=True))
                    start = reader.line_num + 1
            except csv.Error as e:
                raise InputError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
            except UnicodeDecodeError as e:
                raise _undecodable(path, self.options.encoding, e) from None


class ParquetSource(DumpSource):
    """Parquet read by row group; "line" in messages is the 1-based row number."""

    kind: ClassVar[str] = "parquet"

    def rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for non-Parquet files
            raise InputError(f"{path}: not a Parquet file ({str(e)[:120]})") from None
        n = 0
        for batch in pf.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                yield n, row
