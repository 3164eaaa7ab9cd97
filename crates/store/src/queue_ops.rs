//! The outbound queue: messages waiting for remote recipients, with one state per recipient.
//! A message enters the queue in the same transaction as its local copies, so a `250` to the
//! client means both are on disk. A queued message keeps one reference to its blob until every
//! recipient is final and reported.

use crate::blob::{BlobId, BlobRef};
use crate::group_commit::Tx;
use crate::mail_ops::{DeliveryTarget, append_in};
use crate::model::{Appended, NewMessage};
use crate::{Result, Store, StoreError, db};
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::collections::HashSet;

/// A recipient for the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewQueuedRcpt {
    pub address: String,
    pub orcpt: Option<String>,
    /// DSN NOTIFY bits (RFC 3461 §4.1), as smtp-proto numbers them.
    pub notify: u64,
}

/// A message to queue. Its blob must be durable already.
#[derive(Clone, Debug)]
pub struct NewQueued {
    pub qid: String,
    pub blob: BlobRef,
    /// The summary, in case this is the blob's first reference.
    pub summary: String,
    /// Bytes at the start of the blob not to send (a Return-Path meant for local copies).
    pub skip: u64,
    pub sender: String,
    pub envid: Option<String>,
    pub ret_full: Option<bool>,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub auth_user: Option<String>,
    pub is_dsn: bool,
    pub rcpts: Vec<NewQueuedRcpt>,
    /// When the first attempt is due (Unix seconds).
    pub first_attempt: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    Waiting,
    Delivered,
    Failed,
    Expired,
}

impl RcptState {
    fn from_i64(n: i64) -> RcptState {
        match n {
            1 => RcptState::Delivered,
            2 => RcptState::Failed,
            3 => RcptState::Expired,
            _ => RcptState::Waiting,
        }
    }

    fn as_i64(self) -> i64 {
        match self {
            RcptState::Waiting => 0,
            RcptState::Delivered => 1,
            RcptState::Failed => 2,
            RcptState::Expired => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedRcpt {
    pub id: i64,
    pub address: String,
    pub domain: String,
    pub orcpt: Option<String>,
    pub notify: u64,
    pub state: RcptState,
    pub attempts: i64,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    pub delay_notified: bool,
    pub reported: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedMessage {
    pub id: i64,
    pub qid: String,
    #[serde(serialize_with = "hex")]
    pub blob: BlobId,
    pub skip: u64,
    pub size: u64,
    pub sender: String,
    pub envid: Option<String>,
    pub ret_full: Option<bool>,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub auth_user: Option<String>,
    pub is_dsn: bool,
    pub held: bool,
    pub created: i64,
    pub rcpts: Vec<QueuedRcpt>,
}

fn hex<S: serde::Serializer>(b: &BlobId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&b.to_hex())
}

/// What one delivery attempt for a recipient came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        remote_mta: Option<String>,
        reply: String,
    },
    /// Try again at `retry_at`.
    Deferred {
        error: String,
        remote_mta: Option<String>,
        retry_at: i64,
    },
    /// Permanent failure (5xx, or nothing left to try).
    Failed {
        diagnostic: String,
        remote_mta: Option<String>,
    },
    /// The queue lifetime ran out.
    Expired { diagnostic: String },
}

const MSG_COLS: &str = "id, qid, blob, skip, size, sender, envid, ret_full, smtputf8, eight_bit, \
                        auth_user, is_dsn, held, created";
const RCPT_COLS: &str = "id, address, domain, orcpt, notify, state, attempts, next_attempt, \
                         last_error, diagnostic, remote_mta, delay_notified, reported";

fn msg_row(r: &SqliteRow) -> Result<QueuedMessage> {
    let blob: Vec<u8> = r.try_get("blob").map_err(db)?;
    Ok(QueuedMessage {
        id: r.try_get("id").map_err(db)?,
        qid: r.try_get("qid").map_err(db)?,
        blob: BlobId::from_slice(&blob)
            .ok_or_else(|| StoreError::Database("malformed blob id in the queue".into()))?,
        skip: r.try_get::<i64, _>("skip").map_err(db)? as u64,
        size: r.try_get::<i64, _>("size").map_err(db)? as u64,
        sender: r.try_get("sender").map_err(db)?,
        envid: r.try_get("envid").map_err(db)?,
        ret_full: r.try_get("ret_full").map_err(db)?,
        smtputf8: r.try_get("smtputf8").map_err(db)?,
        eight_bit: r.try_get("eight_bit").map_err(db)?,
        auth_user: r.try_get("auth_user").map_err(db)?,
        is_dsn: r.try_get("is_dsn").map_err(db)?,
        held: r.try_get("held").map_err(db)?,
        created: r.try_get("created").map_err(db)?,
        rcpts: Vec::new(),
    })
}

fn rcpt_row(r: &SqliteRow) -> Result<QueuedRcpt> {
    Ok(QueuedRcpt {
        id: r.try_get("id").map_err(db)?,
        address: r.try_get("address").map_err(db)?,
        domain: r.try_get("domain").map_err(db)?,
        orcpt: r.try_get("orcpt").map_err(db)?,
        notify: r.try_get::<i64, _>("notify").map_err(db)? as u64,
        state: RcptState::from_i64(r.try_get("state").map_err(db)?),
        attempts: r.try_get("attempts").map_err(db)?,
        next_attempt: r.try_get("next_attempt").map_err(db)?,
        last_error: r.try_get("last_error").map_err(db)?,
        diagnostic: r.try_get("diagnostic").map_err(db)?,
        remote_mta: r.try_get("remote_mta").map_err(db)?,
        delay_notified: r.try_get("delay_notified").map_err(db)?,
        reported: r.try_get("reported").map_err(db)?,
    })
}

/// The domain a recipient is routed by: what follows the last `@`, lower-cased.
pub fn routing_domain(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_lowercase())
        .unwrap_or_default()
}

