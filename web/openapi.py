"""The API's OpenAPI 3.1 document, served at ``/api/openapi.json``.

Written by hand next to the routes; tests/integration/test_api.py checks that its
paths are exactly the routes the worker serves under ``/api/``, and schemathesis
checks the answers against it.
"""

from __future__ import annotations

from typing import Any

from schemas.api import MAX_SAMPLES, SAMPLE_FIGURES, WINDOWS

_TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
_BYTES = {"type": "integer", "minimum": 0}
_FIGURE = {"percent": _PERCENT, "bytes": _BYTES, "rate": {"type": "number", "minimum": 0}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _answer(what: str, schema: str, *errors: int) -> dict[str, Any]:
    meanings = {
        400: "A parameter the API cannot take; the message says which and why.",
        401: "The API token is missing or wrong (only when HOSTSTREAM_WEB_TOKEN is set).",
        404: "No such host.",
        503: "PostgreSQL, or the worker that owns the host, did not answer.",
    }
    responses: dict[str, Any] = {
        "200": {"description": what, "content": {"application/json": {"schema": _ref(schema)}}}
    }
    for status in (*errors, 401, 503):
        responses[str(status)] = {
            "description": meanings[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return responses


_HOST = {
    "name": "host",
    "in": "path",
    "required": True,
    "description": "The host's id (the collector's host_id).",
    "schema": {"type": "string"},
}
_SERVED_BY = {"type": "string", "description": "URL of the worker that answered."}

_WINDOW = _object(
    {
        "window_start": _TIME,
        "window_end": _TIME,
        "sample_count": {"type": "integer", "minimum": 0},
        "cpu_avg_percent": _PERCENT,
        "cpu_max_percent": _PERCENT,
        "cpu_p95_percent": _PERCENT,
        "memory_avg_percent": _PERCENT,
        "memory_max_percent": _PERCENT,
        "memory_p95_percent": _PERCENT,
        "net_bytes_sent": {**_BYTES, "description": "Bytes sent in the window."},
        "net_bytes_recv": {**_BYTES, "description": "Bytes received in the window."},
        "disk_max_percent": {**_PERCENT, "description": "Fullest disk's percent used."},
        "cpu_anomaly": {"type": "boolean"},
        "memory_anomaly": {"type": "boolean"},
        "disk_anomaly": {"type": "boolean"},
        "final": {
            "type": "boolean",
            "description": "The window closed: no sample can change it any more.",
        },
    }
)

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}}),
    "Host": _object(
        {
            "host_id": {"type": "string"},
            "hostname": {"type": "string"},
            "first_seen_at": {**_TIME, "description": "When its first sample was stored."},
            "last_sample_time": _TIME,
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    ),
    "Hosts": _object({"served_by": _SERVED_BY, "hosts": {"type": "array", "items": _ref("Host")}}),
    "Latest": _object(
        {
            "served_by": _SERVED_BY,
            "host_id": {"type": "string"},
            "hostname": {"type": "string"},
            "sample_time": _TIME,
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "cpu_percent": _PERCENT,
            "memory_percent": _PERCENT,
            "memory_used_bytes": _BYTES,
            "memory_total_bytes": _BYTES,
            "disk_max_percent": _PERCENT,
            "net_bytes_sent_per_s": {"type": "number", "minimum": 0},
            "net_bytes_recv_per_s": {"type": "number", "minimum": 0},
        }
    ),
    "Window": _WINDOW,
    "Windows": _object(
        {
            "served_by": _SERVED_BY,
            "host_id": {"type": "string"},
            "window": {"type": "string", "enum": list(WINDOWS)},
            "from": _TIME,
            "to": _TIME,
            "windows": {"type": "array", "items": _ref("Window")},
        }
    ),
    "Sample": _object(
        {"sample_time": _TIME, **{name: _FIGURE[kind] for name, kind in SAMPLE_FIGURES.items()}}
    ),
    "Samples": _object(
        {
            "served_by": _SERVED_BY,
            "host_id": {"type": "string"},
            "from": _TIME,
            "to": _TIME,
            "truncated": {
                "type": "boolean",
                "description": "More samples than a lookup answers: the oldest were left out.",
            },
            "samples": {"type": "array", "items": _ref("Sample")},
        }
    ),
    "Anomaly": {
        **_WINDOW,
        "properties": {
            "host_id": {"type": "string"},
            "window": {"type": "string", "enum": list(WINDOWS)},
            **_WINDOW["properties"],
        },
        "required": ["host_id", "window", *_WINDOW["required"]],
    },
    "Anomalies": _object(
        {
            "served_by": _SERVED_BY,
            "since": _TIME,
            "anomalies": {"type": "array", "items": _ref("Anomaly")},
        }
    ),
}


