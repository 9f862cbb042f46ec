"""Aggregate runs over seeds (mean ± std) into benchmark.json, benchmark.md and PNG plots."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from baselines.config import SHUFFLED_SUFFIX
from baselines.stats import RESAMPLES, as_counts, bootstrap_ci, paired_test
from baselines.train import ROBUSTNESS, RunResult
from mmnerd.records import ENTITY_TYPES

METRICS: tuple[str, ...] = ("precision", "recall", "f1")


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}``; std is the sample std (0 for one value)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": 0.0, "std": 0.0, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "values": vals}


def _summarise(evals: list[dict[str, Any]], decided: Sequence[int] | None = None) -> dict[str, Any]:
    """Mean ± std of overall / per-language / per-type / image-decided P, R, F1; with per-post
    counts, 95% bootstrap intervals of F1 (``ci95``) overall and on the posts ``decided``."""
    if not evals or not evals[0]:
        return {}
    out: dict[str, Any] = {
        "overall": {m: mean_std([e["overall"][m] for e in evals]) for m in METRICS},
        "per_language": {},
        "per_type": {},
    }
    out["overall"]["support"] = evals[0]["overall"]["support"]
    for lang in evals[0]["per_language"]:
        out["per_language"][lang] = {
            m: mean_std([e["per_language"][lang][m] for e in evals]) for m in METRICS
        }
        out["per_language"][lang]["support"] = evals[0]["per_language"][lang]["support"]
    for t in evals[0]["per_type"]:
        out["per_type"][t] = {m: mean_std([e["per_type"][t][m] for e in evals]) for m in METRICS}
        out["per_type"][t]["support"] = evals[0]["per_type"][t]["support"]
    if all("image_decided" in e for e in evals):
        out["image_decided"] = {
            m: mean_std([e["image_decided"][m] for e in evals]) for m in METRICS
        }
        out["image_decided"]["support"] = evals[0]["image_decided"]["support"]
        if "posts" in evals[0]["image_decided"]:
            out["image_decided"]["posts"] = evals[0]["image_decided"]["posts"]
    if all(e.get("post_counts") for e in evals):
        counts = as_counts([e["post_counts"] for e in evals])
        out["overall"]["f1"]["ci95"] = bootstrap_ci(counts)
        out["overall"]["posts"] = int(counts.shape[1])
        if decided is not None and "image_decided" in out:
            out["image_decided"]["f1"]["ci95"] = bootstrap_ci(counts, decided)
    return out


def aggregate(runs: Sequence[RunResult], decided: Sequence[int] | None = None) -> dict[str, Any]:
    """Results by model name (plus ``<model>+shuffled_images`` for multimodal runs): mean ± std
    over seeds, 95% bootstrap intervals of F1 (overall and, with ``decided`` = the indices of
    the image-decided test posts, on those), and ``robustness`` (scores per image condition)."""
    by_model: dict[str, list[RunResult]] = {}
    for r in runs:
        by_model.setdefault(r.model, []).append(r)
    results: dict[str, Any] = {}
    for name, rs in by_model.items():
        results[name] = {
            "seeds": [r.seed for r in rs],
            "test": _summarise([r.test for r in rs], decided),
            "dev": {m: mean_std([r.dev["overall"][m] for r in rs if r.dev]) for m in METRICS},
            "best_epochs": [r.best_epoch for r in rs],
            "train_examples_per_s": mean_std([r.train_examples_per_s for r in rs]),
            "n_params": rs[0].n_params,
            "n_trainable": rs[0].n_trainable,
            "runs": [dataclasses.asdict(r) for r in rs],
        }
        conds = [c for c in ROBUSTNESS if all(c in r.test_robustness for r in rs)]
        if conds:
            results[name]["robustness"] = {
                c: _summarise([r.test_robustness[c] for r in rs], decided) for c in conds
            }
        shuffled = [r.test_shuffled for r in rs if r.test_shuffled]
        if shuffled:
            results[name + SHUFFLED_SUFFIX] = {
                "seeds": [r.seed for r in rs if r.test_shuffled],
                "test": _summarise(shuffled, decided),
                "note": f"checkpoints of {name}, test images shuffled among the posts that "
                "have one",
            }
    return results


COMPARISONS: tuple[tuple[str, str, str], ...] = (
    # (a, b, claim a > b, in words)
    ("mner2m", "concat_fusion", "2M-NER's claim: cross-attention + contrastive learning beat "
     "plain concatenation"),
    ("mner2m", "text_crf", "the image helps 2M-NER"),
    ("concat_fusion", "text_crf", "the image helps plain concatenation"),
    ("mner2m_gated", "mner2m", "the agreement gate improves on 2M-NER"),
    ("mner2m_gated", "concat_fusion", "the agreement gate improves on plain concatenation"),
    ("mner2m_gated", "text_crf", "the image helps the gated model"),
)  # fmt: skip
"""Model pairs compared by a paired bootstrap (when both ran), with right test images; each
multimodal model is also compared with ``text_crf`` when its test images are shuffled."""
ALPHA = 0.05


def run_counts(res: dict[str, Any], condition: str = "") -> np.ndarray | None:
    """Per-post counts ``[S, N, 3]`` of a model's runs on test (``condition``: one of
    :data:`ROBUSTNESS`; a text-only model's predictions do not depend on images, so its test
    counts stand for every condition).  None if a run has no counts."""
    rows = []
    for r in res.get("runs") or []:
        ev = r.get("test") or {}
        if condition and r.get("test_robustness"):
            ev = r["test_robustness"].get(condition) or {}
        if not ev.get("post_counts"):
            return None
        rows.append(ev["post_counts"])
    return as_counts(rows) if rows else None


def verdict(test: dict[str, Any] | None, not_worse: bool = False) -> str:
    """One phrase: does the paired test support the claim "A better than B" (``not_worse``:
    "A not worse than B")?"""
    if not test:
        return "not tested"
    significant = test["p"] < ALPHA
    if not_worse:
        if significant and test["diff"] < 0:
            return "fails: significantly worse"
        return "holds (A ≥ B)" if test["diff"] >= 0 else "holds (not significantly worse)"
    if significant:
        return "holds here" if test["diff"] > 0 else "reversed here (significantly worse)"
    return "not shown here (difference within noise)"


def comparisons(results: dict[str, Any], decided: Sequence[int] | None) -> list[dict[str, Any]]:
    """Paired bootstrap tests (:func:`baselines.stats.paired_test`) of the pairs of
    :data:`COMPARISONS`, then each multimodal model with shuffled test images vs ``text_crf``,
    on all test posts and on the image-decided ones."""
    out: list[dict[str, Any]] = []
    pairs = [(a, "", b, claim) for a, b, claim in COMPARISONS]
    for name, res in results.items():
        if res.get("robustness") and "text_crf" in results:
            claim = f"with shuffled images, {name} is not worse than the text-only model"
            pairs.append((name, "replaced_100", "text_crf", claim))
    for a, cond, b, claim in pairs:
        if a not in results or b not in results:
            continue
        ca, cb = run_counts(results[a], cond), run_counts(results[b], cond)
        if ca is None or cb is None or ca.shape[1] != cb.shape[1]:
            continue
        row: dict[str, Any] = {"a": a, "b": b, "condition": cond or "test", "claim": claim}
        row["all"] = paired_test(ca, cb)
        row["image_decided"] = paired_test(ca, cb, decided) if decided else None
        row["verdict"] = verdict(row["all"], bool(cond))
        row["verdict_image_decided"] = verdict(row["image_decided"], bool(cond))
        out.append(row)
    return out


def _fmt(ms: dict[str, Any] | None, n_seeds: int) -> str:
    if not ms:
        return "–"
    mean = 100 * ms["mean"]
    return f"{mean:.2f} ± {100 * ms['std']:.2f}" if n_seeds > 1 else f"{mean:.2f}"


def _ci(ms: dict[str, Any] | None) -> str:
    ci = (ms or {}).get("ci95")
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "–"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(cells: Sequence[str]) -> list[str]:
    return [_row(cells), "|" + "---|" * len(cells)]


def _first(results: dict[str, Any], *path: str) -> Any:
    """The first model's value at ``test/<path>`` (supports are the same for every model)."""
    for res in results.values():
        v: Any = res.get("test") or {}
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            return v
    return None


