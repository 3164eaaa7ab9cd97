//! Settings of outbound delivery: relay hosts, TLS policy maps, DKIM keys and cached MTA-STS
//! policies.

use crate::group_commit::Tx;
use crate::{Result, Store, StoreError, db};
use serde::Serialize;
use sqlx::Row;

/// `domain.relayhost` of a domain that sends directly even when there is a default relay
/// host (0 means "the default", as in mailcow).
const DIRECT: i64 = -1;

/// How a domain's mail leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainRelay {
    /// Through the default relay host, if there is one.
    Default,
    /// Straight to the recipient's MX.
    Direct,
    /// Through this relay host.
    Host(i64),
}

/// A smarthost (mailcow's relayhost): a server that takes our outbound mail, usually with
/// credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Relayhost {
    pub id: i64,
    pub hostname: String,
    pub port: u16,
    pub username: String,
    /// Kept for AUTH; never printed.
    #[serde(skip)]
    pub password: String,
    pub active: bool,
    pub created: i64,
}

/// A TLS policy for a destination domain (mailcow's TLS policy maps, Postfix's smtp_tls_policy_maps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsPolicy {
    pub dest: String,
    pub policy: String,
    pub parameters: String,
    pub active: bool,
    pub created: i64,
}

/// A domain's DKIM signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// `rsa-2048`, `rsa-1024`, `rsa-4096` or `ed25519`.
    pub algorithm: String,
    /// PKCS#8 PEM; never printed.
    #[serde(skip)]
    pub private_key: String,
    /// Base64 of the SubjectPublicKeyInfo (RSA) or the raw key (Ed25519), as `p=` publishes it.
    pub public_key: String,
    pub created: i64,
}

/// An MTA-STS policy learned from another domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StsPolicyRecord {
    pub domain: String,
    pub id: String,
    pub mode: String,
    pub mx: Vec<String>,
    pub max_age: i64,
    pub fetched: i64,
}

fn relayhost_row(r: &sqlx::sqlite::SqliteRow) -> Result<Relayhost> {
    Ok(Relayhost {
        id: r.try_get("id").map_err(db)?,
        hostname: r.try_get("hostname").map_err(db)?,
        port: u16::try_from(r.try_get::<i64, _>("port").map_err(db)?).unwrap_or(25),
        username: r.try_get("username").map_err(db)?,
        password: r.try_get("password").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        created: r.try_get("created").map_err(db)?,
    })
}

