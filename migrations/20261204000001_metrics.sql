-- Metrics Collector: roll-up buckets, one row per series, bucket and replica instance.
CREATE SCHEMA IF NOT EXISTS metrics;

CREATE TABLE metrics.buckets (
    -- Series identity, namespace.name{k1=v1,...}.
    series       text             NOT NULL,
    namespace    text             NOT NULL,
    name         text             NOT NULL,
    bucket_start timestamptz      NOT NULL,
    -- The process that recorded the samples; each row holds its whole state for the bucket.
    instance_id  uuid             NOT NULL,
    sample_count bigint           NOT NULL CHECK (sample_count > 0),
    value_sum    double precision NOT NULL,
    value_min    double precision NOT NULL,
    value_max    double precision NOT NULL CHECK (value_min <= value_max),
    last_at      timestamptz      NOT NULL,
    -- Quantile sketch in the collector's own encoding.
    sketch       bytea            NOT NULL,
    PRIMARY KEY (series, bucket_start, instance_id)
);

-- Summaries read a window filtered by namespace and name, either, or neither; the
-- retention sweep deletes by bucket_start.
CREATE INDEX buckets_namespace_idx ON metrics.buckets (namespace, name, bucket_start);
CREATE INDEX buckets_name_idx ON metrics.buckets (name, bucket_start);
CREATE INDEX buckets_start_idx ON metrics.buckets (bucket_start);
