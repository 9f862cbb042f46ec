"""Exact and near-duplicate clusters over images and texts, and the keep policy.

Edges between posts come from four detectors, all merged into one graph
whose connected components are the clusters:

* identical image files (same ``ImageRef.sha256``) and near-identical images:
  perceptual hashes within ``dedup.threshold`` bits (:mod:`mmnerd.dedup.images`,
  exact search in :mod:`mmnerd.images.index`);
* identical texts after :func:`normalize_text` and near-identical texts (word
  shingle Jaccard >= ``dedup.text_threshold``) (:mod:`mmnerd.dedup.text`).

Identical items are linked as a star to their first member (not all pairs),
so a post reposted 5,000 times costs 4,999 edges, not 12.5M.

In each cluster one post is the representative (``dedup.keep``,
:mod:`mmnerd.dedup.clusters`); every member gets ``cluster_id`` and the others
``duplicate_of = <representative id>``.  Nothing is deleted: the push to
annotation skips posts with ``duplicate_of``, and the splits keep a cluster in
one split.  The stage is :mod:`mmnerd.dedup.stage`, its report
:mod:`mmnerd.dedup.report`; the leakage audit over splits is :mod:`mmnerd.audit`.
"""

from mmnerd.dedup.clusters import DedupResult, connected_components, deduplicate, keep_key
from mmnerd.dedup.images import image_edges
from mmnerd.dedup.report import contact_sheet, write_report
from mmnerd.dedup.stage import DedupStage
from mmnerd.dedup.text import (
    normalize_text,
    shingle_hashes,
    shingles,
    text_edges,
)

__all__ = [
    "DedupResult",
    "DedupStage",
    "connected_components",
    "contact_sheet",
    "deduplicate",
    "image_edges",
    "keep_key",
    "normalize_text",
    "shingle_hashes",
    "shingles",
    "text_edges",
    "write_report",
]
