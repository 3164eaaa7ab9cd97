//! The store: metadata (domains, mailboxes, aliases, folders, the message index) and message
//! blobs, under one data directory.
//!
//! Callers see [`Store`] and the records of [`model`]; nothing of SQL or SQLite leaks through,
//! so a PostgreSQL backend can take its place. Writes go through one writer that group-commits
//! (see [`group_commit`]); every write that returns `Ok` is on disk. Reads use a small pool of
//! connections and never wait for the writer.
//!
//! Depends on `core` only. Must never know about protocols: it stores messages, it does not
//! speak IMAP or SMTP.

mod blob;
mod directory_ops;
mod group_commit;
mod mail_ops;
pub mod model;
mod outbound_ops;
mod queue_ops;
mod schema;
mod sieve_ops;
pub mod summary;

pub use blob::{BlobId, BlobRef, BlobStore, BlobWriter};
pub use mail_ops::{DeliveryTarget, canonical_folder_name};
pub use mailstead_core::event::{Change, Event, EventBus, FolderId, MailboxId};
pub use model::*;
pub use outbound_ops::{DkimKey, DomainRelay, Relayhost, StsPolicyRecord, TlsPolicy};
pub use queue_ops::{
    Attempt, NewQueued, NewQueuedRcpt, QueuedMessage, QueuedRcpt, RcptState, routing_domain,
};
pub use schema::SCHEMA_VERSION;
pub use sieve_ops::{SieveGlobal, SievePhase, SieveScript, SieveScriptInfo};

use group_commit::{Job, JobFn, Msg, Output, Tx};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What can go wrong; messages are for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// A limit of the domain or mailbox would be exceeded.
    #[error("{0}")]
    Limit(String),
    /// The request contradicts the stored state.
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("blob storage error: {0}")]
    Io(String),
    /// The mailbox's quota would be exceeded.
    #[error("{0}")]
    OverQuota(String),
    /// A referenced blob file is missing; write it again and retry.
    #[error("blob {0} is missing")]
    BlobMissing(String),
    #[error("the store is closed")]
    Closed,
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the store lives.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The data directory: `mailstead.db` and `blobs/` go here.
    pub data_dir: PathBuf,
    /// How long a write waits for another process (an admin command) holding the database.
    pub busy_timeout: Duration,
}

impl StoreConfig {
    pub fn new(data_dir: &Path) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.to_path_buf(),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

struct Inner {
    reads: SqlitePool,
    queue_signal: Arc<tokio::sync::Notify>,
    blobs: BlobStore,
    bus: EventBus,
    db_path: PathBuf,
}

/// A handle to the store; cheap to clone, shared by every service.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// The writer's queue. The writer stops at [`Store::close`] or with the last handle.
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("db", &self.inner.db_path)
            .finish()
    }
}