def _n(support: Any, posts: Any = None) -> str:
    if support is None:
        return ""
    return f" (n={support}" + (f", {posts} posts)" if posts is not None else ")")


def headline(report: dict[str, Any]) -> str:
    """All posts, image-decided posts and shuffled images side by side, with supports (gold
    entities) and 95% bootstrap intervals of F1 (markdown)."""
    results = report["results"]
    n = len(report["seeds"])
    dec = _first(results, "image_decided") or {}
    has_dec = bool(dec)
    head = ["Model", f"F1 all{_n(_first(results, 'overall', 'support'))}", "95% CI"]
    if has_dec:
        head += [f"F1 image-decided{_n(dec.get('support'), dec.get('posts'))}", "95% CI"]
    has_sh = any(k.endswith(SHUFFLED_SUFFIX) for k in results)
    if has_sh:
        head += ["F1 shuffled images"] + (["F1 shuffled, image-decided"] if has_dec else [])
    lines = _head(head)
    for name, res in results.items():
        t = res.get("test") or {}
        if not t or name.endswith(SHUFFLED_SUFFIX):
            continue
        cells = [name, _fmt(t["overall"]["f1"], n), _ci(t["overall"]["f1"])]
        if has_dec:
            d = (t.get("image_decided") or {}).get("f1")
            cells += [_fmt(d, n), _ci(d)]
        if not has_sh:
            lines.append(_row(cells))
            continue
        sh = (results.get(name + SHUFFLED_SUFFIX) or {}).get("test") or {}
        if not res.get("robustness") and not sh:
            sh = t  # a text-only model: images change nothing
            mark = " (no image)"
        else:
            mark = ""
        cells.append(_fmt((sh.get("overall") or {}).get("f1"), n) + mark if sh else "–")
        if has_dec:
            d = (sh.get("image_decided") or {}).get("f1") if sh else None
            cells.append(_fmt(d, n) + mark if d else "–")
        lines.append(_row(cells))
    return "\n".join(lines)


