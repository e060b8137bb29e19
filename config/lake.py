"""The raw data lake's settings: when the worker cuts a partition's records into a GCS
object (schemas/lake.py has the rules, agents/lake.py applies them)."""

from __future__ import annotations

from pydantic import Field

from config.common import CommonSettings


class LakeSettings(CommonSettings):
    """Settings of the lake agent (agents/lake.py); a base of
    :class:`config.worker.WorkerSettings`."""

    lake_enabled: bool = Field(
        default=True,
        description="Write every record of the metrics topic to the GCS lake (gcs_bucket), "
        "with a consumer group of its own (<app_id>-lake).",
    )
    lake_max_records: int = Field(
        default=10_000,
        ge=1,
        description="Most records in one lake object: a partition's object is cut when it "
        "holds this many.",
    )
    lake_max_bytes: int = Field(
        default=16_000_000,
        ge=1000,
        description="Most bytes of NDJSON in one lake object (before gzip); a record larger "
        "than this gets an object of its own. A partition holds about three such objects in "
        "memory at most (open, cut, being written): then the lake stops reading it until GCS "
        "catches up.",
    )
    lake_max_age_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds after an open lake object's first record when it is written and "
        "committed anyway, if its partition has nothing more to read (quiet partitions).",
    )
    lake_gzip: bool = Field(
        default=False,
        description="Write lake objects gzipped (.ndjson.gz); costs worker CPU.",
    )
