//! Domains, mailboxes, aliases, alias domains and catch-alls: who exists, where mail for an
//! address goes ([`resolve`]), who may log in ([`auth`]), and the checked admin operations
//! ([`admin`]). Persistence is the store's; this crate adds the rules. Lookups read the store
//! every time, so a change made by an admin command in another process counts at once.

pub mod admin;
pub mod auth;
pub mod login_cache;
pub mod password;
pub mod resolve;

pub use admin::{MIN_PASSWORD_LEN, MailboxSpec};
pub use auth::{FailureCounters, LoginError, Protocol};
pub use resolve::{LocalTarget, Resolution};

use mailstead_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Bad input: an address, a password, a name.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The directory: a view of the store with the rules of addresses and logins.
#[derive(Clone)]
pub struct Directory {
    store: Store,
    failures: Arc<FailureCounters>,
    logins: Arc<login_cache::LoginCache>,
    /// Started at the first password check, so admin commands that never check one start no
    /// threads.
    hashing: Arc<std::sync::OnceLock<login_cache::HashPool>>,
}

impl Directory {
    pub fn new(store: Store) -> Directory {
        Directory {
            store,
            failures: Arc::new(FailureCounters::new(Duration::from_secs(3600), 100_000)),
            logins: Arc::new(login_cache::LoginCache::new(login_cache::TTL)),
            hashing: Arc::new(std::sync::OnceLock::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
