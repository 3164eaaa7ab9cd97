//! Inbound SMTP: the MX service on port 25 and mail submission on 587 (STARTTLS) and 465
//! (implicit TLS), delivering to local mailboxes.
//!
//! [`session`] is the protocol as a state machine without I/O; [`data`] decodes message bodies;
//! [`shell`] runs a session on a connection and delivers through the store. The SMTP session
//! never touches the store directly: it asks the shell, which asks the directory and the store.
//! [`local`] routes a message to its local recipients through their Sieve scripts.
//! Depends on core, store, directory, listener and sieve; never on another service.

pub mod data;
mod delivery;
mod dkim;
mod local;
pub mod received;
pub mod reply;
pub mod session;
mod shell;
mod wire;

pub use session::{Limits, Mode};

use futures::future::BoxFuture;
use mailstead_directory::Directory;
use mailstead_listener::{Connection, Refusal, Service};
use mailstead_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The service's settings, from the configuration.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub hostname: Arc<str>,
    pub limits: Limits,
    /// Time for one command line to arrive (Postfix's smtpd_timeout).
    pub command_timeout: Duration,
    /// Time for a whole message body to arrive.
    pub data_timeout: Duration,
    /// Pause after a failed AUTH.
    pub auth_failure_delay: Duration,
}

/// One SMTP listener's service (MX, submission or submissions).
pub struct SmtpService {
    mode: Mode,
    shared: Arc<shell::Shared>,
}

impl SmtpService {
    /// The three services share one state; build them together.
    pub fn services(
        cfg: SmtpConfig,
        directory: Directory,
        store: Store,
    ) -> [(Mode, Arc<SmtpService>); 3] {
        let filter = mailstead_sieve::Filter::new(store.clone(), &cfg.hostname);
        let shared = Arc::new(shell::Shared {
            cfg,
            directory,
            store,
            filter,
        });
        [Mode::Mx, Mode::Submission, Mode::Submissions].map(|mode| {
            (
                mode,
                Arc::new(SmtpService {
                    mode,
                    shared: shared.clone(),
                }),
            )
        })
    }
}

impl Service for SmtpService {
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, ()> {
        Box::pin(shell::run(self.shared.clone(), self.mode, conn))
    }

    fn refusal(&self, reason: Refusal) -> Option<Vec<u8>> {
        match reason {
            Refusal::TooManyFromAddress => Some(
                reply::too_many_connections(&self.shared.cfg.hostname)
                    .to_wire()
                    .into_bytes(),
            ),
        }
    }
}
