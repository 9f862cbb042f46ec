"""One training run: fit on train, select the epoch on dev, evaluate test once, save a checkpoint.

:func:`prepare` builds what all runs of a benchmark share (tokenizer, word vocabulary,
encodings, pixel cache, frozen-feature cache); :func:`train_run` trains one (model, seed).
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.config import ModelConfig, TrainConfig, save_json, to_dict
from baselines.data import (
    BLANK_KEY,
    NOISE_KEYS,
    Encoded,
    Example,
    ExportData,
    PixelCache,
    WordVocab,
    bucket_batches,
    collate,
    encode_subwords,
    encode_words,
    probe_images,
    random_batches,
    train_wordpiece,
)
from baselines.errors import BenchmarkError
from baselines.metrics import evaluate_tags
from baselines.models import build
from baselines.models.tagger import Tagger, encoder_identity
from mmnerd.records import LABELS

Log = Callable[[str], None]
LOSS_KEYS: tuple[str, ...] = ("loss", "crf_loss", "cl_loss", "text_crf_loss", "gate_loss")
"""Losses averaged per epoch into ``history`` (the last two: ``mner2m_gated`` only)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """Resources shared by all runs of one benchmark."""

    data: ExportData
    tokenizer: Any  # PreTrainedTokenizerFast
    vocab: WordVocab
    pixels: PixelCache
    text_encoder: str = ""
    features: dict[str, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)
    feature_dir: Path | None = None  # persists features of encoders loaded from a path
    _encodings: dict[tuple[str, str, int], list[Encoded]] = field(default_factory=dict)

    def subset(self, langs: Sequence[str]) -> Prepared:
        """The same resources with train and dev restricted to posts in ``langs`` (test whole):
        the cross-lingual protocol.  Tokenizer, vocabulary and caches are shared."""
        keep = set(langs)
        splits = {
            name: exs if name == "test" else [e for e in exs if e.lang in keep]
            for name, exs in self.data.splits.items()
        }
        data = ExportData(self.data.root, splits, self.data.images, files=self.data.files)
        return Prepared(
            data=data,
            tokenizer=self.tokenizer,
            vocab=self.vocab,
            pixels=self.pixels,
            text_encoder=self.text_encoder,
            features=self.features,
            feature_dir=self.feature_dir,
        )

    def encodings(self, split: str, encoder: str, max_length: int) -> list[Encoded]:
        key = (split, encoder, max_length)
        if key not in self._encodings:
            exs = self.data.splits[split]
            if encoder == "bilstm":
                enc = [encode_words(self.vocab, e.tokens, e.tags, max_length) for e in exs]
            else:
                enc = [encode_subwords(self.tokenizer, e.tokens, e.tags, max_length) for e in exs]
            self._encodings[key] = enc
        return self._encodings[key]


def prepare(
    data: ExportData,
    text_encoder: str = "",
    vocab_size: int = 2000,
    pixel_cache_bytes: int = 1 << 30,
    feature_dir: Path | None = None,
) -> Prepared:
    """Tokenizer (trained on train tokens unless ``text_encoder`` is a local path) and vocab."""
    train_tokens = [e.tokens for e in data.splits["train"]]
    if text_encoder:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(text_encoder)
    else:
        tokenizer = train_wordpiece(train_tokens, vocab_size=vocab_size)
    if not data.images.probes:
        data.images.probes.update(probe_images())
    return Prepared(
        data=data,
        tokenizer=tokenizer,
        vocab=WordVocab.build(train_tokens),
        pixels=PixelCache(data.images, pixel_cache_bytes),
        text_encoder=text_encoder,
        feature_dir=feature_dir,
    )


DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(
    requested: str, cuda_available: bool, local_rank: int = 0, cuda_count: int | None = None
) -> tuple[str, str]:
    """``(torch device, process-group backend)`` for ``--device auto|cpu|cuda``.

    auto = cuda if available, else cpu.  cuda -> ``("cuda:<local_rank>", "nccl")``;
    cpu -> ``("cpu", "gloo")``.  Raises :class:`BenchmarkError` (one line) if cuda is asked
    for but unavailable, or if ``local_rank`` has no GPU of its own (``cuda_count``)."""
    if requested not in DEVICES:
        raise BenchmarkError(f"--device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not cuda_available):
        return "cpu", "gloo"
    if not cuda_available:
        raise BenchmarkError(
            "--device cuda: CUDA is not available to torch here (no GPU or a CPU-only torch "
            "build); use --device cpu or auto"
        )
    if cuda_count is not None and local_rank >= cuda_count:
        raise BenchmarkError(
            f"--device cuda: LOCAL_RANK {local_rank} but only {cuda_count} GPU(s) visible; "
            f"start at most {cuda_count} processes per node"
        )
    return f"cuda:{local_rank}", "nccl"


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun group (rank 0 of 1 when not distributed) and the
    device its model and batches live on."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _cuda() -> tuple[bool, int]:
    available = torch.cuda.is_available()
    return available, torch.cuda.device_count() if available else 0


def local_dist(device: str = "auto") -> Dist:
    """A single process on ``device`` (auto | cpu | cuda)."""
    dev, _ = resolve_device(device, *_cuda())
    return Dist(device=dev)


def init_distributed(device: str = "auto") -> Dist:
    """Resolve ``device`` and, when ``WORLD_SIZE`` > 1 (torchrun), join the process group:
    nccl with one GPU per process (``cuda:LOCAL_RANK``), gloo on CPU."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0
    available, count = _cuda()
    dev, backend = resolve_device(device, available, local_rank, count)
    if dev.startswith("cuda"):
        torch.cuda.set_device(dev)
    if world <= 1:
        return Dist(device=dev)
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group(backend)
    return Dist(tdist.get_rank(), tdist.get_world_size(), dev, local_rank)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (no copy when already there)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def autocast(device: torch.device, bf16: bool):  # -> context manager
    """bfloat16 autocast on ``device`` when ``bf16`` (a no-op context otherwise); the model
    keeps its CRF and losses in float32 (see :meth:`baselines.models.tagger.Tagger.forward`)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


@dataclass
class RunResult:
    """What one (model, seed) run produced; ``eval_counts`` proves test was evaluated once
    (then once per image condition of the same checkpoint, for multimodal models)."""

    model: str
    seed: int
    best_epoch: int
    history: list[dict[str, Any]]
    dev: dict[str, Any]
    test: dict[str, Any]
    test_shuffled: dict[str, Any] | None
    eval_counts: dict[str, int]
    checkpoint: str
    train_seconds: float
    train_examples_per_s: float
    n_params: int
    n_trainable: int
    config: dict[str, Any]
    world_size: int = 1
    test_robustness: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Scores of the selected checkpoint under each :data:`ROBUSTNESS` condition."""


class ImageFeeder:
    """Image inputs of a batch, on the model's device: cached frozen features (kept on the
    CPU, moved per batch), or pixels for trainable encoders, and ``image_mask`` [B] (False
    for a post without an image, key ``""``: the model masks its image branch)."""

    def __init__(self, model: Tagger, prep: Prepared, cache: bool, log: Log = _stderr) -> None:
        self.model = model
        self.prep = prep
        self.device = next(model.parameters()).device
        self.specs = model.image_specs()
        self.cached: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        if cache:
            for which, module in model.frozen_modules().items():
                self.cached[which] = self._cache(which, module, log)

    def _cache(
        self, which: str, module: torch.nn.Module, log: Log
    ) -> dict[str, dict[str, torch.Tensor]]:
        spec = self.specs[which]
        ident = f"{encoder_identity(module)}-{spec.size}"
        store = self.prep.features.setdefault(ident, {})
        file = None
        if self.prep.feature_dir is not None and getattr(self.model.cfg, which):
            file = self.prep.feature_dir / f"{which}-{ident.replace(':', '-')}.pt"
            if file.is_file() and not store:
                store.update(torch.load(file, map_location="cpu", weights_only=True))
                log(f"  loaded {len(store)} cached {which} features from {file}")
        keys = [""] + self.prep.data.images.all_keys()
        todo = [k for k in keys if k not in store]
        if todo:
            t0 = time.perf_counter()
            module.eval()
            for i in range(0, len(todo), 64):
                chunk = todo[i : i + 64]
                pixels = self.prep.pixels.pixels(chunk, spec, keep=False).to(self.device)
                feats = self.model.image_features(which, pixels)
                for j, k in enumerate(chunk):
                    store[k] = {name: t[j].cpu().clone() for name, t in feats.items()}
            secs = time.perf_counter() - t0
            log(f"  cached {which} features of {len(todo)} images in {secs:.1f}s")
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                torch.save(store, file.with_suffix(".tmp"))
                file.with_suffix(".tmp").replace(file)
        return store

    def batch(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {
            "image_mask": torch.tensor([bool(k) for k in keys], dtype=torch.bool)
        }
        for which, spec in self.specs.items():
            if which in self.cached:
                store = self.cached[which]
                for name in store[""]:
                    out[name] = torch.stack([store[k if k in store else ""][name] for k in keys])
            else:
                out[f"{which}_pixels"] = self.prep.pixels.pixels(keys, spec)
        return to_device(out, self.device)


def train_batches(
    enc: Sequence[Encoded], usable: Sequence[int], tcfg: TrainConfig, gen: torch.Generator
) -> list[list[int]]:
    """One epoch's batches of positions into ``usable``: length buckets or random batches."""
    if tcfg.bucket_by_length:
        lengths = [len(enc[i].input_ids) for i in usable]
        return bucket_batches(lengths, tcfg.batch_size, gen)
    return random_batches(len(usable), tcfg.batch_size, gen)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Evaluator:
    """Decodes a split and scores it; counts evaluations per split name."""

    def __init__(
        self, model: Tagger, prep: Prepared, feeder: ImageFeeder, tcfg: TrainConfig
    ) -> None:
        self.model = model
        self.prep = prep
        self.feeder = feeder
        self.tcfg = tcfg
        self.counts: Counter[str] = Counter()

    @torch.no_grad()
    def predict(
        self,
        split: str,
        image_keys: Sequence[str] | None = None,
        gates: list[float] | None = None,
    ) -> list[list[str]]:
        """Tags per sentence of ``split`` (``image_keys`` overrides each post's image;
        ``gates`` receives the gated model's per-post gates)."""
        exs = self.prep.data.splits[split]
        enc = self.prep.encodings(split, self.model.cfg.encoder, self.model.cfg.max_length)
        keys = list(image_keys) if image_keys is not None else [e.image_key for e in exs]
        return predict_encoded(
            self.model,
            self.prep.tokenizer,
            exs,
            enc,
            keys,
            self.feeder,
            self.tcfg.eval_batch_size,
            self.tcfg.bf16,
            gates,
        )

    def evaluate(
        self,
        split: str,
        shuffle_images: bool = False,
        seed: int = 0,
        condition: str = "",
        counts: bool = False,
    ) -> dict[str, Any]:
        """Scores of ``split``; ``shuffle_images``: images shuffled among its posts that have
        one (see :func:`shuffle_among_present`); ``condition``: one of :data:`ROBUSTNESS`
        (see :func:`perturb_keys`); ``counts``: add per-post ``post_counts``."""
        exs = self.prep.data.splits[split]
        keys = None
        name = split
        if shuffle_images:
            condition = "shuffled"
        if condition:
            keys = perturb_keys([e.image_key for e in exs], condition, seed)
            name = f"{split}_{condition}"
        self.counts[name] += 1
        gates: list[float] = []
        preds = self.predict(split, keys, gates)
        res = evaluate_tags(
            [e.tags for e in exs],
            preds,
            [e.lang for e in exs],
            [e.image_decided for e in exs],
            counts=counts,
        )
        if self.model.gated:
            res["gate"] = gate_summary(gates, keys or [e.image_key for e in exs], exs)
        return res


