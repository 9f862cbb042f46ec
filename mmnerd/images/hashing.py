"""Perceptual image hashes (pHash, dHash, wHash, aHash) with imagehash's semantics.

Every hasher follows one template (:meth:`Hasher.hash`): load the image, pick
the resize target, (fast path) let the JPEG decoder shrink the image while it
decodes, convert to grayscale, resize with Lanczos, compute a ``(8, 8)`` bool
bit matrix and pack it row-major, first bit most significant, into a 64-bit
integer.  So ``hash_hex(hash_image(img, fast=False)) == str(imagehash.phash(img))``
for every input, and for non-JPEG inputs also with ``fast=True``.

Fast path: for a JPEG opened from a file, ``Image.draft("L", size)`` makes
libjpeg decode only the luma channel at 1/2, 1/4 or 1/8 scale (never below
:attr:`Hasher.draft_min` px), which is several times faster on photos and
changes a few hashes by a bit or two (measured figures in docs/dedup.md).

Hashes are python ``int`` in ``[0, 2**64)``; arrays of them are ``np.uint64``.

The kinds are one registry, :data:`HASH_KINDS` (name → hasher class, bits, one line of
help), filled by :func:`register_hasher` on each :class:`Hasher` subclass; the config's
``dedup.hash``, :func:`get_hasher` and the docs' lists derive from it.  Adding a kind is one
decorated subclass (see docs/dedup.md, "Adding a hash kind").  numpy and PIL are imported
on first use, so the config can read the registry without them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar, Union

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

HASH_BITS = 64
_HASH_SIZE = 8  # bits per side; the index works on 64-bit hashes only

ImageSource = Union[str, os.PathLike, "Image.Image"]


class Hasher(ABC):
    """Template for 64-bit perceptual hashes: load → grayscale → resize → bits → pack.

    Subclasses set :attr:`kind` and implement :meth:`target_size` (the resize
    target for an image of a given size) and :meth:`bits` (pixels → bits).
    """

    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    """One line for the config's help and the docs."""
    draft_min: ClassVar[int] = 128
    """Fast path: the JPEG is decoded at the smallest 1/2, 1/4, 1/8 scale that keeps both
    sides >= max(resize target, ``draft_min``) px.  128 keeps >= 99% of pHashes within
    2 bits of imagehash's (32: ~83%, see docs/dedup.md)."""

    def hash(self, src: ImageSource, fast: bool = True) -> int:
        """The 64-bit hash of an image (a path or a PIL image) as an ``int``.

        ``fast`` applies the JPEG draft only to files this method opens itself;
        a PIL image passed in is never modified.
        """
        from PIL import Image

        if isinstance(src, Image.Image):
            return self._hash_pil(src, fast=False)
        with Image.open(src) as img:
            return self._hash_pil(img, fast=fast)

    def _hash_pil(self, img: Image.Image, fast: bool) -> int:
        import numpy as np
        from PIL import Image

        target = self.target_size(img.size)
        if fast:
            self.draft(img, target)
        small = img.convert("L").resize(target, Image.Resampling.LANCZOS)
        bits = self.bits(np.asarray(small))
        return pack_bits(bits)

    def draft(self, img: Image.Image, target: tuple[int, int]) -> None:
        """Ask the JPEG decoder for a reduced-scale luma decode (no-op for other formats)."""
        from PIL import JpegImagePlugin

        if isinstance(img, JpegImagePlugin.JpegImageFile):
            w, h = target
            img.draft("L", (max(w, self.draft_min), max(h, self.draft_min)))

    @abstractmethod
    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Resize target ``(width, height)`` for an image of ``size`` = (width, height)."""

    @abstractmethod
    def bits(self, pixels: np.ndarray) -> np.ndarray:
        """``(h, w)`` uint8 grayscale pixels → ``(8, 8)`` bool bits."""


@dataclass(frozen=True)
class HashKindSpec:
    """One registered kind: its name, hasher class, hash width and one line of help."""

    name: str
    hasher: type[Hasher]
    bits: int
    summary: str


HASH_KINDS: dict[str, HashKindSpec] = {}
"""Every hash kind by name, in registration order (the first is the default)."""

_H = TypeVar("_H", bound=type[Hasher])


def register_hasher(cls: _H) -> _H:
    """Class decorator: add a :class:`Hasher` subclass to :data:`HASH_KINDS` under its
    ``kind`` (a kind registered twice is a programming error).  Hashes are
    :data:`HASH_BITS` wide: the index and the stored hex strings assume 64 bits."""
    if not cls.kind or cls.kind in HASH_KINDS:
        raise ValueError(f"hash kind {cls.kind!r} is empty or registered twice")
    HASH_KINDS[cls.kind] = HashKindSpec(cls.kind, cls, HASH_BITS, cls.summary)
    return cls


@register_hasher
class PHash(Hasher):
    """DCT hash: 32x32 image, 2-D DCT-II, low 8x8 frequencies above their median."""

    kind = "phash"
    summary = "DCT of a 32x32 greyscale image (imagehash.phash)"
    highfreq_factor: ClassVar[int] = 4

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        s = _HASH_SIZE * self.highfreq_factor
        return (s, s)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        import scipy.fftpack

        dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
        import numpy as np

        low = dct[:_HASH_SIZE, :_HASH_SIZE]
        return low > np.median(low)


@register_hasher
class DHash(Hasher):
    """Horizontal gradient hash: 9x8 image, each pixel brighter than its left neighbour."""

    kind = "dhash"
    summary = "horizontal gradients of a 9x8 greyscale image (imagehash.dhash)"

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return (_HASH_SIZE + 1, _HASH_SIZE)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        return pixels[:, 1:] > pixels[:, :-1]


@register_hasher
class WHash(Hasher):
    """Haar wavelet hash (imagehash ``whash`` defaults: image scale = largest power of
    two <= the shorter side, lowest LL band removed, LL at 8x8 above its median)."""

    kind = "whash"
    summary = "Haar wavelet low band (imagehash.whash)"

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        import numpy as np

        natural = 2 ** int(np.log2(min(size)))
        s = max(natural, _HASH_SIZE)
        return (s, s)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        import numpy as np
        import pywt

        scale = pixels.shape[0]
        ll_max_level = int(np.log2(scale))
        dwt_level = ll_max_level - int(np.log2(_HASH_SIZE))
        px = pixels / 255.0
        coeffs = list(pywt.wavedec2(px, "haar", level=ll_max_level))
        coeffs[0] *= 0
        px = pywt.waverec2(coeffs, "haar")
        low = pywt.wavedec2(px, "haar", level=dwt_level)[0]
        return low > np.median(low)


@register_hasher
class AHash(Hasher):
    """Average hash: 8x8 image, pixels above their mean."""

    kind = "ahash"
    summary = "8x8 greyscale pixels above their mean (imagehash.average_hash)"

    def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return (_HASH_SIZE, _HASH_SIZE)

    def bits(self, pixels: np.ndarray) -> np.ndarray:
        return pixels > pixels.mean()


KINDS: tuple[str, ...] = tuple(HASH_KINDS)
"""The registered kind names (``dedup.hash`` accepts these)."""


def get_hasher(kind: str = "phash") -> Hasher:
    """The hasher for ``kind`` (one of :data:`KINDS`)."""
    try:
        return HASH_KINDS[kind].hasher()
    except KeyError:
        raise ValueError(
            f"unknown hash kind {kind!r}; choose one of {', '.join(HASH_KINDS)}"
        ) from None


def pack_bits(bits: np.ndarray) -> int:
    """``(8, 8)`` bool bits, row-major with the first bit most significant → ``int``."""
    import numpy as np

    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def hash_image(src: ImageSource, kind: str = "phash", fast: bool = True) -> int:
    """64-bit perceptual hash of one image (path or PIL image) as a python ``int``."""
    return get_hasher(kind).hash(src, fast=fast)


def hash_hex(h: int) -> str:
    """16 hex digits, equal to ``str(imagehash.<kind>(img))`` for the same bits."""
    return f"{int(h):016x}"


def hex_to_int(s: str) -> int:
    """Inverse of :func:`hash_hex`."""
    return int(s, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


@dataclass
class HashReport:
    """Result of :func:`hash_files_report`: hashes ``(n,) uint64`` (0 where failed) and
    ``failed``: position → one-line error message."""

    hashes: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """``(n,)`` bool: True where the image was hashed."""
        import numpy as np

        mask = np.ones(len(self.hashes), dtype=bool)
        mask[list(self.failed)] = False
        return mask


def _hash_chunk(kind: str, fast: bool, paths: Sequence[str]) -> tuple[list[int], dict[int, str]]:
    from PIL import Image

    hasher = get_hasher(kind)
    out: list[int] = []
    failed: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            out.append(hasher.hash(p, fast=fast))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            out.append(0)
            failed[i] = f"{type(e).__name__}: {e}"
    return out, failed


def hash_files_report(
    paths: Sequence[str | os.PathLike],
    kind: str = "phash",
    workers: int = 2,
    fast: bool = True,
    chunksize: int = 64,
) -> HashReport:
    """Hash image files in ``workers`` processes (1 = inline), never raising on a bad file."""
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    get_hasher(kind)  # fail early on a bad kind
    strs = [str(Path(p)) for p in paths]
    chunks = [strs[i : i + chunksize] for i in range(0, len(strs), chunksize)]
    workers = max(1, min(workers, len(chunks)))
    values: list[int] = []
    failed: dict[int, str] = {}
    if workers == 1:
        results = (_hash_chunk(kind, fast, c) for c in chunks)
        for (vals, fails), start in zip(results, range(0, len(strs), chunksize), strict=True):
            values.extend(vals)
            failed.update({start + k: v for k, v in fails.items()})
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_hash_chunk, kind, fast, c) for c in chunks]
            for fut, start in zip(futures, range(0, len(strs), chunksize), strict=True):
                vals, fails = fut.result()
                values.extend(vals)
                failed.update({start + k: v for k, v in fails.items()})
    return HashReport(np.array(values, dtype=np.uint64).reshape(-1), failed)


def hash_files(
    paths: Sequence[str | os.PathLike],
    kind: str = "phash",
    workers: int = 2,
    fast: bool = True,
    chunksize: int = 64,
) -> np.ndarray:
    """``(n,) uint64`` hashes of image files, in input order; ``workers`` processes
    (1 = inline).  Raises ``OSError`` naming the first file that cannot be read."""
    rep = hash_files_report(paths, kind=kind, workers=workers, fast=fast, chunksize=chunksize)
    if rep.failed:
        i, msg = min(rep.failed.items())
        more = f" (+{len(rep.failed) - 1} more)" if len(rep.failed) > 1 else ""
        raise OSError(f"{paths[i]}: cannot hash image: {msg}{more}")
    return rep.hashes
