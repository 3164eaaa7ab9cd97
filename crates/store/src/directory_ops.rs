//! Directory records: domains, mailboxes, aliases, alias domains, administrators.
//!
//! mailcow's limits are checked inside the write job, like database constraints, so two admin
//! commands racing each other cannot together pass a limit that each alone respects.

use crate::group_commit::Tx;
use crate::model::*;
use crate::{Result, Store, StoreError, db};
use mailstead_core::config::kinds::format_size;
use mailstead_core::event::MailboxId;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqliteConnection};

macro_rules! domain_cols {
    () => {
        "id, name, description, max_mailboxes, max_aliases, default_quota, \
                           max_quota, total_quota, active, created, modified"
    };
}

macro_rules! mailbox_cols {
    () => {
        "m.id, m.domain_id, m.local_part, m.address, m.name, m.password, \
     m.quota, m.used_bytes, m.used_messages, m.active, m.imap_access, m.pop3_access, \
     m.smtp_access, m.sieve_access, m.created, m.modified, d.name AS domain"
    };
}

fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(
    r: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    r.try_get(col).map_err(db)
}

fn domain_row(r: &SqliteRow) -> Result<Domain> {
    Ok(Domain {
        id: get(r, "id")?,
        name: get(r, "name")?,
        description: get(r, "description")?,
        max_mailboxes: get(r, "max_mailboxes")?,
        max_aliases: get(r, "max_aliases")?,
        default_quota: get(r, "default_quota")?,
        max_quota: get(r, "max_quota")?,
        total_quota: get(r, "total_quota")?,
        active: get(r, "active")?,
        created: get(r, "created")?,
        modified: get(r, "modified")?,
    })
}

fn mailbox_row(r: &SqliteRow) -> Result<Mailbox> {
    Ok(Mailbox {
        id: get(r, "id")?,
        domain_id: get(r, "domain_id")?,
        address: get(r, "address")?,
        local_part: get(r, "local_part")?,
        domain: get(r, "domain")?,
        name: get(r, "name")?,
        password: get(r, "password")?,
        quota: get(r, "quota")?,
        used_bytes: get(r, "used_bytes")?,
        used_messages: get(r, "used_messages")?,
        active: get(r, "active")?,
        access: Access {
            imap: get(r, "imap_access")?,
            pop3: get(r, "pop3_access")?,
            smtp: get(r, "smtp_access")?,
            sieve: get(r, "sieve_access")?,
        },
        created: get(r, "created")?,
        modified: get(r, "modified")?,
    })
}

fn unique_to_exists(what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Exists(what),
        _ => db(e),
    }
}

/// A quota for messages: `0` reads as "unlimited".
fn quota_text(bytes: i64) -> String {
    if bytes == 0 {
        "unlimited".into()
    } else {
        format_size(bytes.max(0) as u64)
    }
}

