"""Write the small IMGID fixtures of tests/data/imgid in the exact published layouts.

Texts are invented for these tests (no real corpus text).  They reproduce what the
published files hold: Twitter-2015/2017 (`train.txt`, `valid.txt`, `test.txt`, OTHER for
MISC, orphan I- tags, U+200E and \\x92 inside tokens, a token that is only U+200E,
`&amp` `;`, split URLs, repeated ids) and MMNERD (`*_conll_format.txt` per language
folder, product-image ids with runs of dots, '?', '%2F', commas, '*', '~', a `.jpg`
ending, 244 characters, ids repeated inside a split, a test post repeated in train).

    python tests/data/imgid/make_fixtures.py   # rewrites the files beside this script
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

Post = tuple[str, list[tuple[str, str]]]


def block(imgid: str, pairs: list[tuple[str, str]]) -> str:
    return f"IMGID:{imgid}\n" + "".join(f"{t}\t{lab}\n" for t, lab in pairs) + "\n"


def tagged(text: str, tags: str) -> list[tuple[str, str]]:
    """``text`` split on spaces, ``tags`` one per token (``.`` = O)."""
    tokens, labels = text.split(" "), tags.split(" ")
    assert len(tokens) == len(labels), (text, tags)
    return [(t, "O" if lab == "." else lab) for t, lab in zip(tokens, labels, strict=True)]


TWITTER2015 = {
    "train": [
        (
            "41203",
            tagged(
                "RT @lakeside_news : Storm clouds over Lake Geneva tonight http://t.co/aB3dE5fG7h",
                ". . . . . . B-LOC I-LOC . .",
            ),
        ),
        (
            "1187734",
            tagged(
                "The Harbour Lights Festival opens in Portsmouth",
                "I-OTHER I-OTHER I-OTHER I-OTHER . . B-LOC",
            ),
        ),  # orphan I- at start
        (
            "90211",
            [
                ("Marta", "B-PER"),
                ("Lindqvist", "I-PER"),
                ("signs", "O"),
                ("for", "O"),
                ("Real", "B-ORG"),
                ("Betis", "I-ORG"),
                ("\u200e", "O"),
                ("#LaLiga", "B-OTHER"),
            ],
        ),
        (
            "55120",
            tagged(
                "New Mercedes-AMG van spotted near Stuttgart &amp ; Ulm",
                ". B-OTHER . . . B-LOC . . B-LOC",
            ),
        ),
        (
            "77001",
            [
                ("can", "O"),
                ("\u200eDublin", "B-LOC"),
                ("wait", "O"),
                ("?", "O"),
                ("don\x92t", "O"),
                ("think", "O"),
                ("so", "O"),
            ],
        ),
        (
            "41203",
            tagged(
                "Same picture , other caption : Lake Geneva at dawn", ". . . . . . B-LOC I-LOC . ."
            ),
        ),  # id repeated inside the split
        (
            "66342",
            tagged(
                "Weekend market in Ghent with @ana_paints https : //t . co/Zx81",
                ". . . B-LOC . B-PER . . . . .",
            ),
        ),
        ("30488", tagged("Happy birthday Jonas Brandt ! 🎂 🎉", ". . B-PER I-PER . . .")),
    ],
    "valid": [
        (
            "13420",
            tagged("Fans queue outside Old Trafford before the derby", ". . . B-LOC I-LOC . . ."),
        ),
        ("2209871", tagged("Quiet morning at the Rijksmuseum", ". . . . B-ORG")),
    ],
    "test": [
        ("88003", tagged("Storm clouds over Lake Geneva tonight", ". . . B-LOC I-LOC .")),
        (
            "1910022",
            tagged(
                "Nadia Okafor wins the Lisbon Half Marathon",
                "B-PER I-PER . . B-OTHER I-OTHER I-OTHER",
            ),
        ),
        (
            "402",
            tagged(
                "Nobody expected Orlo Pharma to close the Leeds plant",
                ". . I-ORG I-ORG . . . B-LOC .",
            ),
        ),  # orphan I- inside the post
    ],
}

TWITTER2017 = {
    "train": [
        (
            "O_1021",
            tagged("Camila Reyes opens her studio in Valparaíso", "B-PER I-PER . . . . B-LOC"),
        ),
        ("17_06_4711", tagged("@northgate_fc announce new coach #matchday", "B-ORG . . . B-OTHER")),
        ("16_05_01_372", tagged("Tour de Flandres route revealed", "B-OTHER I-OTHER I-OTHER . .")),
    ],
    "valid": [("O_77", tagged("Sunset over Kraków 🌅", ". . B-LOC ."))],
    "test": [
        ("17_06_0042", tagged("Sunset over Kraków 🌅 tonight", ". . B-LOC . .")),
        (
            "O_1021",
            tagged("Camila Reyes opens a studio in Valparaíso", "B-PER I-PER . . . . B-LOC"),
        ),
    ],
}

MMNERD_EN = {
    "train": [
        (
            "00361613---Tapas...Marine-Tavern...1-L",
            tagged(
                "Tapas night at the Marine Tavern in Whitby",
                "B-MISC I-MISC . . B-ORG I-ORG . B-LOC",
            ),
        ),
        (
            "02825002---vintage-kettle-picture-id411229?s=612x612",
            tagged("Vintage copper kettle on a stove in Provence", ". . . . . . . B-LOC"),
        ),
        (
            "07611699---5e8a1b2c3d?format=jpeg&width=1200",
            tagged("Harbor Lines cruise ship leaves Bergen", "B-ORG I-ORG . . . B-LOC"),
        ),
        (
            "10499012---il_794xN.1668516816_9abc",
            tagged("Lot of 3 NEW Ridgeback action figures", ". . B-MISC . B-ORG . ."),
        ),
        (
            "0912---vase%2Fblue,glaze*set~2",
            tagged("Blue glaze vase set , 2 pieces", ". . . . . B-MISC ."),
        ),
        (
            "01474768---beach-house-photo.jpg",
            tagged(
                "Seabreeze Beach House , only 5 minutes from the beach",
                "B-ORG I-ORG I-ORG . B-MISC I-MISC I-MISC . . .",
            ),
        ),
        (
            "1" * 8 + "---" + "long-product-name-" * 12 + "x" * 17,  # 244 characters
            tagged("Round flag of Norway . Vector illustration", ". . . B-LOC . . ."),
        ),
        (
            "00361613---Tapas...Marine-Tavern...1-L",
            tagged("The Marine Tavern terrace in summer", ". B-ORG I-ORG . . ."),
        ),  # repeated id
        (
            "O_2846",
            tagged(
                "Lena Morales Shines In Day 9 Of Fashion Week . . .",
                "B-PER I-PER . . . . . B-MISC I-MISC . . .",
            ),
        ),
        ("17_06_4240", tagged("keep calm and visit Oslo", ". . . . B-LOC")),
    ],
    "valid": [
        (
            "05404190---trophy-copy-1540x760",
            tagged("Silver Gull Awards 2016 First Place", "B-MISC I-MISC I-MISC I-MISC I-MISC ."),
        ),
    ],
    "test": [
        ("08378650---DSC2936-1534x1024", tagged("keep calm and visit oslo", ". . . . B-LOC")),
        (
            "12268831---slide_4",
            tagged("VAT -- 17 . 5 % Example 1", ". . B-MISC I-MISC I-MISC I-MISC . B-MISC"),
        ),
    ],
}

LAYOUTS = {
    "twitter2015": (TWITTER2015, "{split}.txt"),
    "twitter2017": (TWITTER2017, "{split}.txt"),
    "mmnerd/train_valid_test/train_valid_test_en": (MMNERD_EN, "{split}_conll_format.txt"),
}


def main() -> None:
    for folder, (splits, pattern) in LAYOUTS.items():
        out = HERE / folder
        out.mkdir(parents=True, exist_ok=True)
        for split, posts in splits.items():
            text = "".join(block(i, pairs) for i, pairs in posts)
            (out / pattern.format(split=split)).write_bytes(text.encode("utf-8"))


if __name__ == "__main__":
    main()
