-- Ceiling of a pull: the CLAIM statement of the messaging Postgres store, leasing up to
-- :limit visible messages of :topic for :lease_s seconds. Parameters the service binds
-- are replaced: the time by statement_timestamp(), the fresh ack ids by an array of
-- version 7 UUIDs, the delivery limit by :max_deliveries, the topic keys by
-- bench.messaging_key.
WITH candidates AS (
  SELECT ctid, delivery_attempt FROM messaging.messages
  WHERE topic_key = bench.messaging_key(:topic) AND visible_at <= statement_timestamp()
  ORDER BY priority DESC, published_at, message_id
  LIMIT :limit::int
  FOR UPDATE SKIP LOCKED
), leasable AS (
  SELECT ctid,
         (ARRAY(SELECT bench.uuid_v7() FROM generate_series(1, :limit::int)))[row_number() OVER ()]
           AS ack_id
  FROM candidates WHERE delivery_attempt < :max_deliveries::int
), delivered AS (
  UPDATE messaging.messages AS m
  SET visible_at = statement_timestamp() + make_interval(secs => :lease_s::int),
      delivery_attempt = m.delivery_attempt + 1,
      ack_id = leasable.ack_id
  FROM leasable
  WHERE m.ctid = leasable.ctid AND m.topic = :topic
  RETURNING m.message_id, m.tenant_id, m.project_id, m.message_key,
            m.priority, m.published_at, m.attributes, m.payload, m.ack_id,
            m.delivery_attempt, FALSE AS dead_lettered
), exhausted AS (
  UPDATE messaging.messages AS m
  SET topic = :topic || '.dead-letter',
      topic_key = bench.messaging_key(:topic || '.dead-letter'),
      visible_at = statement_timestamp(), delivery_attempt = 0, ack_id = NULL,
      attributes = m.attributes
        || jsonb_build_object('dead_letter.source_topic'::text, m.topic,
                              'dead_letter.delivery_attempts'::text, m.delivery_attempt::text)
  FROM candidates
  WHERE m.ctid = candidates.ctid AND candidates.delivery_attempt >= :max_deliveries::int
    AND m.topic = :topic
  RETURNING m.message_id, m.tenant_id, m.project_id, m.message_key,
            m.priority, m.published_at, m.attributes, NULL::bytea, NULL::uuid,
            m.delivery_attempt, TRUE
)
SELECT * FROM delivered UNION ALL SELECT * FROM exhausted;
