//! The single writer. Every change to the metadata is a job sent here; the writer runs all jobs
//! that are waiting in one transaction and one fsync, then answers each of them. Nothing is
//! delayed on purpose: while one commit is being fsynced, the next jobs queue up and share the
//! next one, so the number of fsyncs per second, not the number of writers, bounds throughput.
//!
//! Each job runs inside its own savepoint, so a job that fails (a limit, a missing record) is
//! rolled back alone and the others of its batch still commit. A job's reply and its events
//! are released only after COMMIT returned, that is after the WAL is fsynced
//! (`synchronous=FULL`).

use crate::StoreError;
use crate::blob::{BlobId, BlobStore};
use futures::future::BoxFuture;
use mailstead_core::event::{Event, EventBus};
use sqlx::SqliteConnection;
use std::any::Any;
use tokio::sync::{mpsc, oneshot};

/// Jobs taken into one transaction at most; bounds the latency of the first job of a batch.
const MAX_BATCH: usize = 256;

/// The writer's connection and what jobs leave behind for after the commit.
pub(crate) struct Tx {
    pub conn: SqliteConnection,
    pub blobs: BlobStore,
    /// Events to publish once the batch is durable.
    pub events: Vec<Event>,
    /// Blobs whose last reference went away in this batch.
    pub unreferenced: Vec<BlobId>,
    /// The batch's clock, Unix seconds.
    pub now: i64,
    /// The outbound queue changed in this batch: wake the queue runner after the commit.
    pub queue_changed: bool,
}

pub(crate) type Output = Box<dyn Any + Send>;
pub(crate) type JobFn =
    Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<Output, StoreError>> + Send>;

pub(crate) struct Job {
    pub run: JobFn,
    pub reply: oneshot::Sender<Result<Output, StoreError>>,
}

/// What the writer receives: work, or the request to finish and close.
pub(crate) enum Msg {
    Job(Job),
    /// Commit what is queued, checkpoint, close the database, then answer.
    Close(oneshot::Sender<()>),
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(db)
}

/// Runs the writer until it is told to close or every sender is gone, then closes the
/// connection cleanly.
pub(crate) async fn run(
    mut tx: Tx,
    mut rx: mpsc::Receiver<Msg>,
    bus: EventBus,
    queue_signal: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut closed_by: Option<oneshot::Sender<()>> = None;
    while let Some(first) = rx.recv().await {
        match first {
            Msg::Job(job) => batch.push(job),
            Msg::Close(done) => closed_by = Some(done),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Close(done)) => closed_by = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&mut tx, &mut batch, &bus, &queue_signal).await;
        }
        if closed_by.is_some() && rx.is_empty() {
            break;
        }
    }
    // Later writes fail with `Closed` instead of waiting forever.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Job(job) => batch.push(job),
            Msg::Close(done) => {
                let _ = done.send(());
            }
        }
    }
    if !batch.is_empty() {
        run_batch(&mut tx, &mut batch, &bus, &queue_signal).await;
    }
    // A clean close leaves no WAL behind, so the next open has nothing to replay.
    if let Err(e) = exec(&mut tx.conn, "PRAGMA wal_checkpoint(TRUNCATE)").await {
        tracing::warn!(error = %e, "WAL checkpoint at close failed");
    }
    let _ = sqlx::Connection::close(tx.conn).await;
    if let Some(done) = closed_by {
        let _ = done.send(());
    }
}

async fn run_batch(
    tx: &mut Tx,
    batch: &mut Vec<Job>,
    bus: &EventBus,
    queue_signal: &tokio::sync::Notify,
) {
    tx.now = unix_now();
    tx.queue_changed = false;
    tx.events.clear();
    tx.unreferenced.clear();
    let jobs = std::mem::take(batch);
    if let Err(e) = exec(&mut tx.conn, "BEGIN IMMEDIATE").await {
        for job in jobs {
            let _ = job.reply.send(Err(e.clone()));
        }
        return;
    }
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let events_before = tx.events.len();
        let unref_before = tx.unreferenced.len();
        let result = match exec(&mut tx.conn, "SAVEPOINT job").await {
            Ok(()) => (job.run)(tx).await,
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(out) => exec(&mut tx.conn, "RELEASE job").await.map(|()| out),
            Err(e) => {
                tx.events.truncate(events_before);
                tx.unreferenced.truncate(unref_before);
                let rollback = exec(&mut tx.conn, "ROLLBACK TO job; RELEASE job").await;
                if let Err(re) = rollback {
                    tracing::error!(error = %re, "savepoint rollback failed");
                }
                Err(e)
            }
        };
        done.push((job.reply, result));
    }
    // A blob whose count reached zero may have been referenced again later in the same batch;
    // only files still without a row are removed, and only after the commit.
    let mut to_unlink = Vec::new();
    for id in std::mem::take(&mut tx.unreferenced) {
        let still: Option<i64> = sqlx::query_scalar("SELECT refs FROM blob WHERE hash = ?")
            .bind(&id.0[..])
            .fetch_optional(&mut tx.conn)
            .await
            .unwrap_or(Some(1));
        if still.is_none() {
            to_unlink.push(id);
        }
    }
    match exec(&mut tx.conn, "COMMIT").await {
        Ok(()) => {
            for id in to_unlink {
                if let Err(e) = tx.blobs.remove(&id) {
                    tracing::warn!(blob = %id, error = %e, "could not remove an unreferenced blob");
                }
            }
            for event in tx.events.drain(..) {
                bus.publish(event);
            }
            if tx.queue_changed {
                queue_signal.notify_one();
            }
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; the batch is rolled back");
            let _ = exec(&mut tx.conn, "ROLLBACK").await;
            tx.events.clear();
            for (reply, _) in done {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
