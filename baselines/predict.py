"""Tag new posts with a trained checkpoint (``checkpoints/<model>/seed<k>/``).

    from baselines.predict import Predictor
    tagger = Predictor.load("reports/checkpoints/mner2m/seed1")
    tagger.predict([{"text": "Jordan wins again", "image": "post.jpg"}])

CLI: ``python -m baselines.predict --checkpoint DIR --input posts.jsonl [--output out.jsonl]
[--calibration EXPORT_DIR] [--clusters K]`` (one JSON object per line with ``tokens`` or
``text``, optional ``image`` path, ``id``, ``lang``).

Each prediction also carries, for active learning (Label Studio's uncertainty sampling):

* ``confidence``: the CRF's probability of the whole predicted tagging,
  ``P(y* | x) = exp(score(y*) - log Z)`` (forward algorithm over the same BIO-constrained
  transitions as the decoding), with every CRF potential divided by a temperature ``T``.
  ``T`` is fitted on a labelled split (``--calibration``: an export's dev split) so that the
  confidence matches how often the whole tagging is right (minimum log loss of "exactly
  right"); without one ``T = 1``.  The expected calibration error before/after is printed.
* ``cluster``: k-means (k-means++, seeded) over the posts' mean word features (the input
  of the emission layer), ``--clusters`` of them (0 = ``n // 50`` clamped to 1..16), so
  the sampling can spread annotators over kinds of posts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines.errors import BenchmarkError

_TOKEN = re.compile(r"https?://\S+|[@#][\w-]+|\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)


def simple_tokenize(text: str) -> list[str]:
    """Whitespace/punctuation tokens (URLs, @mentions and #hashtags kept whole); the pipeline's
    own spaCy tokens should be passed as ``tokens`` when available."""
    return _TOKEN.findall(text)


def entities(tokens: Sequence[str], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Strict IOB2 chunks: ``[{"start", "end", "label", "text"}]`` (token indices, end
    exclusive); a stray ``I-X`` starts no entity."""
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for i, tag in enumerate(list(tags) + ["O"]):
        if cur and not (tag.startswith("I-") and tag[2:] == cur["label"]):
            cur["end"] = i
            cur["text"] = " ".join(tokens[cur["start"] : i])
            out.append(cur)
            cur = None
        if tag.startswith("B-"):
            cur = {"start": i, "end": i + 1, "label": tag[2:]}
    return out


@dataclass
class Predictor:
    """A trained tagger with its tokenizer and image preprocessing."""

    model: Any  # baselines.models.tagger.Tagger (or another registered model)
    tokenizer: Any
    vocab: Any
    config: dict[str, Any]

    temperature: float = 1.0  # CRF potentials are divided by it for ``confidence``

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "auto") -> Predictor:
        """Rebuild the model from ``config.json`` and load ``model.pt`` (no encoder paths
        needed: the encoders' configs are stored in the checkpoint) onto ``device``
        (auto | cpu | cuda; auto = cuda if available)."""
        import torch

        from baselines.config import model_config_from_dict
        from baselines.data import WordVocab
        from baselines.models import build
        from baselines.train import local_dist

        dev = local_dist(device).device

        ck = Path(checkpoint)
        if not (ck / "config.json").is_file() or not (ck / "model.pt").is_file():
            raise BenchmarkError(f"not a checkpoint folder (config.json, model.pt): {ck}")
        conf = json.loads((ck / "config.json").read_text())
        mcfg = model_config_from_dict(conf["model"])
        tokenizer, vocab = None, None
        if mcfg.encoder == "bilstm":
            vocab = WordVocab.load(ck / "vocab.json")
        else:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(ck / "tokenizer"))
        model = build(mcfg, conf["labels"], int(conf["vocab_size"]), conf["encoder_configs"])
        state = torch.load(ck / "model.pt", map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            bad = [*missing, *unexpected][:3]
            raise BenchmarkError(f"{ck / 'model.pt'} does not match config.json: {bad}")
        model.to(dev).eval()
        return cls(model, tokenizer, vocab, conf)

    def predict(
        self, posts: Sequence[dict[str, Any]], batch_size: int = 32, clusters: int = -1
    ) -> list[dict[str, Any]]:
        """Tag posts given as ``{"tokens": [...]}`` or ``{"text": "..."}``, with an optional
        ``image`` (bytes or a file path); returns ``{"id", "tokens", "tags", "entities",
        "confidence", "cluster"}`` (``clusters``: k of the k-means, 0 = auto, -1 = none:
        ``cluster`` is then absent)."""
        from baselines.data import Example, ImageStore

        store = ImageStore(root=Path("."))
        exs: list[Example] = []
        for i, post in enumerate(posts):
            tokens = list(post.get("tokens") or simple_tokenize(post.get("text", "")))
            key = ""
            image = post.get("image")
            if isinstance(image, bytes | bytearray):
                key = hashlib.sha256(image).hexdigest()
                store.blobs[key] = bytes(image)
            elif image:
                path = Path(image)
                if not path.is_file():
                    raise BenchmarkError(f"post {post.get('id', i)}: image not found: {path}")
                key = "path:" + str(path.resolve())
                store.paths[key] = path
            exs.append(Example(str(post.get("id", i)), str(post.get("lang", "")), tokens, [], key))
        scored = self.score(exs, store, batch_size)
        conf = confidences(self.model, scored, self.temperature)
        rows = [
            {
                "id": e.id,
                "tokens": e.tokens,
                "tags": t,
                "entities": entities(e.tokens, t),
                "confidence": float(f"{float(c):.6g}"),
            }
            for e, t, c in zip(exs, scored.tags, conf, strict=True)
        ]
        if clusters >= 0 and rows:
            k = clusters or min(16, max(1, len(rows) // 50))
            for row, c in zip(rows, kmeans(scored.features, k), strict=True):
                row["cluster"] = int(c)
        return rows

    def score(self, exs: Sequence[Any], store: Any, batch_size: int = 32) -> Scored:
        """Viterbi tags, emissions and pooled features of ``exs`` (``baselines.data.Example``
        whose image keys point into ``store``)."""
        from baselines.data import ExportData, PixelCache
        from baselines.train import ImageFeeder, Prepared

        data = ExportData(Path("."), {"predict": list(exs)}, store)
        prep = Prepared(data, self.tokenizer, self.vocab, PixelCache(store, 1 << 28))
        feeder = ImageFeeder(self.model, prep, cache=False)
        enc = prep.encodings("predict", self.model.cfg.encoder, self.model.cfg.max_length)
        return score_encoded(self.model, self.tokenizer, exs, enc, feeder, batch_size)

    def calibrate(self, exs: Sequence[Any], store: Any, batch_size: int = 32) -> dict[str, Any]:
        """Fit :attr:`temperature` on labelled ``exs`` (their ``tags``); returns the fit."""
        scored = self.score(exs, store, batch_size)
        fit = fit_temperature(self.model, scored, [list(e.tags) for e in exs])
        self.temperature = fit["temperature"]
        return fit


@dataclass
class Scored:
    """Per sentence: tags (all words), the Viterbi path over the kept words, the emissions
    ``[n_kept, L]`` (CPU float32) and the mean word feature ``[d]``."""

    tags: list[list[str]]
    paths: list[list[int]]
    emissions: list[Any]
    features: Any  # numpy [N, d]
    kept: list[list[int]]


def score_encoded(
    model: Any, tokenizer: Any, exs: Sequence[Any], enc: Sequence[Any], feeder: Any, batch: int
) -> Scored:
    """Batched forward passes (by length) keeping what confidence and clustering need."""
    import numpy as np
    import torch

    from baselines.data import collate
    from baselines.train import to_device

    model.eval()
    pad = 0 if model.cfg.encoder == "bilstm" else int(tokenizer.pad_token_id or 0)
    n = len(enc)
    tags: list[list[str]] = [[] for _ in range(n)]
    paths: list[list[int]] = [[] for _ in range(n)]
    emissions: list[Any] = [None] * n
    feats: list[Any] = [None] * n
    captured: dict[str, torch.Tensor] = {}
    hook = model.emit.register_forward_hook(lambda _m, inp, _o: captured.update(x=inp[0]))
    try:
        order = sorted(range(n), key=lambda i: len(enc[i].input_ids))
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            b = collate([enc[i] for i in idx], pad)
            b.pop("word_labels")
            b = to_device(b, feeder.device)
            if model.cfg.multimodal:
                b.update(feeder.batch([exs[i].image_key for i in idx]))
            with torch.no_grad():
                out = model(b)
                decoded = model.decode(out)
            em = out["emissions"].float().cpu()
            words = captured["x"].float().cpu()  # [B, W, d] (dropout is off in eval)
            for j, (i, path) in enumerate(zip(idx, decoded, strict=True)):
                m = len(enc[i].kept_words)
                row = ["O"] * len(exs[i].tokens)
                for k, w in enumerate(enc[i].kept_words):
                    row[w] = model.labels[path[k]]
                tags[i] = row
                paths[i] = list(path[: max(1, m)])
                emissions[i] = em[j, : len(paths[i])].clone()
                feats[i] = words[j, : max(1, m)].mean(0).numpy()
    finally:
        hook.remove()
    kept = [list(e.kept_words) for e in enc]
    return Scored(tags, paths, emissions, np.stack(feats) if feats else np.zeros((0, 1)), kept)


def path_log_probs(model: Any, scored: Scored, temperature: float = 1.0) -> Any:
    """``log P(path | x)`` of each sentence's Viterbi path under the CRF with every
    potential divided by ``temperature``: numpy [N]."""
    import numpy as np
    import torch

    crf = model.crf
    constrained = bool(model.cfg.crf_constrain_decode)
    n = len(scored.paths)
    out = np.zeros(n)
    if not n:
        return out
    with torch.no_grad():
        params = crf._params(constrained)
        trans, start, end = (t.detach().float().cpu() / temperature for t in params)
        order = sorted(range(n), key=lambda i: len(scored.paths[i]))
        for s in range(0, n, 256):
            idx = order[s : s + 256]
            w = max(len(scored.paths[i]) for i in idx)
            em = torch.zeros(len(idx), w, trans.size(0))
            tg = torch.zeros(len(idx), w, dtype=torch.long)
            mask = torch.zeros(len(idx), w, dtype=torch.bool)
            for j, i in enumerate(idx):
                m = len(scored.paths[i])
                em[j, :m] = scored.emissions[i] / temperature
                tg[j, :m] = torch.tensor(scored.paths[i])
                mask[j, :m] = True
            alpha = start.unsqueeze(0) + em[:, 0]
            for t in range(1, w):
                nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + em[:, t]
                alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
            logz = torch.logsumexp(alpha + end.unsqueeze(0), dim=1)
            mf = mask.float()
            gold = start[tg[:, 0]] + (em.gather(2, tg.unsqueeze(-1)).squeeze(-1) * mf).sum(1)
            if w > 1:
                gold = gold + (trans[tg[:, :-1], tg[:, 1:]] * mf[:, 1:]).sum(1)
            last = mask.long().sum(1) - 1
            gold = gold + end[tg.gather(1, last.unsqueeze(1)).squeeze(1)]
            out[idx] = (gold - logz).numpy()
    return out


def confidences(model: Any, scored: Scored, temperature: float = 1.0) -> Any:
    """``P(path | x)`` in [0, 1] per sentence (see :func:`path_log_probs`)."""
    import numpy as np

    return np.exp(np.minimum(path_log_probs(model, scored, temperature), 0.0))


def expected_calibration_error(conf: Any, correct: Any, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    import numpy as np

    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    if not len(conf):
        return 0.0
    which = np.minimum((conf * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            err += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(err)


def fit_temperature(model: Any, scored: Scored, gold: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The temperature whose confidences best predict "the whole tagging is right" (log
    loss, golden-section search over log T in [-3, 3]) and the calibration error before
    and after."""
    import math

    import numpy as np

    correct = np.array([list(t) == list(g) for t, g in zip(scored.tags, gold, strict=True)])

    def loss(log_t: float) -> float:
        c = np.clip(confidences(model, scored, math.exp(log_t)), 1e-6, 1 - 1e-6)
        return float(-(correct * np.log(c) + (1 - correct) * np.log(1 - c)).mean())

    lo, hi = -3.0, 3.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    best = (lo + hi) / 2
    if loss(0.0) <= loss(best):  # never worse than no temperature
        best = 0.0
    t = math.exp(best)
    return {
        "temperature": round(t, 4),
        "posts": int(len(correct)),
        "exact_match": round(float(correct.mean()) if len(correct) else 0.0, 4),
        "log_loss_before": round(loss(0.0), 4),
        "log_loss_after": round(loss(best), 4),
        "ece_before": round(expected_calibration_error(confidences(model, scored), correct), 4),
        "ece_after": round(expected_calibration_error(confidences(model, scored, t), correct), 4),
    }


def kmeans(x: Any, k: int, seed: int = 0, iters: int = 30) -> Any:
    """Cluster ids [N] of the rows of ``x`` (standardised) by k-means with k-means++ seeds."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    k = max(1, min(k, n))
    if k == 1:
        return np.zeros(n, dtype=int)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        pick = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centres.append(x[pick])
        d2 = np.minimum(d2, ((x - x[pick]) ** 2).sum(1))
    c = np.stack(centres)
    labels = np.zeros(n, dtype=int)
    for it in range(iters):
        dist = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
        new = dist.argmin(1)
        if it and (new == labels).all():
            break
        labels = new
        for j in range(k):
            sel = labels == j
            if sel.any():
                c[j] = x[sel].mean(0)
    return labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m baselines.predict", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoints/<model>/seed<k> folder")
    p.add_argument("--input", required=True, help="JSONL posts: tokens|text, image path, id")
    p.add_argument("--output", default="-", help="JSONL output (default: stdout)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda if available"
    )
    p.add_argument(
        "--calibration",
        default="",
        help="an export folder: fit the confidence's temperature on its dev split",
    )
    p.add_argument(
        "--clusters", type=int, default=0, help="k-means clusters (0 = auto, -1 = no clusters)"
    )
    args = p.parse_args(argv)
    try:
        src = Path(args.input)
        if not src.is_file():
            raise BenchmarkError(f"input not found: {src}")
        posts = []
        for n, line in enumerate(src.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                post = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{src}:{n}: invalid JSON ({exc.msg})") from None
            if isinstance(post.get("image"), str) and not Path(post["image"]).is_absolute():
                post["image"] = str(src.parent / post["image"])
            posts.append(post)
        tagger = Predictor.load(args.checkpoint, args.device)
        if args.calibration:
            from baselines.data import load_export

            data = load_export(args.calibration)
            dev = data.splits.get("dev") or []
            if not dev:
                raise BenchmarkError(f"{args.calibration}: no dev split to calibrate on")
            fit = tagger.calibrate(dev, data.images)
            print(
                f"calibration: temperature {fit['temperature']} on {fit['posts']} dev posts "
                f"(whole tagging right: {fit['exact_match']:.1%}); log loss "
                f"{fit['log_loss_before']:.3f} -> {fit['log_loss_after']:.3f}, expected "
                f"calibration error {fit['ece_before']:.3f} -> {fit['ece_after']:.3f}",
                file=sys.stderr,
            )
        rows = tagger.predict(posts, clusters=args.clusters)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
