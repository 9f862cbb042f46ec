"""The export of the learning check and of ``benchmarks/fusion.py``: the bundled sample's
generator (:mod:`mmnerd.sources.sample`, seeded, in memory) straight to Parquet.

Target-language posts with a usable image (no near duplicates), tokenised with the pipeline's
tokenizer, tagged with ``spans_to_bio``, split 70/15/15 by a hash of the post id; the
``image_decided`` column is the generator's own flag (``Post.image_decided``).  Not a test
module: imported by the test and the benchmark.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

SEED = 7
POSTS = 1200
IMAGE_SIZE = (64, 64)  # the quick-mode encoders see 64 px; smaller files, faster generation


def _split_of(post_id: str) -> str:
    h = int(hashlib.sha256(post_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 70 else "dev" if h < 85 else "test"


def write_sample_export(out: Path, posts: int = POSTS, seed: int = SEED) -> Path:
    """Write ``out/{train,dev,test}.parquet`` (schema ``arrow_schema()``, embedded images, the
    ``image_decided`` column from the generator's typed flag) and ``out/manifest.json`` from
    the bundled sample; returns ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmnerd.records import LABEL2ID, SCHEMA_VERSION, arrow_schema
    from mmnerd.sources.sample import TARGET_LANGS, SampleOptions, generate
    from mmnerd.text.bio import spans_to_bio
    from mmnerd.text.tokenize import tokenize

    sample = generate(
        SampleOptions(posts=posts, seed=seed, near_duplicate_share=0.0, image_size=IMAGE_SIZE)
    )
    schema = arrow_schema(embed_images=True)
    rows: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for post in sample.posts:
        if post.lang_hint not in TARGET_LANGS or post.extra.get("image_fault"):
            continue
        if post.extra.get("near_duplicate_of"):
            continue
        assert post.image is not None
        data = sample.files[post.image.file]
        tokens, offsets = tokenize(post.text, post.lang_hint)
        aligned = spans_to_bio(post.gold_spans, offsets, post.text)
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
                "image_decided": post.image_decided,
                "cluster_id": "",
                "split": split,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for split, split_rows in rows.items():
        path = out / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(split_rows, schema=schema), path)
        files.append({"file": path.name, "rows": len(split_rows)})
    manifest = {"schema_version": SCHEMA_VERSION, "pipeline": f"sample-{posts}", "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