def _time_query(name: str, meaning: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": meaning, "schema": _TIME}


PATHS: dict[str, Any] = {
    "/api/hosts": {
        "get": {
            "summary": "Every host seen, with its newest sample time and tags.",
            "responses": _answer("The hosts.", "Hosts"),
        }
    },
    "/api/hosts/{host}/latest": {
        "get": {
            "summary": "The host's newest sample's main figures.",
            "parameters": [_HOST],
            "responses": _answer("The newest sample.", "Latest", 404),
        }
    },
    "/api/hosts/{host}/windows/{window}": {
        "get": {
            "summary": "The host's gold windows that overlap from-to, oldest first.",
            "parameters": [
                _HOST,
                {
                    "name": "window",
                    "in": "path",
                    "required": True,
                    "description": "Window size: 5m or 1h.",
                    "schema": {"type": "string", "enum": list(WINDOWS)},
                },
                _time_query("from", "Start (default: a day before to)."),
                _time_query("to", "End (default: now)."),
            ],
            "responses": _answer("The windows.", "Windows", 400, 404),
        }
    },
    "/api/hosts/{host}/samples": {
        "get": {
            "summary": "The host's silver samples taken from from to to, oldest first.",
            "description": f"At most {MAX_SAMPLES:,}, the newest; truncated says when some "
            "were left out.",
            "parameters": [
                _HOST,
                _time_query("from", "Start, included (default: an hour before to)."),
                _time_query("to", "End, included (default: now)."),
            ],
            "responses": _answer("The samples.", "Samples", 400, 404),
        }
    },
    "/api/anomalies": {
        "get": {
            "summary": "Windows of every host with an anomaly flag, that end after since.",
            "parameters": [_time_query("since", "Default: a day before now.")],
            "responses": _answer("The flagged windows, newest first.", "Anomalies", 400),
        }
    },
    "/api/ingest": {
        "post": {
            "summary": "Samples over HTTP: one, or an array, in the collector's schema.",
            "description": "Needs HOSTSTREAM_INGEST_TOKEN as the bearer (not the API's).",
            "security": [{"ingest_token": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}
                    }
                },
            },
            "responses": {
                str(status): {
                    "description": meaning,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
                for status, meaning in {
                    202: "Every sample was valid and Kafka acknowledged it: counts.",
                    400: "The body holds no samples to check.",
                    401: "The ingest token is missing or wrong.",
                    404: "HTTP ingest is off: the worker has no HOSTSTREAM_INGEST_TOKEN.",
                    413: "The body is larger than HOSTSTREAM_INGEST_MAX_BODY_BYTES.",
                    415: "The body is not application/json.",
                    422: "Some samples are invalid (reasons per sample); none was sent.",
                    503: "Kafka did not acknowledge the samples; send them again.",
                }.items()
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document.",
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API as served by the worker at ``server_url``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "hoststream", "version": "1"},
        "servers": [{"url": server_url}],
        "security": [{"token": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "HOSTSTREAM_WEB_TOKEN; required only when it is set.",
                },
                "ingest_token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "HOSTSTREAM_INGEST_TOKEN.",
                },
            },
        },
    }
