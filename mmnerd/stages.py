"""The stage groups behind the CLI commands and make targets.

collect : collect -> language -> normalize -> tokenize -> fetch
dedup   : dedup
annotate: push            (starts Label Studio if needed)
pull    : pull            (always reruns: annotations change)
export  : [gold ->] split -> Parquet + manifest + card   (gold: export.labels = "source")
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from mmnerd.config import PipelineConfig
from mmnerd.pipeline import Runner, Stage, StageStats, iter_stage

STAGE_CLASSES: dict[str, str] = {
    "collect": "mmnerd.sources.collect:CollectStage",
    "language": "mmnerd.text.stages:LanguageStage",
    "normalize": "mmnerd.text.stages:NormalizeStage",
    "tokenize": "mmnerd.text.stages:TokenizeStage",
    "fetch": "mmnerd.images.fetch:FetchStage",
    "dedup": "mmnerd.dedup.stage:DedupStage",
    "push": "mmnerd.labelstudio.push:PushStage",
    "pull": "mmnerd.labelstudio.pull:PullStage",
    "gold": "mmnerd.sources.gold:GoldStage",
    "split": "mmnerd.export.splits:SplitStage",
}
"""Every stage by name ("module:Class"), in pipeline order."""
ALL_STAGE_NAMES = tuple(STAGE_CLASSES)


def route(config: PipelineConfig) -> list[str]:
    """The stages this pipeline runs, in order (Label Studio's or the gold route)."""
    labels = ["gold"] if config.export.labels == "source" else ["push", "pull"]
    return ["collect", "language", "normalize", "tokenize", "fetch", "dedup", *labels, "split"]


def make_stage(config: PipelineConfig, name: str, source: Any = None) -> Stage:
    """The stage object ``name`` for ``config`` (constructing it has no side effects)."""
    import importlib

    from mmnerd.errors import ConfigError

    if name not in STAGE_CLASSES:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGE_CLASSES)}")
    module, _, cls_name = STAGE_CLASSES[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if name == "collect":
        return cls(source)
    return cls(config) if name == "split" else cls()


def run_one(config: PipelineConfig, name: str, force: bool = False) -> StageStats:
    """Run the stage ``name`` alone (its input stage must have finished); returns its stats.
    Starts Label Studio for push and pull."""
    stage = make_stage(config, name)
    if name in ("push", "pull"):
        from mmnerd.labelstudio import server

        server.up(config)
    if name == "collect":
        from mmnerd.sources import get_source

        stage = make_stage(config, name, get_source(config))
    return Runner(config).run_stage(stage, force=force or name == "pull")


def run_collect(config: PipelineConfig, force: bool = False) -> list[StageStats]:
    from mmnerd.images.fetch import FetchStage
    from mmnerd.sources import get_source
    from mmnerd.sources.collect import CollectStage
    from mmnerd.text.stages import LanguageStage, NormalizeStage, TokenizeStage

    source = get_source(config)
    stages = [
        CollectStage(source),
        LanguageStage(),
        NormalizeStage(),
        TokenizeStage(),
        FetchStage(),
    ]
    return Runner(config).run(stages, force=force)


def run_dedup(config: PipelineConfig, force: bool = False) -> list[StageStats]:
    from mmnerd.dedup import DedupStage

    return Runner(config).run([DedupStage()], force=force)


def run_push(config: PipelineConfig, force: bool = False) -> list[StageStats]:
    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.push import PushStage

    server.up(config)
    return Runner(config).run([PushStage()], force=force)


def run_simulate(config: PipelineConfig) -> dict:
    from mmnerd.errors import StageError
    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.simulate import simulate
    from mmnerd.pipeline import stage_stats

    if stage_stats(config, "push") is None:  # else it would "write 0" and exit 0
        raise StageError("no tasks pushed yet: run `mmnerd annotate push` first")
    server.up(config)
    return simulate(config, list(iter_stage(config, "push")))


def run_pull(config: PipelineConfig) -> list[StageStats]:
    from mmnerd.labelstudio import server
    from mmnerd.labelstudio.pull import PullStage

    server.up(config)
    return Runner(config).run([PullStage()], force=True)


def run_benchmark(config: PipelineConfig, force: bool = False) -> int:
    """Run ``python -m baselines.benchmark`` on the export (mmnerd never imports baselines).

    Skipped when the export files and the benchmark config are those of the last
    successful run (the report is printed again instead).
    """
    import hashlib

    from mmnerd.errors import ConfigError, StageError
    from mmnerd.io import read_json, write_json

    manifest = config.export_dir / "manifest.json"
    if not manifest.exists():
        raise StageError(f"no export in {config.export_dir}: run `make export` first")
    b = config.benchmark
    missing = b.missing_encoders()
    if missing:
        raise ConfigError(
            f"not a local folder: {'; '.join(missing)} (encoders load from disk; set the path "
            "of a save_pretrained folder, or '' for a small random encoder)"
        )
    key = hashlib.sha256(
        (manifest.read_text() + config.fingerprint("benchmark")).encode()
    ).hexdigest()
    marker = config.report_dir / "_SUCCESS.json"
    report = config.report_dir / "benchmark.md"
    if not force and report.exists() and (read_json(marker) or {}).get("key") == key:
        print(report.read_text(encoding="utf-8"))
        print(f"(benchmark unchanged since the last run: {report})", file=sys.stderr)
        return 0
    cmd = [
        sys.executable,
        "-m",
        "baselines.benchmark",
        "--export",
        str(config.export_dir),
        "--report-dir",
        str(config.report_dir),
        *b.args(),
    ]
    rc = subprocess.call(cmd)
    if rc == 0:
        write_json(marker, {"key": key})
    return rc


def _has_dev(export_dir: Path) -> bool:
    return any((export_dir / f).exists() for f in ("validation.parquet", "dev.parquet"))


def run_predict(
    config: PipelineConfig,
    checkpoint: Path,
    out: Path | None = None,
    calibration: Path | None = None,
    clusters: int = 0,
) -> Path:
    """Tag the posts that go to annotation (the dedup stage's non-duplicates) with a
    checkpoint trained by baselines/, via ``python -m baselines.predict`` (mmnerd never
    imports baselines).  Writes ``<data_dir>/predict/predictions.jsonl`` (id, tokens,
    tags, entities, confidence, cluster, model_version) for ``labelstudio.predictions``;
    returns its path.

    ``confidence`` is the model's probability of its whole tagging, calibrated on the dev
    split of ``calibration`` (default: the pipeline's export, when there is one);
    ``cluster`` one of ``clusters`` k-means clusters of the posts (0 = auto, -1 = none).
    Pushed, they become each prediction's ``score`` and ``cluster``: Label Studio's
    uncertainty sampling serves the least confident posts first, spread over clusters."""
    import json

    from mmnerd.errors import StageError
    from mmnerd.io import atomic_write, inside
    from mmnerd.pipeline import MARKER, stage_dir

    if not (stage_dir(config, "dedup") / MARKER).exists():
        raise StageError("mmnerd predict needs the dedup stage: run `make dedup` first")
    if not (checkpoint / "config.json").exists():
        raise StageError(f"{checkpoint}: not a checkpoint folder (no config.json)")
    folder = config.root / "predict"
    src = folder / "input.jsonl"
    out = out or folder / "predictions.jsonl"
    with atomic_write(src) as f:
        for p in iter_stage(config, "dedup"):
            if p.duplicate_of:
                continue
            image = ""
            if p.image is not None and p.image.path:
                image = str(inside(config.root / "images", p.image.path))
            row = {"id": p.id, "tokens": p.tokens, "lang": p.lang, "image": image}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    raw = folder / "raw-predictions.jsonl"
    cmd = [sys.executable, "-m", "baselines.predict", "--checkpoint", str(checkpoint),
           "--input", str(src), "--output", str(raw), "--clusters", str(clusters)]  # fmt: skip
    if calibration is None and _has_dev(config.export_dir):
        calibration = config.export_dir
    if calibration is not None:
        cmd += ["--calibration", str(calibration)]
    if subprocess.call(cmd) != 0:
        raise StageError(f"baselines.predict failed for {checkpoint} (see its message above)")
    version = f"mmnerd-predict:{checkpoint.parent.name}/{checkpoint.name}"
    with atomic_write(out) as f:
        for line in raw.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                row["model_version"] = version
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