impl Store {
    /// Opens the store, creating it if needed, and runs pending migrations.
    pub async fn open(cfg: &StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let db_path = cfg.data_dir.join("mailstead.db");
        // WAL with synchronous=FULL: a commit returns after the WAL is fsynced, so an OK is on
        // disk; readers never block the writer.
        let options = SqliteConnectOptions::new()
            .filename(&db_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(cfg.busy_timeout)
            .pragma("temp_store", "memory")
            .disable_statement_logging();
        let mut conn = options.connect().await.map_err(db)?;
        schema::migrate(&mut conn).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        let blobs = BlobStore::open(&cfg.data_dir.join("blobs"))?;
        let bus = EventBus::default();
        let (tx, rx) = mpsc::channel(4096);
        let state = Tx {
            conn,
            blobs: blobs.clone(),
            events: Vec::new(),
            unreferenced: Vec::new(),
            now: 0,
            queue_changed: false,
        };
        let queue_signal = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(group_commit::run(
            state,
            rx,
            bus.clone(),
            queue_signal.clone(),
        ));
        Ok(Store {
            inner: Arc::new(Inner {
                reads,
                queue_signal,
                blobs,
                bus,
                db_path,
            }),
            tx,
        })
    }

    /// Commits pending writes, checkpoints the WAL and closes the database. Writes attempted
    /// afterwards, through any handle, fail with [`StoreError::Closed`].
    pub async fn close(self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
        self.inner.reads.close().await;
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// Notified after a commit that changed the outbound queue (in this process).
    pub fn queue_signal(&self) -> Arc<tokio::sync::Notify> {
        self.inner.queue_signal.clone()
    }

    /// The event bus: every durable change to mail is announced here.
    pub fn events(&self) -> &EventBus {
        &self.inner.bus
    }

    pub(crate) fn reads(&self) -> &SqlitePool {
        &self.inner.reads
    }

    /// Runs a job in the writer and waits until it is durable.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        run: impl for<'a> FnOnce(&'a mut Tx) -> futures::future::BoxFuture<'a, Result<T>>
        + Send
        + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let run: JobFn = Box::new(move |tx| {
            let fut = run(tx);
            Box::pin(async move { fut.await.map(|v| Box::new(v) as Output) })
        });
        self.tx
            .send(Msg::Job(Job { run, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        let out = rx.await.map_err(|_| StoreError::Closed)??;
        out.downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::Database("writer returned an unexpected type".into()))
    }

    /// Checks the database for corruption.
    pub async fn check(&self) -> Result<()> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        schema::quick_check(&mut conn).await
    }

    /// Removes a blob written for a message that was then refused, if nothing refers to it.
    pub async fn discard_blob(&self, id: BlobId) {
        let _ = self
            .write(move |tx| {
                Box::pin(async move {
                    let refs: Option<i64> =
                        sqlx::query_scalar("SELECT refs FROM blob WHERE hash = ?")
                            .bind(&id.0[..])
                            .fetch_optional(&mut tx.conn)
                            .await
                            .map_err(db)?;
                    if refs.is_none() {
                        tx.blobs.remove(&id)?;
                    }
                    Ok(())
                })
            })
            .await;
    }

    /// Which of these blobs have an index row.
    async fn known_blobs(&self, ids: &[BlobId]) -> Result<std::collections::HashSet<BlobId>> {
        let marks = vec!["?"; ids.len()].join(",");
        // Only `?` placeholders are spliced in; every value is bound.
        let sql = format!("SELECT hash FROM blob WHERE hash IN ({marks})");
        let mut q = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(&id.0[..]);
        }
        let rows = q.fetch_all(self.reads()).await.map_err(db)?;
        Ok(rows
            .iter()
            .filter_map(|h| <[u8; 32]>::try_from(h.as_slice()).ok().map(BlobId))
            .collect())
    }

    /// Removes blob files that no index row refers to and that are older than `min_age`: what a
    /// crash between writing a blob and committing its row leaves behind. Returns how many.
    pub async fn sweep_orphan_blobs(&self, min_age: Duration) -> Result<usize> {
        let blobs = self.blobs().clone();
        let candidates = tokio::task::spawn_blocking(move || blobs.list_older_than(min_age))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))??;
        let mut removed = 0;
        for chunk in candidates.chunks(500) {
            // Nearly every file is referenced: one read finds the few that are not, so a
            // store of a million messages does not queue a million jobs on the writer.
            let known = self.known_blobs(chunk).await?;
            let orphans: Vec<BlobId> = chunk
                .iter()
                .filter(|id| !known.contains(*id))
                .copied()
                .collect();
            if orphans.is_empty() {
                continue;
            }
            // Confirmed in the writer, so no append can reference a blob in between.
            removed += self
                .write(move |tx| {
                    Box::pin(async move {
                        let mut gone = 0;
                        for id in orphans {
                            let refs: Option<i64> =
                                sqlx::query_scalar("SELECT refs FROM blob WHERE hash = ?")
                                    .bind(&id.0[..])
                                    .fetch_optional(&mut tx.conn)
                                    .await
                                    .map_err(db)?;
                            if refs.is_none() {
                                tx.blobs.remove(&id)?;
                                gone += 1;
                            }
                        }
                        Ok(gone)
                    })
                })
                .await?;
        }
        Ok(removed)
    }
}

/// Parses and summarises a message and writes its blob: the work before an append that does
/// not need the writer. Large messages are handled on a blocking thread.
pub async fn prepare_message(blobs: &BlobStore, raw: Arc<[u8]>) -> Result<(BlobRef, String)> {
    let blobs = blobs.clone();
    tokio::task::spawn_blocking(move || {
        let json = summary::to_json(&summary::summarize(&raw))?;
        let blob = blobs.put_sync(&raw)?;
        Ok((blob, json))
    })
    .await
    .map_err(|e| StoreError::Io(e.to_string()))?
}
