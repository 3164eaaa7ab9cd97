//! The ManageSieve server (RFC 5804) on SIEVE_PORT (4190): users store, check, list, fetch,
//! rename, delete and activate their Sieve scripts, over STARTTLS with SASL PLAIN.
//!
//! [`framing`] splits the byte stream into commands, [`command`] parses one, [`session`]
//! answers it (the state machine, without I/O), [`response`] and [`capability`] write the
//! answers; [`shell`] runs a session on a connection with STARTTLS and timeouts. Scripts are
//! compiled by `mailstead-sieve` and kept by the store; logins go through the directory,
//! reached only through [`accounts::Accounts`]. Depends on core, store, directory, listener
//! and sieve; never on another service. It stores and checks scripts; it never runs them.

pub mod accounts;
pub mod capability;
pub mod command;
pub mod framing;
pub mod quota;
pub mod response;
pub mod script_name;
pub mod session;
mod shell;

use accounts::DirectoryAccounts;
use futures::future::BoxFuture;
use mailstead_directory::Directory;
use mailstead_listener::{Connection, Refusal, Service};
use mailstead_store::Store;
use session::Settings;
use std::sync::Arc;
use std::time::Duration;

/// The service's settings, from the configuration.
#[derive(Clone, Debug)]
pub struct ManageSieveConfig {
    pub hostname: String,
    /// Pause after a failed login.
    pub auth_failure_delay: Duration,
    /// ALLOW_PLAINTEXT_AUTH: accept passwords without TLS from any address.
    pub allow_plaintext_auth: bool,
}

/// The ManageSieve service.
pub struct ManageSieveService {
    accounts: Arc<DirectoryAccounts>,
    settings: Arc<Settings>,
    allow_plaintext_auth: bool,
}

impl ManageSieveService {
    pub fn new(cfg: ManageSieveConfig, directory: Directory, store: Store) -> ManageSieveService {
        ManageSieveService {
            accounts: Arc::new(DirectoryAccounts { directory, store }),
            settings: Arc::new(Settings {
                hostname: cfg.hostname,
                auth_failure_delay: cfg.auth_failure_delay,
            }),
            allow_plaintext_auth: cfg.allow_plaintext_auth,
        }
    }
}

impl Service for ManageSieveService {
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, ()> {
        Box::pin(shell::run(
            self.accounts.clone(),
            self.settings.clone(),
            self.allow_plaintext_auth,
            conn,
        ))
    }

    fn refusal(&self, reason: Refusal) -> Option<Vec<u8>> {
        match reason {
            Refusal::TooManyFromAddress => {
                Some(b"BYE (TRYLATER) \"too many connections from your address\"\r\n".to_vec())
            }
        }
    }
}
