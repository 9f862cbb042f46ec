"""Read an MMNERD export (Parquet splits), tokenise, align labels, preprocess images, batch.

The trainer reads only ``train.parquet``, ``dev.parquet`` (or ``validation.parquet``) and
``test.parquet`` of an export folder (schema :func:`mmnerd.records.arrow_schema`); unknown
columns are ignored.  An optional boolean column ``image_decided`` (or a set of ids) marks posts
whose labels need the image.  A post may have no image (``image`` null or both its fields null,
as in corpora imported without their images): its :attr:`Example.image_key` is ``""`` and the
multimodal models mask its image branch (see :mod:`baselines.models.tagger`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baselines.errors import BenchmarkError
from mmnerd.records import LABEL2ID, LABELS

SPLITS: tuple[str, ...] = ("train", "dev", "test")
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("train.parquet",),
    "dev": ("dev.parquet", "validation.parquet"),
    "test": ("test.parquet",),
}
"""The file(s) each split may be read from; the export is renaming ``dev`` to ``validation``."""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE = -100
COLUMNS: tuple[str, ...] = (
    "id",
    "lang",
    "tokens",
    "ner_tags",
    "ner_tags_str",
    "image",
    "image_sha256",
    "image_decided",
)
"""The columns the trainer reads; any other column of an export is ignored."""


@dataclass
class Example:
    """One post as the trainer sees it."""

    id: str
    lang: str
    tokens: list[str]
    tags: list[str]
    image_key: str = ""  # "" = no image (its image branch is masked)
    image_decided: bool | None = None

    @property
    def has_image(self) -> bool:
        return bool(self.image_key)


@dataclass
class ImageStore:
    """Encoded image bytes by key (sha256), read lazily from paths when not embedded.

    ``probes`` holds the robustness protocol's stand-in pictures (blank, noise; see
    :func:`probe_images`): fed to a model, never part of the data (not in :meth:`keys`)."""

    root: Path
    blobs: dict[str, bytes] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    probes: dict[str, bytes] = field(default_factory=dict)

    def get(self, key: str) -> bytes | None:
        if key in self.blobs:
            return self.blobs[key]
        if key in self.paths:
            return self.paths[key].read_bytes()
        return self.probes.get(key)

    def keys(self) -> list[str]:
        """Keys of the export's own images."""
        return sorted(set(self.blobs) | set(self.paths))

    def all_keys(self) -> list[str]:
        """The export's images, then the probes."""
        return self.keys() + sorted(self.probes)


BLANK_KEY = "probe:blank"
NOISE_KEYS: tuple[str, ...] = tuple(f"probe:noise:{i:02d}" for i in range(16))


def probe_images(size: int = 256, seed: int = 0) -> dict[str, bytes]:
    """The robustness protocol's pictures, PNG-encoded: :data:`BLANK_KEY` a uniform mid-grey
    image, :data:`NOISE_KEYS` i.i.d. uniform RGB noise (``size`` px, seeded)."""
    from PIL import Image

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="PNG")
        return buf.getvalue()

    rng = np.random.default_rng(seed)
    out = {BLANK_KEY: png(np.full((size, size, 3), 128, dtype=np.uint8))}
    for key in NOISE_KEYS:
        out[key] = png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return out


@dataclass
class ExportData:
    """The three splits of an export and their images."""

    root: Path
    splits: dict[str, list[Example]]
    images: ImageStore
    warnings: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # split -> file name read

    def stats(self) -> dict[str, Any]:
        """Per split: sentences, tokens, entities, languages and image coverage (posts with
        and without an image, count and %); ``images``: distinct images."""
        out: dict[str, Any] = {}
        for name, exs in self.splits.items():
            out[name] = {
                "file": self.files.get(name, ""),
                "sentences": len(exs),
                "tokens": sum(len(e.tokens) for e in exs),
                "entities": sum(t.startswith("B-") for e in exs for t in e.tags),
                "languages": dict(sorted(Counter(e.lang for e in exs).items())),
                **image_coverage(exs),
            }
        out["images"] = len(self.images.keys())
        return out

    def with_image(self, split: str) -> int:
        """Posts of ``split`` that have an image."""
        return sum(e.has_image for e in self.splits[split])

    def languages(self) -> list[str]:
        return sorted({e.lang for exs in self.splits.values() for e in exs})


