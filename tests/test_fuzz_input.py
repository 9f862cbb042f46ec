"""Fuzz: whatever a user types or feeds in, the answer is a config or one clear line.

Property (issue 20.6): loading a pipeline file, applying ``--set`` overrides, building the
source and reading a JSONL / CSV dump either succeed or raise an
:class:`~mmnerd.errors.MmnerdError` -- the CLI prints those as one line and exits 2 -- and
never any other exception (which would be a traceback).  The reproductions that used to
crash (a 100,000-deep JSON line, a 5,000-digit id, ``source.kind.x=1``, ``data_dir`` that
is a file, an unknown encoding) are pinned with ``@example``; tests/test_bad_input.py runs
them through the real CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mmnerd.config import PipelineConfig, load_config
from mmnerd.errors import MmnerdError
from mmnerd.sources import get_source
from tests.conftest import ROOT

SAMPLE = ROOT / "pipelines" / "sample.toml"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SECTIONS = ["source", "language", "normalize", "images", "dedup", "labelstudio", "simulate",
            "export", "benchmark", "executor", "columns"]  # fmt: skip
FIELDS = ["kind", "data_dir", "name", "shard_size", "path", "encoding", "posts", "port",
          "targets", "quotas", "max_chars", "allow_hosts", "ratios", "fixed_test", "text",
          "id", "created_at", "delimiter", "image_port", "threshold", "out_dir", "x"]  # fmt: skip
NAMES = st.one_of(st.sampled_from(SECTIONS + FIELDS), st.text(max_size=6))
TOML_VALUES = st.one_of(
    st.sampled_from(
        [
            "1",
            "-1",
            "0",
            "1e400",
            "nan",
            "inf",
            "true",
            '"x"',
            "'x'",
            "[1, 2]",
            "[0.8, 0.1]",
            "{ a = 1 }",
            "1979-05-27",
            "[[[[",
            "[" * 2000 + "]" * 2000,
            '"/etc/passwd"',
            "jsonl",
            "sample",
            "bogus",
            "utf-8",
            '"\\u0000"',
            "9" * 5000,
            "{ en = 'many' }",
        ]
    ),  # fmt: skip
    st.text(max_size=20),
)


def _cleanly(fn, *args):
    """Run ``fn``; a MmnerdError must be one line.  Any other exception fails the test."""
    try:
        return fn(*args)
    except MmnerdError as e:
        assert str(e).strip(), "an empty error message"
        return None


def _source(cfg: PipelineConfig | None) -> None:
    if cfg is not None:
        _cleanly(get_source, cfg)


@FUZZ
@given(st.lists(st.tuples(st.lists(NAMES, min_size=1, max_size=4), st.booleans(), TOML_VALUES),
                max_size=4))  # fmt: skip
@example([(["source", "kind", "x"], True, "1")])
@example([(["data_dir"], True, '"/etc/passwd"')])
@example([(["source", "kind"], True, "jsonl"), (["source", "kind", "x"], True, "1")])
@example([(["source", "encoding"], True, "bogus")])
@example([(["x"], True, "[" * 100_000)])
@example([(["source"], True, "9" * 5000)])
def test_set_overrides_give_a_config_or_one_line(overrides) -> None:
    forms = [".".join(names) + ("=" + value if eq else "") for names, eq, value in overrides]
    _source(_cleanly(load_config, SAMPLE, forms))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


SCALARS = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=3)),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(SECTIONS), st.dictionaries(NAMES, VALUES, max_size=4), max_size=3
    ),
    st.dictionaries(NAMES, VALUES, max_size=3),
    st.text(max_size=40),
)
def test_pipeline_files_give_a_config_or_one_line(workdir, sections, top, junk) -> None:
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in top.items()]
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]
    path = workdir / "fuzz.toml"
    for text in ("\n".join(lines) + "\n", "\n".join(lines) + "\n" + junk, f"n = {'9' * 5000}\n"):
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _source(_cleanly(load_config, path))


COLUMN_VALUES = st.one_of(
    VALUES,
    st.sampled_from(
        [
            True,
            False,
            None,
            10**4000,
            "1" * 5000,
            "2024-02-30",
            "1e400",
            -1e30,
            "http://127.0.0.1/x.jpg",
            "../../etc/passwd",
            "x" * 200_000,
        ]
    ),  # fmt: skip
)
ROWS = st.one_of(
    st.fixed_dictionaries(
        {"id": COLUMN_VALUES, "text": st.one_of(st.text(), COLUMN_VALUES)},
        optional={
            k: COLUMN_VALUES
            for k in ("lang", "image_url", "image_alt", "created_at", "author", "url", "licence")
        },
    ),
    VALUES,
)


def _line(row) -> bytes:
    try:
        return json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except ValueError:  # an int over 4300 digits cannot be written by json either
        return b'{"id": ' + b"9" * 5000 + b', "text": "x"}'


def _read_dump(workdir: Path, kind: str, content: bytes) -> None:
    path = workdir / f"dump.{kind}"
    path.write_bytes(content)
    cfg = PipelineConfig.model_validate(
        {"name": "fuzz", "data_dir": str(workdir / "data"),
         "source": {"kind": kind, "path": str(path)}}
    )  # fmt: skip
    _cleanly(lambda: list(get_source(cfg).posts()))


@FUZZ
@given(st.lists(st.one_of(ROWS.map(_line), st.binary(max_size=30)), min_size=1, max_size=5))
@example([b"[" * 100_000 + b"]" * 100_000])
@example([b'{"id": ' + b"9" * 5000 + b', "text": "hello"}'])
@example([b'{"id": 1, "text": "x", "created_at": true}'])
def test_jsonl_lines_give_posts_or_one_line(workdir, lines) -> None:
    _read_dump(workdir, "jsonl", b"\n".join(lines) + b"\n")


@FUZZ
@given(
    st.lists(
        st.lists(st.one_of(st.text(max_size=20), st.sampled_from(["x" * 200_000, '"', "\r"])),
                 min_size=1, max_size=4),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_csv_rows_give_posts_or_one_line(workdir, rows) -> None:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "text", "created_at"][: max(2, len(rows[0]))])
    w.writerows(rows)
    _read_dump(workdir, "csv", buf.getvalue().encode("utf-8", "surrogatepass"))
