"""Training throughput (examples/s) and peak RSS of the baselines: with and without the cache of
frozen image-encoder features, length bucketing and bf16 autocast.

    .venv/bin/python benchmarks/train.py                       # tiny configs (~1.5 minutes)
    .venv/bin/python benchmarks/train.py --sizes tiny,base     # + paper-sized random encoders

Each variant runs in its own process (clean peak RSS) on a synthetic export
(:mod:`baselines.synthetic`, posts of varied length: 3-40 words, <= 48 sub-words); results go
to ``benchmarks/results/train.json`` and a table on stdout.

- ``train ex/s``: training steps only (no evaluation, no feature caching);
- ``x no-cache``: speed-up over the same variant without the feature cache;
- ``x ref``: speed-up over the size's reference variant (frozen ViT + ResNet run live, no
  bucketing, float32: the issue's "straightforward implementation");
- ``ex/CPU-s``: per CPU second of the process in training steps (steadier than wall time on a
  shared machine);
- ``cache s``: one-off time to encode every image with the frozen encoders;
- ``load``: the machine's 1-minute load average during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

FROZEN = {"freeze_vit": True}
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "tiny": [
        {"model": "text_crf", "cache": True},
        {"model": "bilstm_crf", "cache": True},
        {"model": "mner2m", "cache": True},
        {"model": "mner2m", "cache": False},
        {"model": "mner2m", "cache": False, "overrides": FROZEN, "bucket": False, "ref": True},
        {"model": "mner2m", "cache": True, "overrides": FROZEN, "bucket": False},
        {"model": "mner2m", "cache": True, "overrides": FROZEN},
        {"model": "mner2m", "cache": True, "overrides": FROZEN, "bf16": True},
    ],
    "base": [
        {"model": "text_crf", "cache": True},
        {"model": "mner2m", "cache": True},
        {"model": "mner2m", "cache": False},
        # the issue's comparison: frozen ViT + ResNet run live (no_grad) vs cached, each
        # factor added one at a time: cache, then length bucketing, then bf16 autocast
        {"model": "mner2m", "cache": False, "overrides": FROZEN, "bucket": False, "ref": True},
        {"model": "mner2m", "cache": True, "overrides": FROZEN, "bucket": False},
        {"model": "mner2m", "cache": True, "overrides": FROZEN},
        {"model": "mner2m", "cache": True, "overrides": FROZEN, "bf16": True},
    ],
}
SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "sizes": [256, 32, 32], "image": 64, "batch": 16, "epochs": 3},
    "base": {"preset": "base", "sizes": [48, 8, 8], "image": 224, "batch": 8, "epochs": 1},
}
"""Per size.  Every variant: 1 torch thread, length bucketing on, float32, unless it sets
``threads``, ``bucket`` or ``bf16``; posts of 3-``MAX_WORDS`` words cut at ``MAX_LENGTH``."""
MAX_WORDS = 40
MAX_LENGTH = 48
DEFAULTS: dict[str, Any] = {"threads": 1, "overrides": {}, "bucket": True, "bf16": False}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one variant in this process; returns its measurements."""
    import torch

    from baselines.config import PRESETS, TrainConfig, model_config_for
    from baselines.data import load_export
    from baselines.synthetic import write_synthetic_export
    from baselines.train import prepare, train_run

    torch.set_num_threads(spec["threads"])
    cache_secs: list[float] = []

    def log(msg: str) -> None:
        m = re.search(r"cached \w+ features of \d+ images in ([\d.]+)s", msg)
        if m:
            cache_secs.append(float(m.group(1)))

    with tempfile.TemporaryDirectory() as tmp:
        n_train, n_dev, n_test = spec["sizes"]
        sizes = {"train": n_train, "dev": n_dev, "test": n_test}
        write_synthetic_export(tmp, sizes, seed=0, image_size=spec["image"], max_words=MAX_WORDS)
        prep = prepare(load_export(tmp), vocab_size=PRESETS[spec["preset"]].get("vocab_size", 2000))
        overrides = {**PRESETS[spec["preset"]], "max_length": MAX_LENGTH, **spec["overrides"]}
        mcfg = model_config_for(spec["model"], **overrides)
        tcfg = TrainConfig(
            epochs=spec["epochs"],
            batch_size=spec["batch"],
            lr=1e-3,
            num_threads=spec["threads"],
            cache_frozen_features=spec["cache"],
            bucket_by_length=spec["bucket"],
            bf16=spec["bf16"],
            device="cpu",
            shuffled_image_eval=False,
        )
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_run(mcfg, tcfg, prep, None, log)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    best_epoch_s = min(h["seconds"] for h in res.history)
    train_cpu = sum(h["cpu_seconds"] for h in res.history)
    enc = prep.encodings("train", mcfg.encoder, mcfg.max_length)
    return {
        "mean_train_length": round(sum(len(e.input_ids) for e in enc) / len(enc), 1),
        "max_train_length": max(len(e.input_ids) for e in enc),
        "train_examples_per_s": res.train_examples_per_s,
        "best_epoch_examples_per_s": round(n_train / best_epoch_s, 2),
        "cpu_seconds": round(cpu, 2),
        "train_examples_per_cpu_s": round(n_train * len(res.history) / train_cpu, 2),
        "load_avg_1m": round((load0 + os.getloadavg()[0]) / 2, 1),
        "train_seconds": res.train_seconds,
        "cache_seconds": round(sum(cache_secs), 2),
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "n_params": res.n_params,
        "n_trainable": res.n_trainable,
        "dev_f1_last": res.history[-1]["dev_f1"],
    }


