-- Log Pipeline: events delivered by the Postgres sink, kept for the retention period.
CREATE SCHEMA IF NOT EXISTS logs;

CREATE TABLE logs.events (
    -- The pipeline instance (process) that accepted the event; sequences count per
    -- instance, so together they identify an event and make repeated inserts harmless.
    origin      uuid        NOT NULL,
    sequence    bigint      NOT NULL CHECK (sequence > 0),
    source      text        NOT NULL CHECK (source <> ''),
    -- OpenTelemetry severity numbers: DEBUG 5, INFO 9, WARN 13, ERROR 17.
    severity    smallint    NOT NULL CHECK (severity IN (5, 9, 13, 17)),
    message     text        NOT NULL CHECK (message <> ''),
    fields      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(fields) = 'object'),
    -- The event's own time (the client's `timestamp`, or its receipt).
    event_time  timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    -- Recent reads walk this key newest first and the retention sweep oldest first. The
    -- pipeline sets received_at once, when it accepts the event, so the key identifies
    -- the event as (origin, sequence) does, and a repeated insert finds it present.
    PRIMARY KEY (received_at, origin, sequence)
);

-- Recent reads of one source. The level minimum is a filter on these scans: four levels
-- are too few for an index of their own to pay.
CREATE INDEX events_source_idx ON logs.events (source, received_at, origin, sequence);
