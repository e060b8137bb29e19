"""Decode and check a raw Kafka value against :class:`~schemas.metrics.MetricsSample`.

Pure functions: no I/O, so every rule is unit-tested without services. Units
live in field names, and the checks follow them: a ``*percent`` field must lie in
0-100, a field that counts ``bytes`` or ends in ``_per_s`` or ``_s`` must not be
negative, an integer must fit in 64 bits, a number must be finite.

The rules are compiled twice from the schema's dataclasses. msgspec structs
generated from them decode and check a record in one pass in C, about four times
faster than Python could: they decide. The second, plain Python
decoder only runs on records msgspec refused, to say why in the schema's words
(``cpu.percent = 150.0 is outside 0-100 percent``). Fields this version does
not know are skipped unread, whatever they hold.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from schemas.metrics import SCHEMA_VERSION, MetricsSample

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RejectedRecord(ValueError):
    """A record that does not match the schema; ``str(exc)`` says why in one line."""


def read_sample(raw: bytes) -> MetricsSample:
    """Decode one Kafka value into a checked sample, fast: silver's path.

    The result has :class:`MetricsSample`'s fields, types and values but is a
    read-only struct generated from it, not the dataclass; :func:`parse_sample`
    gives the dataclass. Raises :class:`RejectedRecord` naming the first
    problem found: not JSON, not an object, an unknown ``schema_version``, a
    missing field, a wrong type, a value outside its unit's range or a
    timestamp that is not ISO 8601 with a time zone.
    """
    try:
        sample = _SAMPLE_DECODER.decode(raw)
    except (msgspec.MsgspecError, ValueError, RecursionError) as exc:
        raise RejectedRecord(_explain(raw) or f"{exc}") from None
    # The struct has the dataclass's attributes: readers need no other type.
    return _check_values(typing.cast(MetricsSample, sample))


def parse_sample(raw: bytes) -> MetricsSample:
    """:func:`read_sample`, as the schema's dataclasses (for tools and tests)."""
    return msgspec.convert(msgspec.to_builtins(read_sample(raw)), MetricsSample)


def _explain(raw: bytes) -> str | None:
    """Why a record msgspec refused breaks the schema, in the schema's words; None
    when the plain decoder finds nothing wrong (msgspec's own message then stands)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        return _unknown_version(version)
    try:
        _check_values(_decoder(MetricsSample)(data))
    except _Invalid as exc:
        return exc.reason()
    except RejectedRecord as exc:
        return str(exc)
    return None


def _check_values(sample: MetricsSample) -> MetricsSample:
    """The rules a field's type cannot say."""
    if sample.schema_version != SCHEMA_VERSION:
        raise RejectedRecord(_unknown_version(sample.schema_version))
    if not sample.event_id:
        raise RejectedRecord("event_id is empty")
    if not sample.host_id:
        raise RejectedRecord("host_id is empty")
    sample_time(sample)
    return sample


def _unknown_version(version: Any) -> str:
    shown = quoted(version) if isinstance(version, str) else repr(version)[:QUOTED_MAX_CHARS]
    return f"unknown schema_version {shown} (this worker accepts {SCHEMA_VERSION})"


def check_not_in_future(
    sample: MetricsSample, moment: datetime, now: datetime, max_skew_s: float
) -> None:
    """Reject a sample stamped (``moment``, its :func:`sample_time`) more than
    ``max_skew_s`` seconds after ``now``: a host with a wrong clock would otherwise
    fill windows that have not started yet."""
    ahead_s = (moment - now).total_seconds()
    if ahead_s > max_skew_s:
        raise RejectedRecord(
            f"timestamp {quoted(sample.timestamp)} is {ahead_s:.0f} s in the future "
            f"(more than the allowed {max_skew_s:g} s clock skew)"
        )


