"""Configuration for people: one-line explanations of validation errors (with "did you mean"
and the TOML form of a value), and pipeline files rendered with every field's description
(``mmnerd init`` writes one, ``mmnerd config show`` prints the resolved one)."""

from __future__ import annotations

import difflib
import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

# --------------------------------------------------------------------------- errors


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model holding the field at ``loc`` (its parent), or None if ``loc`` leaves models."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def did_you_mean(word: str, choices: list[str], prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest choice (``prefix.x``), or the choices."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
    return f"; known: {', '.join(sorted(choices))}" if choices else ""


def toml_value(value: Any) -> str:
    """``value`` written as TOML (strings quoted, lists in brackets, tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(value))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def explain(err: dict[str, Any], model: type[BaseModel], prefix: str = "") -> str:
    """One line for one pydantic error: ``field 'a.b': what is wrong; how to fix``."""
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in (*([prefix] if prefix else []), *loc))[:120] or "(top level)"
    msg = " ".join(str(err["msg"]).split())[:300]
    kind = err.get("type", "")
    given = err.get("input")
    parent = _model_at(model, loc) if loc else None
    if kind == "extra_forbidden" and parent is not None:
        names = [n for n in parent.model_fields]
        section = where.rsplit(".", 1)[0] if "." in where else ""
        return f"unknown field '{where}'{did_you_mean(str(loc[-1]), names, section)}"
    if kind in ("literal_error", "enum") and isinstance(given, str):
        expected = _choices(str(err.get("ctx", {}).get("expected", "")))
        if expected:
            hint = did_you_mean(given, expected)
            return f"field '{where}': {given!r} is not one of {', '.join(expected)}{hint}"
    if kind in ("list_type", "tuple_type", "dict_type") and isinstance(given, str):
        example = ('["' + '", "'.join(p.strip() for p in given.split(",")) + '"]'
                   if kind != "dict_type" else "{ key = 1 }")  # fmt: skip
        return (f"field '{where}': {msg}; write it in TOML: {loc[-1]} = {example} (on the "
                f"command line: --set '{where}={example}')")  # fmt: skip
    return f"field '{where}': {msg}"


def _choices(expected: str) -> list[str]:
    """``'a', 'b' or 'c'`` (pydantic's wording) -> ``["a", "b", "c"]``."""
    parts = expected.replace(" or ", ",").split(",")
    return [c for c in (p.strip().strip("'") for p in parts) if c]


def explain_validation(e: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The first error of ``e`` as one line, plus how many more there are (an unknown field
    first: a misspelt name also makes the right one look missing)."""
    errors = sorted(e.errors(), key=lambda err: err.get("type") != "extra_forbidden")
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return explain(errors[0], model, prefix) + more


# --------------------------------------------------------------------------- rendering


def _lines(
    model: BaseModel | type[BaseModel], values: dict[str, Any] | None, skip: tuple[str, ...] = ()
) -> list[str]:
    """``name = value  # description`` lines for the fields of ``model`` (a required field
    without a value is written commented out, marked REQUIRED)."""
    cls = model if isinstance(model, type) else type(model)
    out = []
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        if _is_section(field.annotation):
            continue  # a sub-section: rendered as its own table
        desc = " ".join((field.description or "").split())
        if values is not None and name in values:
            value = values[name]
        elif field.is_required():
            out.append(f"# {name} = ...   # REQUIRED: {desc}")
            continue
        else:
            value = field.get_default(call_default_factory=True)
        if value is None:  # TOML has no null: leave it unset
            out.append(f"# {name} =   # unset; {desc}")
            continue
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        note = desc
        if values is not None and default is not None and _plain(value) != _plain(default):
            note = f"{desc} (default: {toml_value(_plain(default))})".strip()
        text = f"{name} = {toml_value(_plain(value))}"
        out.append(f"{text}   # {note}" if note else text)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    if isinstance(v, tuple):
        return list(v)
    return v


def render_pipeline(config: Any, source_options: type[BaseModel] | BaseModel, kind: str,
                    resolved: bool = False) -> str:  # fmt: skip
    """A pipeline file: top-level fields, ``[source]`` (``kind`` and that source's options)
    and every section, each field with its description.  ``resolved``: the values of
    ``config`` (defaults noted where they differ); else the defaults."""
    dump = config.model_dump(mode="json") if resolved else None
    cls = type(config) if resolved else config
    lines = []
    top = [n for n, f in cls.model_fields.items() if not _is_section(f.annotation)]
    lines += _lines(cls if not resolved else config, dump, skip=tuple(
        n for n in cls.model_fields if n not in top))  # fmt: skip
    lines += ["", "[source]", f'kind = "{kind}"   # where posts come from']
    src_values = None
    if isinstance(source_options, BaseModel):
        src_values = source_options.model_dump(mode="json")
    lines += _lines(source_options, src_values)
    src_cls = source_options if isinstance(source_options, type) else type(source_options)
    for name, field in src_cls.model_fields.items():  # e.g. a dump's [source.columns]
        if _is_section(field.annotation):
            lines += ["", f"[source.{name}]"]
            lines += _lines(_section_model(field.annotation),
                            src_values.get(name) if src_values else None)  # fmt: skip
    for name, field in cls.model_fields.items():
        if name == "source" or not _is_section(field.annotation):
            continue
        section = _section_model(field.annotation)
        doc = " ".join((section.__doc__ or "").split())
        lines += ["", f"[{name}]" + (f"   # {doc}" if doc and len(doc) < 90 else "")]
        lines += _lines(section, dump.get(name) if dump else None)
    return "\n".join(lines) + "\n"


def _section_model(ann: Any) -> Any:
    """The model class in an annotation (``Columns`` of ``Columns | None``), else None."""
    if get_origin(ann) is not None:
        ann = next((a for a in get_args(ann) if isinstance(a, type)), None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _is_section(ann: Any) -> bool:
    return _section_model(ann) is not None
