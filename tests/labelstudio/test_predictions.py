"""Model predictions (from `mmnerd predict`) become Label Studio pre-annotations."""

from __future__ import annotations

import json

import pytest

from mmnerd.config import PipelineConfig
from mmnerd.errors import InputError
from mmnerd.labelstudio.push import load_predictions, task_payload
from mmnerd.records import Post
from mmnerd.text.tokenize import tokenize


def post() -> Post:
    text = "Merci @Macron 🇫🇷 pour Paris 😀 !"
    tokens, offsets = tokenize(text, "fr")
    return Post(
        id="s:1",
        source="s",
        source_id="1",
        text=text,
        lang="fr",
        tokens=tokens,
        token_offsets=offsets,
    )


def test_tags_become_span_results_on_code_points(tmp_path):
    p = post()
    tags = ["O", "B-PER", "O", "O", "B-LOC", "O", "O"]
    assert len(tags) == len(p.tokens)
    task = task_payload(
        p,
        PipelineConfig(data_dir=str(tmp_path)),
        prediction={"tags": tags, "model_version": "mmnerd-predict:mner2m/seed1"},
    )
    pred = task["predictions"][0]
    assert pred["model_version"] == "mmnerd-predict:mner2m/seed1"
    got = [
        (r["value"]["start"], r["value"]["end"], r["value"]["labels"], r["value"]["text"])
        for r in pred["result"]
    ]
    assert got == [(6, 13, ["PER"], "@Macron"), (22, 27, ["LOC"], "Paris")]


def test_tags_over_other_tokens_are_not_guessed(tmp_path):
    task = task_payload(
        post(),
        PipelineConfig(data_dir=str(tmp_path)),
        prediction={"tags": ["B-LOC"], "model_version": "m"},
    )
    assert task["predictions"][0]["result"] == []


def test_bad_prediction_file_names_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "a", "tags": ["O"]}) + "\n{not json}\n")
    with pytest.raises(InputError, match=r"p.jsonl:2: not a prediction row"):
        load_predictions(f)
    with pytest.raises(InputError, match="does not exist"):
        load_predictions(tmp_path / "missing.jsonl")
