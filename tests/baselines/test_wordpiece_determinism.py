"""The offline WordPiece vocabulary is the same in every process (seeded runs reproduce)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import hashlib, json
from baselines.data import train_wordpiece
sents = [[w + str(i % 7) for w in "Paris Jordan Amazon wins again in the rain".split()]
         for i in range(300)] + [["🇫🇷", "@Macron", "#Paris2024", "Zürich"]]
tok = train_wordpiece(sents, vocab_size=120)
vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
print(hashlib.sha256(json.dumps(vocab).encode()).hexdigest())
"""


def vocab_hash() -> str:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_same_vocabulary_in_every_process():
    assert vocab_hash() == vocab_hash()


def test_unseen_words_split_into_known_pieces():
    from baselines.data import train_wordpiece

    tok = train_wordpiece([["Paris", "is", "nice"], ["Jordan", "wins"]], vocab_size=40)
    enc = tok(["Parisian", "Jordan"], is_split_into_words=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces == ["[CLS]", "Paris", "##i", "##a", "##n", "Jordan", "[SEP]"]
    assert enc.word_ids() == [None, 0, 0, 0, 0, 1, None]
