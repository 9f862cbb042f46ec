"""Pictures whose content decides an entity's type (PER: person, LOC: landscape, ORG:
buildings or a logo, MISC: a star or trophy), their near-duplicates and faults."""

from __future__ import annotations

import colorsys
import functools
import io
import math
import random
from typing import Any

from mmnerd.records import ENTITY_TYPES

# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (int(r * 255), int(g * 255), int(b * 255))


def _palette(rng: random.Random, kind: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two background colours typical of ``kind``."""
    if kind == "PER":  # warm: peach, orange, pink
        h = rng.uniform(-0.04, 0.11)
        return _hsv(h, rng.uniform(0.3, 0.6), rng.uniform(0.85, 1.0)), _hsv(
            h + rng.uniform(-0.03, 0.03), rng.uniform(0.4, 0.8), rng.uniform(0.65, 0.9)
        )
    if kind == "LOC":  # sky blue, lighter towards the horizon
        h = rng.uniform(0.53, 0.62)
        return _hsv(h, rng.uniform(0.45, 0.8), rng.uniform(0.7, 0.95)), _hsv(
            h, rng.uniform(0.1, 0.3), rng.uniform(0.9, 1.0)
        )
    if kind == "ORG":  # cool greys / steel blue
        h = rng.uniform(0.55, 0.68)
        return _hsv(h, rng.uniform(0.0, 0.2), rng.uniform(0.75, 0.95)), _hsv(
            h, rng.uniform(0.05, 0.25), rng.uniform(0.5, 0.75)
        )
    h = rng.uniform(0.68, 0.85)  # MISC: dark navy / purple stage
    return _hsv(h, rng.uniform(0.5, 0.9), rng.uniform(0.25, 0.45)), _hsv(
        h, rng.uniform(0.6, 1.0), rng.uniform(0.05, 0.2)
    )


def _background(rng: random.Random, kind: str, w: int, h: int):  # -> PIL.Image.Image
    from PIL import Image, ImageOps

    # 30 % of pictures borrow another type's palette, so colour alone is not the cue
    pal_kind = rng.choice(ENTITY_TYPES) if rng.random() < 0.3 else kind
    c1, c2 = _palette(rng, pal_kind)
    sw, sh = 64, max(8, round(64 * h / w))  # smooth: draw small, scale up
    if kind == "MISC":  # spotlight: bright centre, dark edges
        grad = Image.radial_gradient("L").resize((2 * sw, 2 * sh))
        x0, y0 = int(rng.uniform(0.3, 0.7) * sw), int(rng.uniform(0.2, 0.5) * sh)
        grad = grad.crop((sw - x0, sh - y0, 2 * sw - x0, 2 * sh - y0))
    else:  # linear gradient; skies stay roughly vertical
        deg = rng.uniform(-25, 25) if kind == "LOC" else rng.uniform(-180, 180)
        grad = Image.linear_gradient("L").resize((2 * sw, 2 * sh))
        grad = grad.rotate(deg, resample=Image.Resampling.BILINEAR)
        grad = grad.crop((sw // 2, sh // 2, sw // 2 + sw, sh // 2 + sh))
    grad = grad.resize((w, h), Image.Resampling.BILINEAR)
    return ImageOps.colorize(grad, c1, c2)


def _jitter(rng: random.Random, c: tuple[int, int, int], d: int = 30) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, x + rng.randint(-d, d))) for x in c)
    return (r, g, b)


def _draw_person(rng: random.Random, draw: Any, w: int, h: int) -> None:
    n = rng.choice((1, 1, 1, 2, 3))
    slots = rng.sample(range(n + 1), n) if n > 1 else [rng.uniform(0.0, 1.0)]
    for slot in slots:
        scale = rng.uniform(0.65, 1.25) / (1 + 0.2 * (n - 1))
        cx = w * (0.15 + 0.7 * (slot / n if n > 1 else slot) + rng.uniform(-0.05, 0.05))
        r = h * 0.14 * scale
        cy = h - 3.3 * r + rng.uniform(-0.15, 0.1) * h
        tone = _jitter(rng, rng.choice(((40, 30, 30), (30, 35, 60), (70, 45, 30), (20, 20, 20))))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tone)  # head
        draw.rectangle((cx - 0.45 * r, cy + 0.8 * r, cx + 0.45 * r, cy + 1.4 * r), fill=tone)
        draw.rounded_rectangle(  # shoulders and body, cut by the frame
            (cx - 2.1 * r, cy + 1.3 * r, cx + 2.1 * r, h + 2 * r), radius=int(r), fill=tone
        )


def _draw_landscape(rng: random.Random, draw: Any, w: int, h: int) -> None:
    horizon = h * rng.uniform(0.45, 0.7)
    if rng.random() < 0.7:  # sun
        sx, sy, sr = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.3) * h, rng.uniform(0.05, 0.1)
        sr *= h
        draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=_jitter(rng, (255, 220, 90), 20))
    for _ in range(rng.randint(2, 4)):  # mountains
        px, ph = rng.uniform(0.0, 1.0) * w, rng.uniform(0.15, 0.4) * h
        half = rng.uniform(0.2, 0.45) * w
        rock = _jitter(rng, rng.choice(((110, 110, 120), (90, 120, 80), (120, 100, 80))), 20)
        draw.polygon([(px - half, horizon), (px, horizon - ph), (px + half, horizon)], fill=rock)
        if rng.random() < 0.5:
            k = 0.25
            draw.polygon(
                [
                    (px - half * k, horizon - ph * (1 - k)),
                    (px, horizon - ph),
                    (px + half * k, horizon - ph * (1 - k)),
                ],
                fill=(245, 245, 250),
            )
    if rng.random() < 0.6:  # water with light ripples
        water = _jitter(rng, (40, 90, 160), 25)
        draw.rectangle((0, horizon, w, h), fill=water)
        for _ in range(rng.randint(4, 9)):
            y = rng.uniform(horizon + 4, h)
            x0 = rng.uniform(0, w * 0.8)
            draw.line((x0, y, x0 + rng.uniform(20, 80), y), fill=_jitter(rng, (150, 190, 230)))
    else:  # field
        draw.rectangle((0, horizon, w, h), fill=_jitter(rng, (80, 150, 60), 30))


def _draw_org(rng: random.Random, draw: Any, w: int, h: int) -> None:
    if rng.random() < 0.3:  # a bold logo block
        bw, bh = rng.uniform(0.35, 0.6) * w, rng.uniform(0.3, 0.5) * h
        x0, y0 = rng.uniform(0.05, 0.95) * (w - bw), rng.uniform(0.1, 0.9) * (h - bh)
        main = _hsv(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.5, 0.9))
        draw.rectangle((x0, y0, x0 + bw, y0 + bh), fill=main, outline=(20, 20, 20), width=6)
        m = min(bw, bh) * 0.3
        cx, cy = x0 + bw / 2, y0 + bh / 2
        draw.ellipse((cx - m, cy - m, cx + m, cy + m), fill=(250, 250, 250))
        return
    n = rng.randint(1, 3)
    for i in range(n):
        bw = w * rng.uniform(0.18, 0.3)
        bh = h * rng.uniform(0.55, 0.9)
        x0 = w * (i / n) + rng.uniform(0, max(1.0, w / n - bw))
        y0 = h - bh
        body = _jitter(rng, rng.choice(((60, 70, 90), (90, 90, 100), (40, 60, 80))), 20)
        draw.rectangle((x0, y0, x0 + bw, h), fill=body)
        lit = _jitter(rng, (230, 225, 160), 20)
        cols, rows = rng.randint(3, 5), rng.randint(5, 9)
        cw, rh = bw / (cols * 1.6 + 0.6), bh / (rows * 1.6 + 0.6)
        for c in range(cols):
            for r in range(rows):
                wx, wy = x0 + cw * (0.6 + 1.6 * c), y0 + rh * (0.6 + 1.6 * r)
                draw.rectangle((wx, wy, wx + cw, wy + rh), fill=lit)


def _star(cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.45
        a = rot + k * math.pi / 5
        pts.append((cx + rad * math.sin(a), cy - rad * math.cos(a)))
    return pts


def _draw_misc(rng: random.Random, draw: Any, w: int, h: int) -> None:
    gold = _jitter(rng, (235, 190, 50), 20)
    if rng.random() < 0.5:  # trophy
        cx, cy, s = rng.uniform(0.3, 0.7) * w, rng.uniform(0.35, 0.55) * h, rng.uniform(0.7, 1.1)
        cw, ch = 0.22 * h * s, 0.25 * h * s
        draw.pieslice((cx - cw, cy - ch, cx + cw, cy + ch), 0, 180, fill=gold)
        draw.rectangle((cx - cw, cy - 0.15 * ch, cx + cw, cy), fill=gold)
        draw.rectangle((cx - 0.12 * cw, cy + 0.9 * ch, cx + 0.12 * cw, cy + 1.5 * ch), fill=gold)
        draw.rectangle((cx - 0.6 * cw, cy + 1.5 * ch, cx + 0.6 * cw, cy + 1.75 * ch), fill=gold)
    for _ in range(rng.randint(1, 3)):
        r = rng.uniform(0.08, 0.2) * h
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        draw.polygon(_star(cx, cy, r, rng.uniform(-0.3, 0.3)), fill=gold)
    for _ in range(rng.randint(8, 20)):  # confetti
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.rectangle((x, y, x + 4, y + 7), fill=_hsv(rng.random(), 0.8, 1.0))


_DRAWERS = {"PER": _draw_person, "LOC": _draw_landscape, "ORG": _draw_org, "MISC": _draw_misc}


def render_image(rng: random.Random, kind: str, size: tuple[int, int]):  # -> PIL.Image.Image
    """A picture whose main object shows entity type ``kind``, with clutter and noise."""
    from PIL import ImageChops, ImageDraw, ImageEnhance

    w, h = size
    img = _background(rng, kind, w, h)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 4)):  # large faint blobs: vary the low frequencies
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.15, 0.4) * max(w, h)
        base = img.getpixel((int(min(x, w - 1)), int(min(y, h - 1))))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, base, 45))
    _DRAWERS[kind](rng, draw, w, h)
    for _ in range(rng.randint(5, 14)):  # small clutter of any colour
        x, y, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 0.08 * max(w, h))
        col = _hsv(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse((x, y, x + s, y + s), fill=col)
        elif shape == 1:
            draw.rectangle((x, y, x + s, y + s * rng.uniform(0.3, 1.5)), fill=col)
        else:
            draw.line((x, y, x + rng.uniform(-3, 3) * s, y + rng.uniform(-3, 3) * s), col, 2)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.12))
    noise = _noise_field(w, h, rng.randrange(3))
    x, y = rng.randrange(w), rng.randrange(h)
    return ImageChops.add(img, noise.crop((x, y, x + w, y + h)), offset=-_NOISE_MEAN)


_NOISE_MEAN = 24


@functools.lru_cache(maxsize=16)
def _noise_field(w: int, h: int, level: int):  # -> PIL.Image.Image
    """A fixed (seeded) Gaussian noise texture of twice the picture size, mean _NOISE_MEAN."""
    import numpy as np
    from PIL import Image

    gen = np.random.default_rng(1000 + level)
    sigma = (3.0, 5.5, 8.0)[level]
    arr = gen.standard_normal((2 * h, 2 * w, 3), dtype=np.float32) * sigma + _NOISE_MEAN
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def encode(img: Any, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def near_duplicate(rng: random.Random, original: bytes) -> bytes:
    """A slightly cropped, rescaled, re-encoded JPEG copy of ``original``."""
    from PIL import Image

    with Image.open(io.BytesIO(original)) as im:
        img = im.convert("RGB")
    w, h = img.size
    box = (
        int(w * rng.uniform(0.0, 0.03)),
        int(h * rng.uniform(0.0, 0.03)),
        w - int(w * rng.uniform(0.0, 0.03)),
        h - int(h * rng.uniform(0.0, 0.03)),
    )
    scale = rng.choice((rng.uniform(0.5, 0.85), rng.uniform(1.1, 1.5)))
    img = img.crop(box)
    img = img.resize((max(16, round(img.width * scale)), max(16, round(img.height * scale))))
    return encode(img, "JPEG", rng.randint(55, 85))


def picture_hash(data: bytes) -> int:
    """64-bit pHash of encoded image bytes (:mod:`mmnerd.images.hashing`, the full decode:
    imagehash's exact semantics), so the sample's near-duplicate distances are those dedup
    measures."""
    from PIL import Image

    from mmnerd.images.hashing import hash_image

    with Image.open(io.BytesIO(data)) as im:
        return hash_image(im, "phash", fast=False)


HTML_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    b"<title>Sign in to continue</title></head>\n<body><h1>Sign in</h1>"
    b"<p>This media is only visible to logged-in users (synthetic mmnerd sample).</p>"
    b"</body></html>\n"
)
