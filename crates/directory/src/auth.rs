//! Logging in: password check, access flags, re-hashing imported hashes, and the failed-login
//! counters (per client address and per account) that the ban logic reads.

use crate::password::{self, Verdict};
use crate::{Directory, DirectoryError};
use mailstead_store::Mailbox;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The protocol a login is for, checked against the mailbox's access flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
    Sieve,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
            Protocol::Sieve => "sieve",
        }
    }
}

/// Why a login failed. Protocols tell the client no more than "authentication failed" for
/// `BadCredentials`, so an attacker cannot tell unknown users from wrong passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials,
    /// The mailbox or its domain is disabled.
    Disabled,
    /// The mailbox may not use this protocol (mailcow's imap_access, pop3_access, ...).
    ProtocolDenied(Protocol),
}

/// A hash of nothing useful, verified when the user does not exist so that a lookup for an
/// unknown user costs as much as one for a known user.
const DUMMY_HASH: &str = "{ARGON2ID}$argon2id$v=19$m=7168,t=5,p=1$c29tZXNhbHRzb21lc2FsdA$\
                          8D5G3Jw6lR6Gyg0fKuHd3zUe2DWBa4w09Y0nV2JwJ9Q";

impl Directory {
    /// Checks a login. `username` is the mailbox address (any case).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        protocol: Protocol,
        client: IpAddr,
    ) -> Result<Result<Mailbox, LoginError>, DirectoryError> {
        let address = username.trim().to_lowercase();
        let mailbox = self.store.mailbox_get(&address).await?;
        let stored = mailbox
            .as_ref()
            .map(|m| m.password.clone())
            .unwrap_or_else(|| DUMMY_HASH.into());
        // A password verified lately against this very hash needs no second check.
        let remembered = mailbox.is_some() && self.logins.hit(&address, &stored, password);
        let verdict = if remembered {
            Ok(Verdict::Match { rehash: false })
        } else {
            let pw = password.to_string();
            let checked = stored.clone();
            self.hashing()
                .run(move || password::verify(&checked, &pw))
                .await?
        };
        if !remembered
            && mailbox.is_some()
            && matches!(verdict, Ok(Verdict::Match { rehash: false }))
        {
            self.logins.remember(&address, &stored, password);
        }
        let (mailbox, rehash) = match (mailbox, verdict) {
            (Some(m), Ok(Verdict::Match { rehash })) => (m, rehash),
            (Some(m), Err(e)) => {
                tracing::warn!(user = %m.address, error = %e, "stored password hash cannot be checked");
                self.failures.record(client, &address);
                return Ok(Err(LoginError::BadCredentials));
            }
            _ => {
                self.failures.record(client, &address);
                return Ok(Err(LoginError::BadCredentials));
            }
        };
        let domain_active = self
            .store
            .domain_get(&mailbox.domain)
            .await?
            .is_some_and(|d| d.active);
        if !mailbox.active || !domain_active {
            return Ok(Err(LoginError::Disabled));
        }
        let allowed = match protocol {
            Protocol::Imap => mailbox.access.imap,
            Protocol::Pop3 => mailbox.access.pop3,
            Protocol::Smtp => mailbox.access.smtp,
            Protocol::Sieve => mailbox.access.sieve,
        };
        if !allowed {
            return Ok(Err(LoginError::ProtocolDenied(protocol)));
        }
        self.failures.clear_account(&address);
        if rehash {
            self.upgrade_hash(&mailbox, password).await;
        }
        Ok(Ok(mailbox))
    }

    /// Replaces an imported or weak hash with a fresh argon2id one. Failure only costs the
    /// upgrade; the login itself already succeeded.
    async fn upgrade_hash(&self, mailbox: &Mailbox, password: &str) {
        let pw = password.to_string();
        let new = match self.hashing().run(move || password::hash(&pw)).await {
            Ok(Ok(h)) => h,
            _ => return,
        };
        match self
            .store
            .mailbox_set_password(&mailbox.address, &new, Some(&mailbox.password))
            .await
        {
            Ok(true) => {
                tracing::info!(user = %mailbox.address, "password hash upgraded to argon2id")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(user = %mailbox.address, error = %e, "password hash upgrade failed")
            }
        }
    }

    fn hashing(&self) -> &crate::login_cache::HashPool {
        self.hashing.get_or_init(crate::login_cache::HashPool::new)
    }

    /// Recent failed logins from an address and for an account.
    pub fn failed_logins(&self, client: IpAddr, account: &str) -> (u32, u32) {
        self.failures.counts(client, &account.to_lowercase())
    }
}

/// Failed logins counted in a sliding window. Bounded: the oldest entries go first when full.
pub struct FailureCounters {
    window: Duration,
    capacity: usize,
    by_ip: Mutex<HashMap<IpAddr, Counter>>,
    by_account: Mutex<HashMap<String, Counter>>,
}

#[derive(Clone, Copy)]
struct Counter {
    count: u32,
    since: Instant,
}

impl FailureCounters {
    pub fn new(window: Duration, capacity: usize) -> Self {
        FailureCounters {
            window,
            capacity,
            by_ip: Mutex::new(HashMap::new()),
            by_account: Mutex::new(HashMap::new()),
        }
    }

    fn bump<K: std::hash::Hash + Eq + Clone>(&self, map: &Mutex<HashMap<K, Counter>>, key: K) {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, c| now.duration_since(c.since) < self.window);
            if map.len() >= self.capacity
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, c)| c.since)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let c = map.entry(key).or_insert(Counter {
            count: 0,
            since: now,
        });
        if now.duration_since(c.since) >= self.window {
            *c = Counter {
                count: 0,
                since: now,
            };
        }
        c.count = c.count.saturating_add(1);
    }

    pub fn record(&self, ip: IpAddr, account: &str) {
        self.bump(&self.by_ip, ip);
        self.bump(&self.by_account, account.to_string());
    }

    pub fn clear_account(&self, account: &str) {
        self.by_account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
    }

    fn get<K: std::hash::Hash + Eq>(&self, map: &Mutex<HashMap<K, Counter>>, key: &K) -> u32 {
        let map = map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(c) if c.since.elapsed() < self.window => c.count,
            _ => 0,
        }
    }

    pub fn counts(&self, ip: IpAddr, account: &str) -> (u32, u32) {
        (
            self.get(&self.by_ip, &ip),
            self.get(&self.by_account, &account.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_is_a_valid_argon2id_hash() {
        assert!(matches!(
            password::verify(DUMMY_HASH, "x"),
            Ok(Verdict::Mismatch)
        ));
    }

    #[test]
    fn counters_window_and_capacity() {
        let c = FailureCounters::new(Duration::from_millis(100), 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        c.record(ip, "a@x.test");
        c.record(ip, "a@x.test");
        assert_eq!(c.counts(ip, "a@x.test"), (2, 2));
        c.clear_account("a@x.test");
        assert_eq!(c.counts(ip, "a@x.test"), (2, 0));
        c.record("192.0.2.2".parse().unwrap(), "b@x.test");
        c.record("192.0.2.3".parse().unwrap(), "c@x.test");
        assert_eq!(
            c.by_ip.lock().unwrap().len(),
            2,
            "capacity bounds the table"
        );
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(c.counts(ip, "a@x.test"), (0, 0));
    }
}
