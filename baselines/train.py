"""One training run: fit on train, select the epoch on dev, evaluate test once, save a checkpoint.

:func:`prepare` builds what all runs of a benchmark share (tokenizer, word vocabulary,
encodings, pixel cache, frozen-feature cache); :func:`train_run` trains one (model, seed).
"""

from __future__ import annotations

import copy
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
    Encoded,
    Example,
    ExportData,
    PixelCache,
    WordVocab,
    collate,
    encode_subwords,
    encode_words,
    train_wordpiece,
)
from baselines.metrics import evaluate_tags
from baselines.models import Tagger, encoder_identity
from mmnerd.records import LABELS

Log = Callable[[str], None]


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
    return Prepared(
        data=data,
        tokenizer=tokenizer,
        vocab=WordVocab.build(train_tokens),
        pixels=PixelCache(data.images, pixel_cache_bytes),
        text_encoder=text_encoder,
        feature_dir=feature_dir,
    )


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group (gloo, CPU) when ``WORLD_SIZE`` > 1."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group("gloo")
    return Dist(tdist.get_rank(), tdist.get_world_size())


@dataclass
class RunResult:
    """What one (model, seed) run produced; ``eval_counts`` proves test was evaluated once."""

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


class ImageFeeder:
    """Image inputs of a batch: cached frozen features, or pixels for trainable encoders."""

    def __init__(self, model: Tagger, prep: Prepared, cache: bool, log: Log = _stderr) -> None:
        self.model = model
        self.prep = prep
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
                store.update(torch.load(file, weights_only=True))
                log(f"  loaded {len(store)} cached {which} features from {file}")
        keys = [""] + self.prep.data.images.keys()
        todo = [k for k in keys if k not in store]
        if todo:
            t0 = time.perf_counter()
            module.eval()
            for i in range(0, len(todo), 64):
                chunk = todo[i : i + 64]
                pixels = self.prep.pixels.pixels(chunk, spec, keep=False)
                feats = self.model.image_features(which, pixels)
                for j, k in enumerate(chunk):
                    store[k] = {name: t[j].clone() for name, t in feats.items()}
            secs = time.perf_counter() - t0
            log(f"  cached {which} features of {len(todo)} images in {secs:.1f}s")
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                torch.save(store, file.with_suffix(".tmp"))
                file.with_suffix(".tmp").replace(file)
        return store

    def batch(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for which, spec in self.specs.items():
            if which in self.cached:
                store = self.cached[which]
                for name in store[""]:
                    out[name] = torch.stack([store[k if k in store else ""][name] for k in keys])
            else:
                out[f"{which}_pixels"] = self.prep.pixels.pixels(keys, spec)
        return out


def _batches(n: int, size: int, gen: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=gen).tolist() if gen is not None else list(range(n))
    return [order[i : i + size] for i in range(0, n, size)]


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
    def predict(self, split: str, image_keys: Sequence[str] | None = None) -> list[list[str]]:
        """Tags per sentence of ``split`` (``image_keys`` overrides each post's image)."""
        exs = self.prep.data.splits[split]
        enc = self.prep.encodings(split, self.model.cfg.encoder, self.model.cfg.max_length)
        keys = list(image_keys) if image_keys is not None else [e.image_key for e in exs]
        return predict_encoded(
            self.model, self.prep.tokenizer, exs, enc, keys, self.feeder, self.tcfg.eval_batch_size
        )

    def evaluate(self, split: str, shuffle_images: bool = False, seed: int = 0) -> dict[str, Any]:
        exs = self.prep.data.splits[split]
        keys = None
        name = split
        if shuffle_images:
            rng = random.Random(seed)
            keys = [e.image_key for e in exs]
            rng.shuffle(keys)
            name = split + "_shuffled"
        self.counts[name] += 1
        preds = self.predict(split, keys)
        return evaluate_tags(
            [e.tags for e in exs], preds, [e.lang for e in exs], [e.image_decided for e in exs]
        )


def predict_encoded(
    model: Tagger,
    tokenizer: Any,
    exs: Sequence[Example],
    enc: Sequence[Encoded],
    keys: Sequence[str],
    feeder: ImageFeeder,
    batch_size: int,
) -> list[list[str]]:
    """Viterbi tags for encoded sentences; words cut by truncation are tagged ``O``."""
    model.eval()
    pad = _pad_id(model, tokenizer)
    preds: list[list[str]] = []
    for idx in _batches(len(enc), batch_size, None):
        batch = collate([enc[i] for i in idx], pad)
        batch.pop("word_labels")
        if model.cfg.multimodal:
            batch.update(feeder.batch([keys[i] for i in idx]))
        out = model(batch)
        for i, path in zip(idx, model.decode(out), strict=True):
            tags = ["O"] * len(exs[i].tokens)
            for k, w in enumerate(enc[i].kept_words):
                tags[w] = LABELS[path[k]]
            preds.append(tags)
    return preds


def _pad_id(model: Tagger, tokenizer: Any) -> int:
    if model.cfg.encoder == "bilstm":
        return 0
    return int(tokenizer.pad_token_id or 0)


def build_model(mcfg: ModelConfig, prep: Prepared) -> Tagger:
    vocab = len(prep.vocab) if mcfg.encoder == "bilstm" else len(prep.tokenizer)
    return Tagger(mcfg, LABELS, vocab)


def train_run(
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    prep: Prepared,
    checkpoint_dir: Path | None = None,
    log: Log = _stderr,
    dist: Dist | None = None,
) -> RunResult:
    """Train ``mcfg`` with ``tcfg``; select the epoch with the best dev F1 (ties: earliest);
    evaluate test once with it (and once more with shuffled images for multimodal models).

    Under torchrun (``dist.world > 1``) the model is wrapped in DistributedDataParallel: each
    global batch of ``batch_size`` posts is split between the ranks (NT-Xent negatives are
    those of the rank's share); every rank evaluates dev (same weights, same choice); rank 0
    saves the checkpoint."""
    dist = dist or Dist()
    torch.set_num_threads(max(1, min(tcfg.num_threads, 2)))
    seed_everything(tcfg.seed)
    model = build_model(mcfg, prep)
    step_model: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model)
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
    history: list[dict[str, Any]] = []
    best_f1, best_epoch, best_state, best_dev = -1.0, 0, None, {}
    train_time, seen = 0.0, 0
    for epoch in range(1, tcfg.epochs + 1):
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        totals: Counter[str] = Counter()
        steps = 0
        batches = _batches(len(usable), tcfg.batch_size, gen)
        last_log = t0
        for chunk in batches:
            if len(chunk) < dist.world:
                continue  # every rank must take the same number of steps
            seen += len(chunk)
            idx = [usable[i] for i in chunk[dist.rank :: dist.world]]
            batch = collate([enc[i] for i in idx], pad)
            if mcfg.multimodal:
                batch.update(feeder.batch([exs[i].image_key for i in idx]))
            out = step_model(batch)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            for k in ("loss", "crf_loss", "cl_loss"):
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
            best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluator.evaluate("test") if prep.data.splits["test"] else {}
    shuffled = None
    if mcfg.multimodal and tcfg.shuffled_image_eval and prep.data.splits["test"]:
        shuffled = evaluator.evaluate("test", shuffle_images=True, seed=tcfg.seed)
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
        eval_counts=dict(evaluator.counts),
        checkpoint=ckpt,
        train_seconds=round(train_time, 3),
        train_examples_per_s=round(seen / train_time, 2) if train_time > 0 else 0.0,
        n_params=n_params,
        n_trainable=n_train,
        config={"model": to_dict(mcfg), "train": to_dict(tcfg)},
        world_size=dist.world,
    )


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
    torch.save(model.state_dict(), tmp)
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
