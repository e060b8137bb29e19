"""Hostile records for the worker's fuzz test, from a seeded generator.

Each bad record starts as a valid sample of one of the test's hosts and breaks it
in one way the worker must reject (README's Guarantees, issue 14's limits): a
wrong type, a missing field, a number outside its unit or 64 bits or not finite,
an unknown ``schema_version``, a timestamp at the calendar's edges, an identifier
too long or holding control characters, invalid UTF-8, deep nesting, a Kafka key
that is not the host_id, disks whose bytes add up past 64 bits, or no JSON object
at all. A few are 2-10 MB. Edge records are the opposite: odd but valid samples,
each of a host of its own, that the worker must keep.

Values that JSON encoders will not write (NaN, integers past 64 bits, raw
control or non-UTF-8 bytes) go in as raw text through :func:`dumps`.
"""

from __future__ import annotations

import copy
import random
import string
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from collector.synthetic import synthetic_document
from schemas.metrics import utc_timestamp
from tests.integration.gold_check import Message, sample_message

Path = tuple[str | int, ...]
Document = dict[str, Any]

INTEGER_PATHS: list[Path] = [
    ("memory", "total_bytes"),
    ("memory", "available_bytes"),
    ("memory", "used_bytes"),
    ("disks", 0, "total_bytes"),
    ("disks", 0, "used_bytes"),
    ("disks", 0, "free_bytes"),
    ("network", "bytes_sent"),
    ("network", "bytes_recv"),
    ("network", "bytes_sent_delta"),
    ("network", "bytes_recv_delta"),
]
PERCENT_PATHS: list[Path] = [
    ("cpu", "percent"),
    ("cpu", "per_core_percent", 0),
    ("memory", "percent"),
    ("disks", 0, "percent"),
]
RATE_PATHS: list[Path] = [
    ("interval_s",),
    ("network", "bytes_sent_per_s"),
    ("network", "bytes_recv_per_s"),
]
NUMBER_PATHS = INTEGER_PATHS + PERCENT_PATHS + RATE_PATHS
STRING_PATHS: list[Path] = [
    ("event_id",),
    ("host_id",),
    ("hostname",),
    ("timestamp",),
    ("disks", 0, "mountpoint"),
]
OBJECT_PATHS: list[Path] = [("cpu",), ("memory",), ("network",), ("disks", 0)]
LIST_PATHS: list[Path] = [("disks",), ("cpu", "per_core_percent")]
REQUIRED_PATHS: list[Path] = [
    ("schema_version",),
    ("event_id",),
    ("host_id",),
    ("hostname",),
    ("timestamp",),
    ("interval_s",),
    ("cpu",),
    ("memory",),
    ("disks",),
    ("network",),
    ("cpu", "percent"),
    *INTEGER_PATHS,
    ("memory", "percent"),
    ("disks", 0, "mountpoint"),
    ("disks", 0, "percent"),
    ("network", "bytes_sent_per_s"),
    ("network", "bytes_recv_per_s"),
]

WRONG_TYPES = {
    "integer": ['"12"', "true", "false", "null", "1.5", "2.0", "[]", "{}", "[1]"],
    "number": ['"50"', "true", "false", "null", "[]", "{}", "[50]", '"NaN"'],
    "string": ["12", "1.5", "true", "null", "[]", '{"a": "b"}', '["x"]'],
    "object": ['"x"', "1", "[]", "null", "true"],
    "list": ['"x"', "1", "{}", "null", "[null]", '[{"a": 1}]', "true"],
}
OUT_OF_RANGE = {
    "percent": ["100.01", "100.0000001", "101", "1000", "-0.01", "-1", "-1e-300", "1e308"],
    "integer": [
        "-1",
        "-9223372036854775808",
        "9223372036854775808",
        "18446744073709551616",
        "100000000000000000000000000000",
        "-99999999999999999999",
        "1" + "0" * 400,
    ],
    "rate": ["-1", "-0.5", "-1e308", "-1.7976931348623157e308"],
}
NON_FINITE = ["NaN", "-NaN", "Infinity", "-Infinity", "+Infinity", "nan", "inf", "1e999", "-1e999"]
INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xfe",
    b"\xc0\xaf",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
]
UNKNOWN_VERSIONS = [
    "0",
    "2",
    "3",
    "-1",
    "99",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "1" + "0" * 40,
    '"1"',
    '"2"',
    "1.0",
    "1.5",
    "true",
    "null",
    "[1]",
    '{"version": 1}',
]
CONTROL_CHARACTERS = [chr(c) for c in range(0x20)] + ["\x7f"]


