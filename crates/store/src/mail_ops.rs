//! Folders and messages: append, deliver, flags, copy, move, expunge.
//!
//! The rules every operation keeps (RFC 9051 §2.3.1.1, RFC 7162 §3.1):
//! - UIDs in a folder only grow: a new message takes UIDNEXT, which then grows by one.
//! - Every operation that changes a folder takes the next MODSEQ of that folder (one value for
//!   all messages it touches) and HIGHESTMODSEQ becomes that value.
//! - An expunged message leaves a tombstone with the MODSEQ of its expunge.
//! - Quota usage changes in the same transaction as the messages.
//! - Every change emits an event after it is durable.

use crate::blob::BlobId;
use crate::group_commit::Tx;
use crate::model::*;
use crate::summary::Summary;
use crate::{Result, Store, StoreError, db};
use mailstead_core::event::{Change, Event, FolderId, MailboxId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::HashMap;

macro_rules! folder_cols {
    () => {
        "id, mailbox_id, name, special_use, uidvalidity, uidnext, highestmodseq"
    };
}

fn folder_row(r: &SqliteRow) -> Result<Folder> {
    Ok(Folder {
        id: r.try_get("id").map_err(db)?,
        mailbox_id: r.try_get("mailbox_id").map_err(db)?,
        name: r.try_get("name").map_err(db)?,
        special_use: r.try_get("special_use").map_err(db)?,
        uidvalidity: r.try_get::<i64, _>("uidvalidity").map_err(db)? as u32,
        uidnext: r.try_get::<i64, _>("uidnext").map_err(db)? as u32,
        highestmodseq: r.try_get::<i64, _>("highestmodseq").map_err(db)? as u64,
    })
}

fn message_row(r: &SqliteRow) -> Result<MessageMeta> {
    let blob: Vec<u8> = r.try_get("blob").map_err(db)?;
    let keywords: String = r.try_get("keywords").map_err(db)?;
    Ok(MessageMeta {
        uid: r.try_get::<i64, _>("uid").map_err(db)? as u32,
        modseq: r.try_get::<i64, _>("modseq").map_err(db)? as u64,
        flags: Flags(r.try_get::<i64, _>("flags").map_err(db)? as u8),
        keywords: split_keywords(&keywords),
        internal_date: r.try_get("internal_date").map_err(db)?,
        size: r.try_get::<i64, _>("size").map_err(db)? as u64,
        blob: BlobId::from_slice(&blob)
            .ok_or_else(|| StoreError::Database("a message row has a malformed blob id".into()))?,
    })
}

macro_rules! message_cols {
    () => {
        "uid, modseq, flags, keywords, internal_date, size, blob"
    };
}

fn split_keywords(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

fn join_keywords(k: &[String]) -> String {
    let mut sorted: Vec<&str> = k
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(" ")
}

/// IMAP's INBOX is case-insensitive (RFC 9051 §5.1); every other name is taken as given.
pub fn canonical_folder_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name.to_string()
    }
}

async fn folder_in(conn: &mut SqliteConnection, id: FolderId) -> Result<Folder> {
    let row = sqlx::query(concat!(
        "SELECT ",
        folder_cols!(),
        " FROM folder WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    match row {
        Some(r) => folder_row(&r),
        None => Err(StoreError::NotFound(format!("folder {id}"))),
    }
}

/// Takes the next MODSEQ of a folder.
async fn bump_modseq(conn: &mut SqliteConnection, folder: FolderId) -> Result<u64> {
    let m: i64 = sqlx::query_scalar(
        "UPDATE folder SET highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING highestmodseq",
    )
    .bind(folder)
    .fetch_one(conn)
    .await
    .map_err(db)?;
    Ok(m as u64)
}

/// The next UIDVALIDITY: time-based, and strictly greater than any given before, so a folder
/// deleted and created again within one second still gets a new one (RFC 9051 §2.3.1.1).
async fn next_uidvalidity(tx: &mut Tx) -> Result<u32> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'next_uidvalidity'")
            .fetch_optional(&mut tx.conn)
            .await
            .map_err(db)?;
    let stored: u32 = stored.and_then(|s| s.parse().ok()).unwrap_or(1);
    let now = u32::try_from(tx.now).unwrap_or(u32::MAX - 1);
    let v = stored.max(now).max(1);
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('next_uidvalidity', ?) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(v.saturating_add(1).to_string())
    .execute(&mut tx.conn)
    .await
    .map_err(db)?;
    Ok(v)
}

