"""JSONL / CSV / Parquet dump importers with a column mapping; errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmnerd.config import PipelineConfig
from mmnerd.errors import ConfigError, InputError
from mmnerd.privacy import pseudonymizer
from mmnerd.sources import get_source

ROWS = [
    {"tweet_id": "1", "full_text": "Bonjour Paris 🇫🇷", "lang": "fr-FR", "media": "https://x.test/1.jpg",
     "ts": "2024-01-02T03:04:05+01:00", "user": {"name": "alice"}, "link": "https://x.test/p/1"},
    {"tweet_id": "2", "full_text": "Hola, Madrid\nsegunda línea", "lang": "es", "media": "",
     "ts": 1704164645, "user": {"name": "bob"}, "link": ""},
]  # fmt: skip
COLUMNS = {
    "id": "tweet_id",
    "text": "full_text",
    "lang": "lang",
    "image_url": "media",
    "created_at": "ts",
    "author": "user.name",
    "url": "link",
    "licence": "",
}


def config(tmp_path: Path, kind: str, **source) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"name": "t", "data_dir": str(tmp_path / "data"), "source": {"kind": kind, **source}}
    )


def check(posts, kind: str) -> None:
    assert [p.id for p in posts] == [f"{kind}:1", f"{kind}:2"]
    a, b = posts
    assert a.text == "Bonjour Paris 🇫🇷" and a.lang_hint == "fr"
    assert a.image is not None and a.image.url == "https://x.test/1.jpg"
    assert a.created_at == "2024-01-02T02:04:05.000Z"
    assert b.created_at == "2024-01-02T03:04:05.000Z"
    assert b.text == "Hola, Madrid\nsegunda línea" and b.image is None
    assert a.licence == "CC-BY-4.0" and a.url == "https://x.test/p/1"


def test_jsonl_with_nested_columns(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS) + "\n")
    cfg = config(tmp_path, "jsonl", path=str(path), columns=COLUMNS, licence="CC-BY-4.0")
    posts = list(get_source(cfg).posts())
    check(posts, "jsonl")
    assert posts[0].author_hash == pseudonymizer(cfg.root)("alice")
    assert posts[1].extra == {"file": "dump.jsonl", "line": 2}


def test_csv_with_quoted_newlines_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "dump.csv"
    flat = [{**r, "user": r["user"]["name"]} for r in ROWS]
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(flat[0]))
        w.writeheader()
        w.writerows(flat)
        f.write('3,"unterminated\n')
    cfg = config(
        tmp_path, "csv", path=str(path), columns={**COLUMNS, "author": "user"}, licence="CC-BY-4.0"
    )
    src = get_source(cfg)
    it = src.posts()
    check([next(it), next(it)], "csv")
    with pytest.raises(InputError, match=r"dump.csv:5: "):
        next(it)


def test_parquet_and_require_image(tmp_path: Path) -> None:
    path = tmp_path / "dump.parquet"
    flat = [{**r, "user": r["user"]["name"], "ts": str(r["ts"])} for r in ROWS]
    pq.write_table(pa.Table.from_pylist(flat), path)
    cfg = config(
        tmp_path, "parquet", path=str(path), columns={**COLUMNS, "author": "user"},
        licence="CC-BY-4.0", require_image=True, name="tw",
    )  # fmt: skip
    posts = list(get_source(cfg).posts())
    assert [p.id for p in posts] == ["tw:1", "tw:2"]
    assert posts[1].reason == "no_image" and posts[0].ok


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "text": "ok"}\n{"id": "2", "text": "broken\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        list(get_source(config(tmp_path, "jsonl", path=str(path))).posts())
    path.write_text('{"id": "1", "body": "ok"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: no column 'text'.*source.columns.text"):
        list(get_source(config(tmp_path, "jsonl", path=str(path))).posts())
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: expected a JSON object"):
        list(get_source(config(tmp_path, "jsonl", path=str(path))).posts())


def test_csv_field_count_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,text\n1,hello\n2,a,b\n")
    with pytest.raises(InputError, match=r"d.csv:3: 3 fields, the header has 2"):
        list(get_source(config(tmp_path, "csv", path=str(path))).posts())
    with pytest.raises(ConfigError, match="matches no file"):
        list(get_source(config(tmp_path, "csv", path=str(tmp_path / "*.nope"))).posts())
    notpq = tmp_path / "x.parquet"
    notpq.write_text("hello")
    with pytest.raises(InputError, match="not a Parquet file"):
        list(get_source(config(tmp_path, "parquet", path=str(notpq))).posts())


def test_id_column_can_be_absent(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    cfg = config(tmp_path, "jsonl", path=str(path), columns={"id": ""})
    assert [p.id for p in get_source(cfg).posts()] == ["jsonl:d.jsonl:1", "jsonl:d.jsonl:2"]


@pytest.mark.parametrize(
    "name", ["mastodon.toml", "bluesky.toml", "import-twitter2015.toml", "jsonl.toml"]
)
def test_pipeline_files_load_and_their_source_options_validate(name: str) -> None:
    from mmnerd.config import load_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "pipelines" / name)
    src = get_source(cfg)
    assert src.kind == cfg.source.kind


def test_local_pictures_are_read_as_files_without_a_server(tmp_path: Path) -> None:
    """image_path + images_dir: the fetch stage reads the file, confined to the folder."""
    import io

    from PIL import Image

    from mmnerd.pipeline import iter_stage, stage_stats
    from mmnerd.stages import run_collect

    images = tmp_path / "pics"
    images.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buf, "PNG")
    (images / "a.png").write_bytes(buf.getvalue())
    (tmp_path / "secret.png").write_bytes(buf.getvalue())
    rows = [
        {"id": "1", "text": "Great day in Lisbon with the whole team", "image_path": "a.png"},
        {"id": "2", "text": "Great night in Porto with the team", "image_path": "../secret.png"},
        {"id": "3", "text": "Great morning in Faro with the whole team", "image_path": ""},
    ]
    dump = tmp_path / "d.jsonl"
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(tmp_path, "jsonl", path=str(dump), images_dir=str(images))
    cfg.images.required = False
    run_collect(cfg)
    posts = {p.source_id: p for p in iter_stage(cfg, "fetch")}
    assert posts["1"].has_image and posts["1"].image.width == 40
    assert posts["2"].image.status == "blocked_path" and not posts["2"].has_image
    assert posts["3"].image is None
    assert stage_stats(cfg, "fetch").flagged["text_only"] == 2
    cfg2 = config(tmp_path / "again", "jsonl", path=str(dump))  # a path but no folder
    with pytest.raises(InputError, match=r"d.jsonl:1: column 'image_path' holds a path but "
                       r"source.images_dir is not set"):  # fmt: skip
        list(get_source(cfg2).posts())
