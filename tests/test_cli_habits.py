"""CLI habits: --version, -h, init, config show, status with stale stages and the next step,
and mistakes answered with the fix (did you mean, the TOML form, the command to run)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_mmnerd

MMNERD_FIXTURE = ROOT / "tests/data/imgid/mmnerd/train_valid_test/train_valid_test_en"


def mmnerd(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE"}
    return run_mmnerd(*args, cwd=cwd, env=env, timeout=300)


def last_line(res: subprocess.CompletedProcess) -> str:
    return res.stderr.strip().splitlines()[-1]


def test_version_and_short_help() -> None:
    from mmnerd import __version__

    res = mmnerd("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"mmnerd {__version__}"
    for args in (["-h"], ["collect", "-h"], ["ls", "-h"], ["config", "show", "-h"]):
        res = mmnerd(*args)
        assert res.returncode == 0 and "Usage:" in res.stdout, args


@pytest.mark.parametrize(
    "override, expected",
    [
        ("dedup.treshold=8", "--set dedup.treshold=8: unknown field 'dedup.treshold'; did you "
                             "mean 'dedup.threshold'?"),
        ("language.targets=en,fr", "--set language.targets=en,fr: field 'language.targets': "
         "Input should be a valid list; write it in TOML: targets = [\"en\", \"fr\"] (on the "
         "command line: --set 'language.targets=[\"en\", \"fr\"]')"),
        ("export.splits=sorce", "--set export.splits=sorce: field 'export.splits': 'sorce' is "
                                "not one of stratified, source; did you mean 'source'?"),
        ("source.kind=smaple", "field 'source.kind': unknown source 'smaple'; did you mean "
                               "'sample'?"),
    ],
)  # fmt: skip
def test_a_mistake_in_an_override_names_the_override_and_the_fix(override, expected) -> None:
    res = mmnerd("status", "-p", ROOT / "pipelines/sample.toml", "--set", override)
    assert res.returncode == 2 and last_line(res) == f"mmnerd: error: {expected}"


def test_a_mistake_in_the_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('name = "x"\n[dedup]\ntreshold = 8\n')
    res = mmnerd("status", "-p", bad)
    assert last_line(res) == (f"mmnerd: error: {bad}: unknown field 'dedup.treshold'; did you "
                              "mean 'dedup.threshold'?")  # fmt: skip
    bad.write_text('name = "x"\n[source]\nkind = "conll"\nfiels = ["a.txt"]\n')
    res = mmnerd("status", "-p", bad)
    assert last_line(res) == ("mmnerd: error: unknown field 'source.fiels'; did you mean "
                              "'source.files'? (+1 more)")  # fmt: skip


def test_without_a_pipeline_file_here_the_error_says_what_to_do(tmp_path: Path) -> None:
    res = mmnerd("collect", cwd=tmp_path)
    assert res.returncode == 2
    assert "no pipeline file pipelines/sample.toml" in last_line(res)
    assert "mmnerd init --source KIND -o FILE" in last_line(res)


@pytest.mark.parametrize("kind", ["sample", "mastodon", "bluesky", "conll", "jsonl", "csv"])
def test_init_writes_a_file_that_loads_once_required_fields_are_set(tmp_path, kind) -> None:
    import tomllib

    from mmnerd.config import load_config
    from mmnerd.sources import get_source

    out = tmp_path / f"{kind}.toml"
    res = mmnerd("init", "--source", kind, "--name", f"my {kind}: v2 #1", "-o", out)
    assert res.returncode == 0, res.stderr
    data = tomllib.loads(out.read_text())  # valid TOML, every field written out
    assert data["name"] == f"my {kind}: v2 #1" and data["source"]["kind"] == kind
    assert {"language", "images", "dedup", "export", "benchmark"} <= set(data)
    required = {"conll": 'source.files=["a.txt"]', "jsonl": 'source.path="a.jsonl"',
                "csv": 'source.path="a.csv"', "bluesky": 'source.queries=["photo"]',
                "mastodon": 'source.instances=["https://mastodon.example"]'}  # fmt: skip
    cfg = load_config(out, [required[kind]] if kind in required else [])
    get_source(cfg)
    if kind in required:  # left out on purpose: the first status names it
        res = mmnerd("status", "-p", out)
        assert "Field required" in last_line(res) and required[kind].split("=")[0] in last_line(res)
    assert mmnerd("init", "--source", kind, "-o", out).returncode == 2  # no silent overwrite


def test_config_show_prints_values_descriptions_and_changed_defaults() -> None:
    res = mmnerd("config", "show", "-p", ROOT / "pipelines/import-mmnerd.toml",
                 "--set", "dedup.threshold=6")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert 'kind = "conll"' in res.stdout and "[source]" in res.stdout
    assert "threshold = 6   # max Hamming distance" in res.stdout
    assert "(default: 10)" in res.stdout
    assert "trust_hint = true" in res.stdout


def test_status_shows_stale_stages_and_the_next_command(tmp_path: Path) -> None:
    files = json.dumps([str(p) for p in sorted(MMNERD_FIXTURE.glob("*.txt"))])
    p = ["-p", ROOT / "pipelines/import-mmnerd.toml", "--set", f'data_dir="{tmp_path}"',
         "--set", f"source.files={files}"]  # fmt: skip
    assert "next: mmnerd collect" in mmnerd("status", *p).stderr
    assert mmnerd("collect", *p).returncode == 0
    assert "next: mmnerd dedup" in mmnerd("status", *p).stderr
    res = mmnerd("status", *p, "--set", "normalize.max_chars=50")
    assert "stale: language" in res.stderr and "next: mmnerd collect" in res.stderr
    assert mmnerd("dedup", *p).returncode == 0
    assert mmnerd("export", *p).returncode == 0
    assert "next: mmnerd benchmark" in mmnerd("status", *p).stderr


def test_export_before_pull_names_the_commands_to_run(tmp_path: Path) -> None:
    files = json.dumps([str(p) for p in sorted(MMNERD_FIXTURE.glob("*.txt"))])
    p = ["-p", ROOT / "pipelines/import-mmnerd.toml", "--set", f'data_dir="{tmp_path}"',
         "--set", f"source.files={files}", "--set", "export.labels=labelstudio"]  # fmt: skip
    for command in ("collect", "dedup"):
        assert mmnerd(command, *p).returncode == 0
    res = mmnerd("export", *p)
    assert res.returncode == 2
    assert last_line(res) == (
        "mmnerd: error: stage 'split' needs stage 'pull', which has not run: run `mmnerd pull` "
        "(same -p and --set) first, or export the source's own gold labels without Label "
        "Studio with --set export.labels=source"
    )
