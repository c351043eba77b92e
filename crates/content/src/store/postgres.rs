//! Content items and their review history in the `content` schema.

use std::collections::BTreeMap;

use async_trait::async_trait;
use platform::Timestamp;
use platform::pagination::{Cursor, Page, PageRequest};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, QueryBuilder};

use super::{ContentStore, InsertOutcome, ReviewChange, ReviewOutcome, StoreError};
use crate::model::{ContentFilter, ContentItem, ContentState, Review};

/// The columns `ItemRow` reads, as a literal so queries can be built with `concat!`.
macro_rules! columns {
    () => {
        "content_id, tenant_id, project_id, filename, mime_type, size_bytes, state, reason, \
         labels, attributes, submitted_at, updated_at"
    };
}

/// The primary key of `content.items`, named in the migration.
const ITEMS_PRIMARY_KEY: &str = "items_pkey";

/// Items in Postgres; any number of replicas may share the tables.
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
struct ItemRow {
    content_id: String,
    tenant_id: String,
    project_id: String,
    filename: String,
    mime_type: String,
    size_bytes: i64,
    state: String,
    reason: String,
    labels: Json<BTreeMap<String, String>>,
    attributes: Json<BTreeMap<String, String>>,
    submitted_at: Timestamp,
    updated_at: Timestamp,
}

impl TryFrom<ItemRow> for ContentItem {
    type Error = sqlx::Error;

    fn try_from(row: ItemRow) -> Result<Self, sqlx::Error> {
        Ok(ContentItem {
            content_id: row.content_id,
            tenant_id: row.tenant_id,
            project_id: row.project_id,
            filename: row.filename,
            mime_type: row.mime_type,
            size_bytes: row.size_bytes,
            state: decode_state(&row.state)?,
            reason: row.reason,
            submitted_at: row.submitted_at,
            updated_at: row.updated_at,
            labels: row.labels.0,
            attributes: row.attributes.0,
        })
    }
}

#[derive(FromRow)]
struct ReviewRow {
    from_state: String,
    to_state: String,
    reason: String,
    reviewer: String,
    reviewed_at: Timestamp,
}

impl TryFrom<ReviewRow> for Review {
    type Error = sqlx::Error;

    fn try_from(row: ReviewRow) -> Result<Self, sqlx::Error> {
        Ok(Review {
            from: decode_state(&row.from_state)?,
            to: decode_state(&row.to_state)?,
            reason: row.reason,
            reviewer: row.reviewer,
            reviewed_at: row.reviewed_at,
        })
    }
}

/// Reads a state column. The CHECK constraints admit only known names, so this fails
/// only if the schema and the code disagree.
fn decode_state(text: &str) -> Result<ContentState, sqlx::Error> {
    ContentState::parse(text).ok_or_else(|| {
        sqlx::Error::Decode(format!("unknown content state {text:?} in the content schema").into())
    })
}