def image_coverage(exs: Sequence[Example]) -> dict[str, Any]:
    """``with_image``, ``without_image`` (counts) and ``with_image_pct``,
    ``without_image_pct`` (% of the posts, one decimal; 0.0 for no posts)."""
    n = len(exs)
    yes = sum(e.has_image for e in exs)
    pct = (lambda k: round(100.0 * k / n, 1)) if n else (lambda k: 0.0)
    return {
        "with_image": yes,
        "without_image": n - yes,
        "with_image_pct": pct(yes),
        "without_image_pct": pct(n - yes),
    }


def split_file(root: Path, split: str) -> Path:
    """The file of ``split`` in ``root`` (dev: ``dev.parquet`` or ``validation.parquet``);
    raises :class:`BenchmarkError` if it is missing or if both dev files exist."""
    found = [root / name for name in SPLIT_FILES[split] if (root / name).is_file()]
    if len(found) > 1:
        raise BenchmarkError(
            f"both {found[0]} and {found[1].name} exist: remove the stale one (same split)"
        )
    if not found:
        names = " or ".join(SPLIT_FILES[split])
        raise BenchmarkError(
            f"missing {root / names} (an export needs train, dev or validation, and test parquet)"
        )
    return found[0]


def load_export(root: str | Path, image_decided_ids: set[str] | None = None) -> ExportData:
    """Load ``root/{train,dev|validation,test}.parquet`` (``validation`` is read as the dev
    split); raises :class:`BenchmarkError` if unusable."""
    import pyarrow.parquet as pq

    root = Path(root)
    if not root.is_dir():
        raise BenchmarkError(f"export folder not found: {root} (run `mmnerd export` first)")
    store = ImageStore(root=root)
    splits: dict[str, list[Example]] = {}
    files: dict[str, str] = {}
    warnings: list[str] = []
    for split in SPLITS:
        path = split_file(root, split)
        files[split] = path.name
        names = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in COLUMNS if c in names])
        missing = {"id", "tokens", "ner_tags"} - names
        if missing:
            raise BenchmarkError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        exs: list[Example] = []
        for row in table.to_pylist():
            exs.append(_example(row, path, store, image_decided_ids, warnings))
        splits[split] = exs
    if not splits["train"]:
        raise BenchmarkError(f"{root / 'train.parquet'} has no rows: nothing to train on")
    if not splits["dev"]:
        raise BenchmarkError(f"{root / files['dev']} has no rows: epochs are selected on dev")
    return ExportData(root=root, splits=splits, images=store, warnings=warnings, files=files)


def tag_strings(row: dict[str, Any]) -> list[str]:
    """A row's IOB2 tags as strings: ``ner_tags_str`` (schema 2), else ``ner_tags`` as class
    ids into :data:`LABELS` (schema 2 without the string column) or strings (schema 1)."""
    if row.get("ner_tags_str") is not None:
        return [str(t) for t in row["ner_tags_str"]]
    tags = row["ner_tags"] or []
    return [LABELS[t] if isinstance(t, int) and 0 <= t < len(LABELS) else str(t) for t in tags]


def _example(
    row: dict[str, Any],
    path: Path,
    store: ImageStore,
    image_decided_ids: set[str] | None,
    warnings: list[str],
) -> Example:
    tokens = [str(t) for t in row["tokens"] or []]
    tags = tag_strings(row)
    if len(tokens) != len(tags):
        raise BenchmarkError(
            f"{path}: row {row['id']}: {len(tokens)} tokens but {len(tags)} ner_tags"
        )
    bad = sorted({t for t in tags if t not in LABEL2ID})
    if bad:
        raise BenchmarkError(f"{path}: row {row['id']}: unknown tag(s) {bad}; expected {LABELS}")
    key = ""
    image = row.get("image") or {}
    data = image.get("bytes")
    rel = image.get("path") or ""
    if data:
        key = row.get("image_sha256") or hashlib.sha256(data).hexdigest()
        store.blobs.setdefault(key, data)
    elif rel:
        file = (path.parent / rel).resolve()
        if file.is_file():
            key = row.get("image_sha256") or "path:" + str(file)
            store.paths.setdefault(key, file)
        else:
            warnings.append(f"{path.name}: row {row['id']}: image file {rel} not found")
    decided = row.get("image_decided")
    if image_decided_ids is not None:
        decided = row["id"] in image_decided_ids
    return Example(
        id=str(row["id"]),
        lang=str(row.get("lang") or "und"),
        tokens=tokens,
        tags=tags,
        image_key=key,
        image_decided=None if decided is None else bool(decided),
    )


# --- text ---------------------------------------------------------------------------------


SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(sentences: Iterable[Sequence[str]], vocab_size: int = 2000):  # -> PTTFast
    """A cased WordPiece tokenizer built from pre-tokenised sentences, as a transformers
    ``PreTrainedTokenizerFast`` that adds ``[CLS] ... [SEP]``.

    The vocabulary is deterministic (same sentences -> same ids in every process), unlike
    the ``tokenizers`` WordPiece trainer, whose merge ties follow Rust's randomised hash
    order: special tokens, every character seen and its ``##`` continuation (so nothing is
    ever ``[UNK]``), then whole words by frequency (ties by the word) up to ``vocab_size``.
    Unseen words split greedily into the longest known pieces, as WordPiece does.
    """
    from collections import Counter

    from tokenizers import Tokenizer
    from tokenizers.decoders import WordPiece as WordPieceDecoder
    from tokenizers.models import WordPiece
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    normalizer = BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    pre = BertPreTokenizer()
    words: Counter[str] = Counter()
    for sentence in sentences:
        text = normalizer.normalize_str(" ".join(sentence))
        words.update(w for w, _ in pre.pre_tokenize_str(text))
    chars: Counter[str] = Counter()
    for w, n in words.items():
        for ch in w:
            chars[ch] += n
    by_freq = sorted(chars, key=lambda c: (-chars[c], c))
    vocab: dict[str, int] = {}
    for piece in (*SPECIAL_TOKENS, *by_freq, *(f"##{c}" for c in by_freq)):
        vocab.setdefault(piece, len(vocab))
    for w in sorted(words, key=lambda w: (-words[w], w)):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = WordPieceDecoder(prefix="##")
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def align_labels(word_ids: Sequence[int | None], tag_ids: Sequence[int]) -> list[int]:
    """Sub-word labels: the first sub-token of each word carries its tag, the rest and the
    special tokens get -100 (ignored)."""
    out: list[int] = []
    prev: int | None = None
    for w in word_ids:
        out.append(IGNORE if w is None or w == prev else int(tag_ids[w]))
        if w is not None:
            prev = w
    return out


@dataclass
class Encoded:
    """An example as model input; ``word_index[k]`` is the input position of word
    ``kept_words[k]`` (its first sub-token); words cut by truncation are not kept."""

    input_ids: list[int]
    labels: list[int]  # sub-word aligned, -100 except on first sub-tokens
    word_index: list[int]
    kept_words: list[int]
    word_labels: list[int]


class WordVocab:
    """Word-level vocabulary of the BiLSTM baseline (0 = pad, 1 = unk)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.itos = ["[PAD]", "[UNK]", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> WordVocab:
        counts = Counter(w for s in sentences for w in s)
        return cls(sorted(w for w, c in counts.items() if c >= min_freq))

    def __len__(self) -> int:
        return len(self.itos)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.itos[2:], ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> WordVocab:
        return cls(json.loads(path.read_text()))


def encode_subwords(
    tokenizer: Any, tokens: Sequence[str], tags: Sequence[str], max_length: int
) -> Encoded:
    """Tokenise a pre-tokenised sentence into sub-words (first sub-token carries the label)."""
    tag_ids = [LABEL2ID.get(t, 0) for t in tags] if tags else [0] * len(tokens)
    enc = tokenizer(list(tokens), is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = enc.word_ids(0)
    labels = align_labels(word_ids, tag_ids)
    word_index: list[int] = []
    kept: list[int] = []
    prev: int | None = None
    for pos, w in enumerate(word_ids):
        if w is not None and w != prev:
            word_index.append(pos)
            kept.append(w)
        if w is not None:
            prev = w
    return Encoded(
        input_ids=list(enc["input_ids"]),
        labels=labels,
        word_index=word_index,
        kept_words=kept,
        word_labels=[tag_ids[w] for w in kept],
    )


def encode_words(
    vocab: WordVocab, tokens: Sequence[str], tags: Sequence[str], max_length: int
) -> Encoded:
    """Word-level encoding for the BiLSTM baseline."""
    tokens = list(tokens)[:max_length]
    tag_ids = [LABEL2ID.get(t, 0) for t in tags][: len(tokens)] if tags else [0] * len(tokens)
    ids = [vocab.stoi.get(w, 1) for w in tokens]
    n = len(ids)
    return Encoded(ids, list(tag_ids), list(range(n)), list(range(n)), list(tag_ids))


# --- images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """How an encoder wants its pixels: square ``size``, per-channel mean/std."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_path(cls, path: str, default: ImageSpec) -> ImageSpec:
        """Read ``preprocessor_config.json`` of a local model folder if present."""
        cfg = Path(path) / "preprocessor_config.json"
        if not path or not cfg.is_file():
            return default
        d = json.loads(cfg.read_text())
        size = d.get("crop_size") or d.get("size") or default.size
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or default.size
        return cls(
            int(size),
            tuple(d.get("image_mean", default.mean)),
            tuple(d.get("image_std", default.std)),
        )


