//! The IMAP server: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) with the extensions modern
//! clients use, on port 143 (STARTTLS) and 993 (implicit TLS).
//!
//! [`proto`] is the wire format without I/O (framing, parsing, encoding); [`session`] is one
//! client's state and the commands, talking to the store; [`shell`] runs a session on a
//! connection with literals, IDLE, STARTTLS and COMPRESS. Depends on core, store, directory and
//! listener; never on another service.

mod compress;
mod fetch_render;
pub mod proto;
mod search;
pub mod session;
mod shell;
mod sort;
mod thread;
pub mod view;

use futures::future::BoxFuture;
use mailstead_directory::Directory;
use mailstead_listener::{Connection, Refusal, Service};
use mailstead_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The service's settings, from the configuration.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub hostname: String,
    /// Largest message APPEND takes (MESSAGE_SIZE_LIMIT), advertised as APPENDLIMIT (RFC 7889).
    pub append_limit: u64,
    /// Sessions one user may hold from one address (Dovecot's mail_max_userip_connections,
    /// which mailcow sets to 500 for IMAP).
    pub max_user_connections: u32,
    /// Pause after a failed login.
    pub auth_failure_delay: Duration,
    /// ALLOW_PLAINTEXT_AUTH: accept passwords without TLS from any address.
    pub allow_plaintext_auth: bool,
}

/// The IMAP service, for both of its listeners.
pub struct ImapService {
    shared: Arc<session::Shared>,
}

impl ImapService {
    /// The service; reads every folder's UIDNEXT so that mail arriving from now on counts as
    /// \Recent.
    pub async fn new(
        cfg: ImapConfig,
        directory: Directory,
        store: Store,
    ) -> Result<ImapService, mailstead_store::StoreError> {
        let at_start = store.folder_uidnexts().await?.into_iter().collect();
        Ok(ImapService {
            shared: Arc::new(session::Shared {
                cfg,
                store,
                directory,
                recent: session::RecentTracker::new(at_start),
                user_sessions: Default::default(),
            }),
        })
    }
}

impl Service for ImapService {
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, ()> {
        Box::pin(shell::run(self.shared.clone(), conn))
    }

    fn refusal(&self, reason: Refusal) -> Option<Vec<u8>> {
        match reason {
            Refusal::TooManyFromAddress => {
                Some(b"* BYE [UNAVAILABLE] too many connections from your address\r\n".to_vec())
            }
        }
    }
}
