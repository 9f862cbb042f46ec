"""Dedup: text normalisation + MinHash, clusters and keep policy, the stage (report, contact
sheet, flags) through the runner, and the cross-split leakage audit."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmnerd.audit import audit_leakage
from mmnerd.config import DedupConfig, PipelineConfig
from mmnerd.dedup import (
    DedupStage,
    connected_components,
    deduplicate,
    keep_key,
    lsh_params,
    minhash_from_hashes,
    minhash_signatures,
    normalize_text,
    shingle_hashes,
    shingles,
    text_edges,
)
from mmnerd.io import write_json, write_posts
from mmnerd.pipeline import MARKER, Runner, StageContext, StageStats, iter_stage, stage_dir
from mmnerd.records import ImageRef, Post


def picture(seed: int, size: tuple[int, int] = (240, 180)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))]
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=col)
    return img


def save(img: Image.Image, root: Path, name: str, fmt: str = "JPEG", **kw) -> ImageRef:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    data = buf.getvalue()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / name).write_bytes(data)
    return ImageRef(
        url=f"http://x/{name}",
        status="ok",
        sha256=hashlib.sha256(data).hexdigest(),
        path=name,
        width=img.width,
        height=img.height,
    )


def post(i: int, text: str, image: ImageRef | None, created: str = "") -> Post:
    return Post(
        id=f"t:{i}", source="t", source_id=str(i), text=text, image=image, created_at=created
    )


@pytest.fixture
def corpus(tmp_path: Path) -> list[Post]:
    """0-2: one picture (original, half-size re-encode, byte copy); 3: a crop-free
    different picture; 4,5: same text as each other, different pictures; 6: no image."""
    a = picture(1, (400, 300))
    ref_a = save(a, tmp_path, "a.jpg", quality=90)
    small = save(a.resize((200, 150)), tmp_path, "a_small.jpg", quality=70)
    posts = [
        post(0, "Sunset over Paris", small, "2024-01-02T00:00:00Z"),
        post(1, "Look at this!", ref_a, "2024-01-03T00:00:00Z"),
        post(2, "repost", ImageRef(**{**ref_a.__dict__, "path": "a.jpg"}), "2024-01-01T00:00:00Z"),
        post(
            3,
            "Berlin at night, what a view from the tower",
            save(picture(2), tmp_path, "b.png", "PNG"),
            "",
        ),
        post(4, "Merci @Macron pour Paris https://t.co/x", save(picture(3), tmp_path, "c.jpg")),
        post(5, "merci   pour PARIS", save(picture(4), tmp_path, "d.jpg")),
        post(6, "Berlin at night, what a view from the tower!", None),
    ]
    return posts


def test_normalize_text() -> None:
    assert normalize_text("Merci @Macron  pour\nParis https://t.co/x 😀") == "merci pour paris 😀"
    assert normalize_text("RT @user@mastodon.social: Hallo www.x.de") == "rt hallo"
    assert normalize_text("¡Qué día! #Madrid… «top»") == "qué día madrid top"
    assert normalize_text("see URL now", drop=["URL"]) == "see now"
    assert normalize_text("   ") == ""
    assert shingles("a b c") == ["a b", "b c"]
    assert shingles("solo") == ["solo"]
    assert shingles("") == []


def test_minhash_estimates_jaccard() -> None:
    words = [f"w{k}" for k in range(60)]
    s1 = shingles(" ".join(words))
    s2 = shingles(" ".join(words[:54] + ["x1", "x2", "x3", "x4", "x5", "x6"]))
    sig = minhash_signatures([s1, s2, []], num_perm=256)
    true = len(set(s1) & set(s2)) / len(set(s1) | set(s2))
    est = (sig[0] == sig[1]).mean()
    assert abs(est - true) < 0.1
    assert (sig[2] == np.iinfo(np.uint32).max).all()
    # the vectorised path over word hashes estimates the same similarity
    t1, t2 = " ".join(words), " ".join(words[:54] + ["x1", "x2", "x3", "x4", "x5", "x6"])
    hv, counts = shingle_hashes([t1, t2, "", "solo"])
    assert counts.tolist() == [59, 59, 0, 1]
    sig2 = minhash_from_hashes(hv, counts, num_perm=256)
    assert abs((sig2[0] == sig2[1]).mean() - true) < 0.1
    hv, _ = shingle_hashes(["a b c", "a b"])
    assert hv[0] == hv[2] and hv[0] != hv[1]  # same shingle, same hash
    bands, rows = lsh_params(0.8, 128)
    assert bands * rows <= 128 and 4 <= rows <= 16


def test_text_edges() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    texts = [
        base,
        base.upper() + " https://t.co/abc",  # identical after normalisation
        base.replace("today", "tonight"),  # near duplicate
        "completely different words about football and the world cup",
        "",
        "",
    ]
    i, j, w = text_edges(texts, 0.7)
    edges = {(int(a), int(b)): float(s) for a, b, s in zip(i, j, w, strict=True)}
    assert edges[(0, 1)] == 1.0
    assert (0, 2) in edges and 0.7 <= edges[(0, 2)] < 1.0
    assert not any(3 in e or 4 in e or 5 in e for e in edges)
    i, j, _ = text_edges(texts, 1.0)  # exact only
    assert {(int(a), int(b)) for a, b in zip(i, j, strict=True)} == {(0, 1)}


def test_connected_components_and_keep_policy() -> None:
    labels = connected_components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels[0] == labels[1] == labels[2] != labels[3]
    assert labels[4] == labels[5] != labels[3]
    big = post(1, "", ImageRef(url="", width=100, height=100), "2024-05-01")
    old = post(2, "", ImageRef(url="", width=10, height=10), "2020-01-01")
    undated = post(0, "", ImageRef(url="", width=10, height=10), "")
    for keep, winner in [("largest", big), ("earliest", old), ("id", undated)]:
        assert min([big, old, undated], key=lambda p, k=keep: keep_key(p, k)) is winner
    with pytest.raises(ValueError):
        keep_key(big, "random")


def test_deduplicate_marks_clusters(corpus: list[Post], tmp_path: Path) -> None:
    res = deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    by_id = {p.id: p for p in corpus}
    # image cluster: the largest (400x300) wins; ties on size broken by earliest date
    assert by_id["t:2"].duplicate_of == ""  # 400x300, earliest
    assert by_id["t:1"].duplicate_of == "t:2"
    assert by_id["t:0"].duplicate_of == "t:2"
    assert {by_id[k].cluster_id for k in ("t:0", "t:1", "t:2")} == {"img-t:2"}
    assert by_id["t:0"].extra["dedup"] == {"reason": "duplicate_image"}
    # text clusters
    assert by_id["t:4"].cluster_id == by_id["t:5"].cluster_id == "txt-t:4"
    assert by_id["t:5"].extra["dedup"] == {"reason": "duplicate_text"}
    assert by_id["t:3"].cluster_id == by_id["t:6"].cluster_id
    assert by_id["t:6"].duplicate_of == "t:3"  # the one with an image is larger
    assert all(p.ok for p in corpus)
    with Image.open(tmp_path / "images" / "b.png") as im:  # PNG: bit-exact
        assert by_id["t:3"].image.phash == str(imagehash.phash(im))
    assert len(by_id["t:1"].image.phash) == 16
    assert res.exact_image_edges == 1 and res.duplicate_image == 2 and res.duplicate_text == 2
    assert res.histogram() == {"2": 2, "3": 1}
    # idempotent: a second run gives the same marks
    before = [(p.cluster_id, p.duplicate_of) for p in corpus]
    deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    assert [(p.cluster_id, p.duplicate_of) for p in corpus] == before


def test_threshold_zero_and_text_off(corpus: list[Post], tmp_path: Path) -> None:
    cfg = DedupConfig(threshold=0, text_threshold=1.0, keep="id")
    deduplicate(corpus, cfg, image_root=tmp_path / "images", workers=1)
    by_id = {p.id: p for p in corpus}
    # the byte copy t:2 joins t:1 (and t:0 too if the half-size pHash is identical)
    assert by_id["t:2"].duplicate_of in ("t:0", "t:1")
    assert by_id["t:1"].cluster_id == by_id["t:2"].cluster_id != ""
    assert by_id["t:5"].cluster_id == by_id["t:4"].cluster_id  # identical normalised text
    assert by_id["t:6"].cluster_id == by_id["t:3"].cluster_id


def test_missing_image_is_flagged_not_fatal(corpus: list[Post], tmp_path: Path) -> None:
    (tmp_path / "images" / "b.png").unlink()
    res = deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    assert list(res.hash_failed) == ["t:3"]
    assert corpus[3].image.phash == ""


def test_stage_through_runner(corpus: list[Post], tmp_path: Path) -> None:
    config = PipelineConfig(name="t", data_dir=str(tmp_path))
    fetch = stage_dir(config, "fetch")
    write_posts(fetch / "shard-00000.jsonl", corpus[:4])
    write_posts(fetch / "shard-00001.jsonl", corpus[4:])
    write_json(fetch / MARKER, {"fingerprint": "x", "stats": StageStats("fetch").to_dict()})
    stats = Runner(config).run([DedupStage()])[0]
    assert stats.items_in == stats.items_out == 7
    assert stats.flagged == {"duplicate_image": 2, "duplicate_text": 2}
    out = {p.id: p for p in iter_stage(config, "dedup")}
    assert out["t:1"].duplicate_of == "t:2" and out["t:1"].image.phash
    report = json.loads((tmp_path / "reports" / "dedup" / "report.json").read_text())
    assert report["clusters"] == 3 and report["cluster_size_histogram"] == {"2": 2, "3": 1}
    assert report["config"]["threshold"] == 10
    with Image.open(tmp_path / "reports" / "dedup" / "clusters.png") as sheet:
        assert sheet.width > 100 and sheet.height > 100
    # a kill while the report (or the hash cache) was written left temp files: a rerun
    # removes them (issue 20.7: nothing did)
    stale = [
        tmp_path / "reports" / "dedup" / ".clusters.png.k9x2.tmp",
        tmp_path / "index" / ".phash.npz.q1w2.tmp",
    ]
    for f in stale:
        f.write_bytes(b"half")
    Runner(config).run([DedupStage()], force=True)
    assert not any(f.exists() for f in stale)
    assert (tmp_path / "reports" / "dedup" / "clusters.png").exists()


def test_hash_cache_spares_rehashing(corpus: list[Post], tmp_path: Path) -> None:
    cache = tmp_path / "index" / "phash.npz"
    first = deduplicate(corpus, DedupConfig(), tmp_path / "images", workers=1, cache_path=cache)
    assert first.hashed == 5 and cache.exists()  # t:1 and t:2 share a file
    marks = [(p.cluster_id, p.duplicate_of, p.image and p.image.phash) for p in corpus]
    second = deduplicate(corpus, DedupConfig(), tmp_path / "images", workers=1, cache_path=cache)
    assert second.hashed == 0
    assert [(p.cluster_id, p.duplicate_of, p.image and p.image.phash) for p in corpus] == marks
    third = deduplicate(
        corpus, DedupConfig(hash="dhash"), tmp_path / "images", workers=1, cache_path=cache
    )
    assert third.hashed == 5  # another kind: the cache does not apply


def test_stage_run_directly(corpus: list[Post], tmp_path: Path) -> None:
    config = PipelineConfig(name="t", data_dir=str(tmp_path))
    ctx = StageContext(config, StageStats("dedup"))
    out = list(DedupStage().run(iter(corpus), ctx))
    assert len(out) == len(corpus)
    assert ctx.stats.flagged["duplicate_image"] == 2


def test_audit_leakage(corpus: list[Post], tmp_path: Path) -> None:
    deduplicate(corpus, DedupConfig(), image_root=tmp_path / "images", workers=1)
    clean = audit_leakage({"train": corpus[:3] + corpus[4:6], "test": [corpus[3], corpus[6]]})
    assert clean["ok"] and clean["leaking_posts"] == {}
    leaky = audit_leakage(
        {"train": corpus[:2] + corpus[3:5], "dev": [corpus[2]], "test": corpus[5:]}
    )
    assert not leaky["ok"]
    assert leaky["image"]["clusters"] == 1 and leaky["image"]["posts"] == {"train": 2, "dev": 1}
    assert leaky["text"]["clusters"] == 2
    image_rows = [r for r in leaky["leaks"] if r["kind"] == "image"]
    assert [(r["id"], r["split"], r["matches"]) for r in image_rows] == [(corpus[2].id, "dev", 2)]
    assert image_rows[0]["matched_id"] == corpus[0].id and image_rows[0]["distance"] == 0
    assert leaky["leaking_posts"] == {"dev": 1, "test": 2}
