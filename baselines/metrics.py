"""Entity-level scores with seqeval in strict IOB2 mode: micro overall, per type, per language."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from mmnerd.records import ENTITY_TYPES


def _zero(support: int = 0) -> dict[str, float]:
    return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": support}


def entity_scores(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """``{"overall": {precision, recall, f1, support}, "per_type": {TYPE: {...}}}``.

    Strict IOB2 (seqeval ``mode="strict", scheme=IOB2``): an entity counts only if its type and
    exact boundaries match.  Scores are fractions in [0, 1]; types absent from both sides get 0.
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    y_true = [list(s) for s in y_true]
    y_pred = [list(s) for s in y_pred]
    per_type = {t: _zero() for t in ENTITY_TYPES}
    has_any = any(t != "O" for s in y_true + y_pred for t in s)
    if not y_true or not has_any:
        return {"overall": _zero(), "per_type": per_type}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = classification_report(
            y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
        )
    for name, vals in rep.items():
        if name in ("micro avg", "macro avg", "weighted avg"):
            continue
        per_type[name] = _clean(vals)
    overall = _clean(rep["micro avg"]) if "micro avg" in rep else _zero()
    return {"overall": overall, "per_type": per_type}


def _clean(vals: dict[str, Any]) -> dict[str, float]:
    return {
        "precision": float(vals["precision"]),
        "recall": float(vals["recall"]),
        "f1": float(vals["f1-score"]),
        "support": int(vals["support"]),
    }


def post_counts(
    y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
) -> list[list[int]]:
    """Per post ``[true positives, predicted entities, gold entities]`` (strict IOB2 chunks, as
    seqeval counts them): summed over posts they give the micro scores of
    :func:`entity_scores`, and they are what bootstrap resampling draws (:mod:`baselines.stats`)."""
    from seqeval.scheme import IOB2, Entities

    def chunks(seqs: Sequence[Sequence[str]]) -> list[set[tuple[int, int, str]]]:
        ents = Entities([list(x) for x in seqs], IOB2, suffix=False).entities
        return [{(e.start, e.end, e.tag) for e in sent} for sent in ents]

    out: list[list[int]] = []
    for gold, pred in zip(chunks(y_true), chunks(y_pred), strict=True):
        out.append([len(gold & pred), len(pred), len(gold)])
    return out


def f1_from_counts(tp: float, n_pred: float, n_gold: float) -> float:
    """Micro F1 from summed counts (0 when nothing is predicted or expected)."""
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def evaluate_tags(
    y_true: Sequence[Sequence[str]],
    y_pred: Sequence[Sequence[str]],
    langs: Sequence[str],
    image_decided: Sequence[bool | None] | None = None,
    counts: bool = False,
) -> dict[str, Any]:
    """Scores overall, per type, per language and (when flags are given) on the posts flagged
    ``image_decided`` (posts whose labels need the image), with ``posts`` (their number);
    ``counts``: also ``post_counts`` (see :func:`post_counts`)."""
    res = entity_scores(y_true, y_pred)
    res["per_language"] = {}
    for lang in sorted(set(langs)):
        idx = [i for i, x in enumerate(langs) if x == lang]
        res["per_language"][lang] = entity_scores(
            [y_true[i] for i in idx], [y_pred[i] for i in idx]
        )["overall"]
    if image_decided is not None and any(f is not None for f in image_decided):
        idx = [i for i, f in enumerate(image_decided) if f]
        res["image_decided"] = entity_scores([y_true[i] for i in idx], [y_pred[i] for i in idx])[
            "overall"
        ]
        res["image_decided"]["posts"] = len(idx)
    res["sentences"] = len(y_true)
    if counts:
        res["post_counts"] = post_counts(y_true, y_pred)
    return res
