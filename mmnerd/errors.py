"""Errors a user can fix.  The CLI prints their message on one line and exits 2.

Each message says what went wrong, where (file, line, field or item) and,
where it helps, how to fix it.  Never put secrets into a message.
"""

from __future__ import annotations


class MmnerdError(Exception):
    """Base class of errors reported to the user as one line (no traceback)."""

    exit_code = 2


class ConfigError(MmnerdError):
    """A pipeline file or a --set override is invalid."""


class InputError(MmnerdError):
    """An input file (dump, IMGID file, ...) is malformed; the message names file and line."""


class StageError(MmnerdError):
    """A stage cannot run (missing input, previous stage not done, ...)."""


class LabelStudioError(MmnerdError):
    """The Label Studio server cannot be started, reached or used."""


class EmptyOutputError(StageError):
    """A command ran but its last stage kept nothing (exit 3): everything was dropped."""

    exit_code = 3