def edge_timestamps(now: datetime) -> list[str]:
    """Timestamps the worker must refuse: not ISO 8601 with a zone, or outside
    2000-01-01T00:00:00Z .. now plus the allowed skew (300 s by default)."""
    return [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59+14:00",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:30:00+01:00",
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "+002026-11-29T12:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-29T25:00:00Z",
        "2026-11-29T12:00:00+25:00",
        "2026-11-29T12:00:00ZZ",
        "T12:00:00Z",
        "29/11/2026 12:00",
        "",
        "now",
        now.replace(tzinfo=None).isoformat(),
        utc_timestamp(now + timedelta(days=1)),
        utc_timestamp(now + timedelta(days=3650)),
        utc_timestamp(now + timedelta(seconds=900)),
    ]


KAFKA_TIMESTAMPS_MS = [0, 1, 253_402_300_799_999, 253_402_300_800_000, 2**53, 2**62]
"""Odd Kafka record timestamps (up to past the year 9999): bronze keeps any."""


def dumps(document: Document, raw: dict[str, bytes] | None = None) -> bytes:
    """``document`` as JSON, each string value equal to a key of ``raw`` written as
    that key's raw bytes instead."""
    encoded = orjson.dumps(document)
    for placeholder, text in (raw or {}).items():
        encoded = encoded.replace(orjson.dumps(placeholder), text)
    return encoded


def placed(document: Document, path: Path, text: str | bytes) -> bytes:
    """``document`` with the value at ``path`` replaced by raw JSON ``text``."""
    changed = copy.deepcopy(document)
    _set(changed, path, "\x02RAW\x03")
    return dumps(changed, {"\x02RAW\x03": text.encode() if isinstance(text, str) else text})


def _set(document: Any, path: Path, value: Any) -> None:
    for step in path[:-1]:
        document = document[step]
    document[path[-1]] = value


def _delete(document: Any, path: Path) -> None:
    for step in path[:-1]:
        document = document[step]
    del document[path[-1]]


