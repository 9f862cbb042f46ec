"""Learning check on the bundled sample (issue 10): where a mention's type is decided only by
the picture, 2M-NER must beat the text-only CRF on those posts.

The export is built here from the real :mod:`mmnerd.sources.sample` generator (seeded, in
memory): target-language posts with a usable image, tokenised with the pipeline's tokenizer,
tagged with ``spans_to_bio``, split by a hash of the post id. The benchmark CLI then trains
``text_crf`` and ``mner2m`` (quick mode, one seed) in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SEED = 7
POSTS = 1200
IMAGE_SIZE = (64, 64)  # the quick-mode encoders see 64 px; smaller files, faster generation
EPOCHS = 12
BATCH_SIZE = 16
LR = "3e-3"
MARGIN = 0.15  # F1 (fraction) mner2m must gain over text_crf on image-decided posts. Measured
# +0.32..+0.53 over 3 runs of seed 1 (CPU training is not bit-reproducible) and +0.27 with
# seed 2; text_crf stays near chance (0.20-0.40) on those posts, mner2m reaches 0.67-0.73.


def _split_of(post_id: str) -> str:
    h = int(hashlib.sha256(post_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 70 else "dev" if h < 85 else "test"


def write_sample_export(out: Path, posts: int = POSTS, seed: int = SEED) -> tuple[Path, Path]:
    """Write ``out/{train,dev,test}.parquet`` (schema ``arrow_schema()``, embedded images) from
    the bundled sample and ``out/image_decided.txt`` (one post id per line); returns both."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmnerd.records import LABEL2ID, arrow_schema
    from mmnerd.sources.sample import TARGET_LANGS, SampleOptions, generate
    from mmnerd.text.bio import spans_to_bio
    from mmnerd.text.tokenize import tokenize

    sample = generate(
        SampleOptions(posts=posts, seed=seed, near_duplicate_share=0.0, image_size=IMAGE_SIZE)
    )
    schema = arrow_schema(embed_images=True)
    rows: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    decided_ids: list[str] = []
    for post in sample.posts:
        if post.lang_hint not in TARGET_LANGS or post.extra.get("image_fault"):
            continue
        if post.extra.get("near_duplicate_of"):
            continue
        assert post.image is not None
        data = sample.files[post.image.file]
        tokens, offsets = tokenize(post.text, post.lang_hint)
        aligned = spans_to_bio(post.gold_spans, offsets, post.text)
        if post.extra.get("image_decided"):
            decided_ids.append(post.id)
        split = _split_of(post.id)
        rows[split].append(
            {
                "id": post.id,
                "lang": post.lang_hint,
                "text": post.text,
                "tokens": tokens,
                "ner_tags": [LABEL2ID[t] for t in aligned.tags],
                "ner_tags_str": aligned.tags,
                "spans": [
                    {"start": s.start, "end": s.end, "label": s.label} for s in aligned.spans
                ],
                "image": {"bytes": data, "path": post.image.file},
                "image_sha256": hashlib.sha256(data).hexdigest(),
                "image_phash": "",
                "width": IMAGE_SIZE[0],
                "height": IMAGE_SIZE[1],
                "source": post.source,
                "source_id": post.source_id,
                "url": post.url,
                "created_at": post.created_at,
                "licence": post.licence,
                "author_hash": post.author_hash,
                "synthetic": True,
                "annotator_count": 0,
                "agreement": None,
                "cluster_id": "",
                "split": split,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        pq.write_table(pa.Table.from_pylist(split_rows, schema=schema), out / f"{split}.parquet")
    ids_file = out / "image_decided.txt"
    ids_file.write_text("".join(f"{i}\n" for i in decided_ids))
    return out, ids_file


@pytest.mark.slow
def test_mner2m_beats_text_crf_on_image_decided_sample_mentions(tmp_path: Path) -> None:
    export, ids_file = write_sample_export(tmp_path / "export")
    ids = set(ids_file.read_text().split())
    test_ids = {i for i in ids if _split_of(i) == "test"}
    assert len(test_ids) >= 20, "too few image-decided posts in test to compare models"
    rep = tmp_path / "reports"
    cmd = [
        sys.executable, "-m", "baselines.benchmark",
        "--export", str(export),
        "--report-dir", str(rep),
        "--mode", "quick",
        "--models", "text_crf,mner2m",
        "--epochs", str(EPOCHS),
        "--seeds", "1",
        "--batch-size", str(BATCH_SIZE),
        "--lr", LR,
        "--threads", "1",
        "--image-decided-ids", str(ids_file),
    ]  # fmt: skip
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((rep / "benchmark.json").read_text())["results"]

    def f1(model: str, part: str) -> float:
        return float(res[model]["test"][part]["f1"]["mean"])

    text_dec, mm_dec = f1("text_crf", "image_decided"), f1("mner2m", "image_decided")
    text_all, mm_all = f1("text_crf", "overall"), f1("mner2m", "overall")
    shuffled = f1("mner2m+shuffled_images", "image_decided")
    print(
        f"\nsample learning check ({len(test_ids)} image-decided test posts, {seconds:.0f} s): "
        f"image-decided F1 text_crf {text_dec:.3f} vs mner2m {mm_dec:.3f} "
        f"(margin {mm_dec - text_dec:+.3f}, required {MARGIN:+.3f}; "
        f"mner2m with shuffled images {shuffled:.3f}); "
        f"overall F1 text_crf {text_all:.3f} vs mner2m {mm_all:.3f}"
    )
    assert mm_dec - text_dec >= MARGIN, (text_dec, mm_dec)
