//! The Postgres store's statements, as literals so each is prepared once per connection.
//!
//! Statements find rows through the `*_key` hash columns, which the indexes hold, and
//! compare the text columns as well wherever a row is read or changed, so a hash
//! collision can never return or change a row of another topic.

/// Columns a batch `COPY` fills, in the order `copy::encode` writes them.
pub const COPY_MESSAGES: &str = "COPY messaging.messages \
     (message_id, topic_key, topic, tenant_key, tenant_id, project_key, project_id, \
      message_key, priority, published_at, attributes, payload, visible_at) \
     FROM STDIN (FORMAT binary)";

/// Stores one message; the single-publish hot path, one round trip.
pub const INSERT_ONE: &str = "INSERT INTO messaging.messages \
     (message_id, topic, tenant_id, project_id, message_key, priority, published_at, \
      attributes, payload, visible_at, topic_key, tenant_key, project_key) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13)";

/// Stores a batch only if its idempotency key is new or expired by `$17`, remembering
/// the key with the messages (`$14` key, `$15` messages, `$16` expiry), in one
/// statement. A concurrent publish with the same key waits on the key's row and then
/// stores nothing. The batch comes as one array per column; topic and publish time are
/// shared.
pub const INSERT_KEYED: &str = "WITH remembered AS ( \
       INSERT INTO messaging.publish_keys (topic, idempotency_key, messages, expires_at) \
       VALUES ($2, $14, $15::jsonb, $16) \
       ON CONFLICT (topic, idempotency_key) DO UPDATE \
         SET messages = EXCLUDED.messages, expires_at = EXCLUDED.expires_at \
         WHERE messaging.publish_keys.expires_at <= $17 \
       RETURNING 1) \
     INSERT INTO messaging.messages \
       (message_id, topic_key, topic, tenant_key, tenant_id, project_key, project_id, \
        message_key, priority, published_at, attributes, payload, visible_at) \
     SELECT batch.message_id, $11, $2, batch.tenant_key, batch.tenant_id, \
            batch.project_key, batch.project_id, batch.message_key, batch.priority, $7, \
            batch.attributes::jsonb, batch.payload, batch.visible_at \
     FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[], $6::int2[], \
                 $8::text[], $9::bytea[], $10::timestamptz[], $12::int8[], $13::int8[]) \
          AS batch(message_id, tenant_id, project_id, message_key, priority, \
                   attributes, payload, visible_at, tenant_key, project_key) \
     WHERE EXISTS (SELECT 1 FROM remembered)";

/// The messages remembered with an idempotency key.
pub const SELECT_KEY: &str = "SELECT messages::text FROM messaging.publish_keys \
     WHERE topic = $1 AND idempotency_key = $2";

/// Leases up to `$3` visible messages of topic `$1` (key `$10`) at time `$2` until `$4`,
/// giving the n-th leased message the n-th ack id of `$6`. Candidates already delivered
/// `$5` times move to topic `$7` (key `$11`) instead, with attributes `$8` (source
/// topic) and `$9` (deliveries) added. Rows locked by a concurrent claim are skipped,
/// never waited for. Rows come back with `dead_lettered` false for leased messages and
/// true for moved ones.
///
/// The scan names only hash keys. With the topic text beside its key, Postgres counted
/// two unrelated equalities, expected almost no rows before statistics exist, and
/// chose to sort the whole topic instead of reading the index in order. The text is
/// compared when the locked rows are changed, through their row address (`ctid`),
/// which needs no second index lookup.
///
/// NOTE: leased and delayed messages ahead in delivery order are skipped by a filter on
/// `visible_at` after the index scan, so a claim reads past every one of them. Claims
/// slow down on a topic with very many of them at the head of its order.
macro_rules! claim {
    ($filter:literal, $text_filter:literal) => {
        concat!(
            "WITH candidates AS ( \
               SELECT ctid, delivery_attempt FROM messaging.messages \
               WHERE topic_key = $10 AND visible_at <= $2",
            $filter,
            " ORDER BY priority DESC, published_at, message_id \
               LIMIT $3 \
               FOR UPDATE SKIP LOCKED \
             ), leasable AS ( \
               SELECT ctid, ($6::uuid[])[row_number() OVER ()] AS ack_id \
               FROM candidates WHERE delivery_attempt < $5 \
             ), delivered AS ( \
               UPDATE messaging.messages AS m \
               SET visible_at = $4, delivery_attempt = m.delivery_attempt + 1, \
                   ack_id = leasable.ack_id \
               FROM leasable \
               WHERE m.ctid = leasable.ctid AND m.topic = $1",
            $text_filter,
            " RETURNING m.message_id, m.tenant_id, m.project_id, m.message_key, \
                         m.priority, m.published_at, m.attributes, m.payload, m.ack_id, \
                         m.delivery_attempt, FALSE AS dead_lettered \
             ), exhausted AS ( \
               UPDATE messaging.messages AS m \
               SET topic = $7, topic_key = $11, visible_at = $2, delivery_attempt = 0, \
                   ack_id = NULL, \
                   attributes = m.attributes \
                     || jsonb_build_object($8::text, m.topic, $9::text, m.delivery_attempt::text) \
               FROM candidates \
               WHERE m.ctid = candidates.ctid AND candidates.delivery_attempt >= $5 \
                 AND m.topic = $1",
            $text_filter,
            " RETURNING m.message_id, m.tenant_id, m.project_id, m.message_key, \
                         m.priority, m.published_at, m.attributes, NULL::bytea, NULL::uuid, \
                         m.delivery_attempt, TRUE \
             ) \
             SELECT * FROM delivered UNION ALL SELECT * FROM exhausted"
        )
    };
}

