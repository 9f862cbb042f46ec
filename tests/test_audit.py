"""`mmnerd audit-leakage` on an IMGID corpus with planted cross-split duplicates."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw


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


def write_corpus(root: Path, leak: bool) -> None:
    images = root / "images"
    images.mkdir(parents=True)
    sentences = {
        "train": ["Visit Paris today", "Jordan wins again", "Amazon opens a store"],
        "valid": ["Berlin is cold", "Nice match in Madrid"],
        "test": ["Snow in Oslo tonight", "Great concert by Adele"],
    }
    if leak:  # a test post copying a train post's text, and a resized copy of a train image
        sentences["test"].append("Visit Paris today !")
    seed = 0
    for split, texts in sentences.items():
        with open(root / f"{split}.txt", "w") as f:
            for text in texts:
                seed += 1
                f.write(f"IMGID:{split}{seed}\n")
                f.writelines(f"{tok}\tO\n" for tok in text.split())
                f.write("\n")
                picture(seed).save(images / f"{split}{seed}.jpg", quality=90)
    if leak:
        picture(2).resize((200, 150)).save(images / "test8.jpg", quality=70)
        with open(root / "test.txt", "a") as f:
            f.write("IMGID:test8\nSomething\tO\nelse\tO\n\n")


def audit(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mmnerd.cli",
            "audit-leakage",
            "--imgid",
            str(root),
            "--images",
            str(root / "images"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )


def test_leaks_are_found(tmp_path):
    write_corpus(tmp_path / "c", leak=True)
    res = audit(tmp_path / "c", tmp_path / "leak.json")
    assert res.returncode == 1, res.stderr
    report = json.loads((tmp_path / "leak.json").read_text())
    assert report["image"]["clusters"] == 1 and report["text"]["clusters"] == 1
    pairs = {(e["a"], e["b"]) for e in report["image"]["examples"]}
    assert ("train:train2", "test:test8") in pairs or ("test:test8", "train:train2") in pairs


def test_clean_corpus_passes(tmp_path):
    write_corpus(tmp_path / "c", leak=False)
    res = audit(tmp_path / "c", tmp_path / "ok.json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((tmp_path / "ok.json").read_text())["ok"] is True


def test_path_like_imgid_is_refused(tmp_path):
    root = tmp_path / "c"
    write_corpus(root, leak=False)
    (root / "train.txt").write_text("IMGID:../../etc/passwd\nx\tO\n\n")
    res = audit(root, tmp_path / "x.json")
    assert res.returncode == 2 and "holds '/'" in res.stderr and "train.txt:1" in res.stderr
