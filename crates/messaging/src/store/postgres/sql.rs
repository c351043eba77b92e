//! The Postgres store's statements, as literals so each is prepared once per connection.

/// Stores one message; the single-publish hot path, one round trip.
pub const INSERT_ONE: &str = "INSERT INTO messaging.messages \
     (message_id, topic, tenant_id, project_id, message_key, priority, published_at, \
      attributes, payload, visible_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Columns of a batch insert, one array per column; topic and publish time are shared.
macro_rules! insert_batch {
    ($condition:literal) => {
        concat!(
            "INSERT INTO messaging.messages \
             (message_id, topic, tenant_id, project_id, message_key, priority, published_at, \
              attributes, payload, visible_at) \
             SELECT batch.message_id, $2, batch.tenant_id, batch.project_id, batch.message_key, \
                    batch.priority, $7, batch.attributes, batch.payload, batch.visible_at \
             FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[], $6::int2[], \
                         $8::jsonb[], $9::bytea[], $10::timestamptz[]) \
                  AS batch(message_id, tenant_id, project_id, message_key, priority, \
                           attributes, payload, visible_at)",
            $condition
        )
    };
}

/// Stores a batch in one statement.
pub const INSERT_MANY: &str = insert_batch!("");

/// Stores a batch only if its idempotency key is new or expired by `$14`, remembering
/// the key with the messages (`$11` key, `$12` messages, `$13` expiry). A concurrent
/// publish with the same key waits on the key's row and then stores nothing.
pub const INSERT_KEYED: &str = concat!(
    "WITH remembered AS ( \
       INSERT INTO messaging.publish_keys (topic, idempotency_key, messages, expires_at) \
       VALUES ($2, $11, $12, $13) \
       ON CONFLICT (topic, idempotency_key) DO UPDATE \
         SET messages = EXCLUDED.messages, expires_at = EXCLUDED.expires_at \
         WHERE messaging.publish_keys.expires_at <= $14 \
       RETURNING 1) ",
    insert_batch!(" WHERE EXISTS (SELECT 1 FROM remembered)")
);

/// The messages remembered with an idempotency key.
pub const SELECT_KEY: &str =
    "SELECT messages FROM messaging.publish_keys WHERE topic = $1 AND idempotency_key = $2";

/// Leases up to `$3` visible messages of topic `$1` at time `$2` until `$4`, giving each
/// one of the ack ids in `$6`. Candidates already delivered `$5` times move to topic
/// `$7` instead, with attributes `$8` (source topic) and `$9` (deliveries) added. Rows
/// locked by a concurrent claim are skipped, never waited for. Rows come back with
/// `dead_lettered` false for leased messages and true for moved ones.
///
/// NOTE: leased and delayed messages ahead in delivery order are skipped by a filter on
/// `visible_at` after the index scan, so a claim reads past every one of them. Claims
/// slow down on a topic with very many of them at the head of its order.
macro_rules! claim {
    ($filter:literal) => {
        concat!(
            "WITH candidates AS ( \
               SELECT message_id, delivery_attempt FROM messaging.messages \
               WHERE topic = $1 AND visible_at <= $2",
            $filter,
            " ORDER BY priority DESC, published_at, message_id \
               LIMIT $3 \
               FOR UPDATE SKIP LOCKED \
             ), leasable AS ( \
               SELECT message_id, row_number() OVER () AS position \
               FROM candidates WHERE delivery_attempt < $5 \
             ), delivered AS ( \
               UPDATE messaging.messages AS m \
               SET visible_at = $4, delivery_attempt = m.delivery_attempt + 1, \
                   ack_id = fresh.ack_id \
               FROM leasable \
               JOIN unnest($6::uuid[]) WITH ORDINALITY AS fresh(ack_id, position) USING (position) \
               WHERE m.message_id = leasable.message_id \
               RETURNING m.message_id, m.topic, m.tenant_id, m.project_id, m.message_key, \
                         m.priority, m.published_at, m.attributes, m.payload, m.ack_id, \
                         m.delivery_attempt, FALSE AS dead_lettered \
             ), exhausted AS ( \
               UPDATE messaging.messages AS m \
               SET topic = $7, visible_at = $2, delivery_attempt = 0, ack_id = NULL, \
                   attributes = m.attributes \
                     || jsonb_build_object($8::text, m.topic, $9::text, m.delivery_attempt::text) \
               FROM candidates \
               WHERE m.message_id = candidates.message_id AND candidates.delivery_attempt >= $5 \
               RETURNING m.message_id, m.topic, m.tenant_id, m.project_id, m.message_key, \
                         m.priority, m.published_at, m.attributes, NULL::bytea, NULL::uuid, \
                         m.delivery_attempt, TRUE \
             ) \
             SELECT * FROM delivered UNION ALL SELECT * FROM exhausted"
        )
    };
}

/// A claim over every tenant; served by `messages_order_idx`.
pub const CLAIM: &str = claim!("");
/// A claim for one tenant (`$10`); served by `messages_tenant_order_idx`.
pub const CLAIM_TENANT: &str = claim!(" AND tenant_id = $10");
/// A claim for one project (`$10`) of any tenant.
pub const CLAIM_PROJECT: &str = claim!(" AND project_id = $10");
/// A claim for one tenant (`$10`) and project (`$11`); served by
/// `messages_tenant_order_idx`.
pub const CLAIM_TENANT_PROJECT: &str = claim!(" AND tenant_id = $10 AND project_id = $11");

