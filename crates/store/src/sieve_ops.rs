//! Sieve scripts and what they remember: each mailbox's scripts with at most one active
//! (ManageSieve, RFC 5804 §1.3), the admin's global pre- and post-filters, and the per-mailbox
//! memory of vacation replies (RFC 5230 §4.2) and duplicate ids (RFC 7352).
//!
//! The store keeps text; compiling and size rules belong to the Sieve crates.

use crate::group_commit::Tx;
use crate::{Result, Store, StoreError, db};
use mailstead_core::event::MailboxId;
use sqlx::Row;

/// One of a mailbox's scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieveScript {
    pub name: String,
    pub content: String,
    pub active: bool,
    pub modified: i64,
}

/// A script's name, size and state without its text: what ManageSieve needs for LISTSCRIPTS
/// and its quota rules (RFC 5804 §2.5, §2.7) without reading every script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieveScriptInfo {
    pub name: String,
    /// Bytes of the script's UTF-8 text.
    pub size: u64,
    pub active: bool,
}

/// When a global filter runs: before or after the user's own script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SievePhase {
    Pre,
    Post,
}

impl SievePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SievePhase::Pre => "pre",
            SievePhase::Post => "post",
        }
    }

    pub fn parse(s: &str) -> Option<SievePhase> {
        match s {
            "pre" => Some(SievePhase::Pre),
            "post" => Some(SievePhase::Post),
            _ => None,
        }
    }
}

/// A global filter: `scope` is a domain, or empty for every domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieveGlobal {
    pub scope: String,
    pub phase: SievePhase,
    pub content: String,
    pub modified: i64,
}

fn script(r: &sqlx::sqlite::SqliteRow) -> Result<SieveScript> {
    Ok(SieveScript {
        name: r.try_get("name").map_err(db)?,
        content: r.try_get("content").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        modified: r.try_get("modified").map_err(db)?,
    })
}

impl Store {
    /// A mailbox's scripts by name.
    pub async fn sieve_list(&self, mailbox: MailboxId) -> Result<Vec<SieveScript>> {
        let rows = sqlx::query(
            "SELECT name, content, active, modified FROM sieve_script WHERE mailbox_id = ? \
             ORDER BY name",
        )
        .bind(mailbox)
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter().map(script).collect()
    }

