"""The synthetic sample source: determinism, languages, spans, image cues, duplicates, server."""

from __future__ import annotations

import io
import itertools
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import imagehash
import pytest
from PIL import Image

from mmnerd.config import PipelineConfig, load_config
from mmnerd.errors import ConfigError
from mmnerd.io import write_posts
from mmnerd.records import ENTITY_TYPES, Post
from mmnerd.sources import get_source
from mmnerd.sources.sample import (
    LICENCE,
    OTHER_LANGS,
    TARGET_LANGS,
    SampleOptions,
    SampleSource,
    generate,
)
from mmnerd.sources.sample.lexicon import AMBIGUOUS

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = ["en", "fr", "de", "es", "it", "pt", "nl", "ca", "ro", "pl"]


def _config(root: Path, *overrides: str) -> PipelineConfig:
    return load_config(ROOT / "pipelines" / "sample.toml", [f'data_dir="{root}"', *overrides])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SampleSource:
    src = get_source(_config(tmp_path_factory.mktemp("sample"), "source.posts=300"))
    assert isinstance(src, SampleSource)
    return src


@pytest.fixture(scope="module")
def posts(source: SampleSource) -> list[Post]:
    return list(source.posts())


@pytest.fixture(scope="module")
def images(source: SampleSource, posts: list[Post]) -> dict[str, bytes]:
    """post id -> image bytes on disk (posts with a faulty image left out)."""
    out = {}
    for p in posts:
        assert p.image is not None
        if "image_fault" not in p.extra:
            out[p.id] = (source.images_dir / p.image.file).read_bytes()
    return out


def _phash(data: bytes) -> imagehash.ImageHash:
    with Image.open(io.BytesIO(data)) as im:
        return imagehash.phash(im)


# --- options and files --------------------------------------------------------------


def test_options_defaults_and_pipeline_file() -> None:
    opts = SampleOptions()
    assert (opts.posts, opts.seed, opts.broken_images) == (300, 13, 4)
    assert (opts.other_language_share, opts.near_duplicate_share) == (0.10, 0.10)
    assert opts.image_size == (320, 240)
    assert all(f.description for f in SampleOptions.model_fields.values())
    cfg = load_config(ROOT / "pipelines" / "sample.toml")
    assert cfg.source.kind == "sample" and cfg.images.allow_hosts == []  # no server to allow
    demo = SampleOptions.model_validate(cfg.source.options())
    assert demo == opts.model_copy(update={"posts": 1400})  # the demo: >= 200 test posts


@pytest.mark.parametrize(
    ("override", "field"),
    [("source.image_port=0", "image_port"), ("source.posts=0", "posts"),
     ("source.colour=1", "colour")],
)  # fmt: skip
def test_bad_options_name_the_field(tmp_path: Path, override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"source\.{field}"):
        get_source(_config(tmp_path, override))


def test_files_are_reused_and_repaired(tmp_path: Path) -> None:
    src = get_source(_config(tmp_path, "source.posts=24"))
    assert isinstance(src, SampleSource)
    assert src.ensure_generated() is True
    folder = tmp_path / "raw" / "sample"
    assert src.folder == folder and (folder / "manifest.json").is_file()
    assert (folder / "posts.jsonl").is_file() and any((folder / "images").iterdir())
    assert src.ensure_generated() is False  # same options: reuse
    victim = next(iter(sorted((folder / "images").iterdir())))
    before = victim.read_bytes()
    victim.write_bytes(b"corrupted")
    assert src.ensure_generated() is True  # damaged: regenerate, byte-identical
    assert victim.read_bytes() == before
    other = get_source(_config(tmp_path, "source.posts=24", "source.seed=14"))
    assert isinstance(other, SampleSource) and other.ensure_generated() is True


def test_determinism_byte_identical(tmp_path: Path) -> None:
    """Two independent generations (separate folders) give byte-identical files."""
    trees = []
    for run in ("a", "b"):
        src = get_source(_config(tmp_path / run, "source.posts=80", "source.seed=5"))
        assert isinstance(src, SampleSource) and src.ensure_generated()
        trees.append({f.relative_to(src.folder): f.read_bytes() for f in src.folder.rglob("*")
                      if f.is_file()})  # fmt: skip
    assert trees[0] == trees[1] and len(trees[0]) >= 80
    again = generate(SampleOptions(posts=80, seed=5))  # in memory, same bytes again
    write_posts(tmp_path / "posts.jsonl", again.posts)
    assert (tmp_path / "posts.jsonl").read_bytes() == trees[0][Path("posts.jsonl")]
    other = generate(SampleOptions(posts=80, seed=6))
    assert [p.text for p in other.posts] != [p.text for p in again.posts]


# --- text --------------------------------------------------------------------------


