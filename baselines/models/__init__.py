"""The model registry: every model the trainer and the benchmark know, looked up by name.

One module per model family in this package; each calls :func:`register` once per model
name with a :class:`ModelSpec`: the :class:`~baselines.config.ModelConfig` fields the model
fixes (``flags``) and a builder (default: the shared :class:`~baselines.models.tagger.Tagger`,
whose parts those flags choose).  Adding a model is one module plus its name in
:data:`FAMILIES` (see docs/benchmark.md, "Adding a model").  The registry itself imports no
torch: ``--help`` and config checks stay fast; builders import their code when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from baselines.errors import BenchmarkError

if TYPE_CHECKING:
    from torch import nn

    from baselines.config import ModelConfig

Builder = Callable[["ModelConfig", Sequence[str], int, "dict[str, Any] | None"], "nn.Module"]
"""``(model config, labels, vocabulary size, saved encoder configs or None) -> model``.  The
model must offer what :class:`~baselines.models.tagger.Tagger` offers the trainer (forward,
decode, parameter groups, image specs and features, ``gated``, ``cfg``, ``crf``)."""


def build_tagger(
    cfg: ModelConfig,
    labels: Sequence[str],
    vocab_size: int,
    saved_encoders: dict[str, Any] | None = None,
) -> nn.Module:
    """The shared :class:`~baselines.models.tagger.Tagger` (parts chosen by ``cfg``'s flags)."""
    from baselines.models.tagger import Tagger

    return Tagger(cfg, labels, vocab_size, saved_encoders)


@dataclass(frozen=True)
class ModelSpec:
    """One named model: what it is (``summary``, one line), the ModelConfig fields it fixes
    (``flags``, applied over the caller's overrides), how to build it, and whether
    ``--mode quick`` trains it."""

    name: str
    summary: str
    flags: Mapping[str, Any] = field(default_factory=dict)
    build: Builder = build_tagger
    quick: bool = False


_REGISTRY: dict[str, ModelSpec] = {}

FAMILIES: tuple[str, ...] = ("text_crf", "bilstm_crf", "concat_fusion", "mner2m", "mner2m_gated")
"""Modules of this package that register models, in the order models are listed and run."""


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` under ``spec.name`` (a name registered twice is a programming error)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def model_names() -> tuple[str, ...]:
    """Every registered model name, in registration order."""
    return tuple(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name fails in one line listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BenchmarkError(
            f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}"
        ) from None


def build(
    cfg: ModelConfig,
    labels: Sequence[str],
    vocab_size: int,
    saved_encoders: dict[str, Any] | None = None,
) -> nn.Module:
    """The model ``cfg.name`` built by its registered builder."""
    return get_spec(cfg.name).build(cfg, labels, vocab_size, saved_encoders)


for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
