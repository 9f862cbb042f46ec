"""The ``mmnerd`` command line: a few lines per command over importable functions.

Heavy libraries are imported inside the commands so ``mmnerd --help`` is instant.
Errors a user can fix print one line and exit 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Build and benchmark multilingual, multimodal NER datasets (MMNERD-style).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: importing typer's rich help costs ~0.25 s per start
)
ls_app = typer.Typer(
    help="Run the local Label Studio server.", no_args_is_help=True, rich_markup_mode=None
)
annotate_app = typer.Typer(
    help="Push tasks to Label Studio; simulate annotators.", rich_markup_mode=None
)
app.add_typer(ls_app, name="ls")
app.add_typer(annotate_app, name="annotate")

PipelineOpt = Annotated[
    Path, typer.Option("--pipeline", "-p", help="pipeline file", envvar="PIPELINE")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a config field: section.field=value (repeatable)"),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="redo stages even if done")]
DEFAULT_PIPELINE = Path("pipelines/sample.toml")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MmnerdError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mmnerd.errors import MmnerdError

        try:
            return fn(*args, **kwargs)
        except MmnerdError as e:
            line = str(e).replace("\r", "\\r").replace("\n", "\\n")  # one line, always
            print(f"mmnerd: error: {line}", file=sys.stderr)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a folder in the way, permissions, a full disk: one line too
            where = f"{e.filename}: " if e.filename else ""
            print(
                f"mmnerd: error: {where}{' '.join(str(e.strerror or e).split())}", file=sys.stderr
            )
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            print("mmnerd: interrupted; rerun the same command to resume", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def _config(pipeline: Path, overrides: list[str] | None):
    from mmnerd.config import load_config

    return load_config(pipeline, overrides)


def _summary(stats: list[Any], title: str) -> None:
    from mmnerd.progress import print_summary

    print_summary(stats, title)


@app.command()
@friendly_errors
def collect(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Collect posts, identify language, normalise, tokenise and fetch images."""
    from mmnerd.stages import run_collect

    cfg = _config(pipeline, set_)
    _summary(run_collect(cfg, force=force), f"collect: {cfg.name}")


@app.command()
@friendly_errors
def dedup(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Hash images and mark exact and near duplicates (never deleted)."""
    from mmnerd.stages import run_dedup

    cfg = _config(pipeline, set_)
    _summary(run_dedup(cfg, force=force), f"dedup: {cfg.name}")


@ls_app.command("up")
@friendly_errors
def ls_up(
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    set_: SetOpt = None,
    public: Annotated[
        bool, typer.Option("--public", help="listen on all interfaces (not just 127.0.0.1)")
    ] = False,
) -> None:
    """Start (or reuse) the Label Studio server from .venv-ls, bound to 127.0.0.1."""
    from mmnerd.labelstudio import server

    info = server.up(_config(pipeline, set_), public=public)
    print(f"Label Studio is up at {info.url}", file=sys.stderr)


@ls_app.command("down")
@friendly_errors
def ls_down(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """Stop the Label Studio server this tool started (and only that one)."""
    from mmnerd.labelstudio import server

    server.down(_config(pipeline, set_))


@ls_app.command("status")
@friendly_errors
def ls_status(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """Say whether our Label Studio server is running, and where."""
    from mmnerd.labelstudio import server

    print(server.status(_config(pipeline, set_)))


@annotate_app.command("push")
@friendly_errors
def annotate_push(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Start Label Studio if needed and import tasks (idempotent: reruns add nothing)."""
    from mmnerd.stages import run_push

    cfg = _config(pipeline, set_)
    _summary(run_push(cfg, force=force), f"annotate: {cfg.name}")


@annotate_app.command("simulate")
@friendly_errors
def annotate_simulate(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """SIMULATION: write annotations from gold spans with noise (demo and tests only)."""
    from mmnerd.stages import run_simulate

    cfg = _config(pipeline, set_)
    result = run_simulate(cfg)
    print(f"simulated annotators wrote: {result}", file=sys.stderr)


@app.command()
@friendly_errors
def pull(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """Pull annotations from Label Studio and convert them to strict IOB2."""
    from mmnerd.stages import run_pull

    cfg = _config(pipeline, set_)
    _summary(run_pull(cfg), f"pull: {cfg.name}")


@app.command()
@friendly_errors
def export(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Write leakage-free Parquet splits, a manifest and the dataset card."""
    from mmnerd.export import export as do_export
    from mmnerd.pipeline import Runner

    cfg = _config(pipeline, set_)
    manifest, stats = do_export(cfg, Runner(cfg), force=force)
    _summary([stats], f"export: {cfg.name}")
    rows = ", ".join(f"{f['file']}: {f['rows']}" for f in manifest["files"])
    print(f"wrote {cfg.export_dir} ({rows})", file=sys.stderr)


@app.command()
@friendly_errors
def benchmark(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Train the baselines and the 2M-NER reference on the export; write reports/."""
    from mmnerd.stages import run_benchmark

    raise typer.Exit(run_benchmark(_config(pipeline, set_), force=force))


@app.command()
@friendly_errors
def predict(
    checkpoint: Annotated[
        Path, typer.Option(help="a checkpoint folder, e.g. reports/checkpoints/mner2m/seed1")
    ],
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    set_: SetOpt = None,
) -> None:
    """Tag the posts bound for annotation with a trained model (pre-annotations: set
    labelstudio.predictions to the file written, then `mmnerd annotate push`)."""
    from mmnerd.stages import run_predict

    out = run_predict(_config(pipeline, set_), checkpoint)
    print(f"wrote {out}; push with --set labelstudio.predictions={out}", file=sys.stderr)


@app.command("audit-leakage")
@friendly_errors
def audit_leakage(
    export_dir: Annotated[
        Path | None, typer.Option("--export", help="an mmnerd export folder (Parquet splits)")
    ] = None,
    imgid: Annotated[
        Path | None,
        typer.Option("--imgid", help="folder with train.txt/valid.txt/test.txt (IMGID format)"),
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="image folder of the IMGID corpus (<id>.jpg)")
    ] = None,
    threshold: Annotated[int, typer.Option(help="pHash Hamming distance (of 64 bits)")] = 10,
    text_threshold: Annotated[float, typer.Option(help="text Jaccard similarity")] = 0.8,
    out: Annotated[Path, typer.Option(help="JSON report")] = Path("reports/leakage.json"),
) -> None:
    """Report image and text near-duplicates that straddle train/dev/test (exit 1 if any)."""
    from rich.console import Console
    from rich.table import Table

    from mmnerd.audit import audit_leakage as audit
    from mmnerd.audit import leakage_json, posts_from_export, posts_from_imgid
    from mmnerd.errors import ConfigError
    from mmnerd.io import atomic_write

    if (export_dir is None) == (imgid is None):
        raise ConfigError("give exactly one of --export DIR or --imgid DIR")
    splits = posts_from_export(export_dir) if export_dir else posts_from_imgid(imgid, images)
    report = audit(splits, threshold=threshold, text_threshold=text_threshold)
    with atomic_write(out) as f:
        f.write(leakage_json(report))
    table = Table(title="near-duplicates straddling splits")
    for col in ("kind", "clusters", "cross-split pairs", "posts per split"):
        table.add_column(col)
    for kind in ("image", "text"):
        part = report[kind]
        table.add_row(
            kind, str(part["clusters"]), str(part["cross_split_edges"]), str(part["posts"])
        )
    Console().print(table)
    print(f"wrote {out}", file=sys.stderr)
    raise typer.Exit(0 if report["ok"] else 1)


def _tighten_secrets(cfg: Any) -> None:
    """Re-tighten existing secret folders and files (corpus key, Label Studio data dir)."""
    from mmnerd.labelstudio import server
    from mmnerd.privacy import tighten

    tighten(cfg.root)
    server.secure(cfg)


@app.command()
@friendly_errors
def status(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """Show which stages are done and their figures."""
    from mmnerd.pipeline import stage_stats
    from mmnerd.stages import ALL_STAGE_NAMES

    cfg = _config(pipeline, set_)
    _tighten_secrets(cfg)
    stats = [s for name in ALL_STAGE_NAMES if (s := stage_stats(cfg, name))]
    _summary(stats, f"status: {cfg.name} ({cfg.root})")


if __name__ == "__main__":
    app()
