"""`mmnerd audit-leakage`: both published IMGID layouts and exports, cross-split and
cross-corpus (--against) leaks listed post by post, --write-clean, honest image figures.

Fixtures are written here in the exact published layouts (made-up posts, no corpus text).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from mmnerd.audit import IMGID_LAYOUTS, imgid_blocks
from mmnerd.cli import app

Post = tuple[str, str]  # (imgid, text); tokens split at spaces, one entity label per post


def picture(seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (160, 120), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(140), rng.randrange(100)
        draw.rectangle(
            [x, y, x + rng.randrange(10, 60), y + rng.randrange(10, 50)],
            fill=tuple(rng.randrange(256) for _ in range(3)),
        )
    return img


def write_imgid(
    root: Path, layout: str, splits: dict[str, list[Post]], crlf: bool = False, bom: bool = False
) -> Path:
    """IMGID files as published: ``IMGID:<id>``, ``token<TAB>label``, a blank line."""
    root.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    for split, name in IMGID_LAYOUTS[layout].items():
        chunks = []
        for imgid, text in splits.get(split, []):
            tokens = text.split()
            labels = ["B-PER" if t[0].isupper() and k else "O" for k, t in enumerate(tokens)]
            chunks.append(f"IMGID:{imgid}{end}")
            chunks += [f"{t}\t{lab}{end}" for t, lab in zip(tokens, labels, strict=True)]
            chunks.append(end)
        data = "".join(chunks).encode()
        (root / name).write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    return root


AUDITED = {  # Twitter layout; "O_7" repeats inside train (the second is train:O_7~2)
    "train": [
        ("O_7", "Lunch with Anna Weber at the harbour market today"),
        ("O_7", "Rain again over the old bridge , no ferry tonight"),
        ("17_06_4237", "Great goal by Lucas Moreau for the home team"),
        ("16_05_01_6", "New bakery opens on Rue Lepic this spring with croissants"),
    ],
    "validation": [
        ("O_20", "Sunset sailing around the bay with my brother Tom"),
        ("O_21", "New Bakery opens on rue lepic this spring with croissants !"),  # train leak
    ],
    "test": [
        ("O_30", "The museum night was packed , queue until midnight"),
        ("O_31", "Fresh snow in the mountains means a day of skiing for Clara this weekend"),
        ("O_32", "new bakery opens on rue lepic this spring with croissants"),  # train + dev
    ],
}
REF = {  # MMNERD layout, with MMNERD-style odd ids
    "train": [
        (
            "00361613---Tapas...Marine-Tavern...1-L",
            "Lunch with Anna Weber at the harbour market today",
        ),
        ("istockphoto-1-612x612.jpg?s=612x612", "A quiet street in the old town"),
    ],
    "validation": [
        ("O_900", "sunset sailing around the bay with my brother tom"),  # lowercased copy of O_20
    ],
    "test": [
        # O_31 with its last word changed: 12 of 14 word pairs shared
        (
            "Snow%2Fski,2020",
            "Fresh snow in the mountains means a day of skiing for Clara this week",
        ),
        ("red*shoes~1", "Red shoes on sale for the festival"),
    ],
}


def run(*args: str | Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["audit-leakage", *map(str, args)])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # a crash, not an exit code
    return res.exit_code, res.stdout, res.stderr


def audited(tmp_path: Path, **kw) -> Path:
    return write_imgid(tmp_path / "twitter", "twitter", AUDITED, **kw)


def reference(tmp_path: Path) -> Path:
    return write_imgid(tmp_path / "mmnerd_en", "mmnerd", REF)


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def leaks(rep: dict) -> dict[tuple[str, str, str], dict]:
    return {(r["id"], r["kind"], r["against"]): r for r in rep["leaks"]}


# --------------------------------------------------------------------------- layouts
def test_both_layouts_give_the_same_posts(tmp_path: Path) -> None:
    from mmnerd.audit import load_imgid

    a = load_imgid(write_imgid(tmp_path / "a", "twitter", AUDITED))
    b = load_imgid(write_imgid(tmp_path / "b", "mmnerd", AUDITED, crlf=True, bom=True))
    assert (a.layout, b.layout) == ("twitter", "mmnerd")
    assert [[(p.id, p.text) for p in ps] for ps in a.posts.values()] == [
        [(p.id, p.text) for p in ps] for ps in b.posts.values()
    ]
    train = a.posts["train"]
    assert [p.id for p in train[:2]] == ["train:O_7", "train:O_7~2"]
    assert [p.extra["line"] for p in train] == [1, 12, 24, 35]
    assert b.files["validation"].name == "valid_conll_format.txt"


def test_a_folder_without_either_layout_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "train.txt").write_text("IMGID:1\nx\tO\n\n")
    code, _, err = run("--imgid", folder, "--out", tmp_path / "r.json")
    assert code == 2 and err.count("\n") == 1
    assert "train_conll_format.txt" in err and "valid.txt" in err and "found only train.txt" in err
    nested = write_imgid(tmp_path / "mmnerd" / "train_valid_test_en", "mmnerd", REF).parent
    code, _, err = run("--imgid", nested, "--out", tmp_path / "r.json")
    assert code == 2 and "give one language folder" in err and "train_valid_test_en" in err


def test_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mmnerd.cli", "audit-leakage", "--imgid", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("mmnerd: error:") and res.stderr.count("\n") == 1


# --------------------------------------------------------------------------- leaks
def test_cross_corpus_leaks_in_every_split_are_listed(tmp_path: Path) -> None:
    out = tmp_path / "r" / "leak.json"
    code, stdout, _ = run(
        "--imgid", audited(tmp_path), "--against", reference(tmp_path), "--out", out
    )
    assert code == 1
    rep = report(out)
    got = leaks(rep)
    ref = {k: r for k, r in got.items() if k[2] == "ref"}
    assert {(r["id"], r["split"], r["matched_id"], r["matched_split"]) for r in ref.values()} == {
        ("train:O_7", "train", "train:00361613---Tapas...Marine-Tavern...1-L", "train"),
        ("validation:O_20", "validation", "validation:O_900", "validation"),
        ("test:O_31", "test", "test:Snow%2Fski,2020", "test"),
    }
    r = got[("test:O_31", "text", "ref")]
    assert r["score"] == pytest.approx(12 / 14, abs=1e-4) and r["distance"] is None
    assert (r["file"], r["line"], r["imgid"], r["matches"]) == ("test.txt", 12, "O_31", 1)
    assert (r["matched_file"], r["matched_line"]) == ("test_conll_format.txt", 1)
    assert rep["text"]["ref"]["leaking_posts"] == {"train": 1, "validation": 1, "test": 1}
    assert rep["against"]["layout"] == "mmnerd" and rep["input"]["layout"] == "twitter"
    assert rep["leaking_posts"] == {"train": 1, "validation": 2, "test": 2}
    with open(out.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(x["id"], x["kind"], x["against"]) for x in rows] == [
        (x["id"], x["kind"], x["against"]) for x in rep["leaks"]
    ]
    assert "REF" in stdout


def test_within_corpus_the_later_split_leaks(tmp_path: Path) -> None:
    out = tmp_path / "leak.json"
    csv_out = tmp_path / "other" / "rows.csv"
    code, _, _ = run("--imgid", audited(tmp_path), "--out", out, "--csv", csv_out)
    assert code == 1 and csv_out.exists()
    rep = report(out)
    got = leaks(rep)
    assert set(got) == {("validation:O_21", "text", "splits"), ("test:O_32", "text", "splits")}
    dev, test = got[("validation:O_21", "text", "splits")], got[("test:O_32", "text", "splits")]
    assert (dev["matched_id"], dev["matches"], dev["score"]) == ("train:16_05_01_6", 1, 1.0)
    # the test copy matches the train post and the dev copy; the closest earliest one is named
    assert (test["matched_id"], test["matched_split"], test["matches"]) == (
        "train:16_05_01_6",
        "train",
        2,
    )
    assert rep["text"]["clusters"] == 1 and rep["text"]["cross_split_pairs"] == 3
    assert rep["text"]["posts"] == {"train": 1, "validation": 1, "test": 1}
    assert rep["against"] is None and rep["text"]["ref"] is None


def test_a_clean_corpus_exits_0(tmp_path: Path) -> None:
    clean = {s: [p for p in ps if p[0] not in ("O_21", "O_32")] for s, ps in AUDITED.items()}
    root = write_imgid(tmp_path / "c", "twitter", clean)
    out = tmp_path / "ok.json"
    code, _, _ = run("--imgid", root, "--out", out)
    assert code == 0 and report(out)["ok"] is True and report(out)["leaks"] == []


# --------------------------------------------------------------------------- images
def test_no_images_is_said_not_hidden(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, stdout, _ = run(
        "--imgid", audited(tmp_path), "--against", reference(tmp_path), "--out", out
    )
    rep = report(out)
    assert rep["image"]["checked"] is False
    assert rep["image"]["note"] == "no images: 0 of 9 posts had an image"
    assert rep["image"]["ref"]["note"] == "REF: no images: 0 of 5 posts had an image"
    assert "image: no images: 0 of 9 posts had an image" in stdout
    assert "REF: no images: 0 of 5 posts had an image" in stdout


def test_image_leaks_within_and_against_ref(tmp_path: Path) -> None:
    root, ref = audited(tmp_path), reference(tmp_path)
    pics, ref_pics = tmp_path / "pics", tmp_path / "ref_pics"
    pics.mkdir()
    ref_pics.mkdir()
    for k, imgid in enumerate(["O_7", "17_06_4237", "O_20", "O_30", "O_31"]):
        picture(k).save(pics / f"{imgid}.jpg", quality=90)
    picture(1).resize((200, 150)).save(pics / "O_32.jpg", quality=70)  # test re-uses train's
    picture(3).save(ref_pics / "red*shoes~1.jpg", quality=85)  # REF holds O_30's picture
    out = tmp_path / "r.json"
    args = ["--imgid", root, "--images", pics, "--against", ref, "--against-images", ref_pics]
    code, _, _ = run(*args, "--out", out)
    assert code == 1
    rep = report(out)
    assert rep["images"]["corpus"]["note"] == "7 of 9 posts had images"
    assert rep["images"]["ref"]["note"] == "1 of 5 posts had images"
    got = leaks(rep)
    assert got[("test:O_32", "image", "splits")]["matched_id"] == "train:17_06_4237"
    r = got[("test:O_30", "image", "ref")]
    assert (r["matched_id"], r["score"]) == ("test:red*shoes~1", None) and r["distance"] <= 4
    assert rep["image"]["ref"]["leaking_posts"] == {"test": 1}


# --------------------------------------------------------------------------- --write-clean
def test_write_clean_imgid_keeps_every_other_post_byte_identical(tmp_path: Path) -> None:
    root, ref = audited(tmp_path, crlf=True, bom=True), reference(tmp_path)
    out_dir = tmp_path / "clean"
    code, _, err = run(
        "--imgid", root, "--against", ref, "--out", tmp_path / "r.json", "--write-clean", out_dir
    )
    assert code == 1 and "train: 3/4" in err
    removed = {r["id"] for r in report(tmp_path / "r.json")["leaks"]}
    assert removed == {"train:O_7", "validation:O_20", "validation:O_21", "test:O_31", "test:O_32"}
    for split, name in IMGID_LAYOUTS["twitter"].items():
        data, pre, blocks = imgid_blocks(root / name)
        clean = (out_dir / name).read_bytes()
        assert clean.startswith(b"\xef\xbb\xbf") and clean.count(b"\n") == clean.count(b"\r\n")
        ids = [f"{split}:{imgid}" for imgid, _ in AUDITED[split]]
        ids = [i + ("~2" if ids[:k].count(i) else "") for k, i in enumerate(ids)]
        kept = [data[s:e] for i, (_, s, e) in zip(ids, blocks, strict=True) if i not in removed]
        assert clean == data[:pre] + b"".join(kept)
    why = json.loads((out_dir / "leakage-removed.json").read_text())
    assert why["rows"]["train"] == {"before": 4, "after": 3}
    assert {r["id"] for r in why["removed"]} == removed
    # the clean copy passes the same audit
    code, _, _ = run("--imgid", out_dir, "--against", ref, "--out", tmp_path / "again.json")
    assert code == 0 and report(tmp_path / "again.json")["ok"] is True


def test_write_clean_refuses_the_input_and_the_ref(tmp_path: Path) -> None:
    root, ref = audited(tmp_path), reference(tmp_path)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    for target in (root, root / "clean", ref):
        code, _, err = run(
            "--imgid", root, "--against", ref, "--out", tmp_path / "r.json", "--write-clean", target
        )
        assert code == 2 and "--write-clean" in err and "choose a folder outside it" in err
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    assert not (root / "clean").exists()


def test_bad_ref_options_are_one_line(tmp_path: Path) -> None:
    root = audited(tmp_path)
    cases = [
        (["--against", root], "is the audited corpus itself"),
        (["--against-images", tmp_path], "--against-images needs --against REF"),
        (["--against", tmp_path / "nothing"], "no such folder"),
        (["--against", tmp_path], "neither an mmnerd export"),
    ]
    for extra, message in cases:
        code, _, err = run("--imgid", root, *extra, "--out", tmp_path / "r.json")
        assert code == 2 and message in err, err


# --------------------------------------------------------------------------- exports
def write_export(root: Path, splits: dict[str, list[Post]], dev_name: str = "dev") -> Path:
    """A tiny mmnerd export: Parquet splits in the schema of mmnerd.records, a manifest,
    a card and images/ (path mode)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmnerd.records import SCHEMA_VERSION, arrow_schema

    schema = arrow_schema(embed_images=False)
    (root / "images").mkdir(parents=True)
    files = []
    for split, posts in splits.items():
        name = f"{dev_name if split == 'validation' else split}.parquet"
        rows = []
        for imgid, text in posts:
            tokens = text.split()
            rel = f"images/{imgid}.jpg"
            (root / rel).write_bytes(imgid.encode())
            rows.append(
                {
                    "id": f"demo:{imgid}",
                    "lang": "en",
                    "text": text,
                    "tokens": tokens,
                    "ner_tags": [0] * len(tokens),
                    "ner_tags_str": ["O"] * len(tokens),
                    "spans": [],
                    "image": {"bytes": None, "path": rel},
                    "image_sha256": None,
                    "image_phash": None,
                    "split": split,
                    "synthetic": True,
                }
            )
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / name, compression="zstd")
        digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
        files.append({"file": name, "rows": len(rows), "sha256": digest})
    manifest = {"schema_version": SCHEMA_VERSION, "pipeline": "demo", "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "README.md").write_text("# demo card\n")
    return root


@pytest.mark.parametrize("dev_name", ["dev", "validation"])
def test_export_against_an_imgid_corpus_and_write_clean(tmp_path: Path, dev_name: str) -> None:
    import pyarrow.parquet as pq

    export = write_export(tmp_path / "export", AUDITED_EXPORT, dev_name)
    ref = reference(tmp_path)
    out_dir = tmp_path / "export-clean"
    code, _, _ = run(
        "--export", export, "--against", ref, "--out", tmp_path / "r.json", "--write-clean", out_dir
    )
    assert code == 1
    rep = report(tmp_path / "r.json")
    assert {(r["id"], r["split"], r["against"]) for r in rep["leaks"]} == {
        ("demo:a2", "train", "ref"),
        ("demo:b1", dev_name, "ref"),
        ("demo:c1", "test", "splits"),
    }
    assert rep["image"]["note"] == "no images: 0 of 6 posts had an image"
    for split in ("train", dev_name, "test"):
        src, dst = (
            pq.ParquetFile(export / f"{split}.parquet"),
            pq.read_table(out_dir / f"{split}.parquet"),
        )
        assert dst.schema.equals(src.schema_arrow, check_metadata=True)
        assert dst.schema.metadata == src.schema_arrow.metadata
        assert "demo:a2" not in dst["id"].to_pylist()
    manifest = json.loads((out_dir / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (out_dir / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == pq.ParquetFile(out_dir / entry["file"]).metadata.num_rows
    assert [e["rows"] for e in manifest["files"]] == [1, 1, 1]
    assert (out_dir / "README.md").exists() and (out_dir / "images" / "a1.jpg").exists()
    assert not (out_dir / "images" / "a2.jpg").exists()  # used by a removed row only
    why = json.loads((out_dir / "leakage-removed.json").read_text())
    assert {r["id"] for r in why["removed"]} == {"demo:a2", "demo:b1", "demo:c1"}
    assert "README.md" in why["note"]
    code, _, _ = run("--export", out_dir, "--against", ref, "--out", tmp_path / "again.json")
    assert code == 0


AUDITED_EXPORT = {
    "train": [
        ("a1", "Morning run along the canal with Jonas"),
        ("a2", "A quiet street in the old town"),  # in REF train
    ],
    "validation": [
        ("b1", "Lunch with Anna Weber at the harbour market today !"),  # in REF train
        ("b2", "Two new pandas arrive at the city zoo"),
    ],
    "test": [
        ("c1", "Morning run along the canal with JONAS"),  # copies train a1
        ("c2", "Jazz festival line-up announced for July"),
    ],
}


def test_export_without_splits_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "train.parquet").write_bytes(b"")
    code, _, err = run("--export", tmp_path / "e", "--out", tmp_path / "r.json")
    assert code == 2 and "validation.parquet or dev.parquet missing" in err


def test_path_like_imgid_is_refused(tmp_path: Path) -> None:
    root = audited(tmp_path)
    (root / "train.txt").write_text("IMGID:../../etc/passwd\nx\tO\n\n")
    code, _, err = run("--imgid", root, "--out", tmp_path / "x.json")
    assert code == 2 and "holds '/'" in err and "train.txt:1" in err


def test_export_hashes_of_another_kind_are_compared_alike(tmp_path: Path) -> None:
    """An export's image_phash holds its dedup.hash kind (the manifest says which): REF's
    pictures are hashed with the same kind, so a shared picture is found whatever the kind,
    and two exports of different kinds are one line, not a silent miss."""
    import pyarrow.parquet as pq

    from mmnerd.images.hashing import hash_hex, hash_image

    export = write_export(tmp_path / "export", AUDITED_EXPORT, "validation")
    table = pq.read_table(export / "test.parquet")
    rows = table.to_pylist()
    rows[1]["image_phash"] = hash_hex(hash_image(picture(3), "dhash"))  # c2's picture
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), export / "test.parquet")
    manifest = json.loads((export / "manifest.json").read_text())
    (export / "manifest.json").write_text(json.dumps(manifest | {"image_hash": "dhash"}))
    ref, ref_pics = reference(tmp_path), tmp_path / "ref_pics"
    ref_pics.mkdir()
    picture(3).save(ref_pics / "red*shoes~1.jpg", quality=85)
    out = tmp_path / "r.json"
    code, _, _ = run("--export", export, "--against", ref, "--against-images", ref_pics,
                     "--out", out)  # fmt: skip
    assert code == 1
    r = leaks(report(out))[("demo:c2", "image", "ref")]
    assert r["matched_id"] == "test:red*shoes~1" and r["distance"] <= 4
    other = write_export(tmp_path / "other", AUDITED_EXPORT)  # no image_hash: pHash
    code, _, err = run("--export", export, "--against", other, "--out", out)
    assert code == 2 and "image hashes are phash, the export's dhash" in err, err