/// Creates the missing superior folders of `name` (RFC 9051 §6.3.4, §6.3.6): `a` and `a/b`
/// for `a/b/c`.
async fn create_parents(tx: &mut Tx, mailbox: MailboxId, name: &str) -> Result<()> {
    let parts: Vec<&str> = name.split(FOLDER_SEPARATOR).collect();
    for i in 1..parts.len() {
        let parent = parts[..i].join(&FOLDER_SEPARATOR.to_string());
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM folder WHERE mailbox_id = ? AND name = ?")
                .bind(mailbox)
                .bind(&parent)
                .fetch_optional(&mut tx.conn)
                .await
                .map_err(db)?;
        if exists.is_none() {
            folder_insert(tx, mailbox, &parent, None).await?;
        }
    }
    Ok(())
}

pub(crate) async fn folder_insert(
    tx: &mut Tx,
    mailbox: MailboxId,
    name: &str,
    special_use: Option<&str>,
) -> Result<Folder> {
    let uidvalidity = next_uidvalidity(tx).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO folder (mailbox_id, name, special_use, uidvalidity) \
         VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(mailbox)
    .bind(name)
    .bind(special_use)
    .bind(i64::from(uidvalidity))
    .fetch_one(&mut tx.conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Exists(format!("folder {name}"))
        }
        _ => db(e),
    })?;
    // New folders start subscribed, so clients that show only subscribed folders see them.
    sqlx::query("INSERT OR IGNORE INTO subscription (mailbox_id, name) VALUES (?, ?)")
        .bind(mailbox)
        .bind(name)
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
    tx.events.push(Event {
        mailbox,
        folder: id,
        modseq: 1,
        change: Change::Folder,
    });
    Ok(Folder {
        id,
        mailbox_id: mailbox,
        name: name.to_string(),
        special_use: special_use.map(str::to_string),
        uidvalidity,
        uidnext: 1,
        highestmodseq: 1,
    })
}

/// Drops references to blobs; rows reaching zero are deleted and their files removed after
/// the commit (see `group_commit`).
pub(crate) async fn release_blobs(tx: &mut Tx, blobs: Vec<(Vec<u8>, i64)>) -> Result<()> {
    for (hash, n) in blobs {
        let left: Option<i64> =
            sqlx::query_scalar("UPDATE blob SET refs = refs - ? WHERE hash = ? RETURNING refs")
                .bind(n)
                .bind(&hash)
                .fetch_optional(&mut tx.conn)
                .await
                .map_err(db)?;
        if left.is_some_and(|l| l <= 0) {
            sqlx::query("DELETE FROM blob WHERE hash = ?")
                .bind(&hash)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
            if let Some(id) = BlobId::from_slice(&hash) {
                tx.unreferenced.push(id);
            }
        }
    }
    Ok(())
}

