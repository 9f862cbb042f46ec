"""Benchmark CLI: ``python -m baselines.benchmark --export DIR --report-dir DIR [...]``.

Trains every requested model for every seed on ``train``, selects epochs on ``dev``, evaluates
``test`` once per run, then writes ``benchmark.json``, ``benchmark.md``, ``plots/*.png`` and
``checkpoints/<model>/seed<k>/`` under the report folder and prints the result tables.

Posts without an image are masked in the multimodal models; when no training post has an
image, those models are skipped (one line on stderr, listed in the report), and the benchmark
fails in one line if no requested model is left.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baselines.config import (
    FULL_MODELS,
    MODEL_NAMES,
    PRESETS,
    QUICK_MODELS,
    TrainConfig,
    model_config_for,
    save_json,
    to_dict,
)
from baselines.errors import BenchmarkError
from baselines.models import get_spec

FORMAT = "mmnerd.benchmark/1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m baselines.benchmark",
        description="Train and evaluate 2M-NER and baselines on an MMNERD export.",
    )
    p.add_argument(
        "--export",
        required=True,
        help="export folder with train, dev (or validation) and test .parquet",
    )
    p.add_argument("--report-dir", default="reports", help="output folder (default: reports)")
    p.add_argument(
        "--mode",
        choices=("quick", "full"),
        default="quick",
        help="quick: tiny configs, 1 seed, text_crf+mner2m; full: 3 seeds, all models",
    )
    p.add_argument("--models", default="", help=f"comma list from {','.join(MODEL_NAMES)}")
    p.add_argument("--epochs", type=int, default=None, help="default: quick 6, full 8")
    p.add_argument("--seeds", default="", help="comma list; default: quick 1, full 1,2,3")
    p.add_argument("--batch-size", type=int, default=None, help="default: quick 16, full 32")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="default: 5e-5 with a pretrained --text-encoder, else 2e-3 (random init)",
    )
    p.add_argument("--head-lr", type=float, default=None, help="lr of fusion/CRF (default: --lr)")
    p.add_argument("--text-encoder", default="", help="local path of a transformers encoder")
    p.add_argument("--vit", default="", help="local path of a CLIP model (vision tower used)")
    p.add_argument("--cnn", default="", help="local path of a ResNet (frozen)")
    for flag, default, text in (
        ("--train-vit", True, "fine-tune the ViT (paper) or freeze it and cache its features"),
        ("--cache-features", True, "cache features of frozen image encoders once per dataset"),
        (
            "--bucket-by-length",
            True,
            "batch training posts of similar sub-word length together (less padding)",
        ),
        ("--bf16", False, "bfloat16 autocast of the forward passes (CRF and losses stay float32)"),
    ):
        p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = cuda if available, else cpu; under torchrun each process uses "
        "cuda:LOCAL_RANK (nccl) or the CPU (gloo)",
    )
    p.add_argument(
        "--feature-cache-dir",
        default="",
        help="where features of frozen encoders loaded from a path are kept between runs "
        "(default: REPORT_DIR/cache)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="size of random encoders (default: quick tiny, full small)",
    )
    p.add_argument("--max-length", type=int, default=128, help="sub-words per post")
    p.add_argument("--w-crf", type=float, default=0.8)
    p.add_argument("--w-cl", type=float, default=0.2)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument(
        "--image-decided-ids",
        default="",
        help="file with one post id per line whose labels need the image",
    )
    p.add_argument(
        "--cross-lingual",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also train on each language alone and on all but one (epochs selected on dev in "
        "those languages) and test on every language (default: off)",
    )
    p.add_argument(
        "--cross-lingual-models",
        default="",
        help="models of the cross-lingual protocol (comma list; default: those of --models)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="training runs at a time, each in its own process with --threads threads "
        "(default 1; 2 on an idle 2-core machine halves the wall time of tiny models)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads, at most 2 (default 1: on a shared 2-core machine, 2 threads "
        "can be 10-20x slower)",
    )
    return p.parse_args(argv)


def _seeds(text: str, mode: str) -> list[int]:
    if not text:
        return [1] if mode == "quick" else [1, 2, 3]
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchmarkError(
            f"--seeds must be integers separated by commas, got {text!r}"
        ) from None


def _models(text: str, mode: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()] if text else None
    if names is None:
        names = list(QUICK_MODELS if mode == "quick" else FULL_MODELS)
    names = ["mner2m" if n == "mner2m_shuffled" else n for n in names]
    for n in names:
        get_spec(n)  # an unknown name fails in one line listing the registered ones
    return list(dict.fromkeys(names))


def check_encoders(*names: str) -> None:
    """Fail early, in one line, if an encoder cannot be loaded (a missing folder, a folder
    without weights, or a hub name without network)."""
    names = tuple(n for n in names if n)
    if not names:
        return
    # hub names resolve from the local HF cache only, unless HF_HUB_OFFLINE=0 is set
    hub = os.environ.get("HF_HUB_OFFLINE") == "0"
    if not hub and any(not Path(n).exists() for n in names):
        os.environ["HF_HUB_OFFLINE"] = "1"  # later from_pretrained calls: no network retries
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for name in names:
        path = Path(name)
        try:
            AutoConfig.from_pretrained(name, local_files_only=not hub)
        except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
            where = "in folder" if path.exists() else "(not a local folder, not in the HF cache)"
            raise BenchmarkError(
                f"cannot load encoder {name!r}: no transformers config {where}: "
                f"{type(exc).__name__}"
            ) from None
        weights = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
        if path.is_dir() and not any((path / w).exists() for w in weights):
            raise BenchmarkError(f"cannot load encoder {name!r}: no weights in the folder")


def run_benchmark(args: argparse.Namespace, log: Any = None) -> dict[str, Any]:
    """Run the benchmark described by parsed CLI ``args``; returns the report dict."""
    from baselines.data import load_export
    from baselines.report import (
        MASKING_NOTE,
        RANDOM_WARNING,
        aggregate,
        comparison_table,
        comparisons,
        coverage_line,
        markdown,
        plots,
        robustness_tables,
        tables,
    )
    from baselines.train import init_distributed, prepare, skip_reason

    dist = init_distributed(args.device)
    if log is None:
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if dist.main else (lambda m: None)
    export = Path(args.export)
    report_dir = Path(args.report_dir)
    ids: set[str] | None = None
    if args.image_decided_ids:
        f = Path(args.image_decided_ids)
        if not f.is_file():
            raise BenchmarkError(f"--image-decided-ids: file not found: {f}")
        ids = {line.strip() for line in f.read_text().splitlines() if line.strip()}
    models = _models(args.models, args.mode)  # a wrong name fails before any loading
    check_encoders(args.text_encoder, args.vit, args.cnn)
    data = load_export(export, ids)
    for w in data.warnings[:5]:
        log(f"warning: {w}")
    quick = args.mode == "quick"
    preset = args.preset or ("tiny" if quick else "small")
    overrides = {
        **PRESETS[preset],
        "text_encoder": args.text_encoder,
        "vit": args.vit,
        "cnn": args.cnn,
        "freeze_vit": not args.train_vit,
        "max_length": args.max_length,
        "w_crf": args.w_crf,
        "w_cl": args.w_cl,
        "temperature": args.temperature,
    }
    if args.epochs is not None and args.epochs < 1:
        raise BenchmarkError("--epochs must be >= 1")
    lr = args.lr if args.lr is not None else (5e-5 if args.text_encoder else 2e-3)
    base_train = TrainConfig(
        epochs=args.epochs or (6 if quick else 8),
        batch_size=args.batch_size or (16 if quick else 32),
        lr=lr,
        head_lr=args.head_lr,
        num_threads=min(2, max(1, args.threads or 1)),
        cache_frozen_features=args.cache_features,
        bucket_by_length=args.bucket_by_length,
        bf16=args.bf16,
        device=args.device,
    )
    seeds = _seeds(args.seeds, args.mode)
    stats = data.stats()
    for split in ("train", "dev", "test"):
        log(coverage_line(split, stats[split]))
    skipped: dict[str, str] = {}
    for name in models:
        reason = skip_reason(model_config_for(name, **overrides), data)
        if reason:
            skipped[name] = reason
            log(f"{name} skipped: {reason}")
    runnable = [m for m in models if m not in skipped]
    if not runnable:
        why = "; ".join(f"{m} skipped: {r}" for m, r in skipped.items())
        raise BenchmarkError(
            f"nothing to run: {why}; add a text-only model (text_crf, bilstm_crf) to --models"
        )
    n_test_img = data.with_image("test")
    shuffled_control = (
        f"images shuffled among the {n_test_img} test posts that have one"
        if n_test_img >= 2
        else f"not run: {n_test_img} test post(s) have an image, nothing to shuffle"
    )
    t0 = time.perf_counter()
    feature_dir = Path(args.feature_cache_dir) if args.feature_cache_dir else report_dir / "cache"
    prep = prepare(
        data,
        args.text_encoder,
        vocab_size=overrides.get("vocab_size", 2000),
        feature_dir=feature_dir if args.cache_features else None,
    )
    report: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "export": str(export),
        "mode": args.mode,
        "models": models,
        "seeds": seeds,
        "epochs": base_train.epochs,
        "preset": preset,
        "encoders": {"text": args.text_encoder, "vit": args.vit, "cnn": args.cnn},
        "train_config": to_dict(base_train),
        "languages": data.languages(),
        "entity_types": ["PER", "LOC", "ORG", "MISC"],
        "data": stats,
        "skipped": skipped,
        "images": {
            "missing": "masked",
            "note": MASKING_NOTE,
            "test_without_image": stats["test"]["without_image"],
            "shuffled_control": shuffled_control
            if any(model_config_for(m, **overrides).multimodal for m in runnable)
            else "",
        },
        "results": {},
        "plots": [],
        "seconds": 0.0,
        "world_size": dist.world,
        "jobs": args.jobs,
    }
    if not (args.text_encoder or args.vit or args.cnn):
        log(f"warning: {RANDOM_WARNING}")
    decided = [i for i, e in enumerate(data.splits["test"]) if e.image_decided]
    cross_models = (
        _models(args.cross_lingual_models, args.mode) if args.cross_lingual_models else []
    )
    cross_models = [m for m in cross_models or runnable if m not in skipped]
    jobs: list[Job] = []
    for name in runnable:
        mcfg = model_config_for(name, **overrides)
        for seed in seeds:
            tcfg = TrainConfig(**{**to_dict(base_train), "seed": seed})
            ckpt = report_dir / "checkpoints" / name / f"seed{seed}"
            jobs.append(Job(f"{name} seed {seed}", mcfg, tcfg, prep, ckpt))

    def progress(done: list[Any]) -> None:
        report["results"] = aggregate(done, decided)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        if dist.main:  # partial results survive a crash
            save_json(report, report_dir / "benchmark.json")

    runs = run_jobs(jobs, args.jobs, log, dist, progress)
    report["results"] = aggregate(runs, decided)
    report["comparisons"] = comparisons(report["results"], decided)
    if args.cross_lingual:
        report["cross_lingual"] = cross_lingual(
            prep, cross_models, seeds, overrides, base_train, decided, log, dist, args.jobs
        )
        report["seconds"] = round(time.perf_counter() - t0, 2)
    if not dist.main:
        return report
    report["plots"] = ["plots/" + p for p in plots(report, report_dir / "plots")]
    report["seconds"] = round(time.perf_counter() - t0, 2)
    save_json(report, report_dir / "benchmark.json")
    (report_dir / "benchmark.md").write_text(markdown(report))
    print(tables(report))
    for extra in (robustness_tables(report), comparison_table(report)):
        if extra:
            print("\n" + extra)
    print(f"\n(full report: {report_dir / 'benchmark.md'})")
    return report


def language_subsets(langs: list[str]) -> list[tuple[str, ...]]:
    """Training languages of the cross-lingual protocol: each language alone, then (with three
    or more languages) all but one."""
    out = [(g,) for g in langs]
    if len(langs) >= 3:
        out += [tuple(x for x in langs if x != g) for g in langs]
    return out


def cross_lingual(
    prep: Any,
    models: list[str],
    seeds: list[int],
    overrides: dict[str, Any],
    base_train: TrainConfig,
    decided: list[int],
    log: Any,
    dist: Any,
    n_procs: int = 1,
) -> dict[str, Any]:
    """Train every model and seed on the train (and dev) posts of each language subset of
    :func:`language_subsets` and test on the whole test split: ``{"languages", "settings",
    "results": {model: {"en+fr+de": {"seeds", "test", "best_epochs"}}}}`` (no checkpoints,
    no image conditions)."""
    from baselines.report import aggregate

    langs = sorted({e.lang for e in prep.data.splits["train"]})
    settings = [
        sub
        for sub in language_subsets(langs)
        if any(e.lang in sub for e in prep.data.splits["dev"])
    ]
    tcfg_base = {**to_dict(base_train), "shuffled_image_eval": False, "robustness_eval": False}
    parts = {"+".join(sub): prep.subset(sub) for sub in settings}
    jobs: list[Job] = []
    for name in models:
        mcfg = model_config_for(name, **overrides)
        for key, part in parts.items():
            for seed in seeds:
                tcfg = TrainConfig(**{**tcfg_base, "seed": seed})
                jobs.append(Job(f"cross-lingual {name} seed {seed}: train on {key}", mcfg, tcfg,
                                part, None, key))  # fmt: skip
    runs = run_jobs(jobs, n_procs, log, dist)
    results: dict[str, Any] = {name: {} for name in models}
    for name in models:
        for key in parts:
            pairs = zip(jobs, runs, strict=True)
            mine = [r for j, r in pairs if j.mcfg.name == name and j.tag == key]
            agg = aggregate(mine, decided)[name]
            results[name][key] = {k: agg[k] for k in ("seeds", "test", "best_epochs")}
    return {"languages": langs, "settings": list(parts), "results": results}


@dataclass
class Job:
    """One training run of the benchmark: its log label, configs, data and checkpoint folder."""

    label: str
    mcfg: Any  # ModelConfig
    tcfg: TrainConfig
    prep: Any  # Prepared
    ckpt: Path | None
    tag: str = ""


_JOBS: list[Job] = []  # inherited by forked workers (never pickled)


def _run_job(i: int) -> Any:
    from baselines.train import train_run

    job = _JOBS[i]
    print(f"== {job.label}", file=sys.stderr, flush=True)
    return train_run(job.mcfg, job.tcfg, job.prep, job.ckpt, dist=None)


def run_jobs(jobs: list[Job], n_procs: int, log: Any, dist: Any, progress: Any = None) -> list[Any]:
    """Run ``jobs`` (in order, or ``n_procs`` at a time in forked processes, each with its own
    torch threads); returns their :class:`baselines.train.RunResult` in job order and calls
    ``progress(finished results)`` after each.  A run's result does not depend on the process
    it ran in (every run seeds everything).  Under torchrun, always in order."""
    from baselines.train import train_run

    done: list[Any] = [None] * len(jobs)
    if n_procs <= 1 or dist.world > 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            log(f"== {job.label}")
            done[i] = train_run(job.mcfg, job.tcfg, job.prep, job.ckpt, log, dist)
            if progress:
                progress([r for r in done if r is not None])
        return done
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _JOBS
    _JOBS = jobs
    ctx = multiprocessing.get_context("fork")  # workers inherit the data, tokenizer, caches
    try:
        with ProcessPoolExecutor(min(n_procs, len(jobs)), mp_context=ctx) as pool:
            futures = {pool.submit(_run_job, i): i for i in range(len(jobs))}
            for fut in as_completed(futures):
                done[futures[fut]] = fut.result()
                if progress:
                    progress([r for r in done if r is not None])
    finally:
        _JOBS = []
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_benchmark(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if "torch" in sys.modules:
            import torch.distributed as tdist

            if tdist.is_available() and tdist.is_initialized():
                tdist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
