"""Tag new posts with a trained checkpoint (``checkpoints/<model>/seed<k>/``).

    from baselines.predict import Predictor
    tagger = Predictor.load("reports/checkpoints/mner2m/seed1")
    tagger.predict([{"text": "Jordan wins again", "image": "post.jpg"}])

CLI: ``python -m baselines.predict --checkpoint DIR --input posts.jsonl [--output out.jsonl]``
(one JSON object per line with ``tokens`` or ``text``, optional ``image`` path, ``id``, ``lang``).
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

    model: Any  # baselines.models.Tagger
    tokenizer: Any
    vocab: Any
    config: dict[str, Any]

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "auto") -> Predictor:
        """Rebuild the model from ``config.json`` and load ``model.pt`` (no encoder paths
        needed: the encoders' configs are stored in the checkpoint) onto ``device``
        (auto | cpu | cuda; auto = cuda if available)."""
        import torch

        from baselines.config import model_config_from_dict
        from baselines.data import WordVocab
        from baselines.models import Tagger
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
        model = Tagger(mcfg, conf["labels"], int(conf["vocab_size"]), conf["encoder_configs"])
        state = torch.load(ck / "model.pt", map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            bad = [*missing, *unexpected][:3]
            raise BenchmarkError(f"{ck / 'model.pt'} does not match config.json: {bad}")
        model.to(dev).eval()
        return cls(model, tokenizer, vocab, conf)

    def predict(
        self, posts: Sequence[dict[str, Any]], batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """Tag posts given as ``{"tokens": [...]}`` or ``{"text": "..."}``, with an optional
        ``image`` (bytes or a file path); returns ``{"id", "tokens", "tags", "entities"}``."""
        from baselines.config import TrainConfig
        from baselines.data import Example, ExportData, ImageStore, PixelCache
        from baselines.train import Evaluator, ImageFeeder, Prepared

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
        data = ExportData(Path("."), {"predict": exs}, store)
        prep = Prepared(data, self.tokenizer, self.vocab, PixelCache(store, 1 << 28))
        feeder = ImageFeeder(self.model, prep, cache=False)
        ev = Evaluator(self.model, prep, feeder, TrainConfig(eval_batch_size=batch_size))
        tags = ev.predict("predict")
        return [
            {"id": e.id, "tokens": e.tokens, "tags": t, "entities": entities(e.tokens, t)}
            for e, t in zip(exs, tags, strict=True)
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m baselines.predict", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="checkpoints/<model>/seed<k> folder")
    p.add_argument("--input", required=True, help="JSONL posts: tokens|text, image path, id")
    p.add_argument("--output", default="-", help="JSONL output (default: stdout)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda if available"
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
        rows = Predictor.load(args.checkpoint, args.device).predict(posts)
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