def tables(report: dict[str, Any]) -> str:
    """The result tables (markdown): headline (all / image-decided / shuffled, with intervals),
    overall + per language, per type; supports in the headers."""
    results = report["results"]
    langs = report["languages"]
    n = len(report["seeds"])
    lang_n = {g: _first(results, "per_language", g, "support") for g in langs}
    head = ["Model", "P", "R", "F1", *[f"F1 {g}{_n(lang_n[g])}" for g in langs]]
    lines = [headline(report), "", *_head(head)]
    for name, res in results.items():
        t = res.get("test") or {}
        if not t:
            continue
        cells = [name] + [_fmt(t["overall"][m], n) for m in METRICS]
        cells += [_fmt(t["per_language"].get(lang, {}).get("f1"), n) for lang in langs]
        lines.append(_row(cells))
    dec = _first(results, "image_decided") or {}
    type_n = {t: _first(results, "per_type", t, "support") for t in ENTITY_TYPES}
    head2 = ["Model", *[f"F1 {t}{_n(type_n[t])}" for t in ENTITY_TYPES]]
    if dec:
        head2.append(f"F1 image-decided{_n(dec.get('support'), dec.get('posts'))}")
    lines += ["", *_head(head2)]
    for name, res in results.items():
        t = res.get("test") or {}
        if not t:
            continue
        cells = [name] + [_fmt(t["per_type"].get(ty, {}).get("f1"), n) for ty in ENTITY_TYPES]
        if dec:
            cells.append(_fmt(t.get("image_decided", {}).get("f1"), n))
        lines.append(_row(cells))
    return "\n".join(lines)


CONDITION_NAMES: dict[str, str] = {
    "test": "0% replaced",
    "replaced_25": "25% replaced",
    "replaced_50": "50% replaced",
    "replaced_100": "100% (shuffled)",
    "blank": "blank",
    "noise": "noise",
}


def robustness_tables(report: dict[str, Any]) -> str:
    """F1 per test-image condition (:data:`baselines.train.ROBUSTNESS`), all posts and
    image-decided posts (markdown); text-only models repeat their score (they see no image)."""
    results = {k: v for k, v in report["results"].items() if not k.endswith(SHUFFLED_SUFFIX)}
    if not any(r.get("robustness") for r in results.values()):
        return ""
    n = len(report["seeds"])
    out: list[str] = []
    dec = _first(results, "image_decided") or {}
    parts = [("overall", f"All test posts{_n(_first(results, 'overall', 'support'))}")]
    if dec:
        parts.append(
            ("image_decided", f"Image-decided posts{_n(dec['support'], dec.get('posts'))}")
        )
    for key, title in parts:
        out += [f"{title}, F1 (%):", "", *_head(["Model", *CONDITION_NAMES.values()])]
        for name, res in results.items():
            t = res.get("test") or {}
            if not t:
                continue
            rob = res.get("robustness") or {}
            cells = [name + ("" if rob else " (text only)")]
            for cond in CONDITION_NAMES:
                ev = t if cond == "test" or not rob else rob.get(cond) or {}
                cells.append(_fmt((ev.get(key) or {}).get("f1"), n))
            out.append(_row(cells))
        out.append("")
    return "\n".join(out).rstrip()


