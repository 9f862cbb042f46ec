"""Untrusted JSON is refused for its nesting before the decoder recurses (safejson)."""

from __future__ import annotations

import json

import pytest

from mmnerd.safejson import MAX_JSON_DEPTH, JsonTooDeep, loads_json


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def test_the_limit_is_exact_and_the_value_is_what_json_gives() -> None:
    ok = nested(MAX_JSON_DEPTH)
    assert loads_json(ok) == json.loads(ok)
    with pytest.raises(JsonTooDeep, match=f"deeper than {MAX_JSON_DEPTH}"):
        loads_json(nested(MAX_JSON_DEPTH + 1))
    objects = '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(JsonTooDeep):
        loads_json(objects)


def test_brackets_inside_strings_and_siblings_do_not_count() -> None:
    text = json.dumps({"text": "[" * 10_000 + '\\"{', "list": [[1]] * 5_000})
    assert loads_json(text) == json.loads(text)


def test_refused_without_recursing_even_from_a_deep_stack() -> None:
    def at_depth(n: int) -> None:  # leave too little stack for a decoder that recurses
        if n:
            return at_depth(n - 1)
        with pytest.raises(JsonTooDeep):
            loads_json(nested(100_000))

    at_depth(900)
