"""Sends samples to Kafka (JSON values, keyed by host id), directly or through a
worker's HTTP ingest."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import urllib.parse
from typing import Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class BrokerUnreachable(RuntimeError):
    """Kafka (or the HTTP ingest) did not answer at start; the message names where and
    the cause."""


class Sender(Protocol):
    """What delivery (collector/run.py) sends samples with."""

    servers: str
    where: str
    """Where samples go, as log lines name it: ``Kafka at host:port``."""

    async def start(self, timeout_s: float = 15.0) -> None: ...
    async def restart(self, timeout_s: float = 15.0) -> None: ...
    async def send(self, value: bytes, key: bytes) -> asyncio.Future[object]: ...
    async def stop(self, timeout_s: float = 10.0) -> None: ...


class Publisher:
    """An idempotent aiokafka producer: acks from all in-sync replicas, gzip batches.

    Idempotence is what makes outages safe: aiokafka retries a batch it could
    not deliver until the broker is back (it never expires an idempotent batch
    once sent), and the broker discards a retry it had already written, so a
    sample waiting through an outage arrives exactly once and in order.
    """

    def __init__(self, bootstrap_servers: list[str], topic: str) -> None:
        self.topic = topic
        self.servers = ",".join(bootstrap_servers)
        self.where = f"Kafka at {self.servers}"
        self._bootstrap_servers = bootstrap_servers
        self._producer = self._new_producer()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            # gzip is in the standard library: lz4 or zstd would need cramjam, 1.6 MB of
            # the collector's memory. A 1 s interval's batches came out 6.4 times smaller
            # than uncompressed, at 3 % more CPU per sample.
            compression_type="gzip",
            # No lingering: a linger timer is one more wakeup per sample, the dearest
            # part of it on a VM. A drained spool is still batched, since queueing a
            # record does not yield to the sender once the topic's metadata is known.
            linger_ms=0,
            # A spool drained after an outage goes out in few, large requests.
            max_batch_size=512 * 1024,
            # While the broker is away the producer retries its connection and metadata
            # this often: aiokafka's 100 ms cost the collector more CPU through an outage
            # than sampling; a second delays the first send after it by at most that.
            retry_backoff_ms=1000,
        )

    async def start(self, timeout_s: float = 15.0) -> None:
        """Connect, or raise :class:`BrokerUnreachable` within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._producer.start(), timeout=timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._producer.stop()
            raise BrokerUnreachable(
                f"Kafka at {self.servers} is unreachable: {exc or type(exc).__name__}"
            ) from None

    async def restart(self, timeout_s: float = 15.0) -> None:
        """Go on with a new producer (a new producer id), as :meth:`start` does.

        Needed once the broker refused a record for good (too large): aiokafka had
        given the record a sequence number, and the broker then refuses every later
        record of the producer as out of sequence. Call it only when no send is
        waiting for its acknowledgement: the old producer's are not resent.
        """
        await self.stop()
        self._producer = self._new_producer()
        await self.start(timeout_s)

    async def send(self, value: bytes, key: bytes) -> asyncio.Future[object]:
        """Queue one record; the returned future resolves when the broker acknowledges it.

        Raises ``KafkaError`` when the record cannot even be queued (no metadata
        for the topic in time, a record over the producer's size limit). The future
        fails with ``MessageSizeTooLargeError`` when the broker refused the batch
        the record went in as too large (then :meth:`restart`).
        """
        future: asyncio.Future[object] = await self._producer.send(self.topic, value, key=key)
        return future

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued and close; gives up after ``timeout_s`` if the broker is away."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._producer.stop(), timeout=timeout_s)


class SampleRefused(Exception):
    """The HTTP ingest refused a sample for good (invalid, or too large): sending it
    again cannot help."""


class IngestFailed(Exception):
    """The HTTP ingest did not take a request (away, refused the token, Kafka behind it
    away): the samples go again."""


INGEST_TIMEOUT_S = 60.0
"""Longest wait for the ingest's answer: it answers once Kafka acknowledged (30 s at most)."""


