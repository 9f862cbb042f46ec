"""The dedup stage's report: ``report.json`` figures and ``clusters.png`` contact sheet."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from mmnerd.config import DedupConfig
from mmnerd.dedup.clusters import DedupResult
from mmnerd.images.hashing import hex_to_int
from mmnerd.io import atomic_write, write_json
from mmnerd.records import Post


def contact_sheet(
    posts: Sequence[Post],
    clusters: dict[int, list[int]],
    image_root: str | os.PathLike,
    max_clusters: int = 12,
    max_members: int = 8,
    thumb: int = 112,
) -> bytes:
    """PNG bytes: one row per largest cluster, representative first (green frame),
    duplicates after it (red frame).  Captions: ``img`` (linked by its image) or ``txt``
    (linked by its text only) and ``d=<bits>``, the Hamming distance to the nearest
    other member's hash (large for a text-only link: expected, not a false positive)."""
    from PIL import Image, ImageDraw

    rows = sorted(clusters.values(), key=lambda m: (-len(m), posts[m[0]].id))[:max_clusters]
    pad, label_h = 6, 14
    cell_w, cell_h = thumb + pad, thumb + pad + label_h
    cols = max([min(len(m), max_members) for m in rows], default=1)
    width = max(cols * cell_w + pad, 360)
    height = max(1, len(rows)) * (cell_h + label_h) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    root = Path(image_root)
    if not rows:
        draw.text((pad, pad), "no duplicate clusters", fill="black")
    for r, members in enumerate(rows):
        y0 = pad + r * (cell_h + label_h)
        rep = posts[members[0]]
        draw.text((pad, y0), f"{rep.cluster_id}  ({len(members)} posts)"[:100], fill="black")
        member_hashes = [
            (k, hex_to_int(posts[k].image.phash))  # type: ignore[union-attr]
            for k in members
            if posts[k].image is not None and posts[k].image.phash  # type: ignore[union-attr]
        ]
        for c, k in enumerate(members[:max_members]):
            p = posts[k]
            x0, y1 = pad + c * cell_w, y0 + label_h
            colour = "green" if c == 0 else "red"
            draw.rectangle(
                [x0 - 2, y1 - 2, x0 + thumb + 1, y1 + thumb + 1], outline=colour, width=2
            )
            by_image = p.duplicate_reason == "duplicate_image"
            caption = "rep" if c == 0 else "img" if by_image else "txt"
            try:
                if p.image is None or not p.image.path:
                    raise OSError("no image")
                with Image.open(root / p.image.path) as im:
                    im.draft("RGB", (thumb, thumb))
                    im = im.convert("RGB")
                    im.thumbnail((thumb, thumb))
                    sheet.paste(im, (x0 + (thumb - im.width) // 2, y1 + (thumb - im.height) // 2))
                others = [h for j, h in member_hashes if j != k]
                if c and p.image.phash and others:
                    h = hex_to_int(p.image.phash)
                    caption += f" d={min((h ^ o).bit_count() for o in others)}"
            except OSError:
                draw.text((x0 + 4, y1 + 4), (p.text or "")[:18], fill="gray")
            draw.text((x0, y1 + thumb + 2), caption, fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_report(
    folder: str | os.PathLike,
    result: DedupResult,
    posts: Sequence[Post],
    image_root: str | os.PathLike,
    config: DedupConfig,
    sheet_clusters: dict[int, list[int]] | None = None,
) -> Path:
    """Write ``report.json`` and ``clusters.png`` (largest clusters) into ``folder``.

    ``posts[k]`` is read only for members of the largest clusters: a mapping of those is
    enough, with ``sheet_clusters`` (the contact sheet's clusters, default all)."""
    folder = Path(folder)
    report = {"config": config.model_dump(mode="json"), **result.to_dict()}
    report["largest_clusters"] = [
        {
            "cluster_id": posts[m[0]].cluster_id,
            "size": len(m),
            "representative": posts[m[0]].id,
            "members": [posts[k].id for k in m[:20]],
        }
        for m in sorted(result.clusters.values(), key=lambda m: -len(m))[:20]
    ]
    report["hash_failed_examples"] = dict(list(result.hash_failed.items())[:20])
    write_json(folder / "report.json", report)
    with atomic_write(folder / "clusters.png", "wb") as f:
        sheet = result.clusters if sheet_clusters is None else sheet_clusters
        f.write(contact_sheet(posts, sheet, image_root))
    return folder