    /// A mailbox's scripts by name, without their text.
    pub async fn sieve_infos(&self, mailbox: MailboxId) -> Result<Vec<SieveScriptInfo>> {
        let rows = sqlx::query(
            "SELECT name, length(CAST(content AS BLOB)) AS size, active FROM sieve_script \
             WHERE mailbox_id = ? ORDER BY name",
        )
        .bind(mailbox)
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let size: i64 = r.try_get("size").map_err(db)?;
                Ok(SieveScriptInfo {
                    name: r.try_get("name").map_err(db)?,
                    size: u64::try_from(size).unwrap_or(0),
                    active: r.try_get("active").map_err(db)?,
                })
            })
            .collect()
    }

    pub async fn sieve_get(&self, mailbox: MailboxId, name: &str) -> Result<Option<SieveScript>> {
        let row = sqlx::query(
            "SELECT name, content, active, modified FROM sieve_script \
             WHERE mailbox_id = ? AND name = ?",
        )
        .bind(mailbox)
        .bind(name)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(script).transpose()
    }

    /// The script that runs at delivery, if one is active.
    pub async fn sieve_active(&self, mailbox: MailboxId) -> Result<Option<SieveScript>> {
        let row = sqlx::query(
            "SELECT name, content, active, modified FROM sieve_script \
             WHERE mailbox_id = ? AND active = 1",
        )
        .bind(mailbox)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(script).transpose()
    }

    /// The scripts a delivery may run: the active one and those named (the generated
    /// scripts), without the others' text.
    pub async fn sieve_for_delivery(
        &self,
        mailbox: MailboxId,
        named: [&str; 2],
    ) -> Result<Vec<SieveScript>> {
        let rows = sqlx::query(
            "SELECT name, content, active, modified FROM sieve_script \
             WHERE mailbox_id = ? AND (active = 1 OR name IN (?, ?)) ORDER BY name",
        )
        .bind(mailbox)
        .bind(named[0])
        .bind(named[1])
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter().map(script).collect()
    }

    /// Stores a script, replacing one of the same name (and keeping it active if it was).
    pub async fn sieve_put(&self, mailbox: MailboxId, name: &str, content: &str) -> Result<()> {
        let (name, content) = (name.to_string(), content.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO sieve_script (mailbox_id, name, content, active, modified) \
                     VALUES (?, ?, ?, 0, ?) ON CONFLICT (mailbox_id, name) \
                     DO UPDATE SET content = excluded.content, modified = excluded.modified",
                )
                .bind(mailbox)
                .bind(&name)
                .bind(&content)
                .bind(tx.now)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    /// Deletes a script; the active one cannot be deleted (RFC 5804 §2.10).
    pub async fn sieve_delete(&self, mailbox: MailboxId, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let active: Option<bool> = sqlx::query_scalar(
                    "SELECT active FROM sieve_script WHERE mailbox_id = ? AND name = ?",
                )
                .bind(mailbox)
                .bind(&name)
                .fetch_optional(&mut tx.conn)
                .await
                .map_err(db)?;
                match active {
                    None => Err(StoreError::NotFound(format!("script {name}"))),
                    Some(true) => Err(StoreError::Invalid(format!(
                        "script {name} is active; deactivate it first"
                    ))),
                    Some(false) => {
                        sqlx::query("DELETE FROM sieve_script WHERE mailbox_id = ? AND name = ?")
                            .bind(mailbox)
                            .bind(&name)
                            .execute(&mut tx.conn)
                            .await
                            .map_err(db)?;
                        Ok(())
                    }
                }
            })
        })
        .await
    }

    /// Renames a script, active or not (RFC 5804 §2.11.1).
    pub async fn sieve_rename(&self, mailbox: MailboxId, from: &str, to: &str) -> Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let taken: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM sieve_script WHERE mailbox_id = ? AND name = ?",
                )
                .bind(mailbox)
                .bind(&to)
                .fetch_one(&mut tx.conn)
                .await
                .map_err(db)?;
                if taken > 0 {
                    return Err(StoreError::Exists(format!("script {to}")));
                }
                let done = sqlx::query(
                    "UPDATE sieve_script SET name = ?, modified = ? \
                     WHERE mailbox_id = ? AND name = ?",
                )
                .bind(&to)
                .bind(tx.now)
                .bind(mailbox)
                .bind(&from)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("script {from}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Makes `name` the active script, or with `None` leaves none active (RFC 5804 §2.8).
    pub async fn sieve_activate(&self, mailbox: MailboxId, name: Option<&str>) -> Result<()> {
        let name = name.map(str::to_string);
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                if let Some(name) = &name {
                    let exists: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM sieve_script WHERE mailbox_id = ? AND name = ?",
                    )
                    .bind(mailbox)
                    .bind(name)
                    .fetch_one(&mut tx.conn)
                    .await
                    .map_err(db)?;
                    if exists == 0 {
                        return Err(StoreError::NotFound(format!("script {name}")));
                    }
                }
                sqlx::query(
                    "UPDATE sieve_script SET active = 0 WHERE mailbox_id = ? AND active = 1",
                )
                .bind(mailbox)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                if let Some(name) = &name {
                    sqlx::query(
                        "UPDATE sieve_script SET active = 1 WHERE mailbox_id = ? AND name = ?",
                    )
                    .bind(mailbox)
                    .bind(name)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Every global filter.
    pub async fn sieve_globals(&self) -> Result<Vec<SieveGlobal>> {
        self.sieve_globals_where(None).await
    }

    /// The global filters that apply to mail for `domain`: its own and the server-wide ones.
    pub async fn sieve_globals_for(&self, domain: &str) -> Result<Vec<SieveGlobal>> {
        self.sieve_globals_where(Some(&domain.to_lowercase())).await
    }

    async fn sieve_globals_where(&self, domain: Option<&str>) -> Result<Vec<SieveGlobal>> {
        let rows = match domain {
            None => sqlx::query(
                "SELECT scope, phase, content, modified FROM sieve_global \
                 ORDER BY scope, phase DESC",
            ),
            Some(d) => sqlx::query(
                "SELECT scope, phase, content, modified FROM sieve_global \
                 WHERE scope IN ('', ?) ORDER BY scope, phase DESC",
            )
            .bind(d),
        }
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let phase: String = r.try_get("phase").map_err(db)?;
                Ok(SieveGlobal {
                    scope: r.try_get("scope").map_err(db)?,
                    phase: SievePhase::parse(&phase)
                        .ok_or_else(|| StoreError::Database(format!("sieve phase {phase}")))?,
                    content: r.try_get("content").map_err(db)?,
                    modified: r.try_get("modified").map_err(db)?,
                })
            })
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) the global filter of a scope and phase.
    pub async fn sieve_global_set(
        &self,
        scope: &str,
        phase: SievePhase,
        content: Option<&str>,
    ) -> Result<()> {
        let scope = scope.to_lowercase();
        let content = content.map(str::to_string);
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                match &content {
                    Some(content) => sqlx::query(
                        "INSERT INTO sieve_global (scope, phase, content, modified) \
                         VALUES (?, ?, ?, ?) ON CONFLICT (scope, phase) \
                         DO UPDATE SET content = excluded.content, modified = excluded.modified",
                    )
                    .bind(&scope)
                    .bind(phase.as_str())
                    .bind(content)
                    .bind(tx.now),
                    None => sqlx::query("DELETE FROM sieve_global WHERE scope = ? AND phase = ?")
                        .bind(&scope)
                        .bind(phase.as_str()),
                }
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    /// Remembers `key` of `kind` for a mailbox until `expires` (Unix seconds). Returns whether
    /// it was already remembered and unexpired, in which case nothing changes: the caller asks
    /// "have I replied to this sender lately?" and records the reply in one step.
    pub async fn sieve_remember(
        &self,
        mailbox: MailboxId,
        kind: &str,
        key: &str,
        expires: i64,
    ) -> Result<bool> {
        let (kind, key) = (kind.to_string(), key.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let known: Option<i64> = sqlx::query_scalar(
                    "SELECT expires FROM sieve_memory WHERE mailbox_id = ? AND kind = ? AND key = ?",
                )
                .bind(mailbox)
                .bind(&kind)
                .bind(&key)
                .fetch_optional(&mut tx.conn)
                .await
                .map_err(db)?;
                if known.is_some_and(|e| e > tx.now) {
                    return Ok(true);
                }
                sqlx::query(
                    "INSERT INTO sieve_memory (mailbox_id, kind, key, expires) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (mailbox_id, kind, key) DO UPDATE SET expires = excluded.expires",
                )
                .bind(mailbox)
                .bind(&kind)
                .bind(&key)
                .bind(expires)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                // Expired memories of this mailbox go as new ones come, so the table stays
                // as small as the replies of one period.
                sqlx::query("DELETE FROM sieve_memory WHERE mailbox_id = ? AND expires <= ?")
                    .bind(mailbox)
                    .bind(tx.now)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                Ok(false)
            })
        })
        .await
    }

    /// Forgets what the scripts of a mailbox remember of one kind (a new vacation message
    /// starts a new memory of who got it).
    pub async fn sieve_forget(&self, mailbox: MailboxId, kind: &str) -> Result<()> {
        let kind = kind.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM sieve_memory WHERE mailbox_id = ? AND kind = ?")
                    .bind(mailbox)
                    .bind(&kind)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                Ok(())
            })
        })
        .await
    }
}