async fn adjust_usage(tx: &mut Tx, mailbox: MailboxId, bytes: i64, messages: i64) -> Result<()> {
    sqlx::query(
        "UPDATE mailbox SET used_bytes = max(0, used_bytes + ?), \
         used_messages = max(0, used_messages + ?) WHERE id = ?",
    )
    .bind(bytes)
    .bind(messages)
    .bind(mailbox)
    .execute(&mut tx.conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Fails with `OverQuota` when `bytes` more would not fit the mailbox's quota. With `grace`
/// (mail delivery), a mailbox still under its quota may take a last message that goes over by
/// up to a tenth of the quota, as Dovecot's default `quota_grace = 10%%` allows.
async fn check_room(tx: &mut Tx, mailbox: MailboxId, bytes: i64, grace: bool) -> Result<()> {
    let r = sqlx::query("SELECT quota, used_bytes, address FROM mailbox WHERE id = ?")
        .bind(mailbox)
        .fetch_optional(&mut tx.conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
    let quota: i64 = r.try_get("quota").map_err(db)?;
    let used: i64 = r.try_get("used_bytes").map_err(db)?;
    let allowed = if grace && used < quota {
        quota + quota / 10
    } else {
        quota
    };
    if quota > 0 && used + bytes > allowed {
        let address: String = r.try_get("address").map_err(db)?;
        return Err(StoreError::OverQuota(format!(
            "mailbox {address} is over quota: {used} of {quota} bytes used, {bytes} more do not fit"
        )));
    }
    Ok(())
}

/// Removes a folder with all its messages and tombstones.
pub(crate) async fn folder_remove(tx: &mut Tx, folder: FolderId) -> Result<()> {
    let f = folder_in(&mut tx.conn, folder).await?;
    let blobs: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT blob, count(*) FROM message WHERE folder_id = ? GROUP BY blob")
            .bind(folder)
            .fetch_all(&mut tx.conn)
            .await
            .map_err(db)?;
    let (bytes, count): (i64, i64) =
        sqlx::query_as("SELECT coalesce(sum(size), 0), count(*) FROM message WHERE folder_id = ?")
            .bind(folder)
            .fetch_one(&mut tx.conn)
            .await
            .map_err(db)?;
    release_blobs(tx, blobs).await?;
    adjust_usage(tx, f.mailbox_id, -bytes, -count).await?;
    for sql in [
        "DELETE FROM message WHERE folder_id = ?",
        "DELETE FROM expunged WHERE folder_id = ?",
        "DELETE FROM folder WHERE id = ?",
    ] {
        sqlx::query(sql)
            .bind(folder)
            .execute(&mut tx.conn)
            .await
            .map_err(db)?;
    }
    tx.events.push(Event {
        mailbox: f.mailbox_id,
        folder,
        modseq: f.highestmodseq,
        change: Change::Folder,
    });
    Ok(())
}

/// Adds one reference to a blob, creating its row (and checking its file exists) the first
/// time. The existence check runs in the writer, where all blob removals happen, so a blob
/// being removed cannot be referenced again by mistake.
pub(crate) async fn reference_blob(
    tx: &mut Tx,
    blob: &crate::BlobRef,
    summary: &str,
) -> Result<()> {
    let updated = sqlx::query("UPDATE blob SET refs = refs + 1 WHERE hash = ?")
        .bind(&blob.id.0[..])
        .execute(&mut tx.conn)
        .await
        .map_err(db)?
        .rows_affected();
    if updated == 0 {
        if !tx.blobs.exists(&blob.id) {
            return Err(StoreError::BlobMissing(blob.id.to_hex()));
        }
        sqlx::query("INSERT INTO blob (hash, size, refs, summary) VALUES (?, ?, 1, ?)")
            .bind(&blob.id.0[..])
            .bind(blob.size as i64)
            .bind(summary)
            .execute(&mut tx.conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

async fn insert_message(
    tx: &mut Tx,
    folder: &Folder,
    uid: u32,
    modseq: u64,
    msg: &NewMessage,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message (folder_id, uid, modseq, flags, keywords, internal_date, size, blob) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(folder.id)
    .bind(i64::from(uid))
    .bind(modseq as i64)
    .bind(i64::from(msg.flags.0))
    .bind(join_keywords(&msg.keywords))
    .bind(msg.internal_date)
    .bind(msg.blob.size as i64)
    .bind(&msg.blob.id.0[..])
    .execute(&mut tx.conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Appends one message to a folder inside the writer.
pub(crate) async fn append_in(
    tx: &mut Tx,
    folder: FolderId,
    msg: &NewMessage,
    grace: bool,
) -> Result<Appended> {
    let f = folder_in(&mut tx.conn, folder).await?;
    check_room(tx, f.mailbox_id, msg.blob.size as i64, grace).await?;
    reference_blob(tx, &msg.blob, &msg.summary).await?;
    let modseq = bump_modseq(&mut tx.conn, folder).await?;
    let uid = f.uidnext;
    sqlx::query("UPDATE folder SET uidnext = ? WHERE id = ?")
        .bind(i64::from(uid) + 1)
        .bind(folder)
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
    insert_message(tx, &f, uid, modseq, msg).await?;
    adjust_usage(tx, f.mailbox_id, msg.blob.size as i64, 1).await?;
    tx.events.push(Event {
        mailbox: f.mailbox_id,
        folder,
        modseq,
        change: Change::Added { uids: vec![uid] },
    });
    Ok(Appended {
        folder,
        uidvalidity: f.uidvalidity,
        uid,
        modseq,
    })
}

/// Messages whose UIDs are in `uids`, in UID order.
async fn select_uids(
    conn: &mut SqliteConnection,
    folder: FolderId,
    uids: &[u32],
) -> Result<Vec<MessageMeta>> {
    let mut out = Vec::with_capacity(uids.len());
    // Chunks keep the statement under SQLite's bound-parameter limit.
    for chunk in uids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            concat!(
                "SELECT ",
                message_cols!(),
                " FROM message WHERE folder_id = ? AND uid IN ({}) ORDER BY uid"
            ),
            marks
        );
        // Only `?` placeholders are spliced in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(folder);
        for uid in chunk {
            q = q.bind(i64::from(*uid));
        }
        for r in q.fetch_all(&mut *conn).await.map_err(db)? {
            out.push(message_row(&r)?);
        }
    }
    out.sort_by_key(|m| m.uid);
    Ok(out)
}

/// Copies messages into `dst` within the writer; returns (source UID, new UID) pairs.
async fn copy_in(
    tx: &mut Tx,
    src: FolderId,
    uids: &[u32],
    dst: FolderId,
) -> Result<(Folder, Vec<(u32, u32)>, Vec<MessageMeta>)> {
    let s = folder_in(&mut tx.conn, src).await?;
    let d = folder_in(&mut tx.conn, dst).await?;
    if s.mailbox_id != d.mailbox_id {
        return Err(StoreError::Invalid(
            "messages can only be copied within one mailbox".into(),
        ));
    }
    let msgs = select_uids(&mut tx.conn, src, uids).await?;
    if msgs.is_empty() {
        return Ok((d, Vec::new(), msgs));
    }
    let bytes: i64 = msgs.iter().map(|m| m.size as i64).sum();
    if src != dst {
        check_room(tx, d.mailbox_id, bytes, false).await?;
    }
    let modseq = bump_modseq(&mut tx.conn, dst).await?;
    let mut pairs = Vec::with_capacity(msgs.len());
    let mut uid = d.uidnext;
    for m in &msgs {
        sqlx::query("UPDATE blob SET refs = refs + 1 WHERE hash = ?")
            .bind(&m.blob.0[..])
            .execute(&mut tx.conn)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO message (folder_id, uid, modseq, flags, keywords, internal_date, size, blob) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(dst)
        .bind(i64::from(uid))
        .bind(modseq as i64)
        .bind(i64::from(m.flags.0))
        .bind(join_keywords(&m.keywords))
        .bind(m.internal_date)
        .bind(m.size as i64)
        .bind(&m.blob.0[..])
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
        pairs.push((m.uid, uid));
        uid += 1;
    }
    sqlx::query("UPDATE folder SET uidnext = ? WHERE id = ?")
        .bind(i64::from(uid))
        .bind(dst)
        .execute(&mut tx.conn)
        .await
        .map_err(db)?;
    adjust_usage(tx, d.mailbox_id, bytes, msgs.len() as i64).await?;
    tx.events.push(Event {
        mailbox: d.mailbox_id,
        folder: dst,
        modseq,
        change: Change::Added {
            uids: pairs.iter().map(|p| p.1).collect(),
        },
    });
    Ok((d, pairs, msgs))
}

/// Removes messages from a folder and leaves tombstones.
async fn remove_in(tx: &mut Tx, folder: &Folder, msgs: &[MessageMeta]) -> Result<Vec<u32>> {
    if msgs.is_empty() {
        return Ok(Vec::new());
    }
    let modseq = bump_modseq(&mut tx.conn, folder.id).await?;
    let mut blobs: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut bytes = 0i64;
    for m in msgs {
        sqlx::query("DELETE FROM message WHERE folder_id = ? AND uid = ?")
            .bind(folder.id)
            .bind(i64::from(m.uid))
            .execute(&mut tx.conn)
            .await
            .map_err(db)?;
        sqlx::query("INSERT OR REPLACE INTO expunged (folder_id, uid, modseq) VALUES (?, ?, ?)")
            .bind(folder.id)
            .bind(i64::from(m.uid))
            .bind(modseq as i64)
            .execute(&mut tx.conn)
            .await
            .map_err(db)?;
        *blobs.entry(m.blob.0.to_vec()).or_default() += 1;
        bytes += m.size as i64;
    }
    release_blobs(tx, blobs.into_iter().collect()).await?;
    adjust_usage(tx, folder.mailbox_id, -bytes, -(msgs.len() as i64)).await?;
    let uids: Vec<u32> = msgs.iter().map(|m| m.uid).collect();
    tx.events.push(Event {
        mailbox: folder.mailbox_id,
        folder: folder.id,
        modseq,
        change: Change::Expunged { uids: uids.clone() },
    });
    Ok(uids)
}

/// One target of a delivery.
#[derive(Clone, Debug)]
pub struct DeliveryTarget {
    pub folder: FolderId,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// Another message for this target (durable blob and its summary) instead of the
    /// delivery's: a copy a Sieve script changed.
    pub message: Option<(crate::BlobRef, String)>,
}

impl Store {
    // ---- folders ----

    pub async fn folder_list(&self, mailbox: MailboxId) -> Result<Vec<Folder>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            folder_cols!(),
            " FROM folder WHERE mailbox_id = ? ORDER BY name"
        ))
        .bind(mailbox)
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter().map(folder_row).collect()
    }

    pub async fn folder_get(&self, mailbox: MailboxId, name: &str) -> Result<Option<Folder>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            folder_cols!(),
            " FROM folder WHERE mailbox_id = ? AND name = ?"
        ))
        .bind(mailbox)
        .bind(canonical_folder_name(name))
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(folder_row).transpose()
    }

    pub async fn folder_by_id(&self, id: FolderId) -> Result<Option<Folder>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            folder_cols!(),
            " FROM folder WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(folder_row).transpose()
    }

    /// Every folder's id and UIDNEXT.
    pub async fn folder_uidnexts(&self) -> Result<Vec<(FolderId, u32)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, uidnext FROM folder")
            .fetch_all(self.reads())
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(id, next)| (id, u32::try_from(next).unwrap_or(u32::MAX)))
            .collect())
    }

    /// Creates a folder, and its missing parents (RFC 9051 §6.3.4 SHOULD).
    pub async fn folder_create(
        &self,
        mailbox: MailboxId,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Folder> {
        let name = canonical_folder_name(name.trim_end_matches(FOLDER_SEPARATOR));
        if name.is_empty() || name.split(FOLDER_SEPARATOR).any(str::is_empty) {
            return Err(StoreError::Invalid(format!(
                "{name:?} is not a valid folder name"
            )));
        }
        let special = special_use.map(str::to_string);
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                create_parents(tx, mailbox, &name).await?;
                folder_insert(tx, mailbox, &name, special.as_deref()).await
            })
        })
        .await
    }

    /// Renames a folder and everything below it. INBOX is renamed by the IMAP layer's own
    /// rule (RFC 9051 §6.3.6), not here.
    pub async fn folder_rename(&self, mailbox: MailboxId, from: &str, to: &str) -> Result<()> {
        let from = canonical_folder_name(from);
        let to = canonical_folder_name(to.trim_end_matches(FOLDER_SEPARATOR));
        if from == "INBOX" || to == "INBOX" {
            return Err(StoreError::Invalid(
                "INBOX cannot be renamed or replaced".into(),
            ));
        }
        if to.is_empty() || to.split(FOLDER_SEPARATOR).any(str::is_empty) {
            return Err(StoreError::Invalid(format!(
                "{to:?} is not a valid folder name"
            )));
        }
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let prefix = format!("{from}{FOLDER_SEPARATOR}");
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, name FROM folder WHERE mailbox_id = ? AND (name = ? OR substr(name, 1, ?) = ?)",
                )
                .bind(mailbox)
                .bind(&from)
                .bind(prefix.chars().count() as i64)
                .bind(&prefix)
                .fetch_all(&mut tx.conn)
                .await
                .map_err(db)?;
                if !rows.iter().any(|(_, n)| *n == from) {
                    return Err(StoreError::NotFound(format!("folder {from}")));
                }
                for (id, name) in rows {
                    let new_name = format!("{to}{}", &name[from.len()..]);
                    sqlx::query("UPDATE folder SET name = ? WHERE id = ?")
                        .bind(&new_name)
                        .bind(id)
                        .execute(&mut tx.conn)
                        .await
                        .map_err(|e| match &e {
                            sqlx::Error::Database(d) if d.is_unique_violation() => {
                                StoreError::Exists(format!("folder {new_name}"))
                            }
                            _ => db(e),
                        })?;
                    tx.events.push(Event { mailbox, folder: id, modseq: 0, change: Change::Folder });
                }
                // Subscriptions follow the folders they name (as in Dovecot).
                sqlx::query(
                    "UPDATE OR IGNORE subscription SET name = ? || substr(name, ?) \
                     WHERE mailbox_id = ? AND (name = ? OR substr(name, 1, ?) = ?)",
                )
                .bind(&to)
                .bind(from.chars().count() as i64 + 1)
                .bind(mailbox)
                .bind(&from)
                .bind(prefix.chars().count() as i64)
                .bind(&prefix)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                // RFC 9051 §6.3.6: the superior names of the new name are created too.
                create_parents(tx, mailbox, &to).await
            })
        })
        .await
    }

    /// Deletes a folder and its messages. INBOX and folders with subfolders are refused.
    pub async fn folder_delete(&self, mailbox: MailboxId, name: &str) -> Result<()> {
        let name = canonical_folder_name(name);
        if name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM folder WHERE mailbox_id = ? AND name = ?")
                        .bind(mailbox)
                        .bind(&name)
                        .fetch_optional(&mut tx.conn)
                        .await
                        .map_err(db)?;
                let Some(id) = id else {
                    return Err(StoreError::NotFound(format!("folder {name}")));
                };
                let children: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM folder WHERE mailbox_id = ? AND substr(name, 1, ?) = ?",
                )
                .bind(mailbox)
                .bind(name.chars().count() as i64 + 1)
                .bind(format!("{name}{FOLDER_SEPARATOR}"))
                .fetch_one(&mut tx.conn)
                .await
                .map_err(db)?;
                if children > 0 {
                    return Err(StoreError::Invalid(format!(
                        "folder {name} has subfolders; delete them first"
                    )));
                }
                folder_remove(tx, id).await
            })
        })
        .await
    }

    /// The names a mailbox's user subscribed to, existing folders or not (RFC 9051 §6.3.7).
    pub async fn subscriptions(&self, mailbox: MailboxId) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM subscription WHERE mailbox_id = ? ORDER BY name")
            .bind(mailbox)
            .fetch_all(self.reads())
            .await
            .map_err(db)
    }

    /// Adds or removes a subscription.
    pub async fn subscribe(&self, mailbox: MailboxId, name: &str, on: bool) -> Result<()> {
        let name = canonical_folder_name(name);
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let sql = if on {
                    "INSERT OR IGNORE INTO subscription (mailbox_id, name) VALUES (?, ?)"
                } else {
                    "DELETE FROM subscription WHERE mailbox_id = ? AND name = ?"
                };
                sqlx::query(sql)
                    .bind(mailbox)
                    .bind(&name)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    // ---- messages ----

    /// Appends several messages in one transaction, all or none (IMAP MULTIAPPEND, RFC 3502
    /// §6.3.11: the whole APPEND fails if one message fails).
    pub async fn append_many(
        &self,
        folder: FolderId,
        msgs: Vec<NewMessage>,
    ) -> Result<Vec<Appended>> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let mut out = Vec::with_capacity(msgs.len());
                for m in &msgs {
                    out.push(append_in(tx, folder, m, false).await?);
                }
                Ok(out)
            })
        })
        .await
    }

    /// The counts IMAP STATUS reports (RFC 9051 §6.3.11), in one pass over the folder's
    /// index rows; `recent_from` is the first UID that counts as recent.
    pub async fn folder_status(
        &self,
        folder: FolderId,
        recent_from: Option<u32>,
    ) -> Result<FolderStatus> {
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum((flags & ?) = 0), 0), coalesce(sum((flags & ?) != 0), 0), \
             coalesce(sum(size), 0), min(CASE WHEN (flags & ?) = 0 THEN uid END), \
             coalesce(sum(uid >= ?), 0) FROM message WHERE folder_id = ?",
        )
        .bind(i64::from(Flags::SEEN.0))
        .bind(i64::from(Flags::DELETED.0))
        .bind(i64::from(Flags::SEEN.0))
        .bind(i64::from(recent_from.unwrap_or(u32::MAX)))
        .bind(folder)
        .fetch_one(self.reads())
        .await
        .map_err(db)?;
        let count = |i: usize| -> Result<u32> {
            let v: i64 = row.try_get(i).map_err(db)?;
            Ok(u32::try_from(v).unwrap_or(u32::MAX))
        };
        let size: i64 = row.try_get(3).map_err(db)?;
        let first_unseen: Option<i64> = row.try_get(4).map_err(db)?;
        Ok(FolderStatus {
            messages: count(0)?,
            unseen: count(1)?,
            deleted: count(2)?,
            size: u64::try_from(size).unwrap_or(0),
            first_unseen_uid: first_unseen.and_then(|u| u32::try_from(u).ok()),
            recent: if recent_from.is_some() { count(5)? } else { 0 },
        })
    }

    /// Appends a message whose blob is already durable (see [`crate::prepare_message`]).
    pub async fn append(&self, folder: FolderId, msg: NewMessage) -> Result<Appended> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move { append_in(tx, folder, &msg, false).await })
        })
        .await
    }

    /// Stores one message for several folders (the local recipients of one SMTP transaction)
    /// in one job: the blob is referenced once per target, and either every target gets the
    /// message or none does (so a sender told to retry never causes duplicates). Quota is
    /// checked with the delivery grace (see `check_room`).
    pub async fn deliver(
        &self,
        blob: crate::BlobRef,
        summary: String,
        internal_date: i64,
        targets: Vec<DeliveryTarget>,
    ) -> Result<Vec<Appended>> {
        Ok(self
            .deliver_and_enqueue(blob, summary, internal_date, targets, Vec::new())
            .await?
            .0)
    }

    /// Every message of a folder, in UID order. Rows are converted as they arrive, so a folder
    /// of 100,000 messages is not also held as 100,000 database rows.
    pub async fn messages(&self, folder: FolderId) -> Result<Vec<MessageMeta>> {
        use futures::TryStreamExt as _;
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            message_cols!(),
            " FROM message WHERE folder_id = ? ORDER BY uid"
        ))
        .bind(folder)
        .fetch(self.reads());
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(db)? {
            out.push(message_row(&row)?);
        }
        Ok(out)
    }

    pub async fn message(&self, folder: FolderId, uid: u32) -> Result<Option<MessageMeta>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_cols!(),
            " FROM message WHERE folder_id = ? AND uid = ?"
        ))
        .bind(folder)
        .bind(i64::from(uid))
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(message_row).transpose()
    }

    /// The cached summaries of several blobs in one query per 256: a FETCH or SEARCH over a
    /// folder asks once instead of once per message. Blobs without a summary row are absent.
    pub async fn summaries(&self, blobs: &[BlobId]) -> Result<HashMap<BlobId, Summary>> {
        let mut out = HashMap::with_capacity(blobs.len());
        for chunk in blobs.chunks(SUMMARY_BATCHES[SUMMARY_BATCHES.len() - 1]) {
            // The list is padded (repeating the last blob) to one of a few lengths, so a
            // handful of prepared statements serve every call.
            let len = SUMMARY_BATCHES
                .iter()
                .copied()
                .find(|&n| n >= chunk.len())
                .unwrap_or(chunk.len());
            let marks = vec!["?"; len].join(",");
            // Only `?` placeholders are spliced in; every value is bound.
            let sql = format!("SELECT hash, summary FROM blob WHERE hash IN ({marks})");
            let mut q = sqlx::query_as::<_, (Vec<u8>, String)>(sqlx::AssertSqlSafe(sql));
            for i in 0..len {
                q = q.bind(&chunk[i.min(chunk.len() - 1)].0[..]);
            }
            for (hash, json) in q.fetch_all(self.reads()).await.map_err(db)? {
                let Ok(id) = <[u8; 32]>::try_from(hash.as_slice()) else {
                    continue;
                };
                let blob = BlobId(id);
                let summary = serde_json::from_str(&json).map_err(|e| {
                    StoreError::Database(format!("summary of blob {blob} is unreadable: {e}"))
                })?;
                out.insert(blob, summary);
            }
        }
        Ok(out)
    }

    /// The cached summary of a blob.
    pub async fn summary(&self, blob: BlobId) -> Result<Summary> {
        let json: Option<String> = sqlx::query_scalar("SELECT summary FROM blob WHERE hash = ?")
            .bind(&blob.0[..])
            .fetch_optional(self.reads())
            .await
            .map_err(db)?;
        let json = json.ok_or_else(|| StoreError::NotFound(format!("blob {blob}")))?;
        serde_json::from_str(&json)
            .map_err(|e| StoreError::Database(format!("summary of blob {blob} is unreadable: {e}")))
    }

    /// Changes flags and keywords (RFC 9051 §6.4.6). With `unchanged_since`, messages modified
    /// after that MODSEQ are left alone and reported (RFC 7162 §3.1.3). A message whose flags
    /// would not change keeps its MODSEQ.
    pub async fn set_flags(
        &self,
        folder: FolderId,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Flags,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> Result<FlagsResult> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let f = folder_in(&mut tx.conn, folder).await?;
                let msgs = select_uids(&mut tx.conn, folder, &uids).await?;
                let mut result = FlagsResult::default();
                let mut modseq = None;
                for m in msgs {
                    if unchanged_since.is_some_and(|since| m.modseq > since) {
                        result.modified.push(m.uid);
                        continue;
                    }
                    let (new_flags, new_keywords) = match op {
                        FlagOp::Add => {
                            let mut k = m.keywords.clone();
                            k.extend(keywords.iter().cloned());
                            (m.flags.union(flags), k)
                        }
                        FlagOp::Remove => (
                            m.flags.minus(flags),
                            m.keywords
                                .iter()
                                .filter(|k| !keywords.iter().any(|r| r.eq_ignore_ascii_case(k)))
                                .cloned()
                                .collect(),
                        ),
                        FlagOp::Replace => (flags, keywords.clone()),
                    };
                    let new_kw = join_keywords(&new_keywords);
                    if new_flags == m.flags && new_kw == join_keywords(&m.keywords) {
                        continue;
                    }
                    let ms = match modseq {
                        Some(ms) => ms,
                        None => {
                            let ms = bump_modseq(&mut tx.conn, folder).await?;
                            modseq = Some(ms);
                            ms
                        }
                    };
                    sqlx::query(
                        "UPDATE message SET flags = ?, keywords = ?, modseq = ? \
                         WHERE folder_id = ? AND uid = ?",
                    )
                    .bind(i64::from(new_flags.0))
                    .bind(&new_kw)
                    .bind(ms as i64)
                    .bind(folder)
                    .bind(i64::from(m.uid))
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                    result.changed.push(FlagChange {
                        uid: m.uid,
                        modseq: ms,
                        flags: new_flags,
                        keywords: split_keywords(&new_kw),
                    });
                }
                if let Some(ms) = modseq {
                    tx.events.push(Event {
                        mailbox: f.mailbox_id,
                        folder,
                        modseq: ms,
                        change: Change::Flags {
                            uids: result.changed.iter().map(|c| c.uid).collect(),
                        },
                    });
                }
                Ok(result)
            })
        })
        .await
    }

    /// Copies messages (RFC 9051 §6.4.7); returns the destination's UIDVALIDITY and
    /// (source UID, new UID) pairs for COPYUID (RFC 4315).
    pub async fn copy(
        &self,
        src: FolderId,
        uids: Vec<u32>,
        dst: FolderId,
    ) -> Result<(u32, Vec<(u32, u32)>)> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let (d, pairs, _) = copy_in(tx, src, &uids, dst).await?;
                Ok((d.uidvalidity, pairs))
            })
        })
        .await
    }

    /// Moves messages atomically (RFC 6851): copy and expunge in one transaction.
    pub async fn move_messages(
        &self,
        src: FolderId,
        uids: Vec<u32>,
        dst: FolderId,
    ) -> Result<(u32, Vec<(u32, u32)>)> {
        if src == dst {
            return Err(StoreError::Invalid(
                "cannot move messages to the folder they are in".into(),
            ));
        }
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let (d, pairs, msgs) = copy_in(tx, src, &uids, dst).await?;
                let s = folder_in(&mut tx.conn, src).await?;
                remove_in(tx, &s, &msgs).await?;
                Ok((d.uidvalidity, pairs))
            })
        })
        .await
    }

    /// Expunges messages flagged `\Deleted`, all of them or only those in `uids` (UID EXPUNGE,
    /// RFC 4315). Returns the expunged UIDs in ascending order.
    pub async fn expunge(&self, folder: FolderId, uids: Option<Vec<u32>>) -> Result<Vec<u32>> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let f = folder_in(&mut tx.conn, folder).await?;
                let candidates = match &uids {
                    Some(u) => select_uids(&mut tx.conn, folder, u).await?,
                    None => {
                        let rows = sqlx::query(concat!(
                            "SELECT ",
                            message_cols!(),
                            " FROM message WHERE folder_id = ? \
                             AND (flags & ?) != 0 ORDER BY uid"
                        ))
                        .bind(folder)
                        .bind(i64::from(Flags::DELETED.0))
                        .fetch_all(&mut tx.conn)
                        .await
                        .map_err(db)?;
                        rows.iter().map(message_row).collect::<Result<Vec<_>>>()?
                    }
                };
                let doomed: Vec<MessageMeta> = candidates
                    .into_iter()
                    .filter(|m| m.flags.contains(Flags::DELETED))
                    .collect();
                remove_in(tx, &f, &doomed).await
            })
        })
        .await
    }

    /// Messages changed and UIDs expunged after `modseq` (RFC 7162 CHANGEDSINCE and QRESYNC).
    pub async fn changes_since(&self, folder: FolderId, modseq: u64) -> Result<ChangesSince> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_cols!(),
            " FROM message WHERE folder_id = ? AND modseq > ? ORDER BY uid"
        ))
        .bind(folder)
        .bind(modseq as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let changed = rows.iter().map(message_row).collect::<Result<Vec<_>>>()?;
        let expunged: Vec<i64> = sqlx::query_scalar(
            "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid",
        )
        .bind(folder)
        .bind(modseq as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        Ok(ChangesSince {
            changed,
            expunged: expunged.into_iter().map(|u| u as u32).collect(),
        })
    }
}

/// The lengths of the blob lists [`Store::summaries`] asks for.
const SUMMARY_BATCHES: [usize; 5] = [1, 4, 16, 64, 256];
