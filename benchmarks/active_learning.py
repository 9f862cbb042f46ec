"""Does Label Studio's uncertainty order save annotations?  A simulated study.

    python benchmarks/active_learning.py [--corpus sample,imgid] [--seeds 1,2,3] [--k 100]
        [--budget 1500] [--model bilstm_crf] [--strategies random,uncertainty,uncertainty-flat]
        [--work DIR] [--plot docs/img/active_learning.png]

Corpora (gold labels play the simulated annotators, who label exactly what they are served):

* ``sample``: the bundled synthetic sample (``pipelines/sample.toml``, ``--sample-posts``
  posts), collected, deduplicated and exported with its own gold labels.
* ``imgid``: a MMNERD-like IMGID corpus from ``benchmarks/imgid_corpus.py`` (``--imgid-posts``
  posts) imported as a user does (``pipelines/import-mmnerd.toml``: collect -> dedup ->
  export, ``export.labels = "source"``, the corpus's own splits).

The export's train split is the pool to annotate, dev calibrates the confidence and picks
the epoch, test scores every round.  Each (strategy, seed) starts from the same ``k`` random
posts; then, round after round, the model trained on what is labelled (``baselines``, from
scratch) tags the pool and ``k`` more posts are labelled, chosen by:

* ``random``: uniformly at random (what a project without predictions gets from "Uniform
  sampling");
* ``uncertainty``: what Label Studio's "Uncertainty sampling" serves one annotator, given the
  predictions ``mmnerd predict`` pushes: confidence = the CRF's probability of the whole
  predicted tagging (temperature fitted on dev), cluster = k-means of the posts' features
  (:func:`mmnerd.labelstudio.sampling.uncertainty_order`, checked against the real server
  by tests/labelstudio/test_sampling.py);
* ``uncertainty-flat``: the same confidence without clusters (lowest score first).

The full-data F1 is the same model trained on the whole pool (mean over seeds); the study
reports, per strategy, how many annotations each seed needed to reach 95% of it, and plots
test F1 against annotations (mean and min-max over seeds).  Results:
``benchmarks/results/active_learning.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, machine, markdown_table  # noqa: E402

TARGET = 0.95
MIN_STEPS = 400  # optimiser steps per training at least (small labelled sets get more epochs)


def _cli(args: list[str], cwd: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "mmnerd.cli", *args], cwd=cwd,
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"mmnerd {args[0]} failed: {res.stderr.strip().splitlines()[-1:]}")


def build_sample(work: Path, posts: int) -> Path:
    """The synthetic sample, exported with its gold labels (cached in ``work``)."""
    export = work / "sample" / "export"
    if (export / "test.parquet").exists():
        return export
    sets = ["--set", f'data_dir="{work / "sample"}"', "--set", f"source.posts={posts}",
            "--set", 'name="al-sample"', "--set", 'export.labels="source"']  # fmt: skip
    for command in ("collect", "dedup", "export"):
        _cli([command, "-p", str(ROOT / "pipelines" / "sample.toml"), *sets], ROOT)
    return export


def build_imgid(work: Path, posts: int, seed: int = 1) -> Path:
    """A MMNERD-like corpus imported through pipelines/import-mmnerd.toml (cached)."""
    export = work / "imgid" / "data" / "export"
    if (export / "test.parquet").exists():
        return export
    src = work / "imgid" / "src"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "imgid_corpus.py"), str(src),
                          "--posts", str(posts), "--layout", "mmnerd", "--seed", str(seed)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        raise SystemExit(f"imgid_corpus.py failed: {res.stderr[-500:]}")
    files = json.dumps([str(src / f"{s}_conll_format.txt") for s in ("train", "valid", "test")])
    sets = ["--set", f'data_dir="{work / "imgid" / "data"}"', "--set", f"source.files={files}"]
    for command in ("collect", "dedup", "export"):
        _cli([command, "-p", str(ROOT / "pipelines" / "import-mmnerd.toml"), *sets], ROOT)
    return export


class Trainer:
    """Train a baselines model on a subset of the pool; score posts with it."""

    def __init__(self, export: Path, model: str, epochs: int, lr: float, work: Path) -> None:
        import torch

        from baselines.data import load_export

        torch.set_num_threads(1)
        self.data = load_export(export)
        self.pool = self.data.splits["train"]
        self.model = model
        self.epochs = epochs
        self.lr = lr
        self.work = work
        self.trainings = 0
        self.train_seconds = 0.0

    def train(self, idx: list[int], seed: int) -> tuple[float, Any]:
        """(test F1, a Predictor calibrated on dev) of the model trained on ``pool[idx]``."""
        from baselines.config import TrainConfig, model_config_for
        from baselines.data import ExportData
        from baselines.predict import Predictor
        from baselines.train import prepare, train_run

        sub = ExportData(self.data.root, {"train": [self.pool[i] for i in idx],
                                          "dev": self.data.splits["dev"],
                                          "test": self.data.splits["test"]},
                         self.data.images)  # fmt: skip
        batches = math.ceil(len(idx) / 32)
        epochs = min(40, max(self.epochs, math.ceil(MIN_STEPS / batches)))
        tcfg = TrainConfig(epochs=epochs, batch_size=32, lr=self.lr, seed=seed,
                           shuffled_image_eval=False, log_every_s=1e9)  # fmt: skip
        ck = self.work / "ck"
        shutil.rmtree(ck, ignore_errors=True)
        t0 = time.perf_counter()
        res = train_run(model_config_for(self.model), tcfg, prepare(sub), ck,
                        log=lambda m: None)  # fmt: skip
        self.train_seconds += time.perf_counter() - t0
        self.trainings += 1
        tagger = Predictor.load(res.checkpoint, "cpu")
        tagger.calibrate(self.data.splits["dev"], self.data.images)
        return float(res.test["overall"]["f1"]), tagger

    def scores(self, tagger: Any, clusters: int) -> tuple[list[float], list[int | None]]:
        """Calibrated confidence and cluster of every pool post (``mmnerd predict``)."""
        from baselines.predict import confidences, kmeans

        scored = tagger.score(self.pool, self.data.images)
        conf = [float(c) for c in confidences(tagger.model, scored, tagger.temperature)]
        if clusters < 0:
            return conf, [None] * len(conf)
        k = clusters or min(16, max(1, len(conf) // 50))
        return conf, [int(c) for c in kmeans(scored.features, k)]


def run_curve(tr: Trainer, strategy: str, seed: int, k: int, budget: int, clusters: int,
              log: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Rounds of ``k`` annotations up to ``budget``: [{annotations, f1}]."""
    from mmnerd.labelstudio.sampling import uncertainty_order

    rng = random.Random(seed)
    n = len(tr.pool)
    labelled = rng.sample(range(n), min(k, n))  # the same first round for every strategy
    curve = []
    while True:
        f1, tagger = tr.train(labelled, seed)
        curve.append({"annotations": len(labelled), "f1": round(f1, 4)})
        log(f"  {strategy} seed {seed}: {len(labelled)} annotations -> test F1 {f1:.4f}")
        if len(labelled) >= min(budget, n):
            return curve
        done = set(labelled)
        rest = [i for i in range(n) if i not in done]
        want = min(k, len(rest), budget - len(labelled))
        if strategy == "random":
            labelled += rng.sample(rest, want)
            continue
        conf, cluster = tr.scores(tagger, -1 if strategy == "uncertainty-flat" else clusters)
        solved = Counter(cluster[i] for i in labelled)  # LS counts the annotator's clusters
        order = uncertainty_order(((i, conf[i], cluster[i]) for i in rest), solved)
        labelled += [next(order) for _ in range(want)]


