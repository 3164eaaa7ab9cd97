//! Versioned schema migrations, applied in order at open inside one write transaction, so two
//! processes opening a fresh database at once cannot both apply them.

use crate::StoreError;
use sqlx::SqliteConnection;

/// Every migration, in order. A released migration is never edited; a change is a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_queue.sql")),
    (3, include_str!("migrations/0003_outbound.sql")),
    (4, include_str!("migrations/0004_subscriptions.sql")),
    (5, include_str!("migrations/0005_sieve.sql")),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 5;

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Brings the database to [`SCHEMA_VERSION`]. Refuses a database written by a newer build.
pub async fn migrate(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let result = apply(conn).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    sqlx::raw_sql(end).execute(&mut *conn).await.map_err(db)?;
    result
}

async fn apply(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let current: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "the database has schema version {current}, newer than this mailstead supports \
             ({SCHEMA_VERSION}); run a newer mailstead or restore a backup"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tracing::info!(version, "applying database migration");
        sqlx::raw_sql(*sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| StoreError::Database(format!("migration {version} failed: {e}")))?;
        sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
            .bind(version)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(SCHEMA_VERSION)
}

/// Checks the database file for corruption (`PRAGMA quick_check`).
pub async fn quick_check(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "integrity check failed: {}",
            rows.join("; ")
        )))
    }
}
