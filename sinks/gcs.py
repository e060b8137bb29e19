"""The lake's Google Cloud Storage bucket, through gcloud-aio-storage: objects written
whole, listed by prefix and read back, waiting out outages.

Against real GCS the client authenticates with Application Default Credentials; with
``api_root`` (fake-gcs-server's address, as ``STORAGE_EMULATOR_HOST`` would give it) it
sends none. An object is written in one request, so it is in the bucket whole or not at
all; writing a name again replaces it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
from gcloud.aio.storage import Storage

from schemas.lake import GZIP, LakeObject
from sinks.base import Sink, bounded_reason

log = logging.getLogger(__name__)

T = TypeVar("T")

_FIRST_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 5.0
UPLOAD_TIMEOUT_S = 300
"""One object of up to lake_max_bytes in one request: minutes on a slow link."""
_RETRIED = (aiohttp.ClientError, OSError, TimeoutError)
"""Errors of the service or the network: GCS away, refusing for now, or the bucket
missing or forbidden until someone fixes it. The lake waits rather than drops."""


class BucketUnusable(RuntimeError):
    """The bucket is missing or may not be used with these credentials: a setting to fix,
    not an outage to wait out."""


class GcsUnreachable(RuntimeError):
    """GCS did not answer for longer than a command waits (``patience_s``)."""


class GcsBucket(Sink[LakeObject]):
    """One bucket. Writing uploads each object at once and returns once it is stored."""

    def __init__(self, bucket: str, api_root: str | None, patience_s: float | None = None) -> None:
        """``api_root``: an emulator's ``http://host:port``; None for real GCS.
        ``patience_s``: how long calls wait out an outage before raising
        :class:`GcsUnreachable`; None, for ever (the worker's lake, which must not drop).
        """
        self.bucket = bucket
        self.api_root = api_root
        self.patience_s = patience_s
        self._storage: Storage | None = None
        self._waiting_since: float | None = None
        self.bytes_written = 0

    @property
    def storage(self) -> Storage:
        # Made in the running loop: its HTTP session belongs to it.
        if self._storage is None:
            self._storage = Storage(api_root=self.api_root or None)
        return self._storage

    @property
    def waiting_s(self) -> float | None:
        """How long uploads have been failing, or None while GCS answers."""
        return None if self._waiting_since is None else time.monotonic() - self._waiting_since

    async def check(self, timeout_s: int = 10) -> str | None:
        """None when the bucket answers; the reason when GCS does not (an outage).

        Raises :class:`BucketUnusable` when GCS answers that the bucket is missing or
        forbidden: uploads would wait for good, for a fix nobody knows is needed.
        """
        try:
            await self.storage.get_bucket_metadata(self.bucket, timeout=timeout_s)
        except aiohttp.ClientResponseError as exc:
            if exc.status in (401, 403, 404):
                problem = "does not exist" if exc.status == 404 else "may not be used"
                raise BucketUnusable(
                    f"GCS bucket gs://{self.bucket} {problem} (HTTP {exc.status} from "
                    f"{self.api_root or 'GCS'}): create it or set HOSTSTREAM_GCS_BUCKET"
                ) from None
            return bounded_reason(f"HTTP {exc.status}: {exc.message}")
        except _RETRIED as exc:
            return bounded_reason(f"{type(exc).__name__}: {exc}")
        return None

    async def answering(self) -> None:
        """Raise :class:`GcsUnreachable` at once when GCS does not answer (a command's
        start: it waits for nobody), :class:`BucketUnusable` as :meth:`check` does."""
        unreachable = await self.check()
        if unreachable is not None:
            raise GcsUnreachable(
                f"GCS does not answer for gs://{self.bucket} "
                f"({self.api_root or 'Google Cloud Storage'}): {unreachable}"
            )

    async def write(self, rows: Sequence[LakeObject]) -> None:
        for lake_object in rows:
            await self.put(lake_object.name, lake_object.data)
            self.rows_written += 1

    async def put(self, name: str, data: bytes) -> None:
        """Store ``data`` as object ``name`` (NDJSON, gzipped when it ends in .gz),
        replacing any; waits out outages as every call here does."""
        await self._retrying(
            f"writing {name}",
            self.storage.upload,
            self.bucket,
            name,
            data,
            content_type="application/gzip" if name.endswith(GZIP) else "application/x-ndjson",
            timeout=UPLOAD_TIMEOUT_S,
        )
        self.bytes_written += len(data)

    async def flush(self) -> None:
        """Nothing to do: :meth:`write` returns once the objects are stored."""

    async def close(self) -> None:
        if self._storage is not None:
            await self._storage.close()
            self._storage = None

    async def names(self, prefix: str) -> list[str]:
        """The names of the objects under ``prefix``, in the bucket's (name) order."""
        found: list[str] = []
        params = {"prefix": prefix, "fields": "items(name),nextPageToken"}
        while True:
            page: dict[str, Any] = await self._retrying(
                f"listing {prefix}", self.storage.list_objects, self.bucket, params=dict(params)
            )
            found += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return found
            params["pageToken"] = token

    async def read(self, name: str) -> bytes:
        """The bytes of one object, as stored."""
        data: bytes = await self._retrying(
            f"reading {name}", self.storage.download, self.bucket, name
        )
        return data

    async def _retrying(
        self, what: str, call: Callable[..., Awaitable[T]], *args: Any, **kw: Any
    ) -> T:
        """Await ``call`` until GCS takes it, with backoff (0.2 s doubling up to 5 s).

        One log line when calls start failing and one when they succeed again; any error
        other than the service's or the network's propagates at once.
        """
        backoff_s = _FIRST_BACKOFF_S
        while True:
            try:
                result = await call(*args, **kw)
            except _RETRIED as exc:
                reason = bounded_reason(f"{type(exc).__name__}: {exc}")
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
                    log.warning(
                        "GCS is unreachable (%s during %s); waiting and retrying, "
                        "nothing is dropped",
                        reason,
                        what,
                    )
                waited_s = time.monotonic() - self._waiting_since
                if self.patience_s is not None and waited_s >= self.patience_s:
                    raise GcsUnreachable(
                        f"GCS did not answer for {waited_s:.0f} s ({reason} during {what})"
                    ) from None
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
                continue
            if self._waiting_since is not None:
                log.warning(
                    "GCS is reachable again after %.1f s (gs://%s)",
                    time.monotonic() - self._waiting_since,
                    self.bucket,
                )
                self._waiting_since = None
            return result
