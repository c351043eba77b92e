-- Messaging Service: topics of messages leased to consumers, and idempotency keys.
CREATE SCHEMA IF NOT EXISTS messaging;

-- One row per message that is not yet acknowledged; an ack deletes the row. Topics are
-- implicit: a topic exists while it holds messages. Byte-order ("C") collation keeps
-- comparisons cheap and the order the same as the memory store's.
--
-- The `*_key` columns hold the first eight bytes of the SHA-256 digest of the name beside
-- them, computed by the service. Indexes lead with these keys instead of the text:
-- Postgres finds each column of a fixed-width index entry at a fixed offset, which cut
-- the CPU time of concurrent batched inserts by about a third in a pgbench comparison.
-- Statements compare the text too, so a row whose name shares a key with another name
-- is never returned or changed by mistake.
CREATE TABLE messaging.messages (
    message_id       uuid        PRIMARY KEY,
    topic_key        bigint      NOT NULL,
    topic            text        COLLATE "C" NOT NULL,
    tenant_key       bigint      NOT NULL,
    tenant_id        text        COLLATE "C" NOT NULL,
    project_key      bigint      NOT NULL,
    project_id       text        COLLATE "C" NOT NULL,
    message_key      text        NOT NULL DEFAULT '',
    -- 0 low, 1 normal, 2 high; higher ranks are delivered first.
    priority         smallint    NOT NULL CHECK (priority IN (0, 1, 2)),
    published_at     timestamptz NOT NULL,
    attributes       jsonb       NOT NULL DEFAULT '{}',
    payload          bytea       NOT NULL,
    -- Deliverable once this has passed: publish time plus delay, the end of the current
    -- lease, or the end of a nack delay.
    visible_at       timestamptz NOT NULL,
    -- Deliveries so far in this topic; reset when the message is dead-lettered.
    delivery_attempt integer     NOT NULL DEFAULT 0 CHECK (delivery_attempt >= 0),
    -- Names the current or last delivery; NULL before the first and after a nack.
    ack_id           uuid
) WITH (fillfactor = 90);
-- Claims update only unindexed columns (visible_at, delivery_attempt, ack_id), so the
-- free space left by the fill factor lets them stay heap-only (HOT) updates.

-- Index keys are unique through message_id, so deduplication never finds anything to
-- merge and is turned off to spare the attempt on every page split.

-- Claim order per topic: priority, then age. Also used by retention to find old rows
-- per topic and priority, and to walk the distinct topics.
CREATE INDEX messages_order_idx
    ON messaging.messages (topic_key, priority DESC, published_at, message_id)
    WITH (deduplicate_items = off);
-- The same order per tenant and project, for pulls that filter by them.
CREATE INDEX messages_tenant_order_idx
    ON messaging.messages (topic_key, tenant_key, project_key, priority DESC, published_at, message_id)
    WITH (deduplicate_items = off);

-- Idempotency keys per topic with the messages their publish stored, so a replay
-- returns the original envelopes even after those messages were acknowledged.
CREATE TABLE messaging.publish_keys (
    topic           text        COLLATE "C" NOT NULL,
    idempotency_key text        COLLATE "C" NOT NULL,
    messages        jsonb       NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (topic, idempotency_key)
);

CREATE INDEX publish_keys_expiry_idx ON messaging.publish_keys (expires_at);