EARLIEST_SAMPLE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Samples stamped before this are refused: a host whose clock was never set (1970)
would otherwise open windows decades in the past."""


def sample_time(sample: MetricsSample) -> datetime:
    """The sample's timestamp as an aware UTC datetime, not before
    :data:`EARLIEST_SAMPLE_TIME`; raises :class:`RejectedRecord`."""
    shown = quoted(sample.timestamp)
    try:
        moment = datetime.fromisoformat(sample.timestamp)
    except ValueError:
        raise RejectedRecord(f"timestamp {shown} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise RejectedRecord(f"timestamp {shown} has no time zone")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+14:00 and its like lie outside the calendar in UTC.
        raise RejectedRecord(f"timestamp {shown} is outside the calendar in UTC") from None
    if moment < EARLIEST_SAMPLE_TIME:
        raise RejectedRecord(
            f"timestamp {shown} is before {EARLIEST_SAMPLE_TIME.date().isoformat()} "
            "(is the host's clock set?)"
        )
    return moment


QUOTED_MAX_CHARS = 80
REASON_MAX_CHARS = 1000
"""Longest reason for a refusal kept: reasons quote values, and values may be huge."""


def bounded_reason(text: str) -> str:
    """``text`` as one printable line of at most :data:`REASON_MAX_CHARS` characters."""
    text = text[: 2 * REASON_MAX_CHARS]
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(line) <= REASON_MAX_CHARS:
        return line
    return line[: REASON_MAX_CHARS - 3] + "..."


def quoted(text: str) -> str:
    """``text`` as a reason quotes it: repr, cut to :data:`QUOTED_MAX_CHARS` with its
    length, so a huge field never makes a huge reason."""
    if len(text) <= QUOTED_MAX_CHARS:
        return repr(text)
    return f"{text[:QUOTED_MAX_CHARS]!r}... ({len(text)} characters)"


class _Invalid(Exception):
    """A value that does not fit its field; its location is filled in on the way up,
    so the happy path never formats one."""

    def __init__(self, problem: str, *, missing: bool = False) -> None:
        self.problem = problem
        self.missing = missing
        self.path: list[str] = []

    def reason(self) -> str:
        where = "".join(reversed(self.path)).lstrip(".")
        if self.missing:
            return f"missing field {where}"
        return f"{where or 'record'}{self.problem}"


Convert = Callable[[Any], Any]
_decoders: dict[type[Any], Convert] = {}


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


Unit = Literal["percent", "not negative", "any"]


def _unit(name: str) -> Unit:
    """The range a field's unit allows, chosen by its name."""
    if name.endswith("percent"):
        return "percent"
    if "bytes" in name or name.endswith("_s"):
        return "not negative"
    return "any"


def _unit_range(name: str) -> Convert:
    """The range check a field's unit calls for."""
    unit = _unit(name)
    if unit == "percent":

        def percent(value: Any) -> Any:
            if not 0.0 <= value <= 100.0:
                raise _Invalid(f" = {value} is outside 0-100 percent")
            return value

        return percent
    if unit == "not negative":

        def not_negative(value: Any) -> Any:
            if value < 0:
                raise _Invalid(f" = {value} is negative")
            return value

        return not_negative
    return lambda value: value


_LOWEST: dict[Unit, float | None] = {"percent": 0, "not negative": 0, "any": None}
_HIGHEST: dict[Unit, float | None] = {"percent": 100, "not negative": None, "any": None}


def _struct(cls: type[Any], made: dict[type[Any], type[msgspec.Struct]]) -> type[msgspec.Struct]:
    """A msgspec struct with the fields of the dataclass ``cls`` and the same checks
    as the plain decoder: types, 64-bit integers, finite numbers, unit ranges."""
    if cls not in made:
        hints = typing.get_type_hints(cls)
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for f in dataclasses.fields(cls):
            hint = _struct_hint(hints[f.name], f.name, made)
            if f.default is not dataclasses.MISSING:
                fields.append((f.name, hint, f.default))
            elif f.default_factory is not dataclasses.MISSING:
                fields.append((f.name, hint, msgspec.field(default_factory=f.default_factory)))
            else:
                fields.append((f.name, hint))
        # gc=False: decoded samples hold no cycles, and the collector need not track them.
        made[cls] = msgspec.defstruct(cls.__name__, fields, frozen=True, gc=False)
    return made[cls]


def _struct_hint(hint: Any, name: str, made: dict[type[Any], type[msgspec.Struct]]) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        return list[_struct_hint(item_hint, name, made)]  # type: ignore[misc]
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _struct_hint(inner, name, made) | None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _struct(hint, made)
    if hint in (str, bool):
        return hint
    unit = _unit(name)
    low, high = _LOWEST[unit], _HIGHEST[unit]
    if hint is int:
        low = _INT64_MIN if low is None else low
        high = _INT64_MAX if high is None else high
    elif hint is float:
        # Bounds on every float keep out infinities (JSON has no NaN).
        low = -sys.float_info.max if low is None else low
        high = sys.float_info.max if high is None else high
    else:
        raise TypeError(f"schema field {name} has an unsupported type {hint!r}")
    return Annotated[hint, msgspec.Meta(ge=low, le=high)]


_SAMPLE_DECODER = msgspec.json.Decoder(_struct(MetricsSample, {}))
