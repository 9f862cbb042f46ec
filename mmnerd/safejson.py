"""JSON from untrusted sources (APIs, dumps), decoded without deep recursion.

Imports nothing heavy: the config module uses it too.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 200  # far below Python's recursion limit (1000), whatever the caller's stack

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # brackets in strings do not nest
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class JsonTooDeep(ValueError):
    """A JSON text nested deeper than :data:`MAX_JSON_DEPTH`."""


def loads_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted text that refuses deep nesting *before* decoding.

    Letting the decoder hit Python's recursion limit instead is not safe: a garbage
    collection at that depth runs finalizers with no stack left, and their errors
    escape as "unraisable" exceptions (a flaky failure under pytest)."""
    if text.count("[") + text.count("{") > max_depth:  # cheap test first; exact one below
        depth = 0
        for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
            depth += 1 if m.group() in "[{" else -1
            if depth > max_depth:
                raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    return json.loads(text)
