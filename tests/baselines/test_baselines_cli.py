"""The benchmark CLI: report files and keys, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

from baselines.benchmark import main
from mmnerd.records import arrow_schema

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_reports(synth_export: Path, tmp_path: Path, capsys) -> None:
    rep = tmp_path / "reports"
    rc = main(
        [
            "--export", str(synth_export),
            "--report-dir", str(rep),
            "--mode", "quick",
            "--models", "text_crf,concat_fusion",
            "--epochs", "2",
            "--seeds", "1,2",
            "--batch-size", "32",
            "--threads", "1",
        ]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "| text_crf |" in out and "| concat_fusion+shuffled_images |" in out
    report = json.loads((rep / "benchmark.json").read_text())
    assert report["format"] == "mmnerd.benchmark/1"
    assert set(report) >= {
        "created_at", "export", "mode", "models", "seeds", "epochs", "encoders", "train_config",
        "languages", "entity_types", "data", "results", "plots", "seconds",
    }  # fmt: skip
    assert report["seeds"] == [1, 2] and report["languages"] == ["de", "en", "es", "fr"]
    res = report["results"]
    assert set(res) == {"text_crf", "concat_fusion", "concat_fusion+shuffled_images"}
    tc = res["text_crf"]
    assert set(tc) >= {"seeds", "test", "dev", "best_epochs", "runs", "train_examples_per_s"}
    f1 = tc["test"]["overall"]["f1"]
    assert set(f1) == {"mean", "std", "values", "ci95"} and len(f1["values"]) == 2
    assert f1["ci95"][0] <= f1["mean"] <= f1["ci95"][1]  # bootstrap interval over test posts
    assert set(tc["test"]["per_type"]) == {"PER", "LOC", "ORG", "MISC"}
    assert set(tc["test"]["per_language"]) == {"de", "en", "es", "fr"}
    assert "image_decided" in tc["test"]
    run = tc["runs"][0]
    assert run["eval_counts"]["test"] == 1 and len(run["history"]) == 2
    for seed in (1, 2):
        ck = rep / "checkpoints" / "text_crf" / f"seed{seed}"
        cfg = json.loads((ck / "config.json").read_text())
        assert cfg["model"]["name"] == "text_crf" and cfg["train"]["seed"] == seed
        assert (ck / "model.pt").is_file()
    md = (rep / "benchmark.md").read_text()
    assert "| Model | P | R | F1 |" in md and "± " in md
    for p in report["plots"]:
        assert (rep / p).is_file() and p.endswith(".png")
    assert len(report["plots"]) == 4 and "plots/robustness.png" in report["plots"]
    # supports beside F1, the random-encoder warning, robustness and paired comparisons
    n_ent = tc["test"]["overall"]["support"]
    assert f"F1 all (n={n_ent})" in md and "F1 image-decided (n=" in md
    assert "> **Warning:** every encoder here is randomly initialised" in md
    rob = res["concat_fusion"]["robustness"]
    assert set(rob) == {"replaced_25", "replaced_50", "replaced_100", "blank", "noise"}
    assert "## Robustness to wrong or missing images" in md and "| 100% (shuffled) |" in md
    assert "| text_crf (text only) |" in md
    pairs = {(c["a"], c["b"], c["condition"]) for c in report["comparisons"]}
    assert pairs == {
        ("concat_fusion", "text_crf", "test"),
        ("concat_fusion", "text_crf", "replaced_100"),
    }
    for c in report["comparisons"]:
        t = c["all"]
        assert 0.0 <= t["p"] <= 1.0 and t["ci95"][0] <= t["ci95"][1] and t["posts"] == 40
    assert "## Comparisons (paired bootstrap over test posts)" in md


def test_cli_missing_or_empty_export(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "baselines.benchmark", "--report-dir", str(tmp_path / "r")]
    r = subprocess.run(
        [*cmd, "--export", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "export folder not found" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    for split in ("train", "dev", "test"):
        pq.write_table(arrow_schema().empty_table(), empty / f"{split}.parquet")
    assert main(["--export", str(empty), "--report-dir", str(tmp_path / "r")]) == 2
    assert main(["--export", str(empty), "--models", "nope"]) == 2
    assert not (tmp_path / "r" / "benchmark.json").exists()


def test_cli_device_cpu_and_missing_cuda(synth_export: Path, tmp_path: Path) -> None:
    rep = tmp_path / "cpu"
    rc = main(
        [
            "--export", str(synth_export), "--report-dir", str(rep), "--models", "concat_fusion",
            "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--bf16",
            "--no-bucket-by-length",
        ]
    )  # fmt: skip
    assert rc == 0
    report = json.loads((rep / "benchmark.json").read_text())
    cfg = report["train_config"]
    assert (cfg["device"], cfg["bf16"], cfg["bucket_by_length"]) == ("cpu", True, False)
    if torch.cuda.is_available():
        return
    cmd = [
        sys.executable, "-m", "baselines.benchmark", "--export", str(synth_export),
        "--report-dir", str(tmp_path / "cuda"), "--device", "cuda",
    ]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error: --device cuda: CUDA is not available")
    assert not (tmp_path / "cuda" / "benchmark.json").exists()


def test_parallel_jobs_give_the_same_results(synth_export: Path, tmp_path: Path) -> None:
    """``--jobs 2`` runs two trainings at a time in forked processes: same scores, same order."""
    base = ["--export", str(synth_export), "--mode", "quick", "--models", "text_crf,concat_fusion",
            "--epochs", "1", "--seeds", "1,2", "--batch-size", "32"]  # fmt: skip
    assert main([*base, "--report-dir", str(tmp_path / "a")]) == 0
    assert main([*base, "--report-dir", str(tmp_path / "b"), "--jobs", "2"]) == 0
    a, b = (json.loads((tmp_path / d / "benchmark.json").read_text()) for d in ("a", "b"))
    assert list(a["results"]) == list(b["results"]) and b["jobs"] == 2
    for name in a["results"]:
        fa, fb = (r["results"][name]["test"]["overall"]["f1"]["values"] for r in (a, b))
        assert fa == fb, name
