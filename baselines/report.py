"""Aggregate runs over seeds (mean ± std) into benchmark.json, benchmark.md and PNG plots."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baselines.config import SHUFFLED_SUFFIX
from baselines.train import RunResult
from mmnerd.records import ENTITY_TYPES

METRICS: tuple[str, ...] = ("precision", "recall", "f1")


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}``; std is the sample std (0 for one value)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": 0.0, "std": 0.0, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "values": vals}


def _summarise(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std of overall / per-language / per-type / image-decided P, R, F1."""
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
    return out


def aggregate(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Results by model name (plus ``<model>+shuffled_images`` for multimodal runs)."""
    by_model: dict[str, list[RunResult]] = {}
    for r in runs:
        by_model.setdefault(r.model, []).append(r)
    results: dict[str, Any] = {}
    for name, rs in by_model.items():
        results[name] = {
            "seeds": [r.seed for r in rs],
            "test": _summarise([r.test for r in rs]),
            "dev": {m: mean_std([r.dev["overall"][m] for r in rs if r.dev]) for m in METRICS},
            "best_epochs": [r.best_epoch for r in rs],
            "train_examples_per_s": mean_std([r.train_examples_per_s for r in rs]),
            "n_params": rs[0].n_params,
            "n_trainable": rs[0].n_trainable,
            "runs": [dataclasses.asdict(r) for r in rs],
        }
        shuffled = [r.test_shuffled for r in rs if r.test_shuffled]
        if shuffled:
            results[name + SHUFFLED_SUFFIX] = {
                "seeds": [r.seed for r in rs if r.test_shuffled],
                "test": _summarise(shuffled),
                "note": f"checkpoints of {name}, test images shuffled among the posts that "
                "have one",
            }
    return results


def _fmt(ms: dict[str, Any] | None, n_seeds: int) -> str:
    if not ms:
        return "–"
    mean = 100 * ms["mean"]
    return f"{mean:.2f} ± {100 * ms['std']:.2f}" if n_seeds > 1 else f"{mean:.2f}"


def tables(report: dict[str, Any]) -> str:
    """The two result tables (markdown): overall + per language, and per type."""
    results = report["results"]
    langs = report["languages"]
    n = len(report["seeds"])
    head = ["Model", "P", "R", "F1", *[f"F1 {lang}" for lang in langs]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        t = res.get("test") or {}
        if not t:
            continue
        cells = [name] + [_fmt(t["overall"][m], n) for m in METRICS]
        cells += [_fmt(t["per_language"].get(lang, {}).get("f1"), n) for lang in langs]
        lines.append("| " + " | ".join(cells) + " |")
    has_img = any("image_decided" in (r.get("test") or {}) for r in results.values())
    head2 = ["Model", *[f"F1 {t}" for t in ENTITY_TYPES]] + (
        ["F1 image-decided"] if has_img else []
    )
    lines += ["", "| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
    for name, res in results.items():
        t = res.get("test") or {}
        if not t:
            continue
        cells = [name] + [_fmt(t["per_type"].get(ty, {}).get("f1"), n) for ty in ENTITY_TYPES]
        if has_img:
            cells.append(_fmt(t.get("image_decided", {}).get("f1"), n))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    return written