#[async_trait]
impl ContentStore for PostgresStore {
    async fn insert(&self, item: &ContentItem) -> Result<InsertOutcome, StoreError> {
        let result = sqlx::query(
            "INSERT INTO content.items \
             (content_id, tenant_id, project_id, filename, mime_type, size_bytes, state, reason, \
              labels, attributes, submitted_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&item.content_id)
        .bind(&item.tenant_id)
        .bind(&item.project_id)
        .bind(&item.filename)
        .bind(&item.mime_type)
        .bind(item.size_bytes)
        .bind(item.state.as_str())
        .bind(&item.reason)
        .bind(Json(&item.labels))
        .bind(Json(&item.attributes))
        .bind(item.submitted_at)
        .bind(item.updated_at)
        .execute(&self.pool)
        .await;

        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(error)
                if platform::db::unique_violation(&error).as_deref() == Some(ITEMS_PRIMARY_KEY) =>
            {
                Ok(InsertOutcome::AlreadyExists)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ContentItem>, StoreError> {
        let row: Option<ItemRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM content.items WHERE content_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(ContentItem::try_from).transpose()?)
    }

    async fn review(&self, id: &str, change: &ReviewChange) -> Result<ReviewOutcome, StoreError> {
        // A client that hangs up drops its request's future. If that happens between
        // COMMIT and its reply, the dropped transaction queues a needless ROLLBACK and
        // Postgres logs a warning. In its own task the transaction always ends with its
        // commit or its rollback.
        let store = self.clone();
        let (id, change) = (id.to_owned(), change.clone());
        let task = tokio::spawn(async move { store.review_in_transaction(&id, &change).await });
        match task.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(sqlx::Error::Io(std::io::Error::other(error)).into()),
        }
    }

    async fn reviews(&self, id: &str) -> Result<Option<Vec<Review>>, StoreError> {
        // The identity column orders reviews of one item as they were committed: each
        // review inserts while it holds the item's row lock from `update_state`.
        let rows: Vec<ReviewRow> = sqlx::query_as(
            "SELECT from_state, to_state, reason, reviewer, reviewed_at \
             FROM content.reviews WHERE content_id = $1 ORDER BY review_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;

        if rows.is_empty() && !item_exists(&self.pool, id).await? {
            return Ok(None);
        }
        let reviews = rows
            .into_iter()
            .map(Review::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(reviews))
    }

    async fn list(
        &self,
        filter: &ContentFilter,
        page: &PageRequest,
    ) -> Result<Page<ContentItem>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT ");
        query
            .push(columns!())
            .push(" FROM content.items WHERE TRUE");
        push_filter(&mut query, filter);
        if let Some(cursor) = &page.after {
            // content_id has the "C" collation, so this comparison and the ORDER BY agree
            // with the byte order the memory store and the cursor use.
            query
                .push(" AND (submitted_at, content_id) < (")
                .push_bind(cursor.created_at())
                .push(", ")
                .push_bind(cursor.id.clone())
                .push(")");
        }
        query
            .push(" ORDER BY submitted_at DESC, content_id DESC LIMIT ")
            .push_bind((page.size + 1) as i64);

        let rows: Vec<ItemRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let items = rows
            .into_iter()
            .map(ContentItem::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.size, |item| {
            Cursor::after(item.submitted_at, item.content_id.clone())
        }))
    }
}

impl PostgresStore {
    async fn review_in_transaction(
        &self,
        id: &str,
        change: &ReviewChange,
    ) -> Result<ReviewOutcome, StoreError> {
        let mut transaction = self.pool.begin().await?;

        let Some(item) = update_state(&mut transaction, id, change).await? else {
            // Nothing was written; dropping the transaction rolls it back.
            drop(transaction);
            return Ok(if item_exists(&self.pool, id).await? {
                ReviewOutcome::Stale
            } else {
                ReviewOutcome::Missing
            });
        };
        insert_review(&mut transaction, id, change, item.updated_at).await?;
        transaction.commit().await?;
        Ok(ReviewOutcome::Applied(Box::new(item)))
    }
}

/// Moves the item to the new state if it is still in the expected one, and returns the
/// updated item. Returns `None` when the item is missing or in another state.
///
/// The state condition makes this a compare-and-set. Of two racing reviews that read the
/// same state, the second waits for the first's row lock. It then matches only if the
/// first left that state in place. The row lock is held until the caller's transaction
/// ends.
async fn update_state(
    connection: &mut PgConnection,
    id: &str,
    change: &ReviewChange,
) -> Result<Option<ContentItem>, sqlx::Error> {
    let row: Option<ItemRow> = sqlx::query_as(concat!(
        "UPDATE content.items \
         SET state = $3, reason = $4, updated_at = GREATEST($5, updated_at) \
         WHERE content_id = $1 AND state = $2 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(change.expected.as_str())
    .bind(change.state.as_str())
    .bind(&change.reason)
    .bind(change.at)
    .fetch_optional(&mut *connection)
    .await?;
    row.map(ContentItem::try_from).transpose()
}

/// Appends a review to an item's history.
async fn insert_review(
    connection: &mut PgConnection,
    id: &str,
    change: &ReviewChange,
    reviewed_at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO content.reviews \
         (content_id, from_state, to_state, reason, reviewer, reviewed_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(change.expected.as_str())
    .bind(change.state.as_str())
    .bind(&change.reason)
    .bind(&change.reviewer)
    .bind(reviewed_at)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn item_exists(pool: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM content.items WHERE content_id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &ContentFilter) {
    let text_filters = [
        ("tenant_id", &filter.tenant_id),
        ("project_id", &filter.project_id),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(state) = filter.state {
        query.push(" AND state = ").push_bind(state.as_str());
    }
}