def gate_summary(
    gates: Sequence[float], keys: Sequence[str], exs: Sequence[Example]
) -> dict[str, float | None]:
    """Mean gate of ``mner2m_gated`` over the posts fed an image (``mean``) and over those of
    them that are image-decided (``image_decided``; None when there are none)."""
    fed = [i for i, k in enumerate(keys) if k]
    dec = [i for i in fed if exs[i].image_decided]

    def avg(idx: list[int]) -> float | None:
        return sum(gates[i] for i in idx) / len(idx) if idx else None

    return {"mean": avg(fed), "image_decided": avg(dec)}


ROBUSTNESS: tuple[str, ...] = ("replaced_25", "replaced_50", "replaced_100", "blank", "noise")
"""Test-image conditions of the robustness protocol (plus the intact test set, 0%):
``replaced_<p>``: p% of the posts that have an image get another test post's image
(``replaced_100`` is the shuffled-images control); ``blank``: every image a uniform grey
picture; ``noise``: every image uniform RGB noise.  Posts without an image stay masked."""


def _derange(keys: list[str], rng: random.Random) -> list[str]:
    """Sattolo's shuffle: a uniformly random cyclic permutation (no element keeps its place)."""
    out = list(keys)
    for i in range(len(out) - 1, 0, -1):
        j = rng.randrange(i)
        out[i], out[j] = out[j], out[i]
    return out


