"""IMGID CoNLL importer: exact reader, ids, published tokens and splits, gold spans, pictures
read as files, repairs listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.errors import InputError
from mmnerd.sources import get_source
from mmnerd.sources.conll import read_imgid
from mmnerd.text.bio import bio_to_spans

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


FIXTURES = Path(__file__).resolve().parents[1] / "data" / "imgid"


IMPORT = {  # what the import pipelines set: declared language, optional images
    "language": {"targets": ["en"], "candidates": ["en"], "trust_hint": True},
    "images": {"required": False},
}


def config(tmp_path: Path, sections: dict | None = None, **source) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "t",
            "data_dir": str(tmp_path / "data"),
            "source": {"kind": "conll", **source},
            **(sections or {}),
        }  # fmt: skip
    )


def test_posts_keep_the_published_tokens_text_split_and_id(tmp_path: Path) -> None:
    files = [str(FIXTURES / "twitter2015" / f"{s}.txt") for s in ("train", "valid", "test")]
    posts = list(get_source(config(tmp_path, files=files)).posts())
    by_id = {p.id: p for p in posts}
    assert len(posts) == 13 and len(by_id) == 13
    first, again = by_id["twitter2015:train:41203"], by_id["twitter2015:train:41203~2"]
    assert first.imgid == again.imgid == "41203"  # a repeated id keeps both posts
    assert first.tokens[-1] == "http://t.co/aB3dE5fG7h" and first.pretokenized
    assert first.text == " ".join(first.tokens) and first.raw_text == first.text
    assert [p.source_split for p in posts] == ["train"] * 8 + ["validation"] * 2 + ["test"] * 3
    odd = by_id["twitter2015:train:77001"]
    assert odd.tokens == ["can", "\u200eDublin", "wait", "?", "don\x92t", "think", "so"]
    assert [(s.text, s.label) for s in odd.gold_spans] == [("\u200eDublin", "LOC")]
    assert by_id["twitter2015:train:90211"].tokens[6] == "\u200e"  # a token of one invisible
    amp = by_id["twitter2015:train:55120"]
    assert amp.tokens[1] == "Mercedes-AMG" and amp.tokens[-3:-1] == ["&amp", ";"]
    assert [(s.text, s.label) for s in amp.gold_spans][0] == ("Mercedes-AMG", "MISC")
    for p in posts:
        assert [p.text[a:b] for a, b in p.token_offsets] == p.tokens
        for sp in p.gold_spans:
            assert p.text[sp.start : sp.end] == sp.text


def test_orphan_inside_tags_are_read_as_b_counted_and_listed(tmp_path: Path) -> None:
    import json

    files = [str(FIXTURES / "twitter2015" / f"{s}.txt") for s in ("train", "valid", "test")]
    src = get_source(config(tmp_path, files=files))
    posts = {p.imgid: p for p in src.posts()}
    assert [(s.text, s.label) for s in posts["1187734"].gold_spans][0] == (
        "The Harbour Lights Festival", "MISC")  # fmt: skip
    assert [(s.text, s.label) for s in posts["402"].gold_spans][0] == ("Orlo Pharma", "ORG")
    assert src.flags["bio_repair:orphan_inside"] == 2 and src.flags["repeated_imgid"] == 1
    listed = [json.loads(x) for x in (tmp_path / "data/reports/import/bio-repairs.jsonl").open()]
    assert [(r["imgid"], r["line"], r["tag"], r["read_as"]) for r in listed] == [
        ("1187734", 14, "I-OTHER", "B-MISC"), ("402", 21, "I-ORG", "B-ORG")]  # fmt: skip
    assert listed[0]["file"].endswith("twitter2015/train.txt")


def test_label_map_drops_types_and_unknown_labels_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, TWITTER2015)
    cfg = config(tmp_path, files=[str(tmp_path / "twitter2015" / "*.txt")],
                 label_map={"OTHER": "O"}, dataset="t15")  # fmt: skip
    post = next(iter(get_source(cfg).posts()))
    assert post.id == "t15:train:72" and all(s.label != "MISC" for s in post.gold_spans)
    assert path.exists()
    path = write(tmp_path, "IMGID:1\nx\tB-DATE\n")
    with pytest.raises(InputError, match=r"train.txt:2: IMGID:1: label 'B-DATE'.*label_map"):
        list(get_source(config(tmp_path, files=[str(path)])).posts())


def png(colour: str, size: tuple[int, int] = (40, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_pictures_are_read_as_files_confined_to_the_folder(tmp_path: Path) -> None:
    """No HTTP server: the fetch stage reads <imgid>.jpg from images_dir; a symlink out of
    the folder, a non-image and a missing picture are statuses, and with images optional
    those posts continue text-only."""
    from mmnerd.pipeline import iter_stage, stage_stats
    from mmnerd.stages import run_collect

    src = FIXTURES / "mmnerd/train_valid_test/train_valid_test_en"
    images = tmp_path / "images"
    images.mkdir()
    (images / "00361613---Tapas...Marine-Tavern...1-L.jpg").write_bytes(png("red"))
    (images / "01474768---beach-house-photo.jpg").write_bytes(png("blue"))  # id ends in .jpg
    (images / "O_2846.jpg").write_bytes(b"<html>not an image</html>")
    secret = tmp_path / "outside.png"
    secret.write_bytes(png("green"))
    (images / "17_06_4240.jpg").symlink_to(secret)
    cfg = config(tmp_path, IMPORT, files=[str(src / "*_conll_format.txt")],
                 images_dir=str(images), dataset="mm")  # fmt: skip
    run_collect(cfg)
    posts = {p.id: p for p in iter_stage(cfg, "fetch")}
    assert len(posts) == 13  # every post kept
    tapas = posts["mm:train:00361613---Tapas...Marine-Tavern...1-L"]
    again = posts["mm:train:00361613---Tapas...Marine-Tavern...1-L~2"]
    assert tapas.has_image and again.has_image and tapas.image.sha256 == again.image.sha256
    assert posts["mm:train:01474768---beach-house-photo.jpg"].has_image
    assert posts["mm:train:O_2846"].image.status == "not_image"
    assert posts["mm:train:17_06_4240"].image.status == "blocked_path"
    assert not posts["mm:test:12268831---slide_4"].has_image
    stats = stage_stats(cfg, "fetch")
    assert stats.items_out == 13 and stats.flagged["text_only"] == 10
    assert stats.flagged["image:blocked_path"] == 1 and stats.flagged["image:not_image"] == 1
    assert stage_stats(cfg, "collect").flagged["image_missing"] == 8


def test_imgid_export_ids_are_unique_by_construction(tmp_path: Path) -> None:
    """Issue 20: x.1, x_1, x/1 and x 1 used to share IMGID dump_x_1 and one picture."""
    from mmnerd.export.conll import encode_imgid, write_imgid_split
    from mmnerd.records import ImageRef, Post

    ids = ["dump:x.1", "dump:x_1", "dump:x/1", "dump:x 1", "dump:x-1", "dump:x\u00e91"]
    encoded = [encode_imgid(i) for i in ids]
    assert len(set(encoded)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", e) for e in encoded)
    assert encode_imgid("sample:00001") == "sample_3A00001"
    store = tmp_path / "store"
    store.mkdir()
    posts = []
    for k, pid in enumerate(ids):
        (store / f"{k}.png").write_bytes(png(("red", "blue", "green", "white", "black", "gray")[k]))
        image = ImageRef(url="u", status="ok", path=f"{k}.png")
        posts.append(Post(id=pid, source="dump", source_id=pid[5:], text="a", tokens=["a"],
                          ner_tags=["O"], image=image))  # fmt: skip
    out = tmp_path / "imgid" / "train.txt"
    write_imgid_split(posts, out, store)
    written = sorted((out.parent / "images").iterdir())
    assert len(written) == len(ids)
    assert sorted(p.read_bytes() for p in written) == sorted(
        (store / f"{k}.png").read_bytes() for k in range(len(ids)))  # fmt: skip


def test_round_trip_with_the_imgid_exporter(tmp_path: Path) -> None:
    """export/conll.py writes, read_imgid + the importer read back the same tokens and spans."""
    from mmnerd.export.conll import encode_imgid, write_imgid_split
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
    assert [b[0] for b in blocks] == [encode_imgid(p.id) for p in posts]
    assert [b[1] for b in blocks] == [p.tokens for p in posts]
    assert blocks[1][2][:3] == ["B-OTHER", "I-OTHER", "I-OTHER"]
    cfg = config(tmp_path, files=[str(out)], dataset="rt")
    back = list(get_source(cfg).posts())
    assert [(s.text, s.label) for s in back[0].gold_spans] == [("@Macron", "PER"), ("Paris", "LOC")]
    assert [(s.text, s.label) for s in back[1].gold_spans] == [
        ("Coupe du monde", "MISC"),
        ("#Lyon", "LOC"),
    ]