def _pct(d: float) -> str:
    return f"{100 * d:+.1f}"


def comparison_table(report: dict[str, Any]) -> str:
    """The paired tests of :func:`comparisons` (markdown): difference of F1 (points), its 95%
    interval and p, on all posts and image-decided posts, with a verdict."""
    rows = report.get("comparisons") or []
    if not rows:
        return ""
    has_dec = any(r.get("image_decided") for r in rows)
    head = ["A vs B", "test images", "ΔF1 all [95% CI]", "p"]
    head += ["ΔF1 image-decided [95% CI]", "p"] if has_dec else []
    head += ["claim", "verdict (all / image-decided)"]
    lines = _head(head)
    for r in rows:
        cells = [f"{r['a']} vs {r['b']}", "shuffled" if r["condition"] != "test" else "right"]
        for key in ("all", "image_decided") if has_dec else ("all",):
            t = r.get(key)
            if t:
                ci = t["ci95"]
                cells += [f"{_pct(t['diff'])} [{_pct(ci[0])}, {_pct(ci[1])}]", f"{t['p']:.3f}"]
            else:
                cells += ["–", "–"]
        v = r["verdict"] + (f" / {r['verdict_image_decided']}" if has_dec else "")
        cells += [r["claim"], v]
        lines.append(_row(cells))
    return "\n".join(lines)


def _section(title: str, note: str, body: str, *more: str) -> list[str]:
    """A markdown section, or nothing when ``body`` is empty."""
    if not body:
        return []
    return [f"## {title}", "", note, "", body, *more, ""]


def random_encoder_warning(report: dict[str, Any]) -> list[str]:
    """A warning block when every encoder is randomly initialised (none loaded from a path)."""
    enc = report.get("encoders") or {}
    if any(enc.get(k) for k in ("text", "vit", "cnn")):
        return []
    return ["", f"> **Warning:** {RANDOM_WARNING}"]


RANDOM_WARNING = (
    "every encoder here is randomly initialised (no --text-encoder, --vit, --cnn): the scores "
    "test the pipeline and the models' ability to learn this export from scratch; they say "
    "nothing about 2M-NER with pretrained mBERT, CLIP and ResNet on real posts."
)


def claim_lines(report: dict[str, Any]) -> list[str]:
    """A sentence on 2M-NER's claim over concatenation, whatever the outcome."""
    for r in report.get("comparisons") or []:
        if (r["a"], r["b"], r["condition"]) != ("mner2m", "concat_fusion", "test"):
            continue
        t = r["all"]
        text = (
            f"2M-NER's claim that cross-attention and contrastive learning beat plain "
            f"concatenation: **{r['verdict']}** on all test posts (ΔF1 {_pct(t['diff'])} "
            f"points, 95% CI [{_pct(t['ci95'][0])}, {_pct(t['ci95'][1])}], p = {t['p']:.3f})"
        )
        d = r.get("image_decided")
        if d:
            text += (
                f"; **{r['verdict_image_decided']}** on image-decided posts (ΔF1 "
                f"{_pct(d['diff'])}, p = {d['p']:.3f})"
            )
        return ["", text + "."]
    return []


CROSS_NOTE = (
    "Train (and select epochs on dev) in the languages of a row only; test F1 per language. "
    "`*` marks a language seen in training; the other cells are zero-shot transfer. Mean ± std "
    "over seeds."
)


def cross_lingual_tables(report: dict[str, Any]) -> str:
    """One table per model: rows = training languages, columns = test languages (markdown)."""
    cl = report.get("cross_lingual") or {}
    if not cl.get("results"):
        return ""
    langs = report["languages"]
    n = len(report["seeds"])
    out: list[str] = []
    for model, by_train in cl["results"].items():
        out += [f"`{model}`, test F1 (%):", "", *_head(["trained on", *langs])]
        for train, res in by_train.items():
            seen = set(train.split("+"))
            cells = [train]
            for g in langs:
                f1 = (((res.get("test") or {}).get("per_language") or {}).get(g) or {}).get("f1")
                cells.append(_fmt(f1, n) + (" *" if g in seen else ""))
            out.append(_row(cells))
        out.append("")
    return "\n".join(out).rstrip()


