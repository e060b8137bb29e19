"""The medallion's PostgreSQL tables, named where users look for them (as the seed did).

What each table holds, its key, and what a write does to a row of that key."""

from __future__ import annotations

from schemas.anomalies import GoldRow
from schemas.rows import BronzeRow, HostRow, RejectedRow, SilverRow
from schemas.windows import WINDOW_SIZES_S
from sinks.postgres import Table

KAFKA_KEY = ("topic", "partition", "offset")
BRONZE = Table("bronze.bronze_performance", BronzeRow, key=KAFKA_KEY)
SILVER = Table("silver.silver_performance", SilverRow, key=("event_id",))
REJECTED = Table("silver.rejected", RejectedRow, key=KAFKA_KEY)
# A host's row follows its newest sample: an older one (a replay) never replaces it.
HOSTS = Table(
    "silver.hosts",
    HostRow,
    key=("host_id",),
    on_conflict="update",
    replace_when='EXCLUDED."last_sample_time" >= "stored"."last_sample_time"',
)
# A replaced gold row is live again: it is final only once it stops changing.
_REOPEN = '"is_final" = false, "updated_at" = clock_timestamp()'
# An aggregate that merged fewer samples than the stored one is older (a worker that
# lost the host's partition writing late, a replay): it never replaces the newer row.
_NOT_OLDER = 'EXCLUDED."sample_count" >= "stored"."sample_count"'
GOLD = {
    name: Table(
        f"gold.perf_{name}_summary",
        GoldRow,
        key=("host_id", "window_start"),
        on_conflict="update",
        also_on_update=_REOPEN,
        replace_when=_NOT_OLDER,
    )
    for name in WINDOW_SIZES_S
}
