"""A tiny, learnable, multimodal synthetic export (for tests, demos and throughput benchmarks).

Every post is in en/fr/de/es.  Some posts mention an ambiguous name ("Jordan", "Lincoln", ...)
whose type is decided by the image: a red circle means PER, a green square LOC, a blue triangle
ORG (``image_decided = True``).  Other names are unambiguous from the text alone (Paris -> LOC,
Siemens -> ORG, "Marie Curie" -> PER, "Euro 2024" -> MISC) and come with a random image.

Posts are 3-9 words by default; ``max_words`` > 0 appends untagged filler words (a long-tailed
number, mean ~10) so lengths vary like real posts, up to ``max_words`` words.
"""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

from mmnerd.records import LABEL2ID, arrow_schema

TEMPLATES: dict[str, list[str]] = {
    "en": ["{e} is trending today", "I saw {e} in the news", "what a day with {e} !", "{e} again"],
    "fr": ["{e} fait le buzz", "j'ai vu {e} aux infos", "quelle journée avec {e} !", "encore {e}"],
    "de": ["{e} ist heute im Trend", "ich sah {e} in den News", "was für ein Tag mit {e} !"],
    "es": ["{e} es tendencia hoy", "vi a {e} en las noticias", "qué día con {e} !", "otra vez {e}"],
}
AMBIGUOUS: tuple[str, ...] = ("Jordan", "Lincoln", "Victoria", "Orange", "Phoenix")
FIXED: tuple[tuple[str, str], ...] = (
    ("Paris", "LOC"),
    ("Berlin", "LOC"),
    ("Madrid", "LOC"),
    ("Siemens", "ORG"),
    ("Google", "ORG"),
    ("Marie Curie", "PER"),
    ("Angela Merkel", "PER"),
    ("Euro 2024", "MISC"),
    ("Tour de France", "MISC"),
)
IMAGE_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG")
_FILLER_TEXT: dict[str, str] = {
    "en": "so really the best thing ever and then we went home lol #news #today",
    "fr": "vraiment trop bien et puis on est rentrés mdr #actu #direct pas mal",
    "de": "echt so gut und dann sind wir nach Hause lol #news #heute na ja",
    "es": "de verdad muy bien y luego volvimos a casa jaja #noticias #hoy vale",
}
FILLER: dict[str, list[str]] = {lang: text.split(" ") for lang, text in _FILLER_TEXT.items()}
"""Untagged words appended to posts when ``max_words`` > 0."""
COLOURS: dict[str, tuple[int, int, int]] = {
    "PER": (220, 30, 30),
    "LOC": (30, 200, 40),
    "ORG": (30, 60, 220),
}


def draw_image(kind: str, rng: random.Random, size: int = 32) -> bytes:
    """PNG bytes: ``kind`` in PER/LOC/ORG gives its colour and shape; "" gives grey noise."""
    from PIL import Image, ImageDraw

    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    m = size // 6 + rng.randint(-1, 1)
    if kind == "PER":
        d.ellipse([m, m, size - m, size - m], fill=COLOURS[kind])
    elif kind == "LOC":
        d.rectangle([m, m, size - m, size - m], fill=COLOURS[kind])
    elif kind == "ORG":
        d.polygon([(size // 2, m), (m, size - m), (size - m, size - m)], fill=COLOURS[kind])
    else:
        for _ in range(6):
            x, y = rng.randint(0, size - 4), rng.randint(0, size - 4)
            d.rectangle([x, y, x + 3, y + 3], fill=tuple(rng.randint(90, 160) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def filler_words(lang: str, n_words: int, max_words: int, rng: random.Random) -> list[str]:
    """Untagged words to append to a post of ``n_words`` words: a long-tailed count (mean ~10,
    exponential) capped so the post has at most ``max_words`` words."""
    extra = min(max(0, max_words - n_words), int(rng.expovariate(0.1)))
    return [rng.choice(FILLER[lang]) for _ in range(extra)]


def make_post(
    i: int, split: str, rng: random.Random, image_size: int = 32, max_words: int = 0
) -> dict[str, Any]:
    """One synthetic row (a dict over :func:`mmnerd.records.arrow_schema`);
    ``max_words`` > 0 appends filler words (see :func:`filler_words`)."""
    lang = rng.choice(sorted(TEMPLATES))
    template = rng.choice(TEMPLATES[lang])
    decided = rng.random() < 0.6
    if decided:
        kind = rng.choice(IMAGE_TYPES)
        name, etype = rng.choice(AMBIGUOUS), kind
    else:
        name, etype = rng.choice(FIXED)
        kind = ""
    before, after = template.split("{e}")
    tokens: list[str] = before.split()
    start_tok = len(tokens)
    ent_tokens = name.split()
    tokens += ent_tokens + after.split()
    if max_words > 0:
        tokens += filler_words(lang, len(tokens), max_words, rng)
    tags = ["O"] * len(tokens)
    tags[start_tok] = f"B-{etype}"
    for k in range(1, len(ent_tokens)):
        tags[start_tok + k] = f"I-{etype}"
    text = " ".join(tokens)
    char_start = len(" ".join(tokens[:start_tok])) + (1 if start_tok else 0)
    data = draw_image(kind, rng, image_size)
    sha = hashlib.sha256(data).hexdigest()
    return {
        "id": f"synthetic:{split}-{i}",
        "lang": lang,
        "text": text,
        "tokens": tokens,
        "ner_tags": [LABEL2ID[t] for t in tags],
        "ner_tags_str": tags,
        "spans": [{"start": char_start, "end": char_start + len(name), "label": etype}],
        "image": {"bytes": data, "path": f"images/{sha}.png"},
        "image_sha256": sha,
        "image_phash": "",
        "width": image_size,
        "height": image_size,
        "source": "synthetic",
        "source_id": f"{split}-{i}",
        "url": "",
        "created_at": "2024-01-01T00:00:00Z",
        "licence": "CC0-1.0",
        "author_hash": "",
        "synthetic": True,
        "annotator_count": 1,
        "agreement": 1.0,
        "image_decided": decided,
        "cluster_id": "",
        "split": split,
    }


def write_synthetic_export(
    out: str | Path,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    image_size: int = 32,
    embed_images: bool = True,
    max_words: int = 0,
    image_share: float | dict[str, float] = 1.0,
) -> Path:
    """Write ``train/validation/test.parquet`` (+ ``images/`` when not embedded) under ``out``;
    ``max_words`` > 0 gives posts of varied length (filler words), at most that many words.
    ``image_share`` (one value or per split) is the share of posts that keep their image; the
    others have a null image, like a corpus imported without its images (a separate seeded
    draw: the posts themselves do not change)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = sizes or {"train": 240, "validation": 60, "test": 60}
    rng = random.Random(seed)
    schema = arrow_schema(embed_images)
    drop = random.Random(f"{seed}:no-image")
    for split, n in sizes.items():
        rows = [make_post(i, split, rng, image_size, max_words) for i in range(n)]
        share = image_share.get(split, 1.0) if isinstance(image_share, dict) else image_share
        if share < 1.0:
            for r in rows:
                if drop.random() >= share:
                    r["image"] = {"bytes": None, "path": None}
                    r.update(image_sha256="", width=0, height=0)
        if not embed_images:
            for r in rows:
                if r["image"]["bytes"] is None:
                    continue
                path = out / r["image"]["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(r["image"]["bytes"])
                r["image"] = {"bytes": None, "path": r["image"]["path"]}
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / f"{split}.parquet")
    return out