def test_provenance(posts: list[Post], source: SampleSource) -> None:
    assert len(posts) == 300 and len({p.id for p in posts}) == 300
    for p in posts:
        assert p.id == f"sample:{p.source_id}" and re.fullmatch(r"\d{5}", p.source_id)
        assert p.source == "sample" and p.url == f"https://example.invalid/sample/{p.source_id}"
        assert p.licence == LICENCE and p.synthetic and p.extra["synthetic"] is True
        assert re.fullmatch(r"[0-9a-f]{16}", p.author_hash)
        assert re.fullmatch(r"2024-\d\d-\d\dT\d\d:\d\d:\d\dZ", p.created_at)
        assert p.raw_text == p.text and p.lang_hint in TARGET_LANGS + OTHER_LANGS
        assert p.image is not None and not p.image.url
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.(jpg|png)", p.image.file)
    assert len({p.author_hash for p in posts}) > 20


def test_language_mix(posts: list[Post]) -> None:
    langs = Counter(p.lang_hint for p in posts)
    other = sum(langs[lang] for lang in OTHER_LANGS)
    assert 0.08 <= other / len(posts) <= 0.12
    assert all(langs[lang] >= 0.2 * len(posts) for lang in TARGET_LANGS)
    assert all(langs[lang] >= 5 for lang in OTHER_LANGS)


def test_py3langid_recognises_the_generated_languages(posts: list[Post]) -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    ident.set_languages(CANDIDATES)
    target = [p for p in posts if p.lang_hint in TARGET_LANGS]
    right = sum(ident.classify(p.text)[0] == p.lang_hint for p in target)
    assert right / len(target) >= 0.9
    other = [p for p in posts if p.lang_hint in OTHER_LANGS]
    dropped = sum(ident.classify(p.text)[0] not in TARGET_LANGS for p in other)
    assert dropped / len(other) >= 0.8  # the language stage can drop them


def test_spans_match_text_and_spacy_token_boundaries(posts: list[Post]) -> None:
    """Every gold span is ``text[start:end]`` and starts/ends on a spacy.blank token edge.

    ``#Paris`` is two blank-tokenizer tokens (``#``, ``Paris``) but its edges still fall on
    token boundaries; mmnerd's own tokenizer keeps hashtags whole.
    """
    import spacy

    nlps = {lang: spacy.blank(lang) for lang in TARGET_LANGS}  # others never get tokenised
    n_spans = 0
    for p in (p for p in posts if p.lang_hint in TARGET_LANGS):
        doc = nlps[p.lang_hint](p.text)
        starts = {t.idx for t in doc}
        ends = {t.idx + len(t.text) for t in doc}
        prev_end = 0
        for s in sorted(p.gold_spans, key=lambda s: s.start):
            assert p.text[s.start : s.end] == s.text and s.text.strip() == s.text
            assert s.label in ENTITY_TYPES and s.start >= prev_end
            assert s.start in starts and s.end in ends, (p.id, s, [t.text for t in doc])
            prev_end = s.end
            n_spans += 1
    assert n_spans >= len(posts)


def test_social_media_noise_is_present(posts: list[Post]) -> None:
    texts = [p.text for p in posts]
    spans = [s for p in posts for s in p.gold_spans]
    checks = {
        "@mention entity": any(s.text.startswith("@") for s in spans),
        "#hashtag entity": any(s.text.startswith("#") for s in spans),
        "@mention not entity": any("@julie_92" in t or "@max_k" in t for t in texts),
        "url": any("https://" in t for t in texts),
        "flag": any("🇫🇷" in t or "🇩🇪" in t or "🇪🇸" in t for t in texts),
        "zwj": any("\u200d" in t for t in texts),
        "combining accent in entity": any(
            any(unicodedata.combining(c) for c in s.text) for s in spans
        ),
        "crlf": any("\r\n" in t for t in texts),
        "double space": any("  " in t for t in texts),
        "accents": any("é" in t for t in texts),
    }
    assert all(checks.values()), [k for k, v in checks.items() if not v]


def test_every_entity_type_in_every_target_language(posts: list[Post]) -> None:
    seen = defaultdict(set)
    for p in posts:
        seen[p.lang_hint].update(s.label for s in p.gold_spans)
    for lang in TARGET_LANGS:
        assert seen[lang] == set(ENTITY_TYPES), lang


# --- images ------------------------------------------------------------------------