def first_reaching(curve: list[dict[str, Any]], target: float) -> int | None:
    return next((p["annotations"] for p in curve if p["f1"] >= target), None)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(result["corpora"])
    fig, axes = plt.subplots(1, len(corpora), figsize=(6.2 * len(corpora), 4.4), squeeze=False)
    colours = {"random": "#868e96", "uncertainty": "#1c7ed6", "uncertainty-flat": "#f08c00"}
    for ax, name in zip(axes[0], corpora, strict=True):
        c = result["corpora"][name]
        for strategy, curves in c["curves"].items():
            xs = [p["annotations"] for p in curves[0]]
            ys = [[cv[j]["f1"] for cv in curves] for j in range(len(xs))]
            mean = [sum(v) / len(v) for v in ys]
            ax.plot(xs, mean, label=strategy, color=colours.get(strategy), lw=2)
            ax.fill_between(xs, [min(v) for v in ys], [max(v) for v in ys],
                            color=colours.get(strategy), alpha=0.15)  # fmt: skip
        ax.axhline(c["full_f1"], color="black", lw=1, ls=":", label="all of the pool")
        ax.axhline(c["target_f1"], color="black", lw=1, ls="--", label="95% of it")
        ax.set_title(f"{name}: pool {c['pool']} posts, test {c['test']}, {c['model']}")
        ax.set_xlabel("annotations (posts labelled)")
        ax.set_ylabel("test entity F1")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="sample,imgid")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--k", default="sample=100,imgid=50", help="annotations per round, per corpus")
    ap.add_argument("--budget", default="sample=1500,imgid=600",
                    help="annotations to stop at, per corpus")  # fmt: skip
    ap.add_argument("--strategies", default="random,uncertainty,uncertainty-flat")
    ap.add_argument("--model", default="bilstm_crf")
    ap.add_argument("--epochs", type=int, default=8, help="at least (small sets get more)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--clusters", type=int, default=0, help="k-means clusters (0 = auto)")
    ap.add_argument("--sample-posts", type=int, default=5000)
    ap.add_argument("--imgid-posts", type=int, default=25000)
    ap.add_argument("--pool", type=int, default=4000, help="posts of the train split to use")
    ap.add_argument("--dev", type=int, default=500, help="posts of the dev split to use")
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "bench-active-learning")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "active_learning.png")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    strategies = a.strategies.split(",")
    budgets = dict(item.split("=") for item in a.budget.split(","))
    rounds = dict(item.split("=") for item in a.k.split(","))
    a.work.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_all = time.perf_counter()
    args = {k: str(v) for k, v in vars(a).items()}
    result: dict[str, Any] = {"benchmark": "active_learning", "machine": machine(), "args": args}
    result["corpora"] = {}
    rows = []
    for name in a.corpus.split(","):
        export = build_sample(a.work, a.sample_posts) if name == "sample" else build_imgid(
            a.work, a.imgid_posts)  # fmt: skip
        tr = Trainer(export, a.model, a.epochs, a.lr, a.work / f"run-{name}")
        if len(tr.pool) > a.pool:  # a fixed random share of a large train split
            keep = sorted(random.Random(0).sample(range(len(tr.pool)), a.pool))
            tr.pool = [tr.pool[i] for i in keep]
        dev = tr.data.splits["dev"]
        if len(dev) > a.dev:  # epoch choice and calibration: a fixed share of dev is enough
            tr.data.splits["dev"] = [dev[i] for i in sorted(random.Random(0).sample(
                range(len(dev)), a.dev))]  # fmt: skip
        budget = int(budgets.get(name, 1500))
        k = int(rounds.get(name, 100))
        log(f"{name}: pool {len(tr.pool)}, dev {len(tr.data.splits['dev'])}, "
            f"test {len(tr.data.splits['test'])}; rounds of {k} up to {budget}")  # fmt: skip
        full = []
        for seed in seeds:
            f1, _ = tr.train(list(range(len(tr.pool))), seed)
            full.append(f1)
            log(f"  all {len(tr.pool)} posts, seed {seed}: test F1 {f1:.4f}")
        full_f1 = sum(full) / len(full)
        target = TARGET * full_f1
        curves = {s: [run_curve(tr, s, seed, k, budget, a.clusters, log) for seed in seeds]
                  for s in strategies}  # fmt: skip
        need = {s: [first_reaching(cv, target) for cv in curves[s]] for s in strategies}
        c = {"pool": len(tr.pool), "dev": len(tr.data.splits["dev"]),
             "test": len(tr.data.splits["test"]), "model": a.model, "full_f1_per_seed": full,
             "full_f1": round(full_f1, 4), "target_f1": round(target, 4), "curves": curves, "k": k,
             "annotations_to_target": need, "trainings": tr.trainings,
             "train_seconds": round(tr.train_seconds, 1)}  # fmt: skip
        result["corpora"][name] = c
        base = need.get("random", [])
        for s in strategies:
            got = need[s]
            mean = (sum(got) / len(got)) if all(g is not None for g in got) else None
            row = {"corpus": name, "strategy": s, "seeds": len(got),
                   "annotations to 95% of full F1 (per seed)": ", ".join(
                       str(g) if g is not None else f">{budget}" for g in got),
                   "mean": round(mean) if mean is not None else f">{budget}",
                   "full-data F1": round(full_f1, 4)}  # fmt: skip
            if s != "random" and base and mean is not None and all(b is not None for b in base):
                rmean = sum(base) / len(base)
                row["fewer than random"] = f"{1 - mean / rmean:.0%}"
            rows.append(row)
    result["rows"] = rows
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "active_learning.json").write_text(json.dumps(result, indent=1))
    plot(result, a.plot)
    print(markdown_table(rows))
    print(f"\n(wrote {RESULTS / 'active_learning.json'} and {a.plot}; "
          f"{result['seconds']:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
