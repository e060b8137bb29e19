-- The medallion's PostgreSQL tables. Applied by every worker at start (idempotent,
-- under an advisory lock so workers starting together do not race).
-- Column names match the fields of schemas/rows.py.

CREATE SCHEMA IF NOT EXISTS bronze;
CREATE SCHEMA IF NOT EXISTS silver;
CREATE SCHEMA IF NOT EXISTS gold;

-- Every record as received. The Kafka coordinates are the key: a replay after a
-- crash inserts nothing twice.
CREATE TABLE IF NOT EXISTS bronze.bronze_performance (
    "topic"       text        NOT NULL,
    "partition"   integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    "message_key" text,
    "payload"     text        NOT NULL,
    "kafka_time"  timestamptz,  -- null: no timestamp, or one past the calendar
    "ingested_at" timestamptz NOT NULL,
    PRIMARY KEY ("topic", "partition", "offset")
);
-- Tables created before kafka_time could be null (a no-op once it can).
ALTER TABLE bronze.bronze_performance ALTER COLUMN "kafka_time" DROP NOT NULL;

-- One validated sample per event_id: a sample the collector sent twice appears once.
CREATE TABLE IF NOT EXISTS silver.silver_performance (
    "event_id"               text             PRIMARY KEY,
    "host_id"                text             NOT NULL,
    "hostname"               text             NOT NULL,
    "sample_time"            timestamptz      NOT NULL,
    "schema_version"         integer          NOT NULL,
    "cpu_percent"            double precision NOT NULL,
    "cpu_fraction"           double precision NOT NULL,
    "memory_percent"         double precision NOT NULL,
    "memory_fraction"        double precision NOT NULL,
    "memory_used_bytes"      bigint           NOT NULL,
    "memory_available_bytes" bigint           NOT NULL,
    "memory_total_bytes"     bigint           NOT NULL,
    "disk_used_bytes"        bigint           NOT NULL,
    "disk_total_bytes"       bigint           NOT NULL,
    "disk_max_percent"       double precision NOT NULL,
    "net_bytes_sent_per_s"   double precision NOT NULL,
    "net_bytes_recv_per_s"   double precision NOT NULL,
    "net_bytes_sent_delta"   bigint           NOT NULL,
    "net_bytes_recv_delta"   bigint           NOT NULL,
    "net_bytes_sent"         bigint           NOT NULL,
    "net_bytes_recv"         bigint           NOT NULL,
    "source_topic"           text             NOT NULL,
    "source_partition"       integer          NOT NULL,
    "source_offset"          bigint           NOT NULL,
    -- When the row was written: sample_time to ingested_at is the pipeline's latency.
    "ingested_at"            timestamptz      NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS silver_performance_host_time
    ON silver.silver_performance ("host_id", "sample_time");

-- Records silver refused, with the reason; also sent to the dead-letter topic.
CREATE TABLE IF NOT EXISTS silver.rejected (
    "topic"       text        NOT NULL,
    "partition"   integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    "message_key" text,
    "reason"      text        NOT NULL,
    "payload"     text        NOT NULL,
    "rejected_at" timestamptz NOT NULL,
    PRIMARY KEY ("topic", "partition", "offset")
);

-- Gold: one row per host and tumbling window, upserted while the window is open
-- and marked final once it has closed and settled.
CREATE TABLE IF NOT EXISTS gold.perf_5min_summary (
    "host_id"            text             NOT NULL,
    "window_start"       timestamptz      NOT NULL,
    "window_end"         timestamptz      NOT NULL,
    "sample_count"       integer          NOT NULL,
    "cpu_avg_percent"    double precision NOT NULL,
    "cpu_max_percent"    double precision NOT NULL,
    "cpu_p95_percent"    double precision NOT NULL,
    "memory_avg_percent" double precision NOT NULL,
    "memory_max_percent" double precision NOT NULL,
    "memory_p95_percent" double precision NOT NULL,
    "net_bytes_sent"     bigint           NOT NULL,
    "net_bytes_recv"     bigint           NOT NULL,
    "disk_max_percent"   double precision NOT NULL,
    "cpu_anomaly"        boolean          NOT NULL,
    "memory_anomaly"     boolean          NOT NULL,
    "disk_anomaly"       boolean          NOT NULL,
    "is_final"           boolean          NOT NULL DEFAULT false,
    "updated_at"         timestamptz      NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY ("host_id", "window_start")
);
CREATE TABLE IF NOT EXISTS gold.perf_1h_summary (LIKE gold.perf_5min_summary INCLUDING ALL);

CREATE INDEX IF NOT EXISTS perf_5min_summary_open
    ON gold.perf_5min_summary ("window_end") WHERE NOT "is_final";
CREATE INDEX IF NOT EXISTS perf_1h_summary_open
    ON gold.perf_1h_summary ("window_end") WHERE NOT "is_final";

-- One row per host: its newest sample's main figures and tags, for the API's host
-- list and latest lookups (silver has no tags; its newest row per host is a scan).
-- Upserted only by a sample at least as new, so replays never move it back.
CREATE TABLE IF NOT EXISTS silver.hosts (
    "host_id"              text             PRIMARY KEY,
    "hostname"             text             NOT NULL,
    "last_sample_time"     timestamptz      NOT NULL,
    "tags"                 jsonb            NOT NULL,
    "cpu_percent"          double precision NOT NULL,
    "memory_percent"       double precision NOT NULL,
    "memory_used_bytes"    bigint           NOT NULL,
    "memory_total_bytes"   bigint           NOT NULL,
    "disk_max_percent"     double precision NOT NULL,
    "net_bytes_sent_per_s" double precision NOT NULL,
    "net_bytes_recv_per_s" double precision NOT NULL,
    "source_partition"     integer          NOT NULL,
    "source_offset"        bigint           NOT NULL,
    -- When the host's first sample was written (kept by every later upsert).
    "first_seen_at"        timestamptz      NOT NULL DEFAULT clock_timestamp()
);