def shuffle_among_present(keys: Sequence[str], seed: int) -> list[str]:
    """``keys`` with the non-empty ones (posts with an image) permuted among themselves so that
    no post keeps its own (a seeded derangement); posts without an image (``""``) keep none."""
    return perturb_keys(keys, "replaced_100", seed)


def perturb_keys(keys: Sequence[str], condition: str, seed: int) -> list[str]:
    """The image keys of a robustness ``condition`` (:data:`ROBUSTNESS`, or ``shuffled`` =
    ``replaced_100``) for posts whose own keys are ``keys`` ("" = no image, kept as is).

    ``replaced_<p>``: ``round(p% * n)`` of the ``n`` posts with an image, chosen with a seeded
    generator, pass their images round a random cycle (each gets another chosen post's image);
    ``blank`` / ``noise``: every image replaced by :data:`BLANK_KEY` / one of
    :data:`NOISE_KEYS` (cycled)."""
    out = list(keys)
    where = [i for i, k in enumerate(keys) if k]
    if condition == "blank":
        return [BLANK_KEY if k else "" for k in keys]
    if condition == "noise":
        return [NOISE_KEYS[n % len(NOISE_KEYS)] if k else "" for n, k in enumerate(keys)]
    if condition == "shuffled":
        condition = "replaced_100"
    if not condition.startswith("replaced_"):
        raise BenchmarkError(f"unknown image condition {condition!r}")
    share = int(condition.removeprefix("replaced_")) / 100
    rng = random.Random(f"{condition}:{seed}")
    chosen = sorted(rng.sample(where, round(share * len(where)))) if share < 1 else where
    if len(chosen) < 2:
        return out
    for i, k in zip(chosen, _derange([keys[i] for i in chosen], rng), strict=True):
        out[i] = k
    return out


def augment_images(
    keys: Sequence[str],
    pool: Sequence[str],
    dropout: float,
    mismatch: float,
    rng: random.Random,
) -> tuple[list[str], list[float]]:
    """Training-time image augmentation of one batch (``mner2m_gated``).

    Each post with an image (``keys[i]`` non-empty) independently: with probability
    ``dropout`` loses it (``""``: masked, the text head alone tags it), with probability
    ``mismatch`` gets another image drawn from ``pool`` (a different key), else keeps its own.
    Returns the new keys and ``image_match`` (0.0 for a swapped image, else 1.0)."""
    out: list[str] = []
    match: list[float] = []
    can_swap = len(pool) > 1
    for k in keys:
        r = rng.random() if k else 1.0
        if r < dropout:
            out.append("")
            match.append(1.0)
        elif r < dropout + mismatch and can_swap:
            other = k
            while other == k:
                other = pool[rng.randrange(len(pool))]
            out.append(other)
            match.append(0.0)
        else:
            out.append(k)
            match.append(1.0)
    return out, match


def predict_encoded(
    model: Tagger,
    tokenizer: Any,
    exs: Sequence[Example],
    enc: Sequence[Encoded],
    keys: Sequence[str],
    feeder: ImageFeeder,
    batch_size: int,
    bf16: bool = False,
    gates: list[float] | None = None,
) -> list[list[str]]:
    """Viterbi tags for encoded sentences (batched by length: less padding); words cut by
    truncation are tagged ``O``.  ``gates``: filled with each post's gate (``mner2m_gated``;
    0 for a post without an image)."""
    model.eval()
    pad = _pad_id(model, tokenizer)
    preds: list[list[str]] = [[] for _ in enc]
    gate_of = [0.0] * len(enc)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([enc[i] for i in idx], pad)
        batch.pop("word_labels")
        batch = to_device(batch, feeder.device)
        if model.cfg.multimodal:
            batch.update(feeder.batch([keys[i] for i in idx]))
        with autocast(feeder.device, bf16):
            out = model(batch)
        for i, path in zip(idx, model.decode(out), strict=True):
            tags = ["O"] * len(exs[i].tokens)
            for k, w in enumerate(enc[i].kept_words):
                tags[w] = LABELS[path[k]]
            preds[i] = tags
        if "gate" in out:
            for i, g in zip(idx, out["gate"].float().tolist(), strict=True):
                gate_of[i] = g
    if gates is not None:
        gates[:] = gate_of
    return preds


