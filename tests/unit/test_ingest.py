"""HTTP ingest without services: what a body holds, silver's reasons per sample, and
what the collector makes of the ingest's answers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
import pytest

from collector.publisher import IngestFailed, SampleRefused, _outcomes
from schemas.rows import Limits, validate_batch
from tests.hostile import BAD_KINDS, Forge
from tests.unit.samples import sample_document
from web.ingest import BadBody, posted_samples

NOW = datetime(2026, 11, 23, 19, 1, tzinfo=UTC)


def test_one_sample_is_kept_byte_for_byte_and_keyed_by_its_host():
    value = orjson.dumps(sample_document(host_id="db-7"), option=orjson.OPT_INDENT_2)
    (posted,) = posted_samples(b"\n " + value + b"\n", "machine_metrics", 1)
    assert (posted.topic, posted.offset, posted.key, posted.value) == (
        "machine_metrics",
        0,
        b"db-7",
        value,
    )


def test_an_array_gives_each_sample_as_sent_in_order():
    documents = [sample_document(host_id=f"h{n}") for n in range(3)]
    values = [orjson.dumps(d) for d in documents]
    body = b"[ " + b" ,\n".join(values) + b" ]"
    posted = posted_samples(body, "t", 1)
    assert [p.value for p in posted] == values
    assert [p.key for p in posted] == [b"h0", b"h1", b"h2"]
    assert [p.offset for p in posted] == [0, 1, 2]


@pytest.mark.parametrize(
    "body",
    [b"", b"  \n", b"[]", b" [ ] ", b"[{}", b"null", b"42", b'"text"', b"[1,]"],
)
def test_a_body_without_samples_to_check_is_refused_with_one_line(body: bytes):
    with pytest.raises(BadBody) as refused:
        posted_samples(body, "t", 1)
    assert "\n" not in str(refused.value)


def test_silver_rules_give_each_bad_sample_its_position_and_reason():
    forge = Forge(random.Random(3), ["h1", "h2"], NOW)
    values = [orjson.dumps(sample_document(timestamp="2026-11-23T19:00:00Z"))]
    for kind, (_, make) in BAD_KINDS.items():
        if kind == "key is not host_id":
            continue  # valid over HTTP: the ingest keys each sample by its host_id itself
        for _ in range(20):
            _, value = make(forge)
            # An element that is no JSON object makes the whole body no JSON array (400).
            if value is not None and _is_json_object(value):
                values.append(value)
    posted = posted_samples(b"[" + b",".join(values) + b"]", "t", 1)
    rows, rejections = validate_batch(posted, NOW, Limits())
    assert len(values) > 100
    assert [r.event_id for r in rows] == [orjson.loads(values[0])["event_id"]]
    assert [r.record.offset for r in rejections] == list(range(1, len(values)))
    assert all(r.reason and "\n" not in r.reason for r in rejections)


def _is_json_object(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


def test_the_collector_drops_only_the_samples_the_ingest_refused_for_good():
    answer = orjson.dumps({"rejected": [{"index": 1, "reason": "timestamp 'x' is not ISO 8601"}]})
    first, second, third = _outcomes(422, answer, 3)
    assert [type(o) for o in (first, second, third)] == [IngestFailed, SampleRefused, IngestFailed]
    assert "not ISO 8601" in str(second)
    assert _outcomes(202, b'{"accepted": 2}', 2) == [None, None]
    assert all(isinstance(o, SampleRefused) for o in _outcomes(413, b"{}", 2))
    for status, body in ((401, b'{"error": "token"}'), (503, b"<html>"), (404, b"")):
        assert all(isinstance(o, IngestFailed) for o in _outcomes(status, body, 2))
