//! The POP3 server (RFC 1939 with CAPA, RFC 2449; STLS, RFC 2595; response codes, RFC 3206;
//! AUTH PLAIN, RFC 5034) on POP_PORT (110, STLS) and POPS_PORT (995, implicit TLS).
//!
//! [`command`], [`line_reader`], [`message_text`], [`maildrop`] and [`session`] are the
//! protocol without I/O: lines in, replies and actions out. [`shell`] runs a session on a
//! connection and carries out its actions with the directory (logins) and the store (the
//! INBOX, message bytes, QUIT's flags and expunges). Depends on store, directory and listener;
//! never on another service. Nothing is deleted outside QUIT's UPDATE state, and a session
//! never sees mail that arrived after its login.

pub mod command;
pub mod inbox_snapshot;
pub mod line_reader;
pub mod mailbox_lock;
pub mod maildrop;
pub mod message_text;
pub mod sasl_plain;
pub mod session;
mod shell;

use futures::future::BoxFuture;
use mailstead_directory::Directory;
use mailstead_listener::{Connection, Refusal, Service};
use mailstead_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The service's settings, from the configuration.
#[derive(Clone, Debug)]
pub struct Pop3Config {
    /// The server's name, for the greeting.
    pub hostname: String,
    /// Pause after a failed login (AUTH_FAILURE_DELAY).
    pub auth_failure_delay: Duration,
    /// ALLOW_PLAINTEXT_AUTH: accept passwords without TLS from any address.
    pub allow_plaintext_auth: bool,
}

/// What every session of the service shares.
pub(crate) struct Shared {
    pub cfg: Pop3Config,
    pub store: Store,
    pub directory: Directory,
    pub locks: mailbox_lock::MailboxLocks,
    pub sizes: inbox_snapshot::SizeCache,
}

/// The POP3 service, for both of its listeners: one lock table for both.
pub struct Pop3Service {
    shared: Arc<Shared>,
}

impl Pop3Service {
    pub fn new(cfg: Pop3Config, directory: Directory, store: Store) -> Pop3Service {
        Pop3Service {
            shared: Arc::new(Shared {
                cfg,
                store,
                directory,
                locks: Default::default(),
                sizes: Default::default(),
            }),
        }
    }
}

impl Service for Pop3Service {
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, ()> {
        Box::pin(shell::run(self.shared.clone(), conn))
    }

    fn refusal(&self, reason: Refusal) -> Option<Vec<u8>> {
        match reason {
            Refusal::TooManyFromAddress => {
                Some(b"-ERR [SYS/TEMP] too many connections from your address\r\n".to_vec())
            }
        }
    }
}
