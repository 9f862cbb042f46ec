"""Perceptual hashes: bit-exact with imagehash (fast=False, and PNG always), fast JPEG path
within 2 bits, parallel hashing equal to inline."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmnerd.images import hashing
from mmnerd.images.hashing import (
    HASH_KINDS,
    KINDS,
    Hasher,
    get_hasher,
    hamming,
    hash_files,
    hash_files_report,
    hash_hex,
    hash_image,
    hex_to_int,
    pack_bits,
    register_hasher,
)

REFERENCE = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    "ahash": imagehash.average_hash,
}


def make_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A random RGB picture: colour gradients, rectangles/ellipses, sometimes noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    gw, gh = max(2, w // 4), max(2, h // 4)  # gradients at 1/4 scale, then upsampled
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    base = np.zeros((gh, gw, 3), np.float32)
    for c in range(3):
        a, b, ph = rng.uniform(-3, 3, 3)
        base[..., c] = 127 + 100 * np.sin(a * x / gw * np.pi + b * y / gh * np.pi + ph)
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x1, y1], fill=col)
    if rng.random() < 0.5:
        noise = rng.standard_normal((h, w, 3), dtype=np.float32) * 12
        img = Image.fromarray((np.asarray(img) + noise).clip(0, 255).astype(np.uint8))
    return img


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("png")
    out = []
    modes = ["RGB", "L", "RGBA", "P"]
    sizes = [(320, 240), (97, 131), (64, 64), (500, 120)]
    for i in range(12):
        img = make_image(i, sizes[i % len(sizes)]).convert(modes[i % len(modes)])
        p = folder / f"{i}.png"
        img.save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("jpg")
    out = []
    rng = np.random.default_rng(0)
    for i in range(200):
        size = (int(rng.integers(320, 720)), int(rng.integers(240, 560)))
        p = folder / f"{i}.jpg"
        make_image(1000 + i, size).save(p, quality=int(rng.integers(60, 95)))
        out.append(p)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_png_bit_exact_with_imagehash(pngs: list[Path], kind: str) -> None:
    for p in pngs:
        with Image.open(p) as img:
            ref = str(REFERENCE[kind](img))
        assert hash_hex(hash_image(p, kind, fast=False)) == ref
        assert hash_hex(hash_image(p, kind, fast=True)) == ref  # draft is JPEG-only
        with Image.open(p) as img:
            assert hash_hex(hash_image(img, kind)) == ref


@pytest.mark.parametrize("kind", KINDS)
def test_jpeg_exact_without_fast_path(jpegs: list[Path], kind: str) -> None:
    for p in jpegs[:15]:
        with Image.open(p) as img:
            ref = str(REFERENCE[kind](img))
        assert hash_hex(hash_image(p, kind, fast=False)) == ref


def test_jpeg_fast_path_within_two_bits(jpegs: list[Path]) -> None:
    dists = []
    for p in jpegs:
        with Image.open(p) as img:
            ref = hex_to_int(str(imagehash.phash(img)))
        dists.append(hamming(hash_image(p, "phash", fast=True), ref))
    d = np.array(dists)
    assert (d <= 2).mean() >= 0.99, np.bincount(d)


def test_passed_image_is_not_modified(jpegs: list[Path]) -> None:
    with Image.open(jpegs[0]) as img:
        size, mode = img.size, img.mode
        hash_image(img, "phash", fast=True)
        assert (img.size, img.mode) == (size, mode)


def test_hex_and_packing() -> None:
    bits = np.zeros((8, 8), dtype=bool)
    bits[0, 0] = True  # first bit is the most significant
    bits[7, 7] = True
    h = pack_bits(bits)
    assert h == (1 << 63) | 1
    assert hash_hex(h) == "8000000000000001"
    assert hex_to_int(hash_hex(h)) == h
    assert str(imagehash.ImageHash(bits)) == hash_hex(h)
    assert hash_hex(0) == "0" * 16
    assert hamming(0, 2**64 - 1) == 64


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown hash kind"):
        get_hasher("md5")


def test_hash_files_parallel_equals_inline(jpegs: list[Path], tmp_path: Path) -> None:
    paths = jpegs[:40]
    inline = hash_files(paths, "dhash", workers=1)
    parallel = hash_files(paths, "dhash", workers=2, chunksize=8)
    assert inline.dtype == np.uint64 and inline.shape == (40,)
    assert np.array_equal(inline, parallel)
    assert int(inline[3]) == hash_image(paths[3], "dhash")


def test_hash_files_reports_bad_files(jpegs: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    paths = [jpegs[0], bad, tmp_path / "missing.png"]
    rep = hash_files_report(paths, workers=1)
    assert sorted(rep.failed) == [1, 2]
    assert rep.ok.tolist() == [True, False, False]
    assert int(rep.hashes[0]) == hash_image(jpegs[0])
    with pytest.raises(OSError, match="bad.jpg"):
        hash_files(paths, workers=1)


def test_registry_lists_every_kind_where_users_see_it() -> None:
    """The config accepts exactly the registered kinds; config show and docs/dedup.md list them."""
    from pydantic import ValidationError

    from mmnerd.config import DedupConfig

    assert KINDS == tuple(HASH_KINDS) == ("phash", "dhash", "whash", "ahash")
    docs = (Path(__file__).resolve().parents[2] / "docs" / "dedup.md").read_text()
    help_text = DedupConfig.model_fields["hash"].description or ""
    for kind, spec in HASH_KINDS.items():
        assert DedupConfig(hash=kind).hash == kind
        assert spec.bits == 64 and spec.hasher.kind == kind and spec.summary
        assert kind in help_text and f"`{kind}`" in docs
    with pytest.raises(ValidationError):
        DedupConfig(hash="md5")


def test_a_registered_kind_hashes_files(pngs: list[Path], monkeypatch) -> None:
    """Adding a kind is one decorated Hasher subclass: get_hasher and file hashing pick it
    up by name."""
    monkeypatch.setattr(hashing, "HASH_KINDS", dict(HASH_KINDS))

    @register_hasher
    class VHash(Hasher):
        """Vertical gradients: 8x9 image, each pixel brighter than the one above."""

        kind = "vhash"
        summary = "vertical gradients of an 8x9 greyscale image"

        def target_size(self, size: tuple[int, int]) -> tuple[int, int]:
            return (8, 9)

        def bits(self, pixels: np.ndarray) -> np.ndarray:
            return pixels[1:, :] > pixels[:-1, :]

    assert "vhash" in hashing.HASH_KINDS and isinstance(get_hasher("vhash"), VHash)
    with Image.open(pngs[0]) as img:
        small = np.asarray(img.convert("L").resize((8, 9), Image.Resampling.LANCZOS))
    want = pack_bits(small[1:, :] > small[:-1, :])
    assert hash_image(pngs[0], "vhash") == want
    assert int(hash_files(pngs[:1], "vhash", workers=1)[0]) == want
    with pytest.raises(ValueError, match="registered twice"):
        register_hasher(VHash)


def test_config_reads_the_registry_without_numpy_or_pil() -> None:
    """hashing.py is a leaf (no mmnerd import) that loads numpy and PIL on first use; config
    imports only leaves (errors, hashing, safejson)."""
    import subprocess
    import sys

    code = (
        "import sys, mmnerd.config;"
        "print([m for m in ('numpy', 'PIL') if m in sys.modules],"
        " [m for m in sys.modules if m.startswith('mmnerd.') and m not in"
        " ('mmnerd.config', 'mmnerd.errors', 'mmnerd.images', 'mmnerd.images.hashing',"
        " 'mmnerd.safejson')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr
