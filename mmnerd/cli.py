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

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help="Build and benchmark multilingual, multimodal NER datasets (MMNERD-style).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: importing typer's rich help costs ~0.25 s per start
    context_settings=HELP,
)
ls_app = typer.Typer(
    help="Run the local Label Studio server.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP,
)
annotate_app = typer.Typer(
    help="Push tasks to Label Studio; simulate annotators.",
    rich_markup_mode=None,
    context_settings=HELP,
)
config_app = typer.Typer(
    help="See the resolved configuration.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP,
)
app.add_typer(ls_app, name="ls")
app.add_typer(annotate_app, name="annotate")
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        from mmnerd import __version__

        print(f"mmnerd {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Build and benchmark multilingual, multimodal NER datasets (MMNERD-style)."""


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
    from mmnerd.errors import ConfigError

    if pipeline == DEFAULT_PIPELINE and not pipeline.exists():
        raise ConfigError(
            f"no pipeline file {pipeline} in {Path.cwd()}: pass -p FILE (or set PIPELINE), run "
            "from the repository's root, or write one with `mmnerd init --source KIND -o FILE`"
        )
    return load_config(pipeline, overrides)


def require_output(stats: list[Any], command: str) -> None:
    """Fail (exit 3, one line) when the command's last stage kept no post."""
    from mmnerd.pipeline import require_output as check

    check(stats, command)


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
    stats = run_collect(cfg, force=force)
    _summary(stats, f"collect: {cfg.name}")
    require_output(stats, "collect")


@app.command()
@friendly_errors
def dedup(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Hash images and mark exact and near duplicates (never deleted)."""
    from mmnerd.stages import run_dedup

    cfg = _config(pipeline, set_)
    stats = run_dedup(cfg, force=force)
    _summary(stats, f"dedup: {cfg.name}")
    require_output(stats, "dedup")


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
    from mmnerd.labelstudio import database, server

    cfg = _config(pipeline, set_)
    print(server.status(cfg))
    print(database.status(cfg.labelstudio))


@ls_app.command("backup")
@friendly_errors
def ls_backup(
    output: Annotated[
        Path | None,
        typer.Argument(help="backup file (default: <data_dir>/backups/labelstudio-<time>.tar)"),
    ] = None,
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    set_: SetOpt = None,
) -> None:
    """Back up Label Studio's database (pg_dump, or SQLite's online backup) and credentials
    into one 0600 file; safe while the server runs."""
    import time

    from mmnerd.labelstudio import database, server

    cfg = _config(pipeline, set_)
    if output is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output = server.data_dir(cfg) / "backups" / f"labelstudio-{stamp}.tar"
    meta = database.backup(cfg.labelstudio, output)
    print(f"backed up Label Studio ({meta['database']}) to {output} ({meta['size']:,} bytes)",
          file=sys.stderr)  # fmt: skip


@ls_app.command("restore")
@friendly_errors
def ls_restore(
    backup: Annotated[Path, typer.Argument(help="a file written by `mmnerd ls backup`")],
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    set_: SetOpt = None,
) -> None:
    """Replace Label Studio's database and credentials with a backup's (the server is stopped
    for it and started again if it was running); then `mmnerd pull` as usual."""
    from mmnerd.labelstudio import database

    meta = database.restore(_config(pipeline, set_).labelstudio, backup)
    again = " and restarted Label Studio" if meta["restarted"] else ""
    print(f"restored {backup} (made {meta['created_at']}){again}", file=sys.stderr)


@annotate_app.command("push")
@friendly_errors
def annotate_push(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Start Label Studio if needed and import tasks (idempotent: reruns add nothing)."""
    from mmnerd.stages import run_push

    cfg = _config(pipeline, set_)
    stats = run_push(cfg, force=force)
    _summary(stats, f"annotate: {cfg.name}")
    require_output(stats, "annotate push")


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
    stats = run_pull(cfg)
    _summary(stats, f"pull: {cfg.name}")
    require_output(stats, "pull")


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
    _summary(stats, f"export: {cfg.name}")
    rows = ", ".join(f"{f['file']}: {f['rows']}" for f in manifest["files"])
    print(f"wrote {cfg.export_dir} ({rows})", file=sys.stderr)
    require_output(stats, "export")


@app.command()
@friendly_errors
def benchmark(
    pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None, force: ForceOpt = False
) -> None:
    """Train the baselines and the 2M-NER reference on the export; write reports/<name>/."""
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
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="an export folder whose dev split calibrates the confidence "
            "(default: the pipeline's export, if any)"
        ),
    ] = None,
    clusters: Annotated[
        int, typer.Option(help="diversity clusters for the sampling (0 = auto, -1 = none)")
    ] = 0,
) -> None:
    """Tag the posts bound for annotation with a trained model: pre-annotations with a
    calibrated confidence and a cluster each (set labelstudio.predictions to the file
    written, then `mmnerd annotate push`: Label Studio serves the least confident first)."""
    from mmnerd.stages import run_predict

    cfg = _config(pipeline, set_)
    out = run_predict(cfg, checkpoint, calibration=calibration, clusters=clusters)
    print(f"wrote {out}; push with --set labelstudio.predictions={out}", file=sys.stderr)


@app.command("audit-leakage")
@friendly_errors
def audit_leakage(
    export_dir: Annotated[
        Path | None, typer.Option("--export", help="an mmnerd export folder (Parquet splits)")
    ] = None,
    imgid: Annotated[
        Path | None,
        typer.Option(
            "--imgid",
            help="IMGID corpus folder: train.txt/valid.txt/test.txt (Twitter-2015/2017) or "
            "{train,valid,test}_conll_format.txt (MMNERD)",
        ),
    ] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="image folder of the IMGID corpus (<id>.jpg)")
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="REF: another corpus (IMGID folder or export) counted as training data for "
            "every split; posts with a near-duplicate in it leak",
        ),
    ] = None,
    against_images: Annotated[
        Path | None, typer.Option("--against-images", help="image folder of an IMGID REF")
    ] = None,
    threshold: Annotated[int, typer.Option(help="pHash Hamming distance (of 64 bits)")] = 10,
    text_threshold: Annotated[float, typer.Option(help="text Jaccard similarity")] = 0.8,
    out: Annotated[Path, typer.Option(help="JSON report")] = Path("reports/leakage.json"),
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="leak list as CSV (default: beside --out)")
    ] = None,
    write_clean: Annotated[
        Path | None,
        typer.Option(
            "--write-clean", help="write the corpus without its leaking posts to this new folder"
        ),
    ] = None,
) -> None:
    """List every post that leaks: near-duplicates (image or text) across train/validation/test, or
    shared with REF (--against). Exit 0 clean, 1 leaks, 2 errors."""
    from rich.console import Console
    from rich.table import Table

    from mmnerd.audit import image_lines, leakage_json, run_audit, summary_rows, write_leaks_csv
    from mmnerd.errors import ConfigError
    from mmnerd.io import atomic_write

    if (export_dir is None) == (imgid is None):
        raise ConfigError("give exactly one of --export DIR or --imgid DIR")
    report = run_audit(
        export_dir or imgid,  # type: ignore[arg-type]
        "export" if export_dir else "imgid",
        images=images,
        against=against,
        against_images=against_images,
        threshold=threshold,
        text_threshold=text_threshold,
        clean_dir=write_clean,
    )
    csv_path = csv_path or out.with_suffix(".csv")
    with atomic_write(out) as f:
        f.write(leakage_json(report))
    write_leaks_csv(report["leaks"], csv_path)
    table = Table(title="leaking posts (near-duplicates across splits, or shared with REF)")
    for col in ("kind", "against", "clusters", "pairs", "leaking posts"):
        table.add_column(col)
    for row in summary_rows(report):
        table.add_row(*row)
    Console().print(table)
    print("\n".join(image_lines(report)), flush=True)
    n = sum(report["leaking_posts"].values())
    print(f"{n} leaking posts; wrote {out} and {csv_path}", file=sys.stderr)
    if report["clean"]:
        rows = report["clean"]["rows"]
        kept = ", ".join(f"{s}: {r['after']}/{r['before']}" for s, r in rows.items())
        print(f"wrote {write_clean} without them ({kept} posts kept)", file=sys.stderr)
    raise typer.Exit(0 if report["ok"] else 1)


def _tighten_secrets(cfg: Any) -> None:
    """Re-tighten existing secret folders and files (corpus key, Label Studio data dir)."""
    from mmnerd.labelstudio import server
    from mmnerd.privacy import tighten

    tighten(cfg.root)
    server.secure(cfg)


@app.command()
@friendly_errors
def clean(
    pipeline: PipelineOpt = DEFAULT_PIPELINE,
    set_: SetOpt = None,
    everything: Annotated[
        bool,
        typer.Option("--all", help="also the images, collection journals and corpus key"),
    ] = False,
    labelstudio: Annotated[
        bool,
        typer.Option("--labelstudio", help="also Label Studio's data dir: EVERY ANNOTATION"),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask (scripts)")] = False,
) -> None:
    """Remove derived outputs (stages, export, reports, index); annotations, collection
    journals, images and the corpus key stay unless --all / --labelstudio, which ask first."""
    from mmnerd.clean import execute, plan
    from mmnerd.errors import ConfigError

    cfg = _config(pipeline, set_)
    todo = plan(cfg, everything, labelstudio)
    for path, why in todo.keep:
        print(f"keeping  {path}  ({why})", file=sys.stderr)
    if not todo.remove:
        print(f"nothing to remove for {cfg.name}", file=sys.stderr)
        return
    for path in todo.remove:
        print(f"removing {path}", file=sys.stderr)
    if (everything or labelstudio) and not yes:
        if not sys.stdin.isatty():
            raise ConfigError("refusing to delete annotations or collected data without a "
                              "terminal to confirm: add --yes")  # fmt: skip
        answer = input(f"Type the pipeline name ({cfg.name}) to delete the above: ")
        if answer.strip() != cfg.name:
            print("nothing deleted", file=sys.stderr)
            raise typer.Exit(1)
    execute(cfg, todo)


@app.command()
@friendly_errors
def status(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """Check the pipeline file, show each stage's figures (and which are stale: their
    config or input changed since they ran), and say what to run next."""
    from mmnerd.pipeline import COMMAND_OF_STAGE, MARKER, is_done, stage_dir, stage_stats
    from mmnerd.sources import get_source
    from mmnerd.stages import make_stage, route

    cfg = _config(pipeline, set_)
    get_source(cfg)  # the source kind and its options are valid
    _tighten_secrets(cfg)
    stats, stale, todo = [], [], None
    for name in route(cfg):
        s = stage_stats(cfg, name)
        if s is None:
            todo = todo or name
            continue
        if not is_done(cfg, make_stage(cfg, name)) and name != "pull":
            stale.append(name)
            todo = todo or name
        stats.append(s)
    _summary(stats, f"status: {cfg.name} ({cfg.root})")
    for name in stale:
        print(f"stale: {name} (its config or its input changed since it ran)", file=sys.stderr)
    if todo is None:
        nxt = "mmnerd benchmark" if (stage_dir(cfg, "split") / MARKER).exists() else ""
    else:
        nxt = f"mmnerd {COMMAND_OF_STAGE[todo]}"
    if nxt:
        print(f"next: {nxt} -p {pipeline}", file=sys.stderr)


@app.command()
@friendly_errors
def init(
    source: Annotated[
        str, typer.Option("--source", help="source kind: sample, mastodon, bluesky, conll, ...")
    ] = "sample",
    name: Annotated[str, typer.Option("--name", help="pipeline name (paths, titles)")] = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here (default: stdout)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite OUTPUT")] = False,
) -> None:
    """Write a pipeline file for a source, every field with its default and description."""
    from mmnerd.config import PipelineConfig
    from mmnerd.config_doc import render_pipeline
    from mmnerd.errors import ConfigError
    from mmnerd.sources import source_class

    cls = source_class(source)
    title = name or source
    head = (f"# mmnerd pipeline: {title} ({source} source); written by `mmnerd init`.\n"
            "# Every field shows its default; delete what you keep as is.  Check it with\n"
            f"#   mmnerd config show -p {output or 'FILE'}\n\n")  # fmt: skip
    text = head + render_pipeline(PipelineConfig, cls.Options, source)
    text = text.replace('name = "sample"', f"name = {_toml_str(title)}", 1)
    if output is None:
        sys.stdout.write(text)
        return
    if output.exists() and not force:
        raise ConfigError(f"{output} exists: choose another file or add --force")
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}; edit it, then: mmnerd status -p {output}", file=sys.stderr)


def _toml_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


@config_app.command("show")
@friendly_errors
def config_show(pipeline: PipelineOpt = DEFAULT_PIPELINE, set_: SetOpt = None) -> None:
    """Print the resolved config (the file plus --set), each field with its description and
    its default where it differs."""
    from mmnerd.config_doc import render_pipeline
    from mmnerd.sources import get_source

    cfg = _config(pipeline, set_)
    src = get_source(cfg)
    sys.stdout.write(f"# {pipeline} resolved\n" + render_pipeline(
        cfg, src.options, cfg.source.kind, resolved=True))  # fmt: skip


if __name__ == "__main__":
    app()
