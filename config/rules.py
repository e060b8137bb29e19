"""Silver's limits and gold's anomaly thresholds, which the worker applies to the stream
and the warehouse to the lake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from config.common import CommonSettings

if TYPE_CHECKING:
    from schemas.anomalies import Thresholds
    from schemas.rows import Limits


class RuleSettings(CommonSettings):
    """Silver's limits and gold's anomaly thresholds: the worker applies them to the
    stream and the warehouse to the lake, so both keep and flag the same samples."""

    max_future_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="Silver rejects samples stamped further than this in the future, seconds.",
    )
    max_id_chars: int = Field(
        default=256,
        ge=1,
        le=2000,
        description="Silver rejects samples whose host_id or event_id is longer (both are "
        "index keys: PostgreSQL indexes at most about 2,700 bytes per row).",
    )
    max_text_chars: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Silver rejects samples whose hostname is longer.",
    )
    anomaly_cpu_p95_percent: float = Field(
        default=90.0, ge=0, le=100, description="Gold flags a window whose CPU p95 exceeds this."
    )
    anomaly_memory_max_percent: float = Field(
        default=90.0,
        ge=0,
        le=100,
        description="Gold flags a window whose memory maximum exceeds this.",
    )
    anomaly_disk_max_percent: float = Field(
        default=90.0,
        ge=0,
        le=100,
        description="Gold flags a window whose fullest disk exceeds this.",
    )

    @property
    def limits(self) -> Limits:
        """Silver's limits as its rules take them."""
        # Imported here: the rules need msgspec, which a host that only collects lacks.
        from schemas.rows import Limits

        return Limits(self.max_future_skew_s, self.max_id_chars, self.max_text_chars)

    @property
    def thresholds(self) -> Thresholds:
        """Gold's anomaly thresholds as its rows take them."""
        from schemas.anomalies import Thresholds

        return Thresholds(
            self.anomaly_cpu_p95_percent,
            self.anomaly_memory_max_percent,
            self.anomaly_disk_max_percent,
        )
