//! Delivery history in the `notification` schema, shared by every replica.

use async_trait::async_trait;
use platform::Timestamp;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{FromRow, PgPool, Postgres};
use uuid::Uuid;

use super::{DeliveryStore, Pruned, StoreError};
use crate::model::{Channel, Delivery, DeliveryStatus};

/// The columns `DeliveryRow` reads, as a literal so queries can be built with `concat!`.
macro_rules! columns {
    () => {
        "id, channel, recipient, template, subject, body, status, sent_at"
    };
}

/// The insert of a whole row, with parameters in the order `bind_delivery` binds them.
macro_rules! insert {
    () => {
        concat!(
            "INSERT INTO notification.deliveries (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
    };
}

/// Delivery history in Postgres; any number of replicas may share the table.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Uses a pool whose database has the migrations applied.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore { pool }
    }
}

#[derive(FromRow)]
struct DeliveryRow {
    id: Uuid,
    channel: String,
    recipient: String,
    template: String,
    subject: String,
    body: String,
    status: String,
    sent_at: Timestamp,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = sqlx::Error;

    fn try_from(row: DeliveryRow) -> Result<Self, sqlx::Error> {
        // CHECK constraints admit only known names, so these fail only if the schema and
        // the code disagree.
        let channel = Channel::parse(&row.channel).ok_or_else(|| {
            sqlx::Error::Decode(
                format!(
                    "unknown channel {:?} in notification.deliveries",
                    row.channel
                )
                .into(),
            )
        })?;
        let status = DeliveryStatus::parse(&row.status).ok_or_else(|| {
            sqlx::Error::Decode(
                format!("unknown status {:?} in notification.deliveries", row.status).into(),
            )
        })?;
        Ok(Delivery {
            id: row.id,
            channel,
            recipient: row.recipient,
            template: row.template,
            subject: row.subject,
            body: row.body,
            status,
            sent_at: row.sent_at,
        })
    }
}

/// Clamps a count to Postgres's `bigint`; counts past it mean "all rows" anyway.
fn as_bigint(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Binds every column of `delivery`, in the order of `columns!()`.
fn bind_delivery<'q>(
    query: Query<'q, Postgres, PgArguments>,
    delivery: &Delivery,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(delivery.id)
        .bind(delivery.channel.as_str())
        .bind(&delivery.recipient)
        .bind(&delivery.template)
        .bind(&delivery.subject)
        .bind(&delivery.body)
        .bind(delivery.status.as_str())
        .bind(delivery.sent_at)
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn reserve(&self, delivery: &Delivery) -> Result<(), StoreError> {
        debug_assert_eq!(delivery.status, DeliveryStatus::Pending);
        bind_delivery(sqlx::query(insert!()), delivery)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_sent(&self, delivery: &Delivery) -> Result<(), StoreError> {
        // An upsert rather than an update: if pruning took the pending row during a very
        // long send, the sent delivery is still recorded.
        let upsert = concat!(
            insert!(),
            " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, sent_at = EXCLUDED.sent_at"
        );
        bind_delivery(sqlx::query(upsert), delivery)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM notification.deliveries WHERE id = $1 AND status = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM (SELECT ",
            columns!(),
            " FROM notification.deliveries WHERE status = 'sent' \
              ORDER BY sent_at DESC, id DESC LIMIT $1) AS newest \
             ORDER BY sent_at, id"
        ))
        .bind(as_bigint(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(Delivery::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn prune(&self, keep: usize, abandoned_before: Timestamp) -> Result<Pruned, StoreError> {
        // The oldest row kept bounds the delete; with `keep` rows or fewer the subquery
        // is empty, the comparison is NULL and nothing is deleted.
        let sent = sqlx::query(
            "DELETE FROM notification.deliveries WHERE status = 'sent' AND (sent_at, id) < \
             (SELECT sent_at, id FROM notification.deliveries WHERE status = 'sent' \
              ORDER BY sent_at DESC, id DESC OFFSET $1 LIMIT 1)",
        )
        .bind(as_bigint(keep.saturating_sub(1)))
        .execute(&self.pool)
        .await?
        .rows_affected();

        let abandoned = sqlx::query(
            "DELETE FROM notification.deliveries WHERE status = 'pending' AND sent_at < $1",
        )
        .bind(abandoned_before)
        .execute(&self.pool)
        .await?
        .rows_affected();

        Ok(Pruned { sent, abandoned })
    }
}