/// Queues a message inside the writer.
pub(crate) async fn enqueue_in(tx: &mut Tx, q: &NewQueued) -> Result<i64> {
    if q.rcpts.is_empty() {
        return Err(StoreError::Invalid(
            "a queued message needs a recipient".into(),
        ));
    }
    crate::mail_ops::reference_blob(tx, &q.blob, &q.summary).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO queue_message (qid, blob, skip, size, sender, envid, ret_full, smtputf8, \
         eight_bit, auth_user, is_dsn, held, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) \
         RETURNING id",
    )
    .bind(&q.qid)
    .bind(&q.blob.id.0[..])
    .bind(q.skip as i64)
    .bind(q.blob.size.saturating_sub(q.skip) as i64)
    .bind(&q.sender)
    .bind(&q.envid)
    .bind(q.ret_full)
    .bind(q.smtputf8)
    .bind(q.eight_bit)
    .bind(&q.auth_user)
    .bind(q.is_dsn)
    .bind(tx.now)
    .fetch_one(&mut tx.conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Exists(format!("queue entry {}", q.qid)),
        _ => db(e),
    })?;
    for r in &q.rcpts {
        sqlx::query(
            "INSERT INTO queue_rcpt (message_id, address, domain, orcpt, notify, next_attempt, updated) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&r.address)
        .bind(routing_domain(&r.address))
        .bind(&r.orcpt)
        .bind(r.notify as i64)
        .bind(q.first_attempt)
        .bind(tx.now)
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
    }
    tx.queue_changed = true;
    Ok(id)
}

/// Removes a queued message whose recipients are all done, dropping its blob reference.
async fn finish_if_done(tx: &mut Tx, message_id: i64) -> Result<bool> {
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM queue_rcpt WHERE message_id = ? AND (state = 0 OR (state IN (2, 3) AND reported = 0))",
    )
    .bind(message_id)
    .fetch_one(&mut tx.conn)
    .await
    .map_err(db)?;
    if open > 0 {
        return Ok(false);
    }
    remove_message(tx, message_id).await?;
    Ok(true)
}

async fn remove_message(tx: &mut Tx, message_id: i64) -> Result<()> {
    let blob: Option<Vec<u8>> = sqlx::query_scalar("SELECT blob FROM queue_message WHERE id = ?")
        .bind(message_id)
        .fetch_optional(&mut tx.conn)
        .await
        .map_err(db)?;
    let Some(blob) = blob else { return Ok(()) };
    sqlx::query("DELETE FROM queue_rcpt WHERE message_id = ?")
        .bind(message_id)
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
    sqlx::query("DELETE FROM queue_message WHERE id = ?")
        .bind(message_id)
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
    crate::mail_ops::release_blobs(tx, vec![(blob, 1)]).await
}

