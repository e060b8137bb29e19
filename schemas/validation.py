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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.metrics import SCHEMA_VERSION, MetricsSample

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


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


def check_not_in_future(sample: MetricsSample, now: datetime, max_skew_s: float) -> None:
    """Reject a sample stamped more than ``max_skew_s`` seconds after ``now``: a host
    with a wrong clock would otherwise fill windows that have not started yet."""
    ahead_s = (sample_time(sample) - now).total_seconds()
    if ahead_s > max_skew_s:
        raise RejectedRecord(
            f"timestamp {sample.timestamp} is {ahead_s:.0f} s in the future "
            f"(more than the allowed {max_skew_s:g} s clock skew)"
        )


def sample_time(sample: MetricsSample) -> datetime:
    """The sample's timestamp as an aware UTC datetime; raises :class:`RejectedRecord`."""
    try:
        moment = datetime.fromisoformat(sample.timestamp)
    except ValueError:
        raise RejectedRecord(f"timestamp {sample.timestamp!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise RejectedRecord(f"timestamp {sample.timestamp!r} has no time zone")
    return moment.astimezone(UTC)


class _Invalid(Exception):
    """A value that does not fit its field; its location is filled in on the way up,
    so the happy path never formats one."""

    def __init__(self, problem: str, *, missing: bool = False) -> None:
        self.problem = problem
        self.missing = missing
        self.path: list[str] = []

    def rejected(self) -> RejectedRecord:
        where = "".join(reversed(self.path)).lstrip(".")
        if self.missing:
            return RejectedRecord(f"missing field {where}")
        return RejectedRecord(f"{where or 'record'}{self.problem}")


Convert = Callable[[Any], Any]
_decoders: dict[type[Any], Convert] = {}


def _decode(cls: type[Any], data: Any, path: str) -> Any:
    try:
        return _decoder(cls)(data)
    except _Invalid as exc:
        if path:
            exc.path.append(path)
        raise exc.rejected() from None


def _decoder(cls: type[Any]) -> Convert:
    """A function that checks a dict against the dataclass ``cls`` and builds it.

    Built once per class from its type hints: reflection per record would cost
    more than the checks themselves.
    """
    decoder = _decoders.get(cls)
    if decoder is not None:
        return decoder
    hints = typing.get_type_hints(cls)
    fields = [
        (
            f.name,
            _converter(hints[f.name], f.name),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    ]

    def decode(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _Invalid(" must be an object")
        values = {}
        for name, convert, required in fields:
            if name in data:
                try:
                    values[name] = convert(data[name])
                except _Invalid as exc:
                    exc.path.append(f".{name}")
                    raise
            elif required:
                missing = _Invalid("", missing=True)
                missing.path.append(f".{name}")
                raise missing
        return cls(**values)

    _decoders[cls] = decode
    return decode


def _converter(hint: Any, name: str) -> Convert:
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        convert_item = _converter(item_hint, name)

        def convert_list(value: Any) -> Any:
            if not isinstance(value, list):
                raise _Invalid(" must be a list")
            items = []
            for i, item in enumerate(value):
                try:
                    items.append(convert_item(item))
                except _Invalid as exc:
                    exc.path.append(f"[{i}]")
                    raise
            return items

        return convert_list
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        convert_inner = _converter(inner, name)
        return lambda value: None if value is None else convert_inner(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decoder(hint)
    if hint is str:
        return _check_str
    if hint is bool:
        return _check_bool
    check_range = _unit_range(name)
    if hint is int:

        def convert_int(value: Any) -> Any:
            # bool is an int in Python but never a valid count or measure here.
            if value.__class__ is not int:
                raise _Invalid(" must be an integer")
            # Sinks store integers as 64-bit (PostgreSQL bigint, BigQuery INT64).
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _Invalid(f" = {value} does not fit in 64 bits")
            return check_range(value)

        return convert_int
    if hint is float:

        def convert_float(value: Any) -> Any:
            if value.__class__ is not float and value.__class__ is not int:
                raise _Invalid(" must be a number")
            if not math.isfinite(value):
                raise _Invalid(" must be finite")
            return check_range(float(value))

        return convert_float
    raise TypeError(f"schema field {name} has an unsupported type {hint!r}")


def _check_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise _Invalid(" must be a string")
    return value


def _check_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _Invalid(" must be true or false")
    return value


def _unit_range(name: str) -> Convert:
    """The range check a field's unit calls for, chosen by its name."""
    if name.endswith("percent"):

        def percent(value: Any) -> Any:
            if not 0.0 <= value <= 100.0:
                raise _Invalid(f" = {value} is outside 0-100 percent")
            return value

        return percent
    if "bytes" in name or name.endswith("_s"):

        def not_negative(value: Any) -> Any:
            if value < 0:
                raise _Invalid(f" = {value} is negative")
            return value

        return not_negative
    return lambda value: value
