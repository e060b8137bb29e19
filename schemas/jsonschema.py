"""The JSON Schema of :class:`~schemas.metrics.MetricsSample`, generated from the dataclasses.

``schemas/machine_metrics.schema.json`` is this module's output, committed so
producers and consumers in other languages need no Python; a unit test fails
when the two differ (regenerate with ``hoststream schema --output
schemas/machine_metrics.schema.json``). The unit rules are the ones
:mod:`schemas.validation` applies, read from the same field names.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import orjson

from schemas.metrics import SCHEMA_VERSION, MetricsSample

SCHEMA_FILE = Path(__file__).with_name("machine_metrics.schema.json")
_INT64 = 2**63

# Name endings and what they mean, first match wins; mirrors schemas/validation.py.
_UNITS: tuple[tuple[str, str], ...] = (
    ("percent", "percent, 0-100"),
    ("_per_s", "per second"),
    ("_bytes", "bytes"),
    ("_celsius", "degrees Celsius"),
    ("_watts", "watts"),
    ("_rpm", "revolutions per minute"),
    ("_s", "seconds"),
)


def json_schema() -> dict[str, Any]:
    """The record as a JSON Schema (draft 2020-12) document."""
    definitions: dict[str, Any] = {}
    root = _object(MetricsSample, definitions)
    root["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://hoststream.dev/schemas/machine_metrics/{SCHEMA_VERSION}",
        "title": "hoststream machine_metrics record",
        **root,
        "$defs": dict(sorted(definitions.items())),
    }


def schema_document() -> bytes:
    """:func:`json_schema` as the bytes of the committed file."""
    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2) + b"\n"


def _object(cls: type[Any], definitions: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    notes = _field_docstrings(cls)
    properties = {}
    required = []
    for f in dataclasses.fields(cls):
        prop = _type(hints[f.name], f.name, definitions)
        described = " ".join(filter(None, (notes.get(f.name), _unit(f.name))))
        if described and "$ref" not in prop:
            prop = {"description": described, **prop}
        properties[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {
        "description": inspect.cleandoc(cls.__doc__ or ""),
        "type": "object",
        "properties": properties,
        "required": required,
    }


def _type(hint: Any, name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        # Optional means absent from the document, never null: only the type remains.
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _type(hint, name, definitions)
    if origin is list:
        (item,) = typing.get_args(hint)
        return {"type": "array", "items": _type(item, name, definitions)}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint.__name__ not in definitions:
            definitions[hint.__name__] = {}  # placeholder: a type may refer to itself
            definitions[hint.__name__] = _object(hint, definitions)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    if hint is str:
        return {"type": "string", **({"format": "date-time"} if _is_time(name) else {})}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", **_range(name, -_INT64, _INT64 - 1)}
    if hint is float:
        return {"type": "number", **_range(name, None, None)}
    raise TypeError(f"schema field {name} has an unsupported type {hint!r}")


def _range(name: str, low: int | None, high: int | None) -> dict[str, Any]:
    if name.endswith("percent"):
        low, high = 0, 100
    elif "bytes" in name or name.endswith("_s"):
        low = 0
    bounds = {"minimum": low, "maximum": high}
    return {key: value for key, value in bounds.items() if value is not None}


def _unit(name: str) -> str:
    for ending, unit in _UNITS:
        if name.endswith(ending):
            counted = "bytes" if name.startswith("bytes") or "_bytes_" in name else "events"
            return f"Unit: {counted} {unit}." if ending == "_per_s" else f"Unit: {unit}."
    return ""


def _is_time(name: str) -> bool:
    return name == "timestamp" or name.endswith("_time")


def _field_docstrings(cls: type[Any]) -> dict[str, str]:
    """The string literal written under a field, as in ``schemas/metrics.py``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    notes = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            notes[statement.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return notes
