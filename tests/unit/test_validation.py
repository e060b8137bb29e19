import copy
import json

import msgspec
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.metrics import MetricsSample, to_json
from schemas.validation import RejectedRecord, _explain, parse_sample, read_sample
from tests.unit.samples import full_document, sample_document


def parse(document) -> MetricsSample:
    return parse_sample(orjson.dumps(document))


def test_a_valid_sample_round_trips_through_orjson_unchanged():
    sample = parse(sample_document())
    assert parse_sample(to_json(sample)) == sample
    assert orjson.loads(to_json(sample)) == sample_document(event_id=sample.event_id)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps(sample_document(schema_version=99)), "unknown schema_version 99"),
        (orjson.dumps(sample_document(schema_version="1")), "unknown schema_version '1'"),
        (orjson.dumps(sample_document(event_id="")), "event_id is empty"),
        (orjson.dumps(sample_document(host_id=7)), "host_id must be a string"),
        (orjson.dumps(sample_document(timestamp="yesterday")), "is not ISO 8601"),
        (orjson.dumps(sample_document(timestamp="2026-11-23T19:00:00")), "has no time zone"),
        (orjson.dumps(sample_document(interval_s=-1)), "interval_s = -1.0 is negative"),
        (orjson.dumps(sample_document(disks={})), "disks must be a list"),
    ],
)
def test_bad_records_are_rejected_with_the_reason(raw, reason):
    with pytest.raises(RejectedRecord, match=reason):
        parse_sample(raw)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("cpu", "percent"), 100.5, "cpu.percent = 100.5 is outside 0-100 percent"),
        (("cpu", "percent"), -0.1, "outside 0-100 percent"),
        (("cpu", "percent"), "high", "cpu.percent must be a number"),
        (("cpu", "percent"), True, "cpu.percent must be a number"),
        (("memory", "used_bytes"), -5, "memory.used_bytes = -5 is negative"),
        (("memory", "used_bytes"), 1.5, "memory.used_bytes must be an integer"),
        (("network", "bytes_recv_per_s"), -3.0, "network.bytes_recv_per_s = -3.0 is negative"),
    ],
)
def test_wrong_types_and_out_of_range_values_are_rejected(path, value, reason):
    document = sample_document()
    document[path[0]][path[1]] = value
    with pytest.raises(RejectedRecord, match=reason):
        parse(document)


def test_a_value_inside_a_list_is_checked_with_its_position():
    document = sample_document()
    document["disks"][1]["percent"] = 250.0
    with pytest.raises(RejectedRecord, match=r"disks\[1\].percent = 250.0"):
        parse(document)


@pytest.mark.parametrize("field", ["event_id", "host_id", "timestamp", "cpu", "network"])
def test_missing_required_fields_are_named(field):
    document = sample_document()
    del document[field]
    with pytest.raises(RejectedRecord, match=f"missing field {field}"):
        parse(document)


def test_a_missing_nested_field_is_named_with_its_path():
    document = sample_document()
    del document["memory"]["total_bytes"]
    with pytest.raises(RejectedRecord, match="missing field memory.total_bytes"):
        parse(document)


percents = st.floats(min_value=0, max_value=100, allow_nan=False)
byte_counts = st.integers(min_value=0, max_value=2**63 - 1)


@given(cpu=percents, cores=st.lists(percents, max_size=64), used=byte_counts, rate=percents)
def test_any_in_range_sample_is_accepted(cpu, cores, used, rate):
    document = sample_document()
    document["cpu"] = {"percent": cpu, "per_core_percent": cores}
    document["memory"]["used_bytes"] = used
    document["network"]["bytes_sent_per_s"] = rate
    sample = parse(document)
    assert sample.cpu.percent == cpu
    assert sample.memory.used_bytes == used


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x < 0 or x > 100))
def test_any_out_of_range_percent_is_rejected(value):
    document = copy.deepcopy(sample_document())
    document["memory"]["percent"] = value
    with pytest.raises(RejectedRecord, match="outside 0-100 percent"):
        parse(document)


def test_an_integer_that_does_not_fit_64_bits_is_rejected():
    document = sample_document()
    document["network"]["bytes_sent"] = 2**63  # orjson reads up to 2**64 - 1
    with pytest.raises(RejectedRecord, match="does not fit in 64 bits"):
        parse(document)


def _paths(value, prefix=()):
    """Every (path, value) in a document, the document itself first."""
    yield prefix, value
    if isinstance(value, dict | list):
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            yield from _paths(child, (*prefix, key))


_DOCUMENT_PATHS = [path for path, _ in _paths(full_document())][1:]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(path=st.sampled_from(_DOCUMENT_PATHS), value=json_values, delete=st.booleans())
def test_the_fast_and_the_explaining_decoders_agree(path, value, delete):
    """silver decides with msgspec and explains with the plain decoder: whatever one
    accepts the other accepts, and every refusal is explained in the schema's words."""
    document = full_document()
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    raw = json.dumps(document).encode()  # orjson refuses integers beyond 64 bits
    explained = _explain(raw)
    if explained is None:
        assert msgspec.to_builtins(read_sample(raw)) == msgspec.to_builtins(parse_sample(raw))
    else:
        with pytest.raises(RejectedRecord) as refused:
            read_sample(raw)
        assert str(refused.value) == explained
