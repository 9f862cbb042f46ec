"""Image validation and normalisation: bytes in, the bytes to store (or a status) out.

Pure functions of the downloaded bytes and :class:`ImageOptions`, so they run
in a download thread or in a worker process alike (see :mod:`mmnerd.images.fetch`).

Policy (``store="normalized"``, the default): what we store is what we serve to
annotators and models, so it is the image *as displayed*, without personal
metadata:

* the type comes from magic bytes (JPEG, PNG, GIF, WebP, BMP), never from headers;
* a header whose width x height exceeds ``max_pixels`` is a ``decompression_bomb``
  and is refused before any pixel is decoded;
* the whole image is decoded (truncation and corruption show up here);
* EXIF orientation is applied, animated GIF/WebP keep their first frame,
  CMYK / 16-bit / palette / premultiplied modes become L, RGB or RGBA;
* ``max_side`` > 0 shrinks the longest side (JPEGs decode at reduced scale first
  through libjpeg's DCT scaling, ``Image.draft``, which is the main speed lever);
* images that need none of the above are stored byte-for-byte (JPEG: minus the
  EXIF/XMP/IPTC/comment segments, removed losslessly), others are re-encoded:
  PNG when there is alpha or the source was lossless (PNG, GIF, BMP), JPEG
  (``jpeg_quality``) otherwise.  ICC profiles are kept.

``store="original"`` keeps the downloaded bytes verbatim after the same checks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageFile, ImageOps

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image must fail, never half-load

_MAGIC: list[tuple[bytes, int, str, str]] = [
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"WEBP", 8, "image/webp", "webp"),
    (b"BM", 0, "image/bmp", "bmp"),
]
_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}
_STORABLE_MODES = {"JPEG": {"L", "RGB"}, "PNG": {"L", "LA", "RGB", "RGBA"}}
_HARMLESS_PNG_INFO = {"dpi", "gamma", "srgb", "icc_profile", "aspect", "chromaticity"}
_EXIF_ORIENTATION = 0x0112


def sniff(head: bytes) -> tuple[str, str] | None:
    """(mime, extension) from magic bytes, or None if this is not an image we accept."""
    for magic, offset, mime, ext in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if ext == "webp" and head[:4] != b"RIFF":
                continue
            return mime, ext
    return None


@dataclass(frozen=True)
class ImageOptions:
    """What :func:`process` checks and produces (a picklable slice of ImagesConfig)."""

    max_pixels: int = 40_000_000
    max_side: int = 0
    jpeg_quality: int = 90
    store: Literal["normalized", "original"] = "normalized"


@dataclass
class Processed:
    """Outcome of :func:`process`: ``data`` is what to store when ``status == "ok"``."""

    status: str
    reason: str = ""
    data: bytes = b""
    mime: str = ""
    ext: str = ""
    width: int = 0
    height: int = 0


def fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` shrunk so its longest side is at most ``max_side`` (0 = unchanged)."""
    w, h = size
    if max_side <= 0 or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Drop EXIF/XMP (APP1), IPTC (APP13), comments and other APPn segments losslessly.

    Keeps JFIF (APP0), ICC profiles (APP2) and Adobe (APP14, needed for colours);
    everything from the first scan (SOS) on is copied verbatim.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out = [b"\xff\xd8"]
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {i}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker, start = data[i], i - 1
        i += 1
        if marker == 0xD9 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(data[start:i])
            if marker == 0xD9:
                break
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[start:])
            break
        seglen = int.from_bytes(data[i : i + 2], "big")
        payload = data[i + 2 : i + seglen]
        end = i + seglen
        metadata = 0xE0 <= marker <= 0xEF or marker == 0xFE
        keep = not metadata or (
            (marker == 0xE0 and payload.startswith(b"JFIF\0"))
            or (marker == 0xE2 and payload.startswith(b"ICC_PROFILE\0"))
            or (marker == 0xEE and payload.startswith(b"Adobe"))
        )
        if keep:
            out.append(data[start:end])
        i = end
    return b"".join(out)