def test_image_decided_ambiguous_mentions(posts: list[Post]) -> None:
    target = [p for p in posts if p.lang_hint in TARGET_LANGS]
    assert all(isinstance(p.image_decided, bool) for p in posts)  # a typed fact, never None
    decided = [p for p in target if p.image_decided]
    assert 0.25 <= len(decided) / len(target) <= 0.45
    types_by_surface = defaultdict(set)
    for p in decided:
        # an image-decided post names exactly one entity: the ambiguous mention
        assert len(p.gold_spans) == 1, p.gold_spans
        span = p.gold_spans[0]
        assert span.text.lstrip("#") in AMBIGUOUS
        assert span.label == p.extra["image_type"]  # the picture shows the span's type
        types_by_surface[span.text.lstrip("#")].add(span.label)
    assert max(len(t) for t in types_by_surface.values()) >= 3
    assert sum(len(t) >= 2 for t in types_by_surface.values()) >= 5
    assert {t for ts in types_by_surface.values() for t in ts} == set(ENTITY_TYPES)


def test_pictures_carry_the_type(posts: list[Post], images: dict[str, bytes]) -> None:
    """A nearest-centroid classifier on 8x8 thumbnails beats chance by far: the cue is learnable."""
    import numpy as np

    feats, labels = [], []
    for p in posts:
        if p.id in images and "near_duplicate_of" not in p.extra:
            with Image.open(io.BytesIO(images[p.id])) as im:
                thumb = im.convert("RGB").resize((8, 8), Image.Resampling.BOX)
            feats.append(np.asarray(thumb, np.float32).ravel() / 255)
            labels.append(p.extra["image_type"])
    x, y = np.stack(feats), np.array(labels)
    assert set(y) == set(ENTITY_TYPES)
    train, test = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    centroids = {t: x[train & (y == t)].mean(0) for t in ENTITY_TYPES}
    pred = [min(centroids, key=lambda t: float(((v - centroids[t]) ** 2).sum())) for v in x[test]]
    accuracy = float(np.mean(np.array(pred) == y[test]))
    print(f"nearest-centroid accuracy on 8x8 thumbnails: {accuracy:.2f}")
    assert accuracy >= 0.6  # chance is ~0.25


def test_near_duplicates_are_near_and_others_far(
    posts: list[Post], images: dict[str, bytes]
) -> None:
    dups = {p.id: p.extra["near_duplicate_of"] for p in posts if "near_duplicate_of" in p.extra}
    assert 0.08 <= len(dups) / len(posts) <= 0.12
    hashes = {pid: _phash(data) for pid, data in images.items()}
    for copy, original in dups.items():
        assert copy != original and images[copy] != images[original]
        assert hashes[copy] - hashes[original] <= 10
        sizes = [Image.open(io.BytesIO(images[pid])).size for pid in (copy, original)]
        assert sizes[0] != sizes[1]  # rescaled (and cropped, re-encoded)
    originals = [pid for pid in hashes if pid not in dups]
    closest = min(hashes[a] - hashes[b] for a, b in itertools.combinations(originals, 2))
    assert closest > 10  # dedup's default threshold finds exactly the recorded copies


def test_formats(images: dict[str, bytes]) -> None:
    mimes = Counter()
    for data in images.values():
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mimes[im.format] += 1
    assert mimes["JPEG"] > 200 and mimes["PNG"] >= 1


def test_pictures_are_files_and_faults_get_their_status(tmp_path: Path) -> None:
    """No server: the fetch stage reads the sample's files; a missing file, an HTML page and
    a truncated JPEG each get their status (the posts are dropped, images being required)."""
    from mmnerd.pipeline import iter_excluded, iter_stage
    from mmnerd.stages import run_collect

    cfg = _config(tmp_path, "source.posts=40", "source.broken_images=3")
    run_collect(cfg)
    reasons = {p.extra["image_fault"]: p.reason.split(": ")[0] for p in iter_excluded(cfg, "fetch")
               if "image_fault" in p.extra}  # fmt: skip
    assert reasons == {"truncated": "image:corrupt_image", "html": "image:not_image",
                       "missing": "image:missing_file"}  # fmt: skip
    assert all(p.has_image for p in iter_stage(cfg, "fetch"))


def test_a_rerun_after_any_change_still_finds_the_pictures(tmp_path: Path) -> None:
    """Issue 20.5: with image_port = 0 the collected URLs named a port of a run that had
    ended, so a rerun of fetch alone (after a kill, or an [images] change) dropped every
    post as connection_error.  Pictures are files now: the rerun finds them."""
    from mmnerd.pipeline import stage_stats
    from mmnerd.stages import run_collect

    cfg = _config(tmp_path, "source.posts=30", "source.broken_images=0")
    run_collect(cfg)
    before = stage_stats(cfg, "fetch").items_out
    again = _config(tmp_path, "source.posts=30", "source.broken_images=0", "images.max_side=200")
    stats = {s.stage: s for s in run_collect(again)}
    assert stats["collect"].skipped and not stats["fetch"].skipped  # only fetch is redone
    assert stats["fetch"].items_out == before > 0 and not stats["fetch"].dropped