def _pad_id(model: Tagger, tokenizer: Any) -> int:
    if model.cfg.encoder == "bilstm":
        return 0
    return int(tokenizer.pad_token_id or 0)


def build_model(mcfg: ModelConfig, prep: Prepared) -> Tagger:
    """The registered model ``mcfg.name`` (see :mod:`baselines.models`) for ``prep``'s
    vocabulary."""
    vocab = len(prep.vocab) if mcfg.encoder == "bilstm" else len(prep.tokenizer)
    return build(mcfg, LABELS, vocab)  # type: ignore[return-value]


def skip_reason(mcfg: ModelConfig, data: ExportData) -> str:
    """Why ``mcfg`` cannot be trained on ``data`` ("" = it can): a multimodal model needs at
    least one training post with an image (posts without one are masked, see
    :class:`baselines.models.tagger.Tagger`)."""
    if mcfg.multimodal and data.with_image("train") == 0:
        return "no post in train has an image"
    return ""


def train_run(
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    prep: Prepared,
    checkpoint_dir: Path | None = None,
    log: Log = _stderr,
    dist: Dist | None = None,
) -> RunResult:
    """Train ``mcfg`` with ``tcfg``; select the epoch with the best dev F1 (ties: earliest);
    evaluate test once with it (and once more with images shuffled among the test posts that
    have one, for multimodal models, when at least two do).

    Under torchrun (``dist.world > 1``) the model is wrapped in DistributedDataParallel: each
    global batch of ``batch_size`` posts is split between the ranks (NT-Xent negatives are
    those of the rank's share); every rank evaluates dev (same weights, same choice); rank 0
    saves the checkpoint.  The model and batches live on ``dist.device`` (default: resolved
    from ``tcfg.device``)."""
    reason = skip_reason(mcfg, prep.data)
    if reason:
        raise BenchmarkError(f"{mcfg.name} cannot be trained: {reason}")
    dist = dist or local_dist(tcfg.device)
    device = torch.device(dist.device)
    torch.set_num_threads(max(1, min(tcfg.num_threads, 2)))
    seed_everything(tcfg.seed)
    model = build_model(mcfg, prep).to(device)
    step_model: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.local_rank] if device.type == "cuda" else None
        step_model = DistributedDataParallel(model, device_ids=ids)
    feeder = ImageFeeder(model, prep, tcfg.cache_frozen_features, log)
    evaluator = Evaluator(model, prep, feeder, tcfg)
    head_lr = tcfg.head_lr if tcfg.head_lr is not None else tcfg.lr
    opt = torch.optim.Adam(
        [
            {"params": model.encoder_parameters(), "lr": tcfg.lr},
            {"params": model.head_parameters(), "lr": head_lr},
        ],
        weight_decay=tcfg.weight_decay,
    )
    exs = prep.data.splits["train"]
    enc = prep.encodings("train", mcfg.encoder, mcfg.max_length)
    usable = [i for i, e in enumerate(enc) if e.word_index]
    pad = _pad_id(model, prep.tokenizer)
    gen = torch.Generator().manual_seed(tcfg.seed)
    aug_rng = random.Random(f"augment:{tcfg.seed}:{dist.rank}")
    image_pool = sorted({e.image_key for e in exs if e.image_key})
    history: list[dict[str, Any]] = []
    best_f1, best_epoch, best_state, best_dev = -1.0, 0, None, {}
    train_time, seen = 0.0, 0
    for epoch in range(1, tcfg.epochs + 1):
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        totals: Counter[str] = Counter()
        steps = 0
        batches = train_batches(enc, usable, tcfg, gen)
        last_log = t0
        for chunk in batches:
            if len(chunk) < dist.world:
                continue  # every rank must take the same number of steps
            seen += len(chunk)
            idx = [usable[i] for i in chunk[dist.rank :: dist.world]]
            batch = to_device(collate([enc[i] for i in idx], pad), device)
            if mcfg.multimodal:
                keys = [exs[i].image_key for i in idx]
                match = None
                if mcfg.image_dropout or mcfg.image_mismatch:
                    keys, match = augment_images(
                        keys, image_pool, mcfg.image_dropout, mcfg.image_mismatch, aug_rng
                    )
                batch.update(feeder.batch(keys))
                if match is not None:
                    batch["image_match"] = torch.tensor(match, device=device)
            with autocast(device, tcfg.bf16):
                out = step_model(batch)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            for k in LOSS_KEYS:
                if k in out:
                    totals[k] += float(out[k].detach())
            steps += 1
            now = time.perf_counter()
            if now - last_log >= tcfg.log_every_s:  # long epochs show progress
                last_log = now
                rate = steps * tcfg.batch_size / (now - t0)
                log(
                    f"  {mcfg.name} seed={tcfg.seed} epoch {epoch}: step {steps}/{len(batches)} "
                    f"loss={totals['loss'] / steps:.4f} ({rate:.1f} examples/s)"
                )
        epoch_time = time.perf_counter() - t0
        epoch_cpu = time.process_time() - c0  # all threads of this process
        train_time += epoch_time
        dev = evaluator.evaluate("dev")
        row = {
            "epoch": epoch,
            **{k: v / max(steps, 1) for k, v in totals.items()},
            "dev_precision": dev["overall"]["precision"],
            "dev_recall": dev["overall"]["recall"],
            "dev_f1": dev["overall"]["f1"],
            "seconds": round(epoch_time, 3),
            "cpu_seconds": round(epoch_cpu, 3),
        }
        history.append(row)
        log(
            f"  {mcfg.name} seed={tcfg.seed} epoch {epoch}/{tcfg.epochs}: "
            f"loss={row.get('loss', 0):.4f} dev F1={100 * row['dev_f1']:.2f} ({epoch_time:.1f}s)"
        )
        if dev["overall"]["f1"] > best_f1:
            best_f1, best_epoch, best_dev = dev["overall"]["f1"], epoch, dev
            best_state = _cpu_state(model)
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluator.evaluate("test", counts=True) if prep.data.splits["test"] else {}
    shuffled = None
    robustness: dict[str, dict[str, Any]] = {}
    if mcfg.multimodal and tcfg.shuffled_image_eval and prep.data.with_image("test") >= 2:
        shuffled = evaluator.evaluate("test", shuffle_images=True, seed=tcfg.seed, counts=True)
        if tcfg.robustness_eval:
            for cond in ROBUSTNESS:
                robustness[cond] = (
                    shuffled
                    if cond == "replaced_100"
                    else evaluator.evaluate("test", condition=cond, seed=tcfg.seed, counts=True)
                )
    ckpt = ""
    if checkpoint_dir is not None and dist.main:
        ckpt = str(save_checkpoint(model, mcfg, tcfg, prep, checkpoint_dir, best_epoch, best_f1))
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult(
        model=mcfg.name,
        seed=tcfg.seed,
        best_epoch=best_epoch,
        history=history,
        dev=best_dev,
        test=test,
        test_shuffled=shuffled,
        test_robustness=robustness,
        eval_counts=dict(evaluator.counts),
        checkpoint=ckpt,
        train_seconds=round(train_time, 3),
        train_examples_per_s=round(seen / train_time, 2) if train_time > 0 else 0.0,
        n_params=n_params,
        n_trainable=n_train,
        config={"model": to_dict(mcfg), "train": to_dict(tcfg)},
        world_size=dist.world,
    )


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state dict (a best epoch kept aside costs no GPU memory)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_checkpoint(
    model: Tagger,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    prep: Prepared,
    out: Path,
    best_epoch: int,
    dev_f1: float,
) -> Path:
    """``out/model.pt`` (state dict), ``out/config.json`` (configs, labels, encoder configs),
    ``out/tokenizer/`` or ``out/vocab.json``: everything :mod:`baselines.predict` needs."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.pt.tmp"
    torch.save(_cpu_state(model), tmp)
    tmp.replace(out / "model.pt")
    if mcfg.encoder == "bilstm":
        prep.vocab.save(out / "vocab.json")
    else:
        prep.tokenizer.save_pretrained(str(out / "tokenizer"))
    save_json(
        {
            "format": "mmnerd.baselines.checkpoint/1",
            "model": to_dict(mcfg),
            "train": to_dict(tcfg),
            "labels": list(LABELS),
            "encoder_configs": model.saved_encoder_configs(),
            "vocab_size": len(prep.vocab) if mcfg.encoder == "bilstm" else len(prep.tokenizer),
            "best_epoch": best_epoch,
            "dev_f1": dev_f1,
        },
        out / "config.json",
    )
    return out
