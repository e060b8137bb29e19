"""Decode and check a raw Kafka value against :class:`~schemas.metrics.MetricsSample`.

Pure functions: no I/O, so every rule is unit-tested without services. Units
live in field names, and the checks follow them: a ``*percent`` field must lie in
0-100, a field that counts ``bytes`` or ends in ``_per_s`` or ``_s`` must not be
negative.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from schemas.metrics import SCHEMA_VERSION, MetricsSample

T = TypeVar("T")


class RejectedRecord(ValueError):
    """A record that does not match the schema; ``str(exc)`` says why in one line."""


def parse_sample(raw: bytes) -> MetricsSample:
    """Decode one Kafka value into a checked :class:`MetricsSample`.

    Raises :class:`RejectedRecord` naming the first problem found: not JSON, not
    an object, an unknown ``schema_version``, a missing field, a wrong type, a
    value outside its unit's range or a timestamp that is not ISO 8601 with a
    time zone.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RejectedRecord(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RejectedRecord(f"not a JSON object but {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RejectedRecord(
            f"unknown schema_version {version!r} (this worker accepts {SCHEMA_VERSION})"
        )
    sample: MetricsSample = _decode(MetricsSample, data, "")
    if not sample.event_id:
        raise RejectedRecord("event_id is empty")
    if not sample.host_id:
        raise RejectedRecord("host_id is empty")
    sample_time(sample)
    return sample


def sample_time(sample: MetricsSample) -> datetime:
    """The sample's timestamp as an aware UTC datetime; raises :class:`RejectedRecord`."""
    try:
        moment = datetime.fromisoformat(sample.timestamp)
    except ValueError:
        raise RejectedRecord(f"timestamp {sample.timestamp!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise RejectedRecord(f"timestamp {sample.timestamp!r} has no time zone")
    return moment.astimezone(UTC)


_FieldSpec = tuple[str, Any, bool]
_field_specs: dict[type[Any], tuple[_FieldSpec, ...]] = {}


def _fields(cls: type[Any]) -> tuple[_FieldSpec, ...]:
    """(name, type, required) of each field of a dataclass, resolved once per class."""
    specs = _field_specs.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls)
        specs = _field_specs[cls] = tuple(
            (
                f.name,
                hints[f.name],
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
    return specs


def _decode(cls: type[Any], data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise RejectedRecord(f"{path or 'record'} must be an object")
    values: dict[str, Any] = {}
    for name, hint, required in _fields(cls):
        where = f"{path}.{name}" if path else name
        if name not in data:
            if required:
                raise RejectedRecord(f"missing field {where}")
            continue
        values[name] = _value(hint, data[name], where, name)
    return cls(**values)


def _value(hint: Any, value: Any, where: str, name: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, list):
            raise RejectedRecord(f"{where} must be a list")
        (item_hint,) = typing.get_args(hint)
        return [_value(item_hint, item, f"{where}[{i}]", name) for i, item in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode(hint, value, where)
    if hint is str:
        if not isinstance(value, str):
            raise RejectedRecord(f"{where} must be a string")
        return value
    # bool is an int in Python but never a valid count or measure here.
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise RejectedRecord(f"{where} must be an integer")
        return _in_unit_range(value, where, name)
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RejectedRecord(f"{where} must be a number")
        if not math.isfinite(value):
            raise RejectedRecord(f"{where} must be finite")
        return _in_unit_range(float(value), where, name)
    raise TypeError(f"schema field {where} has an unsupported type {hint!r}")


def _in_unit_range(value: T, where: str, name: str) -> T:
    number = typing.cast(float, value)
    if name.endswith("percent"):
        if not 0.0 <= number <= 100.0:
            raise RejectedRecord(f"{where} = {number} is outside 0-100 percent")
    elif ("bytes" in name or name.endswith("_s")) and number < 0:
        raise RejectedRecord(f"{where} = {number} is negative")
    return value