/// Deletes message `$1` of topic `$2`; with ack id `$3`, only while it names the
/// current delivery.
pub const ACK: &str = "DELETE FROM messaging.messages \
     WHERE message_id = $1 AND topic = $2 AND ($3::uuid IS NULL OR ack_id = $3)";

/// Deletes the messages `$1` of topic `$2`, whatever their leases.
pub const ACK_MANY: &str = "DELETE FROM messaging.messages \
     WHERE message_id = ANY($1) AND topic = $2 RETURNING message_id";

/// Reads whether message `$1` is in topic `$2`.
pub const EXISTS: &str = "SELECT 1 FROM messaging.messages WHERE message_id = $1 AND topic = $2";

/// Ends delivery `$3` of message `$1` in topic `$2`: the message becomes visible at `$6`,
/// or, once delivered `$5` times, moves to topic `$7` at time `$4` with attributes `$8`
/// and `$9` added. Returns whether it moved.
pub const NACK: &str = "UPDATE messaging.messages SET \
       ack_id = NULL, \
       topic = CASE WHEN delivery_attempt >= $5 THEN $7 ELSE topic END, \
       visible_at = CASE WHEN delivery_attempt >= $5 THEN $4 ELSE $6 END, \
       attributes = CASE WHEN delivery_attempt >= $5 \
         THEN attributes || jsonb_build_object($8::text, topic, $9::text, delivery_attempt::text) \
         ELSE attributes END, \
       delivery_attempt = CASE WHEN delivery_attempt >= $5 THEN 0 ELSE delivery_attempt END \
     WHERE message_id = $1 AND topic = $2 AND ack_id = $3 \
     RETURNING topic <> $2 AS dead_lettered";

/// Moves the lease end of delivery `$3` of message `$1` in topic `$2` to `$4`.
pub const EXTEND: &str = "UPDATE messaging.messages SET visible_at = $4 \
     WHERE message_id = $1 AND topic = $2 AND ack_id = $3";

/// Counts of topic `$1` at time `$2`.
pub const COUNTS: &str = "SELECT \
       count(*) FILTER (WHERE visible_at <= $2) AS ready, \
       count(*) FILTER (WHERE visible_at > $2 AND ack_id IS NOT NULL) AS leased, \
       count(*) FILTER (WHERE visible_at > $2 AND ack_id IS NULL) AS delayed, \
       min(published_at) FILTER (WHERE visible_at <= $2) AS oldest_ready \
     FROM messaging.messages WHERE topic = $1";

/// Counts of every topic at time `$1`.
pub const ALL_COUNTS: &str = "SELECT topic, \
       count(*) FILTER (WHERE visible_at <= $1) AS ready, \
       count(*) FILTER (WHERE visible_at > $1 AND ack_id IS NOT NULL) AS leased, \
       count(*) FILTER (WHERE visible_at > $1 AND ack_id IS NULL) AS delayed, \
       min(published_at) FILTER (WHERE visible_at <= $1) AS oldest_ready \
     FROM messaging.messages GROUP BY topic";

/// Deletes at most `$2` messages published before `$1`.
///
/// The table has no index on publish time alone, which every insert would pay for.
/// Instead the statement walks the distinct topics through `messages_order_idx` (one
/// index probe per topic) and, per topic and priority, reads the oldest rows from the
/// same index, where they sit in publish order. The ids are collected into an array so
/// the delete looks each one up by primary key rather than joining against the table.
pub const REMOVE_OLD_MESSAGES: &str = "WITH RECURSIVE topics AS ( \
       (SELECT topic FROM messaging.messages ORDER BY topic LIMIT 1) \
       UNION ALL \
       SELECT (SELECT m.topic FROM messaging.messages AS m \
               WHERE m.topic > topics.topic ORDER BY m.topic LIMIT 1) \
       FROM topics WHERE topics.topic IS NOT NULL \
     ), expired AS ( \
       SELECT old.message_id \
       FROM topics \
       CROSS JOIN unnest('{2,1,0}'::int2[]) AS ranks(priority) \
       CROSS JOIN LATERAL ( \
         SELECT m.message_id FROM messaging.messages AS m \
         WHERE m.topic = topics.topic AND m.priority = ranks.priority \
           AND m.published_at < $1 \
         ORDER BY m.published_at LIMIT $2 \
       ) AS old \
       WHERE topics.topic IS NOT NULL \
       LIMIT $2 \
     ) \
     DELETE FROM messaging.messages WHERE message_id = ANY (ARRAY(SELECT message_id FROM expired))";

/// Deletes at most `$2` idempotency keys that expired by `$1`.
pub const REMOVE_EXPIRED_KEYS: &str = "DELETE FROM messaging.publish_keys \
     WHERE ctid = ANY (ARRAY( \
       SELECT ctid FROM messaging.publish_keys WHERE expires_at <= $1 LIMIT $2))";
