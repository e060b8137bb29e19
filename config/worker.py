"""The worker's settings (``hoststream worker``): the Faust app, its batches and rules,
and the services it writes to."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field

from config.alerts import AlertSettings
from config.common import LOOPBACK
from config.lake import LakeSettings
from config.rules import RuleSettings
from config.services import ServiceSettings
from config.web import WebSettings


class WorkerSettings(WebSettings, LakeSettings, RuleSettings, ServiceSettings, AlertSettings):
    """Settings of ``hoststream worker``."""

    replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of topics hoststream creates."
    )
    app_id: str = Field(
        default="hoststream", description="Faust app id: consumer group and changelog prefix."
    )
    store: str = Field(default="rocksdb://", description="Faust table store URL.")
    data_dir: Path = Field(
        default=Path(".hoststream/worker"),
        description="Worker state: RocksDB tables, in a folder per app id; one per worker.",
    )
    web_host: str = Field(default=LOOPBACK, description="Address the worker's web server binds.")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Port of the web server.")
    batch_max_records: int = Field(
        default=5000,
        ge=1,
        description="Most records in one batch: the worker's largest fetch from Kafka, and "
        "its sinks' largest write. A batch never waits to fill: it is what Kafka had.",
    )
    dead_letter_max_bytes: int = Field(
        default=900_000,
        ge=1000,
        description="Largest dead-letter message (key + value) sent as is; a larger one is "
        "cut to this size with a hoststream-truncated header (silver.rejected keeps it "
        "whole). Keep it under the broker's message.max.bytes (1 MB by default).",
    )
    gold_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="A sample still counts in its gold window until this long after the "
        "window's end (by the newest sample time on its partition); later ones are late.",
    )
    gold_upsert_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="Gold writes the live rows of open windows to PostgreSQL at most this "
        "often, seconds (0: after every batch). Their records are committed only once "
        "written, so a crash replays them.",
    )
    gold_finalize_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="How often gold rows of closed windows are marked final; also how long "
        "a closed window must be left unchanged first.",
    )
    gold_retention_s: float = Field(
        default=86400.0,
        gt=0,
        description="Gold forgets a host (its watermark and open windows) once its newest "
        "sample is this much older than the newest on its partition, seconds.",
    )
    rocksdb_write_buffer_bytes: int = Field(
        default=4 * 2**20,
        ge=2**16,
        description="RocksDB write buffer of each table partition (two at most), bytes.",
    )
    rocksdb_block_cache_bytes: int = Field(
        default=8 * 2**20,
        ge=0,
        description="RocksDB block cache of each table partition, bytes. Gold reads its "
        "state from memory, and RocksDB only for a host's first sample after a start.",
    )
    table_standby_replicas: int = Field(
        default=1,
        ge=0,
        description="Standby copies of each table partition kept by other workers: a "
        "worker taking over a dead one's partitions starts from its copy instead of "
        "reading the whole changelog.",
    )
    static_membership: bool = Field(
        default=True,
        description="Join the consumer group as a static member (group.instance.id from "
        "the machine's name and the data directory): a worker restarted within the "
        "session timeout gets its partitions back at once, without a rebalance. A worker "
        "stopped for good hands its partitions over only after the session timeout.",
    )
    broker_session_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Consumer group session timeout; short so a worker joins in seconds.",
    )

    @property
    def group_instance_id(self) -> str | None:
        """The static member id, or None: unique per data directory on a machine."""
        if not self.static_membership:
            return None
        return f"{socket.gethostname()}:{(self.data_dir / self.app_id).resolve()}"

    @property
    def faust_broker_url(self) -> str:
        """The broker list as Faust takes it: ``kafka://h1:p1;h2:p2``."""
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)