async fn domain_in(conn: &mut SqliteConnection, name: &str) -> Result<Domain> {
    let row = sqlx::query(concat!(
        "SELECT ",
        domain_cols!(),
        " FROM domain WHERE name = ?"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(db)?;
    match row {
        Some(r) => domain_row(&r),
        None => Err(StoreError::NotFound(format!("domain {name}"))),
    }
}

async fn usage_in(conn: &mut SqliteConnection, domain_id: DomainId) -> Result<DomainUsage> {
    let r = sqlx::query(
        "SELECT count(*) AS n, coalesce(sum(quota), 0) AS q, \
                coalesce(sum(quota = 0), 0) AS unl, coalesce(sum(used_bytes), 0) AS used \
         FROM mailbox WHERE domain_id = ?",
    )
    .bind(domain_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let aliases: i64 = sqlx::query_scalar("SELECT count(*) FROM alias WHERE domain_id = ?")
        .bind(domain_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(DomainUsage {
        mailboxes: get(&r, "n")?,
        aliases,
        quota_assigned: get(&r, "q")?,
        unlimited_mailboxes: get(&r, "unl")?,
        bytes_used: get(&r, "used")?,
    })
}

/// Checks a mailbox quota against its domain's limits. `assigned` is the quota the domain's
/// other mailboxes already hold.
fn check_quota(d: &Domain, quota: i64, assigned: i64, others_unlimited: i64) -> Result<()> {
    if quota < 0 {
        return Err(StoreError::Limit("a quota cannot be negative".into()));
    }
    if d.max_quota > 0 && quota == 0 {
        return Err(StoreError::Limit(format!(
            "domain {} does not allow unlimited mailbox quota; its maximum is {}",
            d.name,
            quota_text(d.max_quota)
        )));
    }
    if d.max_quota > 0 && quota > d.max_quota {
        return Err(StoreError::Limit(format!(
            "quota {} exceeds the maximum mailbox quota of domain {} ({})",
            quota_text(quota),
            d.name,
            quota_text(d.max_quota)
        )));
    }
    if d.total_quota > 0 {
        if quota == 0 || others_unlimited > 0 {
            return Err(StoreError::Limit(format!(
                "domain {} has a total quota of {}, so its mailboxes cannot be unlimited",
                d.name,
                quota_text(d.total_quota)
            )));
        }
        if assigned + quota > d.total_quota {
            return Err(StoreError::Limit(format!(
                "quota {} is more than is left of domain {}'s total quota: {} of {} are assigned",
                quota_text(quota),
                d.name,
                format_size(assigned.max(0) as u64),
                quota_text(d.total_quota)
            )));
        }
    }
    Ok(())
}

fn check_domain_limits(d: &Domain, u: &DomainUsage, largest_quota: i64) -> Result<()> {
    let name = &d.name;
    if d.max_mailboxes > 0 && u.mailboxes > d.max_mailboxes {
        return Err(StoreError::Limit(format!(
            "domain {name} has {} mailboxes; the limit cannot be lower",
            u.mailboxes
        )));
    }
    if d.max_aliases > 0 && u.aliases > d.max_aliases {
        return Err(StoreError::Limit(format!(
            "domain {name} has {} aliases; the limit cannot be lower",
            u.aliases
        )));
    }
    if d.max_quota > 0 && d.default_quota > d.max_quota {
        return Err(StoreError::Limit(format!(
            "the default quota ({}) cannot exceed the maximum mailbox quota ({})",
            quota_text(d.default_quota),
            quota_text(d.max_quota)
        )));
    }
    if d.max_quota > 0 && (largest_quota > d.max_quota || u.unlimited_mailboxes > 0) {
        return Err(StoreError::Limit(format!(
            "a mailbox of domain {name} has a quota of {}, above the new maximum of {}",
            quota_text(if u.unlimited_mailboxes > 0 {
                0
            } else {
                largest_quota
            }),
            quota_text(d.max_quota)
        )));
    }
    if d.total_quota > 0 && (u.quota_assigned > d.total_quota || u.unlimited_mailboxes > 0) {
        return Err(StoreError::Limit(format!(
            "the mailboxes of domain {name} hold {} of quota; the total cannot be lower",
            if u.unlimited_mailboxes > 0 {
                "unlimited".into()
            } else {
                format_size(u.quota_assigned.max(0) as u64)
            }
        )));
    }
    if [
        d.max_mailboxes,
        d.max_aliases,
        d.default_quota,
        d.max_quota,
        d.total_quota,
    ]
    .iter()
    .any(|v| *v < 0)
    {
        return Err(StoreError::Limit("limits cannot be negative".into()));
    }
    Ok(())
}

/// Fails when `address` is already a mailbox or an alias: one address, one meaning.
async fn address_free(conn: &mut SqliteConnection, address: &str) -> Result<()> {
    let mailbox: Option<i64> = sqlx::query_scalar("SELECT id FROM mailbox WHERE address = ?")
        .bind(address)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    if mailbox.is_some() {
        return Err(StoreError::Exists(format!("mailbox {address}")));
    }
    let alias: Option<i64> = sqlx::query_scalar("SELECT id FROM alias WHERE address = ?")
        .bind(address)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    if alias.is_some() {
        return Err(StoreError::Exists(format!("alias {address}")));
    }
    Ok(())
}

async fn alias_targets(
    e: impl sqlx::Executor<'_, Database = Sqlite>,
    alias_id: i64,
) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT target FROM alias_target WHERE alias_id = ? ORDER BY position")
        .bind(alias_id)
        .fetch_all(e)
        .await
        .map_err(db)
}

impl Store {
    // ---- domains ----

    pub async fn domain_create(&self, d: NewDomain) -> Result<Domain> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let alias_domain: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM alias_domain WHERE name = ?")
                        .bind(&d.name)
                        .fetch_optional(&mut tx.conn)
                        .await
                        .map_err(db)?;
                if alias_domain.is_some() {
                    return Err(StoreError::Exists(format!("alias domain {}", d.name)));
                }
                let probe = Domain {
                    id: 0,
                    name: d.name.clone(),
                    description: d.description.clone(),
                    max_mailboxes: d.max_mailboxes,
                    max_aliases: d.max_aliases,
                    default_quota: d.default_quota,
                    max_quota: d.max_quota,
                    total_quota: d.total_quota,
                    active: d.active,
                    created: tx.now,
                    modified: tx.now,
                };
                check_domain_limits(&probe, &DomainUsage::default(), 0)?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO domain (name, description, max_mailboxes, max_aliases, \
                     default_quota, max_quota, total_quota, active, created, modified) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(&d.name)
                .bind(&d.description)
                .bind(d.max_mailboxes)
                .bind(d.max_aliases)
                .bind(d.default_quota)
                .bind(d.max_quota)
                .bind(d.total_quota)
                .bind(d.active)
                .bind(tx.now)
                .bind(tx.now)
                .fetch_one(&mut tx.conn)
                .await
                .map_err(unique_to_exists(format!("domain {}", d.name)))?;
                Ok(Domain { id, ..probe })
            })
        })
        .await
    }

    pub async fn domain_get(&self, name: &str) -> Result<Option<Domain>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            domain_cols!(),
            " FROM domain WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(domain_row).transpose()
    }

    pub async fn domain_list(&self) -> Result<Vec<Domain>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            domain_cols!(),
            " FROM domain ORDER BY name"
        ))
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter().map(domain_row).collect()
    }

    pub async fn domain_usage(&self, name: &str) -> Result<DomainUsage> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        let d = domain_in(&mut conn, name).await?;
        usage_in(&mut conn, d.id).await
    }

    pub async fn domain_update(&self, name: &str, patch: DomainPatch) -> Result<Domain> {
        let name = name.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let mut d = domain_in(&mut tx.conn, &name).await?;
                let DomainPatch {
                    description,
                    max_mailboxes,
                    max_aliases,
                    default_quota,
                    max_quota,
                    total_quota,
                    active,
                } = patch;
                d.description = description.unwrap_or(d.description);
                d.max_mailboxes = max_mailboxes.unwrap_or(d.max_mailboxes);
                d.max_aliases = max_aliases.unwrap_or(d.max_aliases);
                d.default_quota = default_quota.unwrap_or(d.default_quota);
                d.max_quota = max_quota.unwrap_or(d.max_quota);
                d.total_quota = total_quota.unwrap_or(d.total_quota);
                d.active = active.unwrap_or(d.active);
                d.modified = tx.now;
                let usage = usage_in(&mut tx.conn, d.id).await?;
                let largest: i64 = sqlx::query_scalar(
                    "SELECT coalesce(max(quota), 0) FROM mailbox WHERE domain_id = ?",
                )
                .bind(d.id)
                .fetch_one(&mut tx.conn)
                .await
                .map_err(db)?;
                check_domain_limits(&d, &usage, largest)?;
                sqlx::query(
                    "UPDATE domain SET description = ?, max_mailboxes = ?, max_aliases = ?, \
                     default_quota = ?, max_quota = ?, total_quota = ?, active = ?, modified = ? \
                     WHERE id = ?",
                )
                .bind(&d.description)
                .bind(d.max_mailboxes)
                .bind(d.max_aliases)
                .bind(d.default_quota)
                .bind(d.max_quota)
                .bind(d.total_quota)
                .bind(d.active)
                .bind(d.modified)
                .bind(d.id)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(d)
            })
        })
        .await
    }

    /// Removes a domain with its aliases and alias domains. Like mailcow, a domain that still
    /// has mailboxes is not removed.
    pub async fn domain_delete(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let d = domain_in(&mut tx.conn, &name).await?;
                let usage = usage_in(&mut tx.conn, d.id).await?;
                if usage.mailboxes > 0 {
                    return Err(StoreError::Invalid(format!(
                        "domain {name} still has {} mailbox{}; remove them first",
                        usage.mailboxes,
                        if usage.mailboxes == 1 { "" } else { "es" }
                    )));
                }
                for sql in [
                    "DELETE FROM alias WHERE domain_id = ?",
                    "DELETE FROM alias_domain WHERE target_domain_id = ?",
                    "DELETE FROM domain WHERE id = ?",
                ] {
                    sqlx::query(sql)
                        .bind(d.id)
                        .execute(&mut tx.conn)
                        .await
                        .map_err(db)?;
                }
                Ok(())
            })
        })
        .await
    }

    // ---- mailboxes ----

    /// Creates a mailbox with its default folders, within its domain's limits.
    pub async fn mailbox_create(&self, m: NewMailbox) -> Result<Mailbox> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let d = domain_in(&mut tx.conn, &m.domain).await?;
                let address = format!("{}@{}", m.local_part, d.name);
                address_free(&mut tx.conn, &address).await?;
                let usage = usage_in(&mut tx.conn, d.id).await?;
                if d.max_mailboxes > 0 && usage.mailboxes >= d.max_mailboxes {
                    return Err(StoreError::Limit(format!(
                        "domain {} allows at most {} mailbox{} and has {}",
                        d.name,
                        d.max_mailboxes,
                        if d.max_mailboxes == 1 { "" } else { "es" },
                        usage.mailboxes
                    )));
                }
                let quota = m.quota.unwrap_or(d.default_quota);
                check_quota(&d, quota, usage.quota_assigned, usage.unlimited_mailboxes)?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO mailbox (domain_id, local_part, address, name, password, quota, \
                     active, imap_access, pop3_access, smtp_access, sieve_access, created, modified) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(d.id)
                .bind(&m.local_part)
                .bind(&address)
                .bind(&m.name)
                .bind(&m.password)
                .bind(quota)
                .bind(m.active)
                .bind(m.access.imap)
                .bind(m.access.pop3)
                .bind(m.access.smtp)
                .bind(m.access.sieve)
                .bind(tx.now)
                .bind(tx.now)
                .fetch_one(&mut tx.conn)
                .await
                .map_err(unique_to_exists(format!("mailbox {address}")))?;
                for (name, special) in DEFAULT_FOLDERS {
                    crate::mail_ops::folder_insert(tx, id, name, *special).await?;
                }
                Ok(Mailbox {
                    id,
                    domain_id: d.id,
                    address,
                    local_part: m.local_part,
                    domain: d.name,
                    name: m.name,
                    password: m.password,
                    quota,
                    used_bytes: 0,
                    used_messages: 0,
                    active: m.active,
                    access: m.access,
                    created: tx.now,
                    modified: tx.now,
                })
            })
        })
        .await
    }

    pub async fn mailbox_get(&self, address: &str) -> Result<Option<Mailbox>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            mailbox_cols!(),
            " FROM mailbox m JOIN domain d ON d.id = m.domain_id \
             WHERE m.address = ?"
        ))
        .bind(address)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(mailbox_row).transpose()
    }

    pub async fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            mailbox_cols!(),
            " FROM mailbox m JOIN domain d ON d.id = m.domain_id \
             WHERE m.id = ?"
        ))
        .bind(id)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(mailbox_row).transpose()
    }

    /// Mailboxes, of one domain or of all, ordered by address.
    pub async fn mailbox_list(&self, domain: Option<&str>) -> Result<Vec<Mailbox>> {
        let rows = match domain {
            Some(d) => {
                sqlx::query(concat!(
                    "SELECT ",
                    mailbox_cols!(),
                    " FROM mailbox m JOIN domain d ON d.id = m.domain_id \
                 WHERE d.name = ? ORDER BY m.address"
                ))
                .bind(d)
                .fetch_all(self.reads())
                .await
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    mailbox_cols!(),
                    " FROM mailbox m JOIN domain d ON d.id = m.domain_id \
                 ORDER BY m.address"
                ))
                .fetch_all(self.reads())
                .await
            }
        }
        .map_err(db)?;
        rows.iter().map(mailbox_row).collect()
    }

    pub async fn mailbox_update(&self, address: &str, patch: MailboxPatch) -> Result<Mailbox> {
        let address = address.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    mailbox_cols!(),
                    " FROM mailbox m JOIN domain d ON d.id = m.domain_id \
                     WHERE m.address = ?"
                ))
                .bind(&address)
                .fetch_optional(&mut tx.conn)
                .await
                .map_err(db)?;
                let mut m = match row {
                    Some(r) => mailbox_row(&r)?,
                    None => return Err(StoreError::NotFound(format!("mailbox {address}"))),
                };
                if let Some(quota) = patch.quota {
                    let d = domain_in(&mut tx.conn, &m.domain).await?;
                    let usage = usage_in(&mut tx.conn, d.id).await?;
                    let others_unlimited = usage.unlimited_mailboxes - i64::from(m.quota == 0);
                    check_quota(&d, quota, usage.quota_assigned - m.quota, others_unlimited)?;
                    m.quota = quota;
                }
                m.name = patch.name.unwrap_or(m.name);
                m.active = patch.active.unwrap_or(m.active);
                m.access.imap = patch.imap.unwrap_or(m.access.imap);
                m.access.pop3 = patch.pop3.unwrap_or(m.access.pop3);
                m.access.smtp = patch.smtp.unwrap_or(m.access.smtp);
                m.access.sieve = patch.sieve.unwrap_or(m.access.sieve);
                m.modified = tx.now;
                sqlx::query(
                    "UPDATE mailbox SET name = ?, quota = ?, active = ?, imap_access = ?, \
                     pop3_access = ?, smtp_access = ?, sieve_access = ?, modified = ? WHERE id = ?",
                )
                .bind(&m.name)
                .bind(m.quota)
                .bind(m.active)
                .bind(m.access.imap)
                .bind(m.access.pop3)
                .bind(m.access.smtp)
                .bind(m.access.sieve)
                .bind(m.modified)
                .bind(m.id)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(m)
            })
        })
        .await
    }

    /// Replaces a mailbox's stored password hash. `expected` guards a re-hash at login: the
    /// update only happens if the stored hash is still the one that was verified.
    pub async fn mailbox_set_password(
        &self,
        address: &str,
        hash: &str,
        expected: Option<&str>,
    ) -> Result<bool> {
        let (address, hash, expected) = (
            address.to_string(),
            hash.to_string(),
            expected.map(str::to_string),
        );
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let current: Option<String> =
                    sqlx::query_scalar("SELECT password FROM mailbox WHERE address = ?")
                        .bind(&address)
                        .fetch_optional(&mut tx.conn)
                        .await
                        .map_err(db)?;
                let Some(current) = current else {
                    return Err(StoreError::NotFound(format!("mailbox {address}")));
                };
                if expected.is_some_and(|e| e != current) {
                    return Ok(false);
                }
                sqlx::query("UPDATE mailbox SET password = ?, modified = ? WHERE address = ?")
                    .bind(&hash)
                    .bind(tx.now)
                    .bind(&address)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                Ok(true)
            })
        })
        .await
    }

    /// Removes a mailbox, its folders and messages, and its address from alias targets (an
    /// alias left without targets is removed too, as mailcow does).
    pub async fn mailbox_delete(&self, address: &str) -> Result<()> {
        let address = address.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let id: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM mailbox WHERE address = ?")
                        .bind(&address)
                        .fetch_optional(&mut tx.conn)
                        .await
                        .map_err(db)?;
                let Some(id) = id else {
                    return Err(StoreError::NotFound(format!("mailbox {address}")));
                };
                let folders: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM folder WHERE mailbox_id = ?")
                        .bind(id)
                        .fetch_all(&mut tx.conn)
                        .await
                        .map_err(db)?;
                for folder in folders {
                    crate::mail_ops::folder_remove(tx, folder).await?;
                }
                for sql in [
                    "DELETE FROM subscription WHERE mailbox_id = ?",
                    "DELETE FROM sieve_script WHERE mailbox_id = ?",
                    "DELETE FROM sieve_memory WHERE mailbox_id = ?",
                ] {
                    sqlx::query(sql)
                        .bind(id)
                        .execute(&mut tx.conn)
                        .await
                        .map_err(db)?;
                }
                sqlx::query("DELETE FROM alias_target WHERE target = ?")
                    .bind(&address)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                sqlx::query(
                    "DELETE FROM alias WHERE NOT EXISTS \
                     (SELECT 1 FROM alias_target t WHERE t.alias_id = alias.id)",
                )
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                sqlx::query("DELETE FROM mailbox WHERE id = ?")
                    .bind(id)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    // ---- aliases ----

    pub async fn alias_create(&self, a: NewAlias) -> Result<Alias> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                if a.targets.is_empty() {
                    return Err(StoreError::Invalid(
                        "an alias needs at least one target".into(),
                    ));
                }
                let d = domain_in(&mut tx.conn, &a.domain).await?;
                address_free(&mut tx.conn, &a.address).await?;
                let usage = usage_in(&mut tx.conn, d.id).await?;
                if d.max_aliases > 0 && usage.aliases >= d.max_aliases {
                    return Err(StoreError::Limit(format!(
                        "domain {} allows at most {} alias{} and has {}",
                        d.name,
                        d.max_aliases,
                        if d.max_aliases == 1 { "" } else { "es" },
                        usage.aliases
                    )));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO alias (domain_id, address, active, comment, created, modified) \
                     VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(d.id)
                .bind(&a.address)
                .bind(a.active)
                .bind(&a.comment)
                .bind(tx.now)
                .bind(tx.now)
                .fetch_one(&mut tx.conn)
                .await
                .map_err(unique_to_exists(format!("alias {}", a.address)))?;
                for (pos, target) in a.targets.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO alias_target (alias_id, position, target) VALUES (?, ?, ?)",
                    )
                    .bind(id)
                    .bind(pos as i64)
                    .bind(target)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                }
                Ok(Alias {
                    id,
                    address: a.address,
                    domain: d.name,
                    targets: a.targets,
                    active: a.active,
                    comment: a.comment,
                    created: tx.now,
                    modified: tx.now,
                })
            })
        })
        .await
    }

    pub async fn alias_get(&self, address: &str) -> Result<Option<Alias>> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        let row = sqlx::query(
            "SELECT a.id, a.address, d.name AS domain, a.active, a.comment, a.created, a.modified \
             FROM alias a JOIN domain d ON d.id = a.domain_id WHERE a.address = ?",
        )
        .bind(address)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let id: i64 = get(&r, "id")?;
        Ok(Some(Alias {
            id,
            address: get(&r, "address")?,
            domain: get(&r, "domain")?,
            targets: alias_targets(&mut *conn, id).await?,
            active: get(&r, "active")?,
            comment: get(&r, "comment")?,
            created: get(&r, "created")?,
            modified: get(&r, "modified")?,
        }))
    }

    pub async fn alias_list(&self, domain: Option<&str>) -> Result<Vec<Alias>> {
        let mut conn = self.reads().acquire().await.map_err(db)?;
        let rows = sqlx::query(
            "SELECT a.id, a.address, d.name AS domain, a.active, a.comment, a.created, a.modified \
             FROM alias a JOIN domain d ON d.id = a.domain_id \
             WHERE ?1 IS NULL OR d.name = ?1 ORDER BY a.address",
        )
        .bind(domain)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = get(&r, "id")?;
            out.push(Alias {
                id,
                address: get(&r, "address")?,
                domain: get(&r, "domain")?,
                targets: alias_targets(&mut *conn, id).await?,
                active: get(&r, "active")?,
                comment: get(&r, "comment")?,
                created: get(&r, "created")?,
                modified: get(&r, "modified")?,
            });
        }
        Ok(out)
    }

    /// Aliases, in any domain, that have `target` among their targets.
    pub async fn aliases_targeting(&self, target: &str) -> Result<Vec<Alias>> {
        let addresses: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT a.address FROM alias a JOIN alias_target t ON t.alias_id = a.id \
             WHERE t.target = ? ORDER BY a.address",
        )
        .bind(target)
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(addresses.len());
        for a in addresses {
            if let Some(alias) = self.alias_get(&a).await? {
                out.push(alias);
            }
        }
        Ok(out)
    }

    pub async fn alias_delete(&self, address: &str) -> Result<()> {
        let address = address.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM alias WHERE address = ?")
                    .bind(&address)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("alias {address}")));
                }
                Ok(())
            })
        })
        .await
    }

    // ---- alias domains ----

    pub async fn alias_domain_create(&self, name: &str, target: &str) -> Result<AliasDomain> {
        let (name, target) = (name.to_string(), target.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                if name == target {
                    return Err(StoreError::Invalid(format!(
                        "{name} cannot be an alias of itself"
                    )));
                }
                let d = domain_in(&mut tx.conn, &target).await?;
                let clash: Option<i64> = sqlx::query_scalar("SELECT id FROM domain WHERE name = ?")
                    .bind(&name)
                    .fetch_optional(&mut tx.conn)
                    .await
                    .map_err(db)?;
                if clash.is_some() {
                    return Err(StoreError::Exists(format!("domain {name}")));
                }
                sqlx::query(
                    "INSERT INTO alias_domain (name, target_domain_id, active, created, modified) \
                     VALUES (?, ?, 1, ?, ?)",
                )
                .bind(&name)
                .bind(d.id)
                .bind(tx.now)
                .bind(tx.now)
                .execute(&mut tx.conn)
                .await
                .map_err(unique_to_exists(format!("alias domain {name}")))?;
                Ok(AliasDomain {
                    name,
                    target: d.name,
                    active: true,
                    created: tx.now,
                })
            })
        })
        .await
    }

    pub async fn alias_domain_get(&self, name: &str) -> Result<Option<AliasDomain>> {
        let row = sqlx::query(
            "SELECT a.name, d.name AS target, a.active, a.created FROM alias_domain a \
             JOIN domain d ON d.id = a.target_domain_id WHERE a.name = ?",
        )
        .bind(name)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(AliasDomain {
                name: get(&r, "name")?,
                target: get(&r, "target")?,
                active: get(&r, "active")?,
                created: get(&r, "created")?,
            })
        })
        .transpose()
    }

    pub async fn alias_domain_list(&self) -> Result<Vec<AliasDomain>> {
        let rows = sqlx::query(
            "SELECT a.name, d.name AS target, a.active, a.created FROM alias_domain a \
             JOIN domain d ON d.id = a.target_domain_id ORDER BY a.name",
        )
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(AliasDomain {
                    name: get(r, "name")?,
                    target: get(r, "target")?,
                    active: get(r, "active")?,
                    created: get(r, "created")?,
                })
            })
            .collect()
    }

    pub async fn alias_domain_delete(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM alias_domain WHERE name = ?")
                    .bind(&name)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("alias domain {name}")));
                }
                Ok(())
            })
        })
        .await
    }

    // ---- administrators ----

    pub async fn admin_create(&self, username: &str, hash: &str) -> Result<Admin> {
        let (username, hash) = (username.to_string(), hash.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO admin (username, password, active, created, modified) \
                     VALUES (?, ?, 1, ?, ?)",
                )
                .bind(&username)
                .bind(&hash)
                .bind(tx.now)
                .bind(tx.now)
                .execute(&mut tx.conn)
                .await
                .map_err(unique_to_exists(format!("administrator {username}")))?;
                Ok(Admin {
                    username,
                    password: hash,
                    active: true,
                    created: tx.now,
                })
            })
        })
        .await
    }

    pub async fn admin_get(&self, username: &str) -> Result<Option<Admin>> {
        let row =
            sqlx::query("SELECT username, password, active, created FROM admin WHERE username = ?")
                .bind(username)
                .fetch_optional(self.reads())
                .await
                .map_err(db)?;
        row.map(|r| {
            Ok(Admin {
                username: get(&r, "username")?,
                password: get(&r, "password")?,
                active: get(&r, "active")?,
                created: get(&r, "created")?,
            })
        })
        .transpose()
    }

    pub async fn admin_set_password(&self, username: &str, hash: &str) -> Result<()> {
        let (username, hash) = (username.to_string(), hash.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n =
                    sqlx::query("UPDATE admin SET password = ?, modified = ? WHERE username = ?")
                        .bind(&hash)
                        .bind(tx.now)
                        .bind(&username)
                        .execute(&mut tx.conn)
                        .await
                        .map_err(db)?
                        .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("administrator {username}")));
                }
                Ok(())
            })
        })
        .await
    }
}
