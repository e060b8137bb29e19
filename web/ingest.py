"""``POST /api/ingest``: samples over HTTP, for hosts that cannot reach Kafka.

A body is one sample or a JSON array of samples, in the collector's schema. It is
checked with silver's own rules (:func:`schemas.rows.validate_batch`, the very
function the silver stage runs), all or nothing: one invalid sample and none is
produced, the answer (422) giving each one's position and reason. Valid samples are
produced to the metrics topic as they were sent, byte for byte, keyed by their
``host_id`` (acks from all in-sync replicas), and only once Kafka has acknowledged
every one is the answer 202. A client that retries after a failure may send a sample
twice; silver keeps it once (by ``event_id``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import msgspec
from faust.web import View

from schemas.rows import Limits, validate_batch
from web.auth import bearer_matches

DELIVERY_TIMEOUT_S = 30.0
"""Longest wait for Kafka's acknowledgements before answering 503."""
RECORD_OVERHEAD_BYTES = 512
"""Room for what a Kafka record adds to its key and value (measured: 95 bytes)."""


@dataclass(frozen=True, slots=True)
class PostedSample:
    """One sample of a request body, as :func:`~schemas.rows.validate_batch` reads a
    Kafka record; ``offset`` is its position in the body, which a rejection names."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int


class _HostOnly(msgspec.Struct):
    host_id: Any = None


_HOST_DECODER = msgspec.json.Decoder(_HostOnly)
_BODY_DECODER = msgspec.json.Decoder(list[msgspec.Raw])


class BadBody(ValueError):
    """A body that holds no samples to check; ``str(exc)`` says why in one line."""


def posted_samples(body: bytes, topic: str, now_ms: int) -> list[PostedSample]:
    """The samples of a body: a JSON object, or a non-empty JSON array of them (each kept
    as sent), keyed by their ``host_id``; raises :class:`BadBody`."""
    text = body.strip()
    if not text:
        raise BadBody("the body is empty: send a sample or a JSON array of samples")
    if text.startswith(b"["):
        try:
            values = [bytes(raw) for raw in _BODY_DECODER.decode(text)]
        except (msgspec.DecodeError, RecursionError) as exc:
            raise BadBody(f"the body is not a JSON array: {exc}") from None
        if not values:
            raise BadBody("the array is empty: send at least one sample")
    elif text.startswith(b"{"):
        values = [text]
    else:
        raise BadBody("the body must be a JSON object (a sample) or an array of them")
    return [
        PostedSample(topic, -1, index, _key(value), value, now_ms)
        for index, value in enumerate(values)
    ]


def _key(value: bytes) -> bytes | None:
    """The Kafka key of a sample: its ``host_id``; None when it has no string one (then
    validation says what is wrong with it)."""
    try:
        host_id = _HOST_DECODER.decode(value).host_id
    except (msgspec.DecodeError, RecursionError):
        return None
    return host_id.encode(errors="surrogatepass") if isinstance(host_id, str) else None


async def read_limited(request: Any, max_bytes: int) -> bytes | None:
    """The request's body, or None as soon as it proves longer than ``max_bytes``:
    a larger body is never held whole."""
    if request.content_length is not None and request.content_length > max_bytes:
        return None
    chunks = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def add_ingest_page(
    app: faust.App,
    topic: faust.TopicT,
    limits: Limits,
    token: str,
    max_body_bytes: int,
) -> None:
    """Serve ``POST /api/ingest``, producing to ``topic``; off (404) when ``token`` is
    empty."""
    (topic_name,) = topic.topics
    # A record the producer refuses as too large is refused for good: answered 413 (the
    # collector drops it), never 503, which a client would retry for ever.
    max_record_bytes = int(app.conf.producer_max_request_size) - RECORD_OVERHEAD_BYTES

    class Ingest(View):
        async def post(self, request: Any) -> Any:
            if not token:
                return self.json(
                    {"error": "HTTP ingest is off: the worker has no HOSTSTREAM_INGEST_TOKEN"},
                    status=404,
                )
            if not bearer_matches(request.headers.get("Authorization"), token):
                return self.json(
                    {"error": "send the ingest token as 'Authorization: Bearer <token>'"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if request.content_type != "application/json":
                return self.json(
                    {"error": f"the body must be application/json, not {request.content_type}"},
                    status=415,
                )
            body = await read_limited(request, max_body_bytes)
            if body is None:
                return self.json(
                    {"error": f"the body is larger than {max_body_bytes} bytes"}, status=413
                )
            try:
                samples = posted_samples(body, topic_name, int(time.time() * 1000))
            except BadBody as exc:
                return self.json({"error": str(exc)}, status=400)
            too_large = [
                {
                    "index": s.offset,
                    "reason": f"{len(s.value):,} bytes: Kafka takes records of "
                    f"{max_record_bytes:,} bytes at most",
                }
                for s in samples
                if len(s.value) + len(s.key or b"") > max_record_bytes
            ]
            if too_large:
                return self.json(
                    {
                        "accepted": 0,
                        "rejected": too_large,
                        "error": f"{len(too_large)} of {len(samples)} samples are too large for "
                        "Kafka; none was sent",
                    },
                    status=413,
                )
            _, rejections = validate_batch(samples, datetime.now(UTC), limits)
            if rejections:
                return self.json(
                    {
                        "accepted": 0,
                        "rejected": [
                            {"index": r.record.offset, "reason": r.reason} for r in rejections
                        ],
                        "error": f"{len(rejections)} of {len(samples)} samples are invalid; "
                        "none was sent",
                    },
                    status=422,
                )
            try:
                await asyncio.wait_for(_produce(topic, samples), DELIVERY_TIMEOUT_S)
            except Exception as exc:
                return self.json(
                    {
                        "error": f"Kafka did not acknowledge the samples ({type(exc).__name__}: "
                        f"{exc}); send them again (a sample sent twice is stored once)"
                    },
                    status=503,
                )
            return self.json({"accepted": len(samples), "rejected": []}, status=202)

    app.page("/api/ingest")(Ingest)


async def _produce(topic: faust.TopicT, samples: list[PostedSample]) -> None:
    """Send every sample, in order, and wait for Kafka's acknowledgement of each."""
    deliveries = [await topic.send(key=s.key, value=s.value) for s in samples]
    await asyncio.gather(*deliveries)
