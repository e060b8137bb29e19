"""The committed JSON Schema: current, and agreeing with the worker's own validation."""

from __future__ import annotations

import copy

import jsonschema
import orjson
import pytest

from collector.sampler import Sampler
from schemas.jsonschema import SCHEMA_FILE, json_schema, schema_document
from schemas.metrics import to_json
from tests.unit.samples import sample_document

VALIDATOR = jsonschema.Draft202012Validator(orjson.loads(SCHEMA_FILE.read_bytes()))


def test_the_committed_schema_is_the_generated_one():
    assert SCHEMA_FILE.read_bytes() == schema_document(), (
        "regenerate: hoststream schema --output schemas/machine_metrics.schema.json"
    )


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_a_real_sample_and_a_minimal_document_both_conform():
    sampler = Sampler("host-1", 1.0, [("env", "prod")])
    sampler.sample()
    VALIDATOR.validate(orjson.loads(to_json(sampler.sample())))
    VALIDATOR.validate(sample_document())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("cpu", "percent"), 100.5),
        (("memory", "used_bytes"), -1),
        (("interval_s",), -1.0),
        (("schema_version",), 2),
        (("timestamp",), 7),
        (("battery",), {"percent": 50.0, "plugged": "yes"}),
    ],
)
def test_what_the_worker_rejects_the_schema_rejects(path, value):
    document = copy.deepcopy(sample_document())
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not VALIDATOR.is_valid(document)


def test_units_are_documented_from_the_field_names():
    definitions = json_schema()["$defs"]
    temperature = definitions["Temperature"]["properties"]["current_celsius"]
    assert "degrees Celsius" in temperature["description"]
    assert "minimum" not in temperature  # below freezing is a valid reading
    rate = definitions["InterfaceIO"]["properties"]["bytes_sent_per_s"]
    assert "bytes per second" in rate["description"]
    assert rate["minimum"] == 0