MASKING_NOTE = (
    "Posts without an image are masked in the multimodal models, never given blank pixels: "
    "the image encoders do not see them, their cross-attention outputs (concat_fusion: "
    "pooled image vectors) enter the fusion as zeros, and NT-Xent leaves them out."
)


def coverage(s: dict[str, Any]) -> tuple[str, str]:
    """``("120 (75.0%)", "40 (25.0%)")``: posts of a split with and without an image."""
    return (
        f"{s['with_image']} ({s['with_image_pct']:.1f}%)",
        f"{s['without_image']} ({s['without_image_pct']:.1f}%)",
    )


def coverage_line(split: str, s: dict[str, Any]) -> str:
    """One log line of a split's size and image coverage."""
    yes, no = coverage(s)
    return f"data: {split}: {s['sentences']} posts, {yes} with an image, {no} without"


def images_section(report: dict[str, Any]) -> list[str]:
    """Markdown lines: how missing images were handled, skipped models, shuffled control."""
    img = report.get("images") or {}
    test = report["data"]["test"]
    out = [
        f"- {img.get('note', MASKING_NOTE)}",
        f"- test: {test['without_image']} of {test['sentences']} posts "
        f"({test['without_image_pct']:.1f}%) have no image.",
    ]
    out += [f"- {name} skipped: {why}" for name, why in report.get("skipped", {}).items()]
    if img.get("shuffled_control"):
        out.append(f"- `*{SHUFFLED_SUFFIX}`: {img['shuffled_control']}.")
    return out


def markdown(report: dict[str, Any]) -> str:
    """benchmark.md: setup, data (with image coverage), images (masking, skipped models),
    result tables, epoch selection, plots."""
    n = len(report["seeds"])
    out = [
        "# MMNERD benchmark",
        "",
        f"- export: `{report['export']}`",
        f"- mode: {report['mode']}; seeds: {', '.join(map(str, report['seeds']))}; "
        f"epochs: {report['epochs']}; created: {report['created_at']}",
        f"- text encoder: `{report['encoders']['text'] or 'tiny random BERT + WordPiece'}`; "
        f"ViT: `{report['encoders']['vit'] or 'tiny random CLIP ViT'}`; "
        f"CNN: `{report['encoders']['cnn'] or 'tiny random ResNet'}`",
        *random_encoder_warning(report),
        "",
        "## Data",
        "",
        "| split | sentences | tokens | entities | with image | without image | languages |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("train", "dev", "test"):
        s = report["data"][split]
        langs = ", ".join(f"{k} {v}" for k, v in s["languages"].items())
        name = split
        if s.get("file") and s["file"] != f"{split}.parquet":
            name = f"{split} (`{s['file']}`)"
        yes, no = coverage(s)
        out.append(
            f"| {name} | {s['sentences']} | {s['tokens']} | {s['entities']} | {yes} | {no} "
            f"| {langs} |"
        )
    shuffled = any(k.endswith(SHUFFLED_SUFFIX) for k in report["results"])
    out += [
        "",
        "## Images",
        "",
        *images_section(report),
        "",
        "## Test results",
        "",
        "Entity-level precision / recall / F1 (seqeval, strict IOB2, micro), in %, "
        + (f"mean ± std over {n} seeds." if n > 1 else "one seed.")
        + " Epochs selected on dev; test evaluated once per run."
        + (
            f" `*{SHUFFLED_SUFFIX}`: the same checkpoints with test images shuffled among the"
            " posts that have one."
            if shuffled
            else ""
        ),
        "",
        tables(report),
        "",
        *_section(
            "Robustness to wrong or missing images",
            "The selected checkpoints evaluated again with test images replaced: for 25, 50 or "
            "100% of the posts that have one (each gets another test post's image), by a blank "
            "(uniform grey) image, or by uniform noise. Mean ± std over seeds; plot "
            "`plots/robustness.png`.",
            robustness_tables(report),
        ),
        *_section(
            "Comparisons (paired bootstrap over test posts)",
            f"ΔF1 = F1(A) − F1(B) in points, mean over seeds; {RESAMPLES} resamples of the test "
            "posts (the same posts for both models and every seed); 95% percentile interval; "
            f"p two-sided; verdicts at p < {ALPHA}. These intervals cover the finite test set, "
            "not the seeds (see ± std above).",
            comparison_table(report),
            *claim_lines(report),
        ),
        *_section("Cross-lingual transfer", CROSS_NOTE, cross_lingual_tables(report)),
        "## Epoch selection (dev)",
        "",
        "| Model | dev F1 | best epochs | train examples/s | parameters (trainable) |",
        "|---|---|---|---|---|",
    ]
    for name, res in report["results"].items():
        if "dev" not in res:
            continue
        out.append(
            f"| {name} | {_fmt(res['dev']['f1'], n)} | {res['best_epochs']} | "
            f"{res['train_examples_per_s']['mean']:.1f} | {res['n_params']:,} "
            f"({res['n_trainable']:,}) |"
        )
    if report.get("plots"):
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]]
    return "\n".join(out) + "\n"


def plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """f1_per_language.png, f1_per_type.png, learning_curves.png; returns relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {k: v for k, v in report["results"].items() if v.get("test")}
    if not results:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for fname, key, cats in (
        ("f1_per_language.png", "per_language", report["languages"]),
        ("f1_per_type.png", "per_type", list(ENTITY_TYPES)),
    ):
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cats) + 2), 4))
        width = 0.8 / max(1, len(results))
        for i, (name, res) in enumerate(results.items()):
            vals = [100 * res["test"][key].get(c, {}).get("f1", {}).get("mean", 0.0) for c in cats]
            errs = [100 * res["test"][key].get(c, {}).get("f1", {}).get("std", 0.0) for c in cats]
            xs = [j + i * width for j in range(len(cats))]
            ax.bar(xs, vals, width, yerr=errs, label=name, capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cats))], cats)
        ax.set_ylabel("test F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"Test F1 per {'language' if key == 'per_language' else 'entity type'}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=100)
        plt.close(fig)
        written.append(fname)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, res in results.items():
        runs = res.get("runs") or []
        if not runs:
            continue
        epochs = [h["epoch"] for h in runs[0]["history"]]
        dev = [
            statistics.fmean(r["history"][i]["dev_f1"] for r in runs) for i in range(len(epochs))
        ]
        loss = [
            statistics.fmean(r["history"][i].get("loss", math.nan) for r in runs)
            for i in range(len(epochs))
        ]
        ax1.plot(epochs, [100 * v for v in dev], marker="o", label=name)
        ax2.plot(epochs, loss, marker="o", label=name)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("dev F1 (%)")
    ax1.set_title("Dev F1 (mean over seeds)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss")
    ax2.set_title("Training loss (mean over seeds)")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "learning_curves.png", dpi=100)
    plt.close(fig)
    written.append("learning_curves.png")
    if robustness_plot(report, out_dir / "robustness.png"):
        written.append("robustness.png")
    return written


def robustness_plot(report: dict[str, Any], path: Path) -> bool:
    """F1 against the share of replaced test images (0-100%), then blank and noise images; all
    posts and image-decided posts; text-only models as dashed lines.  False: nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {
        k: v
        for k, v in report["results"].items()
        if v.get("test") and not k.endswith(SHUFFLED_SUFFIX)
    }
    if not any(r.get("robustness") for r in results.values()):
        return False
    conds = list(CONDITION_NAMES)
    xs = [0, 25, 50, 100, 125, 150]
    keys = ["overall"] + (["image_decided"] if _first(results, "image_decided") else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, res in results.items():
            rob = res.get("robustness") or {}
            evs = [res["test"] if c == "test" or not rob else rob.get(c, {}) for c in conds]
            f1s = [(ev.get(key) or {}).get("f1") or {} for ev in evs]
            ys = [100 * f.get("mean", math.nan) for f in f1s]
            es = [100 * f.get("std", 0.0) for f in f1s]
            if rob:
                line = ax.errorbar(xs[:4], ys[:4], yerr=es[:4], marker="o", capsize=2, label=name)
                color = line[0].get_color()
                ax.errorbar(xs[4:], ys[4:], yerr=es[4:], fmt="s", capsize=2, color=color)
            else:
                ax.axhline(ys[0], linestyle="--", color="grey", label=f"{name} (text only)")
        ax.set_xticks(xs, ["0%", "25%", "50%", "100%", "blank", "noise"])
        ax.axvline(112.5, color="lightgrey", linewidth=0.8)
        ax.set_xlabel("test images replaced by another post's")
        ax.set_ylabel("test F1 (%)")
        ax.set_ylim(0, 100)
        ax.set_title("All test posts" if key == "overall" else "Image-decided posts")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
