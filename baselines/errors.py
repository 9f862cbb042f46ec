"""Errors the user can fix (kept out of ``__init__`` so namespace-style imports work too)."""

from __future__ import annotations


class BenchmarkError(Exception):
    """An error the user can fix (missing export, bad option); printed as one line, exit 2."""

    exit_code = 2