impl Store {
    pub async fn relayhost_create(
        &self,
        hostname: &str,
        port: u16,
        username: &str,
        password: &str,
    ) -> Result<Relayhost> {
        let (hostname, username, password) = (
            hostname.to_string(),
            username.to_string(),
            password.to_string(),
        );
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO relayhost (hostname, port, username, password, active, created) \
                     VALUES (?, ?, ?, ?, 1, ?) RETURNING id",
                )
                .bind(&hostname)
                .bind(i64::from(port))
                .bind(&username)
                .bind(&password)
                .bind(tx.now)
                .fetch_one(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(Relayhost {
                    id,
                    hostname,
                    port,
                    username,
                    password,
                    active: true,
                    created: tx.now,
                })
            })
        })
        .await
    }

    pub async fn relayhost_list(&self) -> Result<Vec<Relayhost>> {
        let rows = sqlx::query("SELECT * FROM relayhost ORDER BY id")
            .fetch_all(self.reads())
            .await
            .map_err(db)?;
        rows.iter().map(relayhost_row).collect()
    }

    pub async fn relayhost_get(&self, id: i64) -> Result<Option<Relayhost>> {
        let row = sqlx::query("SELECT * FROM relayhost WHERE id = ?")
            .bind(id)
            .fetch_optional(self.reads())
            .await
            .map_err(db)?;
        row.as_ref().map(relayhost_row).transpose()
    }

    /// Removes a relay host; domains that used it send directly again.
    pub async fn relayhost_delete(&self, id: i64) -> Result<()> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM relayhost WHERE id = ?")
                    .bind(id)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("relay host {id}")));
                }
                sqlx::query("UPDATE domain SET relayhost = 0 WHERE relayhost = ?")
                    .bind(id)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                sqlx::query("DELETE FROM meta WHERE key = 'default_relayhost' AND value = ?")
                    .bind(id.to_string())
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?;
                Ok(())
            })
        })
        .await
    }

    /// Sets (or clears) the relay host used by domains without their own.
    pub async fn relayhost_set_default(&self, id: Option<i64>) -> Result<()> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                match id {
                    Some(id) => {
                        let exists: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM relayhost WHERE id = ?")
                                .bind(id)
                                .fetch_optional(&mut tx.conn)
                                .await
                                .map_err(db)?;
                        if exists.is_none() {
                            return Err(StoreError::NotFound(format!("relay host {id}")));
                        }
                        sqlx::query(
                            "INSERT INTO meta (key, value) VALUES ('default_relayhost', ?) \
                                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(id.to_string())
                        .execute(&mut tx.conn)
                        .await
                        .map_err(db)?;
                    }
                    None => {
                        sqlx::query("DELETE FROM meta WHERE key = 'default_relayhost'")
                            .execute(&mut tx.conn)
                            .await
                            .map_err(db)?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn relayhost_default(&self) -> Result<Option<i64>> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'default_relayhost'")
                .fetch_optional(self.reads())
                .await
                .map_err(db)?;
        Ok(v.and_then(|s| s.parse().ok()))
    }

    /// Sets how a domain's mail leaves: through the default relay host, directly, or through
    /// a relay host of its own.
    pub async fn domain_set_relayhost(&self, domain: &str, choice: DomainRelay) -> Result<()> {
        let domain = domain.to_string();
        let value = match choice {
            DomainRelay::Default => 0,
            DomainRelay::Direct => DIRECT,
            DomainRelay::Host(id) => id,
        };
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                if let DomainRelay::Host(id) = choice {
                    let exists: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM relayhost WHERE id = ?")
                            .bind(id)
                            .fetch_optional(&mut tx.conn)
                            .await
                            .map_err(db)?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound(format!("relay host {id}")));
                    }
                }
                let n = sqlx::query("UPDATE domain SET relayhost = ? WHERE name = ?")
                    .bind(value)
                    .bind(&domain)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("domain {domain}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// The active relay host mail from `domain` goes through: the domain's own, else the
    /// default unless the domain sends directly, else none (direct delivery).
    pub async fn relayhost_for_domain(&self, domain: &str) -> Result<Option<Relayhost>> {
        let own: Option<i64> = sqlx::query_scalar("SELECT relayhost FROM domain WHERE name = ?")
            .bind(domain)
            .fetch_optional(self.reads())
            .await
            .map_err(db)?;
        let id = match own.unwrap_or(0) {
            DIRECT => None,
            0 => self.relayhost_default().await?,
            id => Some(id),
        };
        match id {
            Some(id) => Ok(self.relayhost_get(id).await?.filter(|r| r.active)),
            None => Ok(None),
        }
    }

    pub async fn tls_policy_set(
        &self,
        dest: &str,
        policy: &str,
        parameters: &str,
    ) -> Result<TlsPolicy> {
        let (dest, policy, parameters) =
            (dest.to_string(), policy.to_string(), parameters.to_string());
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tls_policy (dest, policy, parameters, active, created) VALUES (?, ?, ?, 1, ?) \
                     ON CONFLICT(dest) DO UPDATE SET policy = excluded.policy, parameters = excluded.parameters",
                )
                .bind(&dest)
                .bind(&policy)
                .bind(&parameters)
                .bind(tx.now)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(TlsPolicy { dest, policy, parameters, active: true, created: tx.now })
            })
        })
        .await
    }

    pub async fn tls_policy_list(&self) -> Result<Vec<TlsPolicy>> {
        let rows = sqlx::query(
            "SELECT dest, policy, parameters, active, created FROM tls_policy ORDER BY dest",
        )
        .fetch_all(self.reads())
        .await
        .map_err(db)?;
        rows.iter().map(tls_policy).collect()
    }

    /// The active policy of one destination: read for every outbound delivery, so one row.
    pub async fn tls_policy_get(&self, dest: &str) -> Result<Option<TlsPolicy>> {
        let row = sqlx::query(
            "SELECT dest, policy, parameters, active, created FROM tls_policy \
             WHERE dest = ? AND active = 1",
        )
        .bind(dest)
        .fetch_optional(self.reads())
        .await
        .map_err(db)?;
        row.as_ref().map(tls_policy).transpose()
    }

    pub async fn tls_policy_delete(&self, dest: &str) -> Result<()> {
        let dest = dest.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM tls_policy WHERE dest = ?")
                    .bind(&dest)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("TLS policy for {dest}")));
                }
                Ok(())
            })
        })
        .await
    }

    /// Stores a domain's DKIM key, replacing an older one.
    pub async fn dkim_set(&self, key: DkimKey) -> Result<DkimKey> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO dkim_key (domain, selector, algorithm, private_key, public_key, created) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(domain) DO UPDATE SET selector = excluded.selector, \
                     algorithm = excluded.algorithm, private_key = excluded.private_key, \
                     public_key = excluded.public_key, created = excluded.created",
                )
                .bind(&key.domain)
                .bind(&key.selector)
                .bind(&key.algorithm)
                .bind(&key.private_key)
                .bind(&key.public_key)
                .bind(tx.now)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(DkimKey { created: tx.now, ..key })
            })
        })
        .await
    }

    pub async fn dkim_list(&self) -> Result<Vec<DkimKey>> {
        let rows = sqlx::query("SELECT * FROM dkim_key ORDER BY domain")
            .fetch_all(self.reads())
            .await
            .map_err(db)?;
        rows.iter().map(dkim_key).collect()
    }

    /// One domain's key: read for every submitted message, so one row.
    pub async fn dkim_get(&self, domain: &str) -> Result<Option<DkimKey>> {
        let row = sqlx::query("SELECT * FROM dkim_key WHERE domain = ?")
            .bind(domain)
            .fetch_optional(self.reads())
            .await
            .map_err(db)?;
        row.as_ref().map(dkim_key).transpose()
    }

    pub async fn dkim_delete(&self, domain: &str) -> Result<()> {
        let domain = domain.to_string();
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM dkim_key WHERE domain = ?")
                    .bind(&domain)
                    .execute(&mut tx.conn)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound(format!("DKIM key of {domain}")));
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn sts_get(&self, domain: &str) -> Result<Option<StsPolicyRecord>> {
        let row = sqlx::query("SELECT * FROM sts_policy WHERE domain = ?")
            .bind(domain)
            .fetch_optional(self.reads())
            .await
            .map_err(db)?;
        row.map(|r| {
            let mx: String = r.try_get("mx").map_err(db)?;
            Ok(StsPolicyRecord {
                domain: r.try_get("domain").map_err(db)?,
                id: r.try_get("id").map_err(db)?,
                mode: r.try_get("mode").map_err(db)?,
                mx: mx.split_whitespace().map(str::to_string).collect(),
                max_age: r.try_get("max_age").map_err(db)?,
                fetched: r.try_get("fetched").map_err(db)?,
            })
        })
        .transpose()
    }

    pub async fn sts_put(&self, p: StsPolicyRecord) -> Result<()> {
        self.write(move |tx: &mut Tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO sts_policy (domain, id, mode, mx, max_age, fetched) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT(domain) DO UPDATE SET id = excluded.id, mode = excluded.mode, mx = excluded.mx, \
                     max_age = excluded.max_age, fetched = excluded.fetched",
                )
                .bind(&p.domain)
                .bind(&p.id)
                .bind(&p.mode)
                .bind(p.mx.join(" "))
                .bind(p.max_age)
                .bind(p.fetched)
                .execute(&mut tx.conn)
                .await
                .map_err(db)?;
                Ok(())
            })
        })
        .await
    }
}

fn tls_policy(r: &sqlx::sqlite::SqliteRow) -> Result<TlsPolicy> {
    Ok(TlsPolicy {
        dest: r.try_get("dest").map_err(db)?,
        policy: r.try_get("policy").map_err(db)?,
        parameters: r.try_get("parameters").map_err(db)?,
        active: r.try_get("active").map_err(db)?,
        created: r.try_get("created").map_err(db)?,
    })
}

fn dkim_key(r: &sqlx::sqlite::SqliteRow) -> Result<DkimKey> {
    Ok(DkimKey {
        domain: r.try_get("domain").map_err(db)?,
        selector: r.try_get("selector").map_err(db)?,
        algorithm: r.try_get("algorithm").map_err(db)?,
        private_key: r.try_get("private_key").map_err(db)?,
        public_key: r.try_get("public_key").map_err(db)?,
        created: r.try_get("created").map_err(db)?,
    })
}
