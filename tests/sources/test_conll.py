"""IMGID CoNLL importer: exact reader, label mapping, gold spans, errors, loopback images."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from mmnerd.config import PipelineConfig
from mmnerd.errors import InputError
from mmnerd.sources import get_source
from mmnerd.sources.conll import read_imgid
from mmnerd.text.bio import bio_to_spans
from tests.conftest import free_port

TWITTER2015 = (
    "IMGID:72\n"
    "RT\tO\n"
    "@Asiah_Mo\tB-PER\n"
    ":\tO\n"
    "Kevin\tB-PER\n"
    "Durant\tI-PER\n"
    "in\tO\n"
    "Oklahoma\tB-LOC\n"
    "City\tI-LOC\n"
    "#NBAFinals\tB-OTHER\n"
    "😀\tO\n"
    "\n"
    "IMGID:O_1234\n"
    "\n"  # tolerated: blank line after the IMGID line
    "Apple\tB-ORG\n"
    "Café\tI-OTHER\n"  # I- without B-: starts a span (conlleval)
    "\n"
)


def write(tmp_path: Path, text: str, name: str = "twitter2015/train.txt") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def test_read_imgid_exact(tmp_path: Path) -> None:
    blocks = list(read_imgid(write(tmp_path, TWITTER2015)))
    assert [b[0] for b in blocks] == ["72", "O_1234"]
    assert blocks[0][1][:3] == ["RT", "@Asiah_Mo", ":"]
    assert blocks[0][2][-2:] == ["B-OTHER", "O"]
    assert blocks[1] == ("O_1234", ["Apple", "Café"], ["B-ORG", "I-OTHER"])


def test_read_imgid_crlf_bom_and_no_final_blank_line(tmp_path: Path) -> None:
    text = "\ufeffIMGID:1\r\nA\tB-PER\r\nb\tO\r\n\r\nIMGID:2\r\nc\tO"
    assert list(read_imgid(write(tmp_path, text))) == [
        ("1", ["A", "b"], ["B-PER", "O"]),
        ("2", ["c"], ["O"]),
    ]


def test_round_trip_with_a_writer(tmp_path: Path) -> None:
    blocks = list(read_imgid(write(tmp_path, TWITTER2015)))
    out = "".join(
        f"IMGID:{i}\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(toks, labs, strict=True)) + "\n"
        for i, toks, labs in blocks
    )
    assert list(read_imgid(write(tmp_path, out, "again.txt"))) == blocks


@pytest.mark.parametrize(
    "text, message",
    [
        ("IMGID:1\nfoo B-PER\n", r"train.txt:2: expected token<TAB>label, got 'foo B-PER'"),
        ("IMGID:1\na\tO\tx\n", r"train.txt:2: expected token<TAB>label"),
        ("IMGID:1\na\t\n", r"train.txt:2: expected token<TAB>label"),
        ("a\tO\n", r"train.txt:1: token line before the first IMGID"),
        ("IMGID:1\n\nIMGID:2\na\tO\n", r"train.txt:1: IMGID:1 has no tokens"),
        ("IMGID:\na\tO\n", r"train.txt:1: empty IMGID"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        list(read_imgid(write(tmp_path, text)))
    assert str(e.value).startswith("twitter2015/train.txt:")


MMNERD_ODD_IDS = [
    "00361613---Tapas...Marine-Tavern...1-L",  # runs of dots inside a name
    "02825002---hot-chip-picture-id930176274?s=612x612",
    "07611676---5e835f5f0c2a620e11231026?format=jpeg&width=1200",
    "05546078---96035068-stock-vector-women-s-day-on-the-8th-of-march-",
    "0912---a%2Fb,c*d~e",
    "01474768---photo.jpg",  # already ends in .jpg
    "x" * 244,
]


@pytest.mark.parametrize("imgid", MMNERD_ODD_IDS)
def test_published_ids_are_plain_file_names(tmp_path: Path, imgid: str) -> None:
    blocks = list(read_imgid(write(tmp_path, f"IMGID:{imgid}\nParis\tB-LOC\n")))
    assert blocks == [(imgid, ["Paris"], ["B-LOC"])]


@pytest.mark.parametrize(
    "imgid, why",
    [
        ("..", "names a folder"),
        (".", "names a folder"),
        ("../x", "holds '/'"),
        ("a\\b", "holds '\\\\'"),
        ("a\x00b", "holds '\\x00'"),
        ("a\x1bb", "holds '\\x1b'"),
    ],
)
def test_ids_that_are_not_one_file_name_are_refused(tmp_path: Path, imgid: str, why: str) -> None:
    with pytest.raises(InputError) as e:
        list(read_imgid(write(tmp_path, f"IMGID:{imgid}\nx\tO\n")))
    assert str(e.value).startswith("twitter2015/train.txt:1: IMGID") and why in str(e.value)


def test_find_image_tries_the_reference_name_then_the_id(tmp_path: Path) -> None:
    from mmnerd.sources.conll import find_image

    (tmp_path / "a.jpg.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / "c...d.jpg").write_bytes(b"x")
    assert find_image(tmp_path, "a.jpg") == tmp_path / "a.jpg.jpg"  # the reference loaders' name
    assert find_image(tmp_path, "b.jpg") == tmp_path / "b.jpg"  # an id stored under its own name
    assert find_image(tmp_path, "c...d") == tmp_path / "c...d.jpg"
    assert find_image(tmp_path, "..") is None and find_image(tmp_path, "zz") is None


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x" / "t.txt"
    path.parent.mkdir()
    path.write_bytes(b"IMGID:1\na\tO\n\xff\tO\n")
    with pytest.raises(InputError, match=r"x/t.txt:3: not UTF-8"):
        list(read_imgid(path))


def test_bio_to_spans_repairs_orphan_inside() -> None:
    offs = [(0, 1), (2, 3), (4, 5), (6, 7)]
    spans, issues = bio_to_spans(["I-PER", "I-PER", "B-LOC", "I-ORG"], offs, "a b c d")
    repairs = len(issues)
    assert [(s.start, s.end, s.label) for s in spans] == [
        (0, 3, "PER"),
        (4, 5, "LOC"),
        (6, 7, "ORG"),
    ]
    assert repairs == 2


def config(tmp_path: Path, **source) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"name": "t", "data_dir": str(tmp_path / "data"), "source": {"kind": "conll", **source}}
    )


def test_posts_have_gold_spans_and_served_images(tmp_path: Path) -> None:
    path = write(tmp_path, TWITTER2015)
    images = tmp_path / "twitter2015_images"
    images.mkdir()
    (images / "72.jpg").write_bytes(b"\xff\xd8\xff fake jpeg")
    cfg = config(tmp_path, files=[str(path)], images_dir=str(images), image_port=free_port())
    src = get_source(cfg)
    posts = list(get_source(cfg).posts())
    p = posts[0]
    assert p.id == "twitter2015:train:72" and p.source == "twitter2015" and p.lang_hint == "en"
    assert p.text == "RT @Asiah_Mo : Kevin Durant in Oklahoma City #NBAFinals 😀"
    assert [(s.text, s.label) for s in p.gold_spans] == [
        ("@Asiah_Mo", "PER"),
        ("Kevin Durant", "PER"),
        ("Oklahoma City", "LOC"),
        ("#NBAFinals", "MISC"),  # OTHER -> MISC
    ]
    for s in p.gold_spans:
        assert p.text[s.start : s.end] == s.text
    assert p.tokens[-1] == "😀" and p.token_offsets[-1] == (len(p.text) - 1, len(p.text))
    assert posts[1].image is None and posts[1].extra["image_missing"] is True
    assert posts[1].extra["bio_repairs"] == 1
    assert [(s.text, s.label) for s in posts[1].gold_spans] == [("Apple", "ORG"), ("Café", "MISC")]
    assert p.image is not None
    with src.serving():
        r = requests.get(p.image.url, timeout=5)
        assert r.status_code == 200 and r.content == b"\xff\xd8\xff fake jpeg"
        assert requests.get(p.image.url.replace("72.jpg", "73.jpg"), timeout=5).status_code == 404


def test_free_port_is_shared_by_instances_and_label_map(tmp_path: Path) -> None:
    path = write(tmp_path, TWITTER2015)
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "72.jpg").write_bytes(b"x")
    cfg = config(
        tmp_path, files=[str(tmp_path / "twitter2015" / "*.txt")], images_dir=str(images),
        image_port=0, label_map={"OTHER": "O"}, dataset="t15",
    )  # fmt: skip
    a, b = get_source(cfg), get_source(cfg)
    assert a.port == b.port != 0
    post = next(iter(b.posts()))
    assert post.id == "t15:train:72" and "MISC" not in {s.label for s in post.gold_spans}
    with a.serving():
        assert requests.get(post.image.url, timeout=5).content == b"x"
    assert path.exists()


def test_unknown_label_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "IMGID:1\nx\tB-DATE\n")
    with pytest.raises(InputError, match=r"train.txt:2: IMGID:1: label 'B-DATE'.*label_map"):
        list(get_source(config(tmp_path, files=[str(path)])).posts())


def test_import_pipeline_end_to_end_with_the_fetcher(tmp_path: Path) -> None:
    """pipelines/import-twitter2015.toml: collect -> language -> ... -> fetch over loopback."""
    import io

    from PIL import Image

    from mmnerd.config import load_config
    from mmnerd.pipeline import iter_excluded, iter_stage
    from mmnerd.stages import run_collect
    from tests.conftest import ROOT

    path = write(tmp_path, TWITTER2015 + "IMGID:99\nParis\tB-LOC\nis\tO\nlovely\tO\n")
    images = tmp_path / "twitter2015_images"
    images.mkdir()
    for name, colour in (("72.jpg", "red"), ("99.jpg", "blue")):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(buf, "JPEG")
        (images / name).write_bytes(buf.getvalue())
    cfg = load_config(
        ROOT / "pipelines" / "import-twitter2015.toml",
        [
            f'data_dir="{tmp_path / "data"}"',
            f'source.files=["{path}"]',
            f'source.images_dir="{images}"',
            "source.image_port=0",
        ],
    )
    run_collect(cfg)
    kept = {p.source_id: p for p in iter_stage(cfg, "fetch")}
    assert set(kept) == {"train:72", "train:99"}
    p = kept["train:72"]
    assert p.image is not None and p.image.status == "ok" and p.image.width == 64
    assert [(s.text, s.label) for s in p.gold_spans][-1] == ("#NBAFinals", "MISC")
    for s in p.gold_spans:
        assert p.text[s.start : s.end] == s.text
    assert {x.reason for x in iter_excluded(cfg, "fetch")} == {"no_image"}  # O_1234 has no picture


def test_round_trip_with_the_imgid_exporter(tmp_path: Path) -> None:
    """export/conll.py writes, read_imgid + the importer read back the same tokens and spans."""
    from mmnerd.export.conll import imgid, write_imgid_split
    from mmnerd.records import Post

    posts = [
        Post(id="mastodon:https://m.s/users/a/statuses/1", source="mastodon", source_id="1",
             text="", tokens=["Merci", "@Macron", "🇫🇷", "pour", "Paris", "👩‍👩‍👧", "!"],
             ner_tags=["O", "B-PER", "O", "O", "B-LOC", "O", "O"]),
        Post(id="bluesky:at://did:plc:x/app.bsky.feed.post/3k", source="bluesky", source_id="3k",
             text="", tokens=["Coupe", "du", "monde", "Café\u0301", "#Lyon"],
             ner_tags=["B-MISC", "I-MISC", "I-MISC", "O", "B-LOC"]),
    ]  # fmt: skip
    out = tmp_path / "export" / "train.txt"
    write_imgid_split(posts, out, tmp_path, misc_label="OTHER")
    blocks = list(read_imgid(out))
    assert [b[0] for b in blocks] == [imgid(p.id) for p in posts]
    assert [b[1] for b in blocks] == [p.tokens for p in posts]
    assert blocks[1][2][:3] == ["B-OTHER", "I-OTHER", "I-OTHER"]
    cfg = config(tmp_path, files=[str(out)], dataset="rt")
    back = list(get_source(cfg).posts())
    assert [(s.text, s.label) for s in back[0].gold_spans] == [("@Macron", "PER"), ("Paris", "LOC")]
    assert [(s.text, s.label) for s in back[1].gold_spans] == [
        ("Coupe du monde", "MISC"),
        ("#Lyon", "LOC"),
    ]