def _storable(img: Image.Image) -> Image.Image:
    """The image in L, LA, RGB or RGBA, converting other modes without clipping."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        out = img
    elif mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in img.info
        out = img.convert("RGBA" if alpha else "RGB")
    elif mode.startswith("I;16") or mode == "I":  # 16-bit grey: scale, do not clip
        out = img.convert("I").point(lambda v: v / 256).convert("L")
    elif mode == "1" or mode == "F":
        out = img.convert("L")
    elif mode in ("RGBa", "La"):
        out = img.convert(mode.upper())
    else:  # CMYK, YCbCr, LAB, HSV, RGBX
        out = img.convert("RGB")
    if out.mode in ("RGBA", "LA"):
        lo, _ = out.getextrema()[-1]
        if lo == 255:  # fully opaque alpha carries nothing
            out = out.convert(out.mode[:-1])
    return out


def _decode_check(img: Image.Image) -> None:
    """Decode every byte of the image; JPEGs at 1/8 scale (still reads the whole stream)."""
    if img.format == "JPEG":
        w, h = img.size
        img.draft(None, (max(1, w // 8), max(1, h // 8)))
    img.load()


def process(data: bytes, opts: ImageOptions) -> Processed:
    """Validate ``data`` and produce the bytes to store (see the module docstring)."""
    kind = sniff(data[:16])
    if kind is None:
        return Processed("not_image", f"magic bytes {data[:8]!r}")
    mime, ext = kind
    fmt = _PIL_FORMAT[ext]
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            w, h = img.size
            if w * h > opts.max_pixels:
                return Processed("decompression_bomb", f"{w}x{h} > {opts.max_pixels} pixels")
            if fmt != "JPEG":
                img.verify()  # chunk CRCs etc.; JPEG has no verify
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            if opts.store == "original":
                _decode_check(img)
                return Processed("ok", data=data, mime=mime, ext=ext, width=w, height=h)
            return _normalise(img, data, fmt, mime, ext, opts)
    except Image.DecompressionBombError as e:
        return Processed("decompression_bomb", str(e)[:200])
    except Exception as e:  # PIL raises many types for bad data
        return Processed("corrupt_image", f"{type(e).__name__}: {str(e)[:150]}")


def _normalise(
    img: Image.Image, data: bytes, fmt: str, mime: str, ext: str, opts: ImageOptions
) -> Processed:
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    target = fit(img.size, opts.max_side)
    keep_bytes = (
        fmt in _STORABLE_MODES
        and img.mode in _STORABLE_MODES[fmt]
        and orientation in (1, None)
        and target == img.size
        and (fmt == "JPEG" or not (set(img.info) - _HARMLESS_PNG_INFO))
    )
    if keep_bytes:
        w, h = img.size
        _decode_check(img)
        out = strip_jpeg_metadata(data) if fmt == "JPEG" else data
        return Processed("ok", data=out, mime=mime, ext=ext, width=w, height=h)

    if fmt == "JPEG" and target != img.size:
        img.draft(None, target)  # decode at 1/2, 1/4 or 1/8 scale, never below target
    img.load()  # first frame of an animation
    icc = img.info.get("icc_profile")
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
    img = _storable(img)
    final = fit(img.size, opts.max_side)
    if final != img.size:
        img = img.resize(final, Image.Resampling.BICUBIC)  # as CLIP preprocessing
    img.info = {}  # no EXIF, XMP, text chunks or stale transparency reach the encoder
    buf = io.BytesIO()
    if img.mode in ("RGBA", "LA") or fmt in ("PNG", "GIF", "BMP"):
        img.save(buf, "PNG", icc_profile=icc)
        mime, ext = "image/png", "png"
    else:
        img.save(buf, "JPEG", quality=opts.jpeg_quality, icc_profile=icc)
        mime, ext = "image/jpeg", "jpg"
    return Processed(
        "ok", data=buf.getvalue(), mime=mime, ext=ext, width=img.width, height=img.height
    )


def validate(data: bytes, max_pixels: int) -> tuple[str, str, int, int]:
    """Check ``data`` as-is: returns (status, reason, width, height)."""
    res = process(data, ImageOptions(max_pixels=max_pixels, store="original"))
    return res.status, res.reason, res.width, res.height
