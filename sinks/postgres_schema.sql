-- The medallion's PostgreSQL tables. Applied by every worker at start (idempotent,
-- under an advisory lock so workers starting together do not race).
-- Column names match the fields of schemas/rows.py.

CREATE SCHEMA IF NOT EXISTS bronze;
CREATE SCHEMA IF NOT EXISTS silver;

-- Every record as received. The Kafka coordinates are the key: a replay after a
-- crash inserts nothing twice.
CREATE TABLE IF NOT EXISTS bronze.bronze_performance (
    "topic"       text        NOT NULL,
    "partition"   integer     NOT NULL,
    "offset"      bigint      NOT NULL,
    "message_key" text,
    "payload"     text        NOT NULL,
    "kafka_time"  timestamptz NOT NULL,
    "ingested_at" timestamptz NOT NULL,
    PRIMARY KEY ("topic", "partition", "offset")
);

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
    "source_offset"          bigint           NOT NULL
);

CREATE INDEX IF NOT EXISTS silver_performance_host_time
    ON silver.silver_performance ("host_id", "sample_time");