impl Store {
    /// Delivers a message to local folders and queues it for remote recipients, all in one
    /// transaction: either everything is on disk or nothing is.
    pub async fn deliver_and_enqueue(
        &self,
        blob: BlobRef,
        summary: String,
        internal_date: i64,
        targets: Vec<DeliveryTarget>,
        queued: Vec<NewQueued>,
    ) -> Result<(Vec<Appended>, Vec<i64>)> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let mut out = Vec::with_capacity(targets.len());
                for t in targets {
                    let (blob, summary) = t.message.unwrap_or_else(|| (blob, summary.clone()));
                    let msg = NewMessage {
                        blob,
                        summary,
                        flags: t.flags,
                        keywords: t.keywords,
                        internal_date,
                    };
                    out.push(append_in(tx, t.folder, &msg, true).await?);
                }
                let mut ids = Vec::with_capacity(queued.len());
                for q in &queued {
                    ids.push(enqueue_in(tx, q).await?);
                }
                Ok((out, ids))
            })
        })
        .await
    }

    /// Queues a message (a DSN, a forward).
    pub async fn enqueue(&self, q: NewQueued) -> Result<i64> {
        self.write(move |tx: &mut Tx| Box::pin(async move { enqueue_in(tx, &q).await }))
            .await
    }

    async fn queue_query(&self, filter: &str, bind: Option<&str>) -> Result<Vec<QueuedMessage>> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        let sql = format!("SELECT {MSG_COLS} FROM queue_message {filter} ORDER BY id");
        // Only fixed SQL fragments are spliced in; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(b) = bind {
            q = q.bind(b.to_string());
        }
        let rows = q.fetch_all(&mut *conn).await.map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut m = msg_row(&r)?;
            let rcpts = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {RCPT_COLS} FROM queue_rcpt WHERE message_id = ? ORDER BY id"
            )))
            .bind(m.id)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
            m.rcpts = rcpts.iter().map(rcpt_row).collect::<Result<_>>()?;
            out.push(m);
        }
        Ok(out)
    }

    /// Every queued message with all its recipients.
    pub async fn queue_list(&self) -> Result<Vec<QueuedMessage>> {
        self.queue_query("", None).await
    }

    /// A queued message by its row id, with all its recipients.
    pub async fn queue_list_one(&self, id: i64) -> Result<Option<QueuedMessage>> {
        Ok(self
            .queue_query("WHERE id = ?", Some(&id.to_string()))
            .await?
            .into_iter()
            .next())
    }

    pub async fn queue_get(&self, qid: &str) -> Result<Option<QueuedMessage>> {
        Ok(self
            .queue_query("WHERE qid = ?", Some(qid))
            .await?
            .into_iter()
            .next())
    }

    /// Messages with recipients due by `now`, not held; each carries only its due recipients.
    /// Recipients in `busy` (in a delivery now) are left out, and messages with no other due
    /// recipient are not read at all: the runner scans after every delivery, while most of the
    /// queue is being delivered.
    pub async fn queue_due(
        &self,
        now: i64,
        limit: i64,
        busy: &HashSet<i64>,
    ) -> Result<Vec<QueuedMessage>> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        let due: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT r.message_id, r.id FROM queue_rcpt r JOIN queue_message m ON m.id = r.message_id \
             WHERE r.state = 0 AND r.next_attempt <= ? AND m.held = 0 ORDER BY r.message_id LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut ids: Vec<i64> = due
            .iter()
            .filter(|(_, rcpt)| !busy.contains(rcpt))
            .map(|(message, _)| *message)
            .collect();
        ids.dedup();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(r) = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MSG_COLS} FROM queue_message WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            else {
                continue;
            };
            let mut m = msg_row(&r)?;
            let rcpts = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {RCPT_COLS} FROM queue_rcpt WHERE message_id = ? AND state = 0 AND next_attempt <= ? ORDER BY id"
            )))
            .bind(id)
            .bind(now)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
            m.rcpts = rcpts.iter().map(rcpt_row).collect::<Result<_>>()?;
            m.rcpts.retain(|r| !busy.contains(&r.id));
            out.push(m);
        }
        Ok(out)
    }

    /// Messages with recipients that failed and were not yet reported to the sender.
    pub async fn queue_unreported(&self) -> Result<Vec<QueuedMessage>> {
        self.queue_query(
            "WHERE id IN (SELECT message_id FROM queue_rcpt WHERE state IN (2, 3) AND reported = 0)",
            None,
        )
        .await
    }

    /// When the next recipient is due, if any is waiting.
    pub async fn queue_next_due(&self) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "SELECT min(r.next_attempt) FROM queue_rcpt r JOIN queue_message m ON m.id = r.message_id \
             WHERE r.state = 0 AND m.held = 0",
        )
        .fetch_one(self.reads())
        .await
        .map_err(db)
    }

    /// Records an attempt's outcome for recipients of one message. Returns whether the message
    /// left the queue (every recipient final and reported).
    pub async fn queue_record(
        &self,
        message_id: i64,
        outcomes: Vec<(i64, Attempt)>,
    ) -> Result<bool> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                for (rcpt, outcome) in &outcomes {
                    let (state, next, error, diagnostic, mta): (RcptState, Option<i64>, Option<&str>, Option<&str>, Option<&str>) =
                        match outcome {
                            Attempt::Delivered { remote_mta, reply } => {
                                (RcptState::Delivered, None, None, Some(reply), remote_mta.as_deref())
                            }
                            Attempt::Deferred { error, remote_mta, retry_at } => {
                                (RcptState::Waiting, Some(*retry_at), Some(error), Some(error), remote_mta.as_deref())
                            }
                            Attempt::Failed { diagnostic, remote_mta } => {
                                (RcptState::Failed, None, Some(diagnostic), Some(diagnostic), remote_mta.as_deref())
                            }
                            Attempt::Expired { diagnostic } => {
                                (RcptState::Expired, None, Some(diagnostic), Some(diagnostic), None)
                            }
                        };
                    sqlx::query(
                        "UPDATE queue_rcpt SET state = ?, attempts = attempts + 1, \
                         next_attempt = coalesce(?, next_attempt), last_error = coalesce(?, last_error), \
                         diagnostic = coalesce(?, diagnostic), remote_mta = coalesce(?, remote_mta), updated = ? \
                         WHERE id = ? AND message_id = ?",
                    )
                    .bind(state.as_i64())
                    .bind(next)
                    .bind(error)
                    .bind(diagnostic)
                    .bind(mta)
                    .bind(tx.now)
                    .bind(rcpt)
                    .bind(message_id)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                }
                tx.queue_changed = true;
                finish_if_done(tx, message_id).await
            })
        })
        .await
    }

    /// Marks recipients as reported to the sender (a DSN was queued for them, or none is due),
    /// and marks delay notices sent.
    pub async fn queue_mark(
        &self,
        message_id: i64,
        reported: Vec<i64>,
        delay_notified: Vec<i64>,
    ) -> Result<bool> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                for id in &reported {
                    sqlx::query(
                        "UPDATE queue_rcpt SET reported = 1 WHERE id = ? AND message_id = ?",
                    )
                    .bind(id)
                    .bind(message_id)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                }
                for id in &delay_notified {
                    sqlx::query(
                        "UPDATE queue_rcpt SET delay_notified = 1 WHERE id = ? AND message_id = ?",
                    )
                    .bind(id)
                    .bind(message_id)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                }
                finish_if_done(tx, message_id).await
            })
        })
        .await
    }

    /// Makes waiting recipients due now: of one message, or of all (`None`, a flush).
    pub async fn queue_retry_now(&self, qid: Option<&str>) -> Result<u64> {
        let qid = qid.map(str::to_string);
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE queue_rcpt SET next_attempt = ? WHERE state = 0 AND \
                     (?1 IS NULL OR message_id IN (SELECT id FROM queue_message WHERE qid = ?2))",
                )
                .bind(tx.now)
                .bind(&qid)
                .bind(&qid)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?
                .rows_affected();
                tx.queue_changed = true;
                Ok(n)
            })
        })
        .await
    }

    /// Holds a message (no delivery attempts) or releases it.
    pub async fn queue_hold(&self, qid: &str, held: bool) -> Result<()> {
        let qid = qid.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query("UPDATE queue_message SET held = ? WHERE qid = ?")
                    .bind(held)
                    .bind(&qid)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("queue entry {qid}")));
                }
                tx.queue_changed = true;
                Ok(())
            })
        })
        .await
    }

    /// Deletes a queued message without delivering or reporting it.
    pub async fn queue_delete(&self, qid: &str) -> Result<()> {
        let qid = qid.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM queue_message WHERE qid = ?")
                        .bind(&qid)
                        .fetch_optional(&mut tx.conn)
                        .await
                        .map_err(db)?;
                let Some(id) = id else {
                    return Err(StoreError::NotFound(format!("queue entry {qid}")));
                };
                remove_message(tx, id).await
            })
        })
        .await
    }
}