def label(spec: dict[str, Any]) -> str:
    """``mner2m frozen-ViT`` etc.; bucketing off and bf16 on are named."""
    parts = [spec["model"]]
    if spec["overrides"].get("freeze_vit"):
        parts.append("frozen-ViT")
    if not spec["bucket"]:
        parts.append("no-bucket")
    if spec["bf16"]:
        parts.append("bf16")
    return " ".join(parts)


def speedups(rows: list[dict[str, Any]]) -> None:
    """Add ``x_no_cache`` (over the same variant without the cache) and ``x_ref`` (over the
    size's reference variant, for rows of the same model and encoders) to ``rows``, from
    train ex/s."""
    same = ("size", "model", "overrides", "threads", "bucket", "bf16")
    for r in rows:
        r["x_no_cache"] = r["x_ref"] = None
        off = [o for o in rows if not o["cache"] and all(o[k] == r[k] for k in same)]
        if r["cache"] and off and off[0]["train_examples_per_s"] > 0:
            r["x_no_cache"] = round(r["train_examples_per_s"] / off[0]["train_examples_per_s"], 2)
        ref = [o for o in rows if o["size"] == r["size"] and o.get("ref")]
        if (
            ref
            and ref[0]["train_examples_per_s"] > 0
            and all(r[k] == ref[0][k] for k in ("model", "overrides", "threads"))
        ):
            r["x_ref"] = round(r["train_examples_per_s"] / ref[0]["train_examples_per_s"], 2)


def run(sizes: list[str], out: Path, failed: list[str]) -> list[dict[str, Any]]:
    """Every variant in its own process; a variant that fails is named in ``failed`` (the
    script then exits 1) and left out of the table."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for v in VARIANTS[size]:
            spec = {**SETTINGS[size], **DEFAULTS, **v}
            cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{size} {label(spec)}: failed\n{r.stderr[-1500:]}", file=sys.stderr)
                failed.append(f"{size} {label(spec)}")
                continue
            row = {"size": size, "variant": label(spec), **spec,
                   **json.loads(r.stdout.strip().splitlines()[-1])}  # fmt: skip
            rows.append(row)
            speedups(rows)
            print(_line(row), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}x"


def _line(r: dict[str, Any]) -> str:
    return (
        f"| {r['size']} | {r['variant']} | {'on' if r['cache'] else 'off'} | {r['batch']} | "
        f"{r['threads']} | {r['train_examples_per_s']:.1f} | {_x(r['x_no_cache'])} | "
        f"{_x(r['x_ref'])} | {r['train_examples_per_cpu_s']:.1f} | {r['cache_seconds']:.1f} | "
        f"{r['cpu_seconds']:.1f} | {r['load_avg_1m']:.1f} | "
        f"{r['peak_rss_mb']:.0f} | {r['n_params'] / 1e6:.2f}M ({r['n_trainable'] / 1e6:.2f}M) |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="tiny", help="comma list of tiny,base")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    print("| size | variant | feature cache | batch | threads | train ex/s | x no-cache | x ref "
          "| ex/CPU-s | cache s | CPU s | load | peak RSS MB | params (trainable) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    failed: list[str] = []
    rows = run([s.strip() for s in args.sizes.split(",") if s.strip()], Path(args.out), failed)
    for r in rows:  # ratios against rows measured after them (the reference comes later)
        if r["x_no_cache"] is not None or r["x_ref"] is not None:
            print(f"{r['size']} {r['variant']} cache {'on' if r['cache'] else 'off'}: "
                  f"x no-cache {_x(r['x_no_cache'])}, x ref {_x(r['x_ref'])}")  # fmt: skip
    if failed:
        print(f"FAILED variants: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
