"""The whole synthetic sample from a seed: posts, pictures, faults, near-duplicates
(deterministic: the same options give byte-identical output)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mmnerd.images.hashing import hamming
from mmnerd.records import ENTITY_TYPES, ImageRef, Post
from mmnerd.sources.sample.drawing import (
    HTML_PAGE,
    encode,
    near_duplicate,
    picture_hash,
    render_image,
)
from mmnerd.sources.sample.lexicon import AMBIGUOUS
from mmnerd.sources.sample.options import (
    AMBIGUOUS_SHARE,
    EPOCH,
    FAULT_KINDS,
    GENERATOR_VERSION,
    LICENCE,
    NEAR_DUPLICATE_MAX_DISTANCE,
    OTHER_LANGS,
    TARGET_LANGS,
    UNRELATED_MIN_DISTANCE,
    SampleOptions,
)
from mmnerd.sources.sample.text import compose

# ---------------------------------------------------------------------------
# The whole sample
# ---------------------------------------------------------------------------


@dataclass
class GeneratedSample:
    """Posts (pictures as ``ImageRef.file`` names) and the image files by name."""

    posts: list[Post]
    files: dict[str, bytes]


@dataclass
class _Plan:
    """What the seed decides before any post is written: languages, image-decided
    mentions, near-duplicate copies and faulty pictures (post index -> ...)."""

    langs: list[str]
    amb_type: dict[int, str]  # post -> the type its ambiguous mention has (its picture shows)
    dup_of: dict[int, int]  # copy -> original
    faults: dict[int, str]  # post -> truncated / html / missing


def _plan(options: SampleOptions, rng: random.Random) -> _Plan:
    n = options.posts
    n_other = round(n * options.other_language_share)
    langs = [OTHER_LANGS[i % len(OTHER_LANGS)] for i in range(n_other)]
    langs += [TARGET_LANGS[i % len(TARGET_LANGS)] for i in range(n - n_other)]
    rng.shuffle(langs)
    targets = [i for i, lang in enumerate(langs) if lang in TARGET_LANGS]

    # which posts carry an image-decided ambiguous mention, and its type (balanced)
    n_amb = round(len(targets) * AMBIGUOUS_SHARE)
    amb_idx = sorted(rng.sample(targets, n_amb))
    amb_types = [ENTITY_TYPES[k % 4] for k in range(n_amb)]
    rng.shuffle(amb_types)
    amb_type = dict(zip(amb_idx, amb_types, strict=True))

    # near duplicates: post i reuses a transformed copy of an earlier post's image
    n_dup = min(round(n * options.near_duplicate_share), max(0, n // 2 - 1))
    dup_of: dict[int, int] = {}
    if n_dup:
        cands = list(range(1, n))
        rng.shuffle(cands)
        for i in cands:
            if len(dup_of) == n_dup:
                break
            j = rng.randrange(0, i)
            if i in dup_of.values() or j in dup_of:
                continue  # chains are confusing: originals are never copies
            dup_of[i] = j
    used = set(dup_of) | set(dup_of.values())

    # faulty images: target-language posts not involved in duplicates or ambiguity
    pool = [i for i in targets if i not in used and i not in amb_type]
    bad = sorted(rng.sample(pool, min(options.broken_images, len(pool))))
    faults = {i: FAULT_KINDS[k % len(FAULT_KINDS)] for k, i in enumerate(bad)}
    return _Plan(langs, amb_type, dup_of, faults)


def _picture(
    rng: random.Random, i: int, kind: str, fmt: str, plan: _Plan, encoded: dict[int, bytes],
    phashes: dict[int, int], options: SampleOptions,
) -> tuple[bytes, int]:  # fmt: skip
    """Post ``i``'s picture bytes and pHash: a copy of its original, near it (<= 8 bits), or
    a new picture of ``kind``; either way far (>= 14 bits) from every unrelated picture."""
    j = plan.dup_of.get(i)
    others = [v for k, v in phashes.items() if k != j]
    for _attempt in range(12):
        if j is not None:
            data = near_duplicate(rng, encoded[j])
        else:
            data = encode(render_image(rng, kind, options.image_size), fmt, rng.randint(72, 92))
        ph = picture_hash(data)
        near = j is None or hamming(ph, phashes[j]) <= NEAR_DUPLICATE_MAX_DISTANCE
        if near and all(hamming(ph, o) >= UNRELATED_MIN_DISTANCE for o in others):
            break
    return data, ph


def _stored(data: bytes, fault: str) -> bytes | None:
    """The file written for a picture with ``fault`` (None: no file at all)."""
    if fault == "truncated":
        return data[: len(data) * 3 // 10]
    if fault == "html":
        return HTML_PAGE
    return None if fault == "missing" else data


def generate(options: SampleOptions) -> GeneratedSample:
    """Build the whole sample in memory from ``options`` (deterministic, a few seconds)."""
    rng = random.Random(options.seed)
    n = options.posts
    width = max(5, len(str(n)))
    plan = _plan(options, rng)
    dup_of, amb_type = plan.dup_of, plan.amb_type
    authors = [f"sample_user_{k:03d}" for k in range(max(10, n // 5))]
    posts: list[Post] = []
    files: dict[str, bytes] = {}
    encoded: dict[int, bytes] = {}
    phashes: dict[int, int] = {}  # pHash of each original picture
    image_kind: dict[int, str] = {}
    for i, lang in enumerate(plan.langs):
        sid = f"{i + 1:0{width}d}"
        # the picture's type: inherited for copies, the ambiguous mention's type, or that
        # of one entity in the text (pictures usually show something the post names)
        kind = image_kind[dup_of[i]] if i in dup_of else amb_type.get(i, "")
        amb = None
        if i in amb_type:
            surfaces = sorted(s for s, types in AMBIGUOUS.items() if kind in types)
            amb = (rng.choice(surfaces), kind)
        elif i in dup_of and lang in TARGET_LANGS and rng.random() < AMBIGUOUS_SHARE:
            amb = (rng.choice(sorted(s for s, t in AMBIGUOUS.items() if kind in t)), kind)
        text, spans, decided = compose(rng, lang, amb)
        if not kind:
            kind = rng.choice(spans).label if spans else rng.choice(ENTITY_TYPES)
        image_kind[i] = kind

        fmt = "PNG" if rng.random() < 0.08 and i not in plan.faults else "JPEG"
        name = f"{sid}.{'png' if fmt == 'PNG' else 'jpg'}"
        data, ph = _picture(rng, i, kind, fmt, plan, encoded, phashes, options)
        encoded[i] = data
        if i not in dup_of:
            phashes[i] = ph
        fault = plan.faults.get(i, "")
        if (stored := _stored(data, fault)) is not None:
            files[name] = stored

        extra: dict[str, Any] = {
            "synthetic": True,
            "generator": f"mmnerd.sources.sample v{GENERATOR_VERSION}",
            "image_type": kind,
        }
        if i in dup_of:
            extra["near_duplicate_of"] = f"sample:{dup_of[i] + 1:0{width}d}"
        if fault:
            extra["image_fault"] = fault
        created = EPOCH + timedelta(seconds=rng.randrange(366 * 86400))
        extra["account"] = f"sample:{rng.choice(authors)}"  # pseudonymised by posts()
        posts.append(
            Post(
                id=f"sample:{sid}",
                source="sample",
                source_id=sid,
                text=text,
                url=f"https://example.invalid/sample/{sid}",
                created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                licence=LICENCE,
                synthetic=True,
                lang_hint=lang,
                image=ImageRef(file=name),
                raw_text=text,
                gold_spans=spans,
                image_decided=bool(decided),
                extra=extra,
            )
        )
    return GeneratedSample(posts, files)