def _letters(rng: random.Random, n: int) -> str:
    if n > 10_000:  # hex digits: drawing megabytes letter by letter takes seconds
        return rng.randbytes((n + 1) // 2).hex()[:n]
    return "".join(rng.choices(string.ascii_letters + string.digits + "-._", k=n))


class Forge:
    """Breaks valid samples of ``hosts`` around ``now`` in every way the worker refuses."""

    def __init__(self, rng: random.Random, hosts: list[str], now: datetime) -> None:
        self.rng = rng
        self.hosts = hosts
        self.now = now
        self.timestamps = edge_timestamps(now)

    def document(self) -> Document:
        moment = self.now - timedelta(seconds=self.rng.uniform(60, 2400))
        return synthetic_document(self.rng.choice(self.hosts), moment, self.rng)

    def keyed(self, document: Document, value: bytes | None) -> tuple[bytes | None, bytes | None]:
        return document["host_id"].encode(), value

    # Each method below: one bad record as (Kafka key, value).

    def not_json(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        valid = orjson.dumps(document)
        choice = self.rng.randrange(7)
        if choice == 0:
            value = valid[: self.rng.randrange(1, len(valid))]
        elif choice == 1:
            value = valid + self.rng.choice([b"}", b",", b"x", b"\n" + valid, b"{}"])
        elif choice == 2:
            value = valid.replace(b'"', b"'")
        elif choice == 3:
            value = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300)))
        elif choice == 4:
            value = _letters(self.rng, self.rng.randrange(1, 200)).encode()
        elif choice == 5:
            value = valid.replace(b",", b", /* comment */", 1)
        else:
            value = self.rng.choice([b"{", b"[", b'{"a":}', b"undefined", b"{,}", b'{"a" 1}'])
        return self.keyed(document, value)

    def empty(self) -> tuple[bytes | None, bytes | None]:
        return self.keyed(self.document(), self.rng.choice([None, b""]))

    def invalid_utf8(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        path = self.rng.choice(STRING_PATHS)
        bad = self.rng.choice(INVALID_UTF8)
        _set(document, path, "\x02BAD\x03")
        value = dumps(document, {"\x02BAD\x03": b'"ab' + bad + b'cd"'})
        key = b"ab" + bad + b"cd" if path == ("host_id",) else document["host_id"].encode()
        return key, value

    def not_object(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        valid = orjson.dumps(document)
        value = self.rng.choice(
            [
                *(b"[]", b"[" + valid + b"]", b'"text"', b"42", b"-0.5", b"null", b"true"),
                orjson.dumps(valid.decode()),  # the document as one JSON string
            ]
        )
        return self.keyed(document, value)

    def wrong_type(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        kind, paths = self.rng.choice(
            [
                ("integer", INTEGER_PATHS),
                ("number", PERCENT_PATHS + RATE_PATHS),
                ("string", STRING_PATHS),
                ("object", OBJECT_PATHS),
                ("list", LIST_PATHS),
            ]
        )
        path = self.rng.choice(paths)
        key = document["host_id"].encode()
        return key, placed(document, path, self.rng.choice(WRONG_TYPES[kind]))

    def missing_field(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        key = document["host_id"].encode()
        _delete(document, self.rng.choice(REQUIRED_PATHS))
        return key, orjson.dumps(document)

    def out_of_range(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        unit, paths = self.rng.choice(
            [("percent", PERCENT_PATHS), ("integer", INTEGER_PATHS), ("rate", RATE_PATHS)]
        )
        text = self.rng.choice(OUT_OF_RANGE[unit])
        return self.keyed(document, placed(document, self.rng.choice(paths), text))

    def non_finite(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        token = self.rng.choice(NON_FINITE)
        return self.keyed(document, placed(document, self.rng.choice(NUMBER_PATHS), token))

    def long_identifier(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        field, lowest = self.rng.choice([("host_id", 257), ("event_id", 257), ("hostname", 1025)])
        # Mostly a little too long; a few far too long for a PostgreSQL index row.
        length = self.rng.choice(
            [lowest, lowest + 1, self.rng.randrange(lowest, 4 * lowest)]
            + [self.rng.randrange(10_000, 100_000)] * (self.rng.random() < 0.05)
        )
        if self.rng.random() < 0.2:
            document[field] = "é" * length  # two bytes a character: the limit is in characters
        else:
            document[field] = _letters(self.rng, length)
        return self.keyed(document, orjson.dumps(document))

    def control_character(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        field = self.rng.choice(["host_id", "event_id", "hostname"])
        character = "\x00" if field == "hostname" else self.rng.choice(CONTROL_CHARACTERS)
        text = document[field]
        at = self.rng.randrange(len(text) + 1)
        document[field] = text[:at] + character + text[at:]
        if self.rng.random() < 0.3:
            # Raw in the JSON text (invalid JSON below U+0020, valid for U+007F).
            _set(document, (field,), "\x02CTRL\x03")
            raw = b'"' + (text[:at] + character + text[at:]).encode() + b'"'
            return text[:at].encode() + character.encode() + text[at:].encode(), dumps(
                document, {"\x02CTRL\x03": raw}
            )
        return self.keyed(document, orjson.dumps(document))

    def deep_nesting(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        # A few far past any parser's recursion limit; most around common limits.
        depth = 100_000 if self.rng.random() < 0.01 else self.rng.choice([100, 513, 1025, 5000])
        choice = self.rng.randrange(4)
        if choice == 0:
            return self.keyed(document, b"[" * depth + b"]" * depth)
        if choice == 1:
            return self.keyed(document, b'{"a":' * depth + b"1" + b"}" * depth)
        path = self.rng.choice(OBJECT_PATHS + LIST_PATHS)
        nested = (
            b"[" * depth + b"]" * depth if choice == 2 else b'{"a":' * depth + b"1" + b"}" * depth
        )
        return self.keyed(document, placed(document, path, nested))

    def unknown_schema_version(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        text = self.rng.choice(UNKNOWN_VERSIONS)
        return self.keyed(document, placed(document, ("schema_version",), text))

    def bad_timestamp(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        document["timestamp"] = self.rng.choice(self.timestamps)
        return self.keyed(document, orjson.dumps(document))

    def wrong_key(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        host = document["host_id"]
        other = self.rng.choice([h for h in self.hosts if h != host])
        key = self.rng.choice(
            [
                None,
                b"",
                other.encode(),
                host.upper().encode(),
                host.encode() + b" ",
                b" " + host.encode(),
                host.encode() + b"\x00",
                host.encode("utf-16"),
                host.encode()[:-1],
                _letters(self.rng, 12).encode(),
            ]
        )
        return key, orjson.dumps(document)

    def disk_bytes_past_64_bits(self) -> tuple[bytes | None, bytes | None]:
        document = self.document()
        disks = self.rng.randrange(2, 5)
        total = (2**63) // disks + self.rng.randrange(1, 10**15)
        used = self.rng.choice([total // 10, total - 1])
        document["disks"] = [
            {
                "mountpoint": f"/data{n}",
                "total_bytes": total,
                "used_bytes": used,
                "free_bytes": total - used,
                "percent": round(100 * used / total, 2),
            }
            for n in range(disks)
        ]
        return self.keyed(document, orjson.dumps(document))

    def huge(self, n: int) -> tuple[bytes | None, bytes | None]:
        """The n-th of :data:`HUGE` records of 2-10 MB."""
        document = self.document()
        if n == 0:  # issue 14's record: a 2 MB host_id, keyed by it
            document["host_id"] = _letters(self.rng, 2_000_000)
            return self.keyed(document, orjson.dumps(document))
        if n == 1:
            document["hostname"] = _letters(self.rng, 10_000_000)
        elif n == 2:
            document["event_id"] = _letters(self.rng, 5_000_000)
        elif n == 3:
            document["timestamp"] = utc_timestamp(self.now) + "0" * 3_000_000
        elif n == 4:  # not JSON, not UTF-8, NUL bytes: 8 MB of noise
            return self.keyed(document, self.rng.randbytes(8_000_000))
        else:
            return self.keyed(document, b"[" * 1_500_000 + b"]" * 1_500_000)
        return self.keyed(document, orjson.dumps(document))


HUGE = 6

BAD_KINDS: dict[str, tuple[int, Callable[[Forge], tuple[bytes | None, bytes | None]]]] = {
    "not JSON": (800, Forge.not_json),
    "empty value": (100, Forge.empty),
    "invalid UTF-8": (800, Forge.invalid_utf8),
    "not an object": (300, Forge.not_object),
    "wrong type": (1500, Forge.wrong_type),
    "missing field": (800, Forge.missing_field),
    "number out of range or 64 bits": (1200, Forge.out_of_range),
    "NaN, Infinity, overflow": (800, Forge.non_finite),
    "identifier too long": (600, Forge.long_identifier),
    "control character": (1000, Forge.control_character),
    "deep nesting": (300, Forge.deep_nesting),
    "unknown schema_version": (600, Forge.unknown_schema_version),
    "timestamp at the edges": (1000, Forge.bad_timestamp),
    "key is not host_id": (800, Forge.wrong_key),
    "disk bytes past 64 bits": (100, Forge.disk_bytes_past_64_bits),
}
"""Kind -> (how many, generator)."""


def bad_records(forge: Forge) -> list[Message]:
    """Every kind's bad records, the huge ones included, in a random order; 2 % carry
    an odd Kafka timestamp."""
    made = []
    for kind, (count, make) in BAD_KINDS.items():
        made += [(kind, make(forge)) for _ in range(count)]
    made += [("huge (2-10 MB)", forge.huge(n)) for n in range(HUGE)]
    forge.rng.shuffle(made)
    return [
        Message(key, value, kind=kind, timestamp_ms=_odd_kafka_time(forge.rng))
        for kind, (key, value) in made
    ]


def _odd_kafka_time(rng: random.Random) -> int | None:
    return rng.choice(KAFKA_TIMESTAMPS_MS) if rng.random() < 0.02 else None


def corrupted_copy(forge: Forge, document: Document) -> Message:
    """A broken record carrying a good sample's event_id, sent before that sample:
    the sample's first valid copy is still the one silver keeps."""
    path = forge.rng.choice(PERCENT_PATHS)
    return Message(
        document["host_id"].encode(), placed(document, path, "250"), kind="broken copy first"
    )


def edge_samples(rng: random.Random, now: datetime, max_future_skew_s: float) -> list[Message]:
    """Odd but valid samples, each of a host of its own (so none can be late)."""
    recent = now - timedelta(minutes=5)

    def sample(host: str, moment: datetime = recent, **changes: Any) -> Document:
        document = synthetic_document(host, moment, rng)
        for path, value in changes.items():
            _set(document, tuple(int(s) if s.isdigit() else s for s in path.split("__")), value)
        return document

    documents = [
        sample("e" * 256),
        sample("é" * 256),
        sample("hôte-Ωmega-🙂-測試"),
        sample("edge-event-id", event_id=_letters(rng, 256)),
        sample("edge-hostname", hostname="é🙂 " + _letters(rng, 1021)),
        sample(
            "edge-offset", timestamp=recent.astimezone(timezone(timedelta(hours=14))).isoformat()
        ),
        sample("edge-2000", datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)),
        sample("edge-future", now + timedelta(seconds=max_future_skew_s / 2)),
        sample("edge-extremes", cpu__percent=0.0, memory__percent=100.0, disks__0__percent=100.0),
        sample("edge-tiny-cpu", cpu__percent=0.001, memory__percent=0.004),
        sample(
            "edge-int64",
            memory__total_bytes=2**63 - 1,
            network__bytes_sent_delta=2**63 - 1,
            network__bytes_recv=2**63 - 1,
        ),
        sample("edge-no-disks", disks=[]),
        sample("edge-unknown-fields", future_group={"x": [1, {"y": "NaN"}]}, blob="z" * 100_000),
        sample("edge-null-optionals", battery=None, gpus=None, elapsed_s=None),
    ]
    two_disks = sample("edge-disks-at-64-bits")
    half = 2**62
    two_disks["disks"] = [
        {"mountpoint": m, "total_bytes": t, "used_bytes": 0, "free_bytes": t, "percent": 0.0}
        for m, t in (("/a", half), ("/b", half - 1))
    ]
    documents.append(two_disks)
    messages = [sample_message(d) for d in documents]
    messages += [
        sample_message(sample(f"edge-kafka-time-{n}"), timestamp_ms=ms)
        for n, ms in enumerate(KAFKA_TIMESTAMPS_MS)
    ]
    return messages


def kinds(messages: list[Message]) -> Counter[str]:
    """How many records of each kind."""
    return Counter(m.kind for m in messages)