/// A claim over every tenant; served by `messages_order_idx`.
pub const CLAIM: &str = claim!("", "");
/// A claim for one tenant (`$12` key, `$13` name); served by
/// `messages_tenant_order_idx`.
pub const CLAIM_TENANT: &str = claim!(" AND tenant_key = $12", " AND m.tenant_id = $13");
/// A claim for one project (`$12` key, `$13` name) of any tenant.
pub const CLAIM_PROJECT: &str = claim!(" AND project_key = $12", " AND m.project_id = $13");
/// A claim for one tenant (`$12` key, `$13` name) and project (`$14` key, `$15` name);
/// served by `messages_tenant_order_idx`.
pub const CLAIM_TENANT_PROJECT: &str = claim!(
    " AND tenant_key = $12 AND project_key = $14",
    " AND m.tenant_id = $13 AND m.project_id = $15"
);

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
/// or, once delivered `$5` times, moves to topic `$7` (key `$10`) at time `$4` with
/// attributes `$8` and `$9` added. Returns whether it moved.
pub const NACK: &str = "UPDATE messaging.messages SET \
       ack_id = NULL, \
       topic = CASE WHEN delivery_attempt >= $5 THEN $7 ELSE topic END, \
       topic_key = CASE WHEN delivery_attempt >= $5 THEN $10 ELSE topic_key END, \
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

/// Counts of topic `$1` (key `$3`) at time `$2`.
pub const COUNTS: &str = "SELECT \
       count(*) FILTER (WHERE visible_at <= $2) AS ready, \
       count(*) FILTER (WHERE visible_at > $2 AND ack_id IS NOT NULL) AS leased, \
       count(*) FILTER (WHERE visible_at > $2 AND ack_id IS NULL) AS delayed, \
       min(published_at) FILTER (WHERE visible_at <= $2) AS oldest_ready \
     FROM messaging.messages WHERE topic_key = $3 AND topic = $1";

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
/// Instead the statement walks the distinct topic keys through `messages_order_idx`
/// (one index probe per key) and, per key and priority, reads the oldest rows from the
/// same index, where they sit in publish order. The ids are collected into an array so
/// the delete looks each one up by primary key rather than joining against the table.
pub const REMOVE_OLD_MESSAGES: &str = "WITH RECURSIVE topics AS ( \
       (SELECT topic_key FROM messaging.messages ORDER BY topic_key LIMIT 1) \
       UNION ALL \
       SELECT (SELECT m.topic_key FROM messaging.messages AS m \
               WHERE m.topic_key > topics.topic_key ORDER BY m.topic_key LIMIT 1) \
       FROM topics WHERE topics.topic_key IS NOT NULL \
     ), expired AS ( \
       SELECT old.message_id \
       FROM topics \
       CROSS JOIN unnest('{2,1,0}'::int2[]) AS ranks(priority) \
       CROSS JOIN LATERAL ( \
         SELECT m.message_id FROM messaging.messages AS m \
         WHERE m.topic_key = topics.topic_key AND m.priority = ranks.priority \
           AND m.published_at < $1 \
         ORDER BY m.published_at LIMIT $2 \
       ) AS old \
       WHERE topics.topic_key IS NOT NULL \
       LIMIT $2 \
     ) \
     DELETE FROM messaging.messages WHERE message_id = ANY (ARRAY(SELECT message_id FROM expired))";

/// Deletes at most `$2` idempotency keys that expired by `$1`.
pub const REMOVE_EXPIRED_KEYS: &str = "DELETE FROM messaging.publish_keys \
     WHERE ctid = ANY (ARRAY( \
       SELECT ctid FROM messaging.publish_keys WHERE expires_at <= $1 LIMIT $2))";