def preprocess_image(data: bytes | None, spec: ImageSpec) -> np.ndarray:
    """Decode, resize the short side, centre-crop, normalise: float32 [3, size, size].
    ``None`` or undecodable bytes give a zero (mean) image."""
    from PIL import Image

    if not data:
        return np.zeros((3, spec.size, spec.size), dtype=np.float32)
    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (spec.size * 2, spec.size * 2))
        img = img.convert("RGB")
    except Exception:  # noqa: BLE001 - a broken image must not stop training
        return np.zeros((3, spec.size, spec.size), dtype=np.float32)
    w, h = img.size
    scale = spec.size / min(w, h)
    nw, nh = max(spec.size, round(w * scale)), max(spec.size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - spec.size) // 2, (nh - spec.size) // 2
    img = img.crop((left, top, left + spec.size, top + spec.size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.array(spec.mean, dtype=np.float32)) / np.array(spec.std, dtype=np.float32)
    return arr.transpose(2, 0, 1).copy()


class PixelCache:
    """Preprocessed pixels by (image key, spec), kept in memory up to ``max_bytes``."""

    def __init__(self, store: ImageStore, max_bytes: int = 1 << 30) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._cache: dict[tuple[str, ImageSpec], np.ndarray] = {}
        self._bytes = 0

    def pixels(self, keys: Sequence[str], spec: ImageSpec, keep: bool = True):
        """Pixels [B, 3, S, S] of ``keys``; ``keep=False`` does not fill the cache."""
        import torch

        arrs = []
        for key in keys:
            arr = self._cache.get((key, spec))
            if arr is None:
                arr = preprocess_image(self.store.get(key) if key else None, spec)
                if keep and self._bytes + arr.nbytes <= self.max_bytes:
                    self._cache[(key, spec)] = arr
                    self._bytes += arr.nbytes
            arrs.append(arr)
        return torch.from_numpy(np.stack(arrs))


# --- batching -----------------------------------------------------------------------------


def random_batches(n: int, size: int, gen: Any) -> list[list[int]]:
    """Positions ``0..n-1`` shuffled with ``gen`` (a torch.Generator), in batches of ``size``."""
    import torch

    order = torch.randperm(n, generator=gen).tolist()
    return [order[i : i + size] for i in range(0, n, size)]


def bucket_batches(
    lengths: Sequence[int], size: int, gen: Any, pool_batches: int = 50
) -> list[list[int]]:
    """Batches of positions ``0..len(lengths)-1`` whose ``lengths`` (sub-words) are similar.

    Every position appears exactly once.  The positions are shuffled with ``gen`` (a
    torch.Generator), cut into pools of ``pool_batches * size``, each pool is sorted by length
    (stable, so equal lengths stay in shuffled order) and cut into batches of ``size``; the
    batch order is then shuffled.  Only a pool's last batch (the epoch's last pool) can be short.
    """
    import torch

    order = torch.randperm(len(lengths), generator=gen).tolist()
    pool = max(1, pool_batches) * size
    batches: list[list[int]] = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p : p + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def collate(encoded: Sequence[Encoded], pad_id: int):  # -> dict[str, Tensor]
    """Pad a list of :class:`Encoded` into tensors: ``input_ids``/``attention_mask``/``labels``
    [B, T]; ``word_index``/``word_mask``/``word_labels`` [B, W]."""
    import torch

    b = len(encoded)
    t = max(1, max(len(e.input_ids) for e in encoded))
    w = max(1, max(len(e.word_index) for e in encoded))
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    attention = torch.zeros((b, t), dtype=torch.long)
    labels = torch.full((b, t), IGNORE, dtype=torch.long)
    word_index = torch.zeros((b, w), dtype=torch.long)
    word_mask = torch.zeros((b, w), dtype=torch.bool)
    word_labels = torch.zeros((b, w), dtype=torch.long)
    for i, e in enumerate(encoded):
        n, m = len(e.input_ids), len(e.word_index)
        input_ids[i, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        attention[i, :n] = 1
        labels[i, :n] = torch.tensor(e.labels, dtype=torch.long)
        if m:
            word_index[i, :m] = torch.tensor(e.word_index, dtype=torch.long)
            word_mask[i, :m] = True
            word_labels[i, :m] = torch.tensor(e.word_labels, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "word_index": word_index,
        "word_mask": word_mask,
        "word_labels": word_labels,
    }
