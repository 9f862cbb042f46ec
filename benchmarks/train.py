"""Training throughput (examples/s) and peak RSS of the baselines, with and without the cache of
frozen image-encoder features.

    .venv/bin/python benchmarks/train.py                       # tiny configs (~1 minute)
    .venv/bin/python benchmarks/train.py --sizes tiny,base     # + paper-sized random encoders

Each variant runs in its own process (clean peak RSS) on a synthetic export
(:mod:`baselines.synthetic`); results go to ``benchmarks/results/train.json`` and a table on
stdout.  ``train ex/s`` counts training steps only (no evaluation, no feature caching);
``ex/CPU-s`` divides by the process's CPU time in training steps (steadier than wall time on a
shared machine); ``cache s`` is the one-off time to encode every image with the frozen
encoders; ``load`` is the machine's 1-minute load average during the run.
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

VARIANTS: dict[str, list[dict[str, Any]]] = {
    "tiny": [
        {"model": "text_crf", "cache": True},
        {"model": "bilstm_crf", "cache": True},
        {"model": "mner2m", "cache": True},
        {"model": "mner2m", "cache": False},
        {"model": "mner2m", "cache": True, "overrides": {"freeze_vit": True}},
        {"model": "mner2m", "cache": False, "overrides": {"freeze_vit": True}},
    ],
    "base": [
        {"model": "text_crf", "cache": True},
        {"model": "mner2m", "cache": True},
        {"model": "mner2m", "cache": False},
        {"model": "mner2m", "cache": True, "overrides": {"freeze_vit": True}},
        {"model": "mner2m", "cache": True, "threads": 2},
    ],
}
SETTINGS: dict[str, dict[str, Any]] = {
    "tiny": {"preset": "tiny", "sizes": [256, 32, 32], "image": 64, "batch": 16, "epochs": 3},
    "base": {"preset": "base", "sizes": [32, 8, 8], "image": 224, "batch": 8, "epochs": 1},
}
"""Per size; every variant runs with 1 torch thread unless it sets ``threads``."""


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
        write_synthetic_export(tmp, sizes, seed=0, image_size=spec["image"])
        prep = prepare(load_export(tmp), vocab_size=PRESETS[spec["preset"]].get("vocab_size", 2000))
        mcfg = model_config_for(spec["model"], **PRESETS[spec["preset"]], **spec["overrides"])
        tcfg = TrainConfig(
            epochs=spec["epochs"],
            batch_size=spec["batch"],
            lr=1e-3,
            num_threads=spec["threads"],
            cache_frozen_features=spec["cache"],
            shuffled_image_eval=False,
        )
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_run(mcfg, tcfg, prep, None, log)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    best_epoch_s = min(h["seconds"] for h in res.history)
    train_cpu = sum(h["cpu_seconds"] for h in res.history)
    return {
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


def run(sizes: list[str], out: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for v in VARIANTS[size]:
            spec = {**SETTINGS[size], "threads": 1, "overrides": {}, **v}
            label = v["model"] + (" frozen-ViT" if spec["overrides"].get("freeze_vit") else "")
            cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{size} {label}: failed\n{r.stderr[-1500:]}", file=sys.stderr)
                continue
            row = {"size": size, "variant": label, "cache": spec["cache"], **spec,
                   **json.loads(r.stdout.strip().splitlines()[-1])}  # fmt: skip
            rows.append(row)
            print(_line(row), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def _line(r: dict[str, Any]) -> str:
    return (
        f"| {r['size']} | {r['variant']} | {'on' if r['cache'] else 'off'} | {r['batch']} | "
        f"{r['threads']} | {r['train_examples_per_s']:.1f} | "
        f"{r['best_epoch_examples_per_s']:.1f} | {r['train_examples_per_cpu_s']:.1f} | "
        f"{r['cache_seconds']:.1f} | "
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
    print("| size | model | feature cache | batch | threads | train ex/s | best epoch ex/s "
          "| ex/CPU-s | cache s | CPU s | load | peak RSS MB | params (trainable) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    run([s.strip() for s in args.sizes.split(",") if s.strip()], Path(args.out))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