class HttpPublisher:
    """Sends samples to a worker's ``POST /api/ingest`` instead of Kafka.

    The samples queued between two turns of the event loop (a delivery batch) go in
    one request, a JSON array, with the standard library's client in a thread (the
    collector has no HTTP library of its own); each sample's future resolves with
    the answer. The worker produces them keyed by host, acks=all, before it answers
    202, so an acknowledged sample is in Kafka; one sent again after a lost answer is
    stored once in silver (by ``event_id``).
    """

    def __init__(self, url: str, token: str) -> None:
        self.servers = url
        self.where = f"HTTP ingest at {url}"
        self._url = urllib.parse.urlsplit(url)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._pending: list[tuple[bytes, asyncio.Future[object]]] = []
        self._posting: set[asyncio.Task[None]] = set()
        # One request at a time on the one connection, in the order samples were queued.
        self._one_at_a_time = asyncio.Lock()
        self._connection: http.client.HTTPConnection | None = None

    async def start(self, timeout_s: float = 15.0) -> None:
        """Check that the worker's web server answers (``/health``), or raise
        :class:`BrokerUnreachable`."""
        try:
            await asyncio.to_thread(self._request, "GET", "/health", None, timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            raise BrokerUnreachable(
                f"{self.where} is unreachable: {exc or type(exc).__name__}"
            ) from None

    async def restart(self, timeout_s: float = 15.0) -> None:
        """A fresh connection, checked as :meth:`start` does."""
        self._close()
        await self.start(timeout_s)

    async def send(self, value: bytes, key: bytes) -> asyncio.Future[object]:
        """Queue one sample (the worker keys it by its ``host_id``, which is ``key``);
        the future fails with :class:`SampleRefused` or :class:`IngestFailed`."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if not self._pending:
            task = asyncio.create_task(self._post_pending())
            self._posting.add(task)
            task.add_done_callback(self._posting.discard)
        self._pending.append((value, future))
        return future

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Wait for the request on its way (at most ``timeout_s``), then close."""
        if self._posting:
            await asyncio.wait(self._posting, timeout=timeout_s)
        self._close()

    async def _post_pending(self) -> None:
        async with self._one_at_a_time:
            pending, self._pending = self._pending, []
            await self._post(pending)

    async def _post(self, pending: list[tuple[bytes, asyncio.Future[object]]]) -> None:
        """One request for ``pending``; each future resolves with what became of its sample."""
        body = b"[" + b",".join(value for value, _ in pending) + b"]"
        try:
            status, answer = await asyncio.to_thread(
                self._request, "POST", self._url.path or "/", body, INGEST_TIMEOUT_S
            )
        except (OSError, http.client.HTTPException) as exc:
            failure = IngestFailed(f"{type(exc).__name__}: {exc}")
            for _, future in pending:
                future.set_exception(failure)
            return
        for (_, future), outcome in zip(
            pending, _outcomes(status, answer, len(pending)), strict=True
        ):
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)

    def _request(
        self, method: str, path: str, body: bytes | None, timeout_s: float
    ) -> tuple[int, bytes]:
        """One request on the kept connection (opened when there is none): status, body."""
        if self._connection is None:
            kind = (
                http.client.HTTPSConnection
                if self._url.scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = kind(self._url.netloc, timeout=timeout_s)
        self._connection.timeout = timeout_s
        try:
            self._connection.request(method, path, body=body, headers=self._headers)
            response = self._connection.getresponse()
            return response.status, response.read()
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _outcomes(status: int, answer: bytes, count: int) -> list[Exception | None]:
    """What each of ``count`` samples sent in one request came to: None when the ingest
    took it, else the error its future fails with."""
    if status == 202:
        return [None] * count
    try:
        parsed = orjson.loads(answer)
        error = str(parsed.get("error", "")) if isinstance(parsed, dict) else ""
    except orjson.JSONDecodeError:
        parsed, error = None, answer[:200].decode(errors="replace")
    if status == 413:
        # Which sample made it too large only a request of its own can tell.
        return [SampleRefused(f"HTTP 413: {error}")] * count
    if status == 422 and isinstance(parsed, dict):
        reasons = {
            r["index"]: r["reason"]
            for r in parsed.get("rejected", [])
            if isinstance(r, dict) and isinstance(r.get("index"), int)
        }
        if reasons:
            others = IngestFailed("HTTP 422: another sample of the request was refused")
            return [
                SampleRefused(f"HTTP 422: {reasons[n]}") if n in reasons else others
                for n in range(count)
            ]
    return [IngestFailed(f"HTTP {status}: {error}")] * count
