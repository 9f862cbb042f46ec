"""Fusion under wrong images (issue 18): the learning check's 1,200-post sample, measured by
``mmnerd benchmark`` (what ``make benchmark`` runs) with the robustness and cross-lingual
protocols.

    python benchmarks/fusion.py [--posts 1200] [--seeds 1,2,3] [--epochs 12]
                                [--models text_crf,concat_fusion,mner2m,mner2m_gated]
                                [--cross-lingual-models text_crf,mner2m,mner2m_gated | none]
                                [--jobs 2] [--keep DIR]

Builds the export of ``tests/baselines/test_sample_learning.py`` (the sample generator,
seed 7, 64 px pictures, split 70/15/15 by post id; ``image_decided`` column), writes a pipeline
file whose ``[benchmark]`` asks for the models, seeds, epochs, batch 16, lr 3e-3 and the
cross-lingual protocol, runs ``mmnerd benchmark -p`` on it in a fresh process, then prints the
issue's table (F1 all / image-decided / shuffled images, mean ± std over seeds), the goals of
the robust model (``mner2m_gated``), the robustness table and the cross-lingual table.  Writes
benchmarks/results/fusion.json (rows + the report's paths); the full report (benchmark.md,
plots) stays in the work folder (``--keep`` to choose it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PIPELINE = """name = "fusion-sample"
data_dir = "{work}/data"

[export]
out_dir = "{export}"

[benchmark]
mode = "quick"
models = {models}
seeds = {seeds}
epochs = {epochs}
batch_size = 16
lr = 3e-3
cross_lingual = {cross}
cross_lingual_models = {cross_models}
jobs = {jobs}
report_dir = "{report}"
"""


def load_avg() -> float:
    return os.getloadavg()[0]


def f1(res: dict[str, Any], model: str, part: str = "overall", cond: str = "") -> dict | None:
    """``{"mean", "std", ...}`` of a model's test F1 (``cond``: a robustness condition)."""
    m = res.get(model) or {}
    t = m.get("test") or {}
    if cond:
        t = (m.get("robustness") or {}).get(cond) or (t if not m.get("robustness") else {})
    return (t.get(part) or {}).get("f1")


def fmt(ms: dict | None) -> str:
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}" if ms else "–"


def goals(res: dict[str, Any], robust: str = "mner2m_gated") -> list[dict[str, Any]]:
    """The issue's three goals for the robust model, from mean-over-seeds F1."""

    def mean(model: str, part: str = "overall", cond: str = "") -> float | None:
        ms = f1(res, model, part, cond)
        return 100 * ms["mean"] if ms else None

    t_all, t_dec = mean("text_crf"), mean("text_crf", "image_decided")
    m_all, m_dec = mean("mner2m"), mean("mner2m", "image_decided")
    r_all, r_dec = mean(robust), mean(robust, "image_decided")
    r_sh = mean(robust, "overall", "replaced_100")
    if None in (t_all, t_dec, m_all, m_dec, r_all, r_dec, r_sh):
        return []
    need_dec = t_dec + 0.9 * (m_dec - t_dec)
    return [
        {"goal": "shuffled images: F1 >= text_crf - 1", "target": t_all - 1, "reached": r_sh},
        {"goal": "image-decided: >= 90% of mner2m's gain", "target": need_dec, "reached": r_dec},
        {"goal": "all posts: F1 >= mner2m", "target": m_all, "reached": r_all},
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=1200)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--models", default="text_crf,concat_fusion,mner2m,mner2m_gated")
    ap.add_argument(
        "--cross-lingual-models",
        default="text_crf,mner2m,mner2m_gated",
        help="models of the cross-lingual protocol ('none' = skip it)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time (same results)")
    ap.add_argument("--keep", default="", help="work folder to keep (default: a temp folder)")
    args = ap.parse_args()

    from tests.baselines.sample_export import write_sample_export

    work = Path(args.keep or tempfile.mkdtemp(prefix="mmnerd-fusion-")).resolve()
    export, report = work / "export", work / "reports"
    with Timer() as t_export:
        write_sample_export(export, posts=args.posts)
    cross = args.cross_lingual_models != "none"
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    toml = work / "fusion-sample.toml"
    toml.write_text(
        PIPELINE.format(
            work=work,
            export=export,
            models=json.dumps(models),
            seeds=json.dumps(seeds),
            epochs=args.epochs,
            cross=str(cross).lower(),
            jobs=args.jobs,
            cross_models=json.dumps(args.cross_lingual_models.split(",") if cross else []),
            report=report,
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    load0 = load_avg()
    cmd = [sys.executable, "-m", "mmnerd.cli", "benchmark", "-p", str(toml), "--force"]
    with Timer() as t_bench:
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
    load1 = load_avg()
    if rc != 0:
        print(f"mmnerd benchmark failed (exit {rc})", file=sys.stderr)
        return 1
    bench = json.loads((report / "benchmark.json").read_text())
    res = bench["results"]
    rows: list[dict[str, Any]] = []
    for m in models:
        # a text-only model sees no image: its shuffled-image score is its score
        mark = "" if res.get(m, {}).get("robustness") else " (no image)"
        rows.append(
            {
                "model": m,
                "F1 all": fmt(f1(res, m)),
                "F1 image-decided": fmt(f1(res, m, "image_decided")),
                "F1 shuffled images": fmt(f1(res, m, "overall", "replaced_100")) + mark,
                "F1 shuffled, image-decided": fmt(f1(res, m, "image_decided", "replaced_100"))
                + mark,
                "best epochs": res.get(m, {}).get("best_epochs"),
            }
        )
    from baselines.report import comparison_table, cross_lingual_tables, robustness_tables

    print(robustness_tables(bench))
    print()
    print(comparison_table(bench))
    if cross:
        print()
        print(cross_lingual_tables(bench))
    print()
    g = goals(res)
    for row in g:
        ok = row["reached"] >= row["target"]
        print(
            f"goal {row['goal']}: target {row['target']:.1f}, reached {row['reached']:.1f} "
            f"({'met' if ok else 'missed'})"
        )
    n_test = bench["data"]["test"]["sentences"]
    notes = (
        f"{args.posts}-post sample ({bench['data']['train']['sentences']} train / "
        f"{bench['data']['dev']['sentences']} dev / {n_test} test posts), tiny random "
        f"encoders, {args.epochs} epochs, seeds {args.seeds}, batch 16, lr 3e-3, {args.jobs} "
        "trainings at a time, 1 thread each; mean ± std "
        f"over seeds. Export {t_export.seconds:.0f} s, benchmark {t_bench.seconds:.0f} s; "
        f"load average {load0:.1f} -> {load1:.1f}. Report: {report / 'benchmark.md'}"
    )
    path = save("fusion", rows, notes)
    data = json.loads(path.read_text())
    data.update(goals=g, report=str(report / "benchmark.md"), seconds=round(t_bench.seconds, 1))
    data.update(load=[round(load0, 2), round(load1, 2)])
    path.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
