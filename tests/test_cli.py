"""The CLI as users run it: one-line errors, exit codes, no traceback."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import run_mmnerd


def mmnerd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return run_mmnerd(*args, cwd=cwd)


def test_help_lists_the_stages():
    out = mmnerd("--help")
    assert out.returncode == 0
    for cmd in ("collect", "dedup", "annotate", "pull", "export", "benchmark", "ls"):
        assert cmd in out.stdout


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from typer.testing import CliRunner; from mmnerd.cli import app;"
        "CliRunner().invoke(app, ['--help']);"
        "heavy = [m for m in ('torch', 'transformers', 'label_studio_sdk', 'pandas', 'spacy',"
        " 'pyarrow', 'PIL', 'numpy') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_missing_pipeline_is_one_line(tmp_path):
    out = mmnerd("collect", "-p", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "no such pipeline file" in out.stderr and "Traceback" not in out.stderr


def test_bad_field_names_the_field(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[dedup]\nthreshold = 'ten'\n")
    out = mmnerd("dedup", "-p", str(p))
    assert out.returncode == 2
    assert "field 'dedup.threshold'" in out.stderr and "Traceback" not in out.stderr


def test_stage_before_its_input_is_a_clear_error(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    out = mmnerd("export", "-p", str(p))
    assert out.returncode == 2
    assert "needs stage 'pull'" in out.stderr
