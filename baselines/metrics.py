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


def evaluate_tags(
    y_true: Sequence[Sequence[str]],
    y_pred: Sequence[Sequence[str]],
    langs: Sequence[str],
    image_decided: Sequence[bool | None] | None = None,
) -> dict[str, Any]:
    """Scores overall, per type, per language and (when flags are given) on the posts flagged
    ``image_decided`` (posts whose labels need the image)."""
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
    res["sentences"] = len(y_true)
    return res
