//! The async shell around [`Session`]: it owns the connection, feeds the session lines, sends
//! its replies, and carries out its actions: STLS, the login check with the mailbox lock and
//! the INBOX snapshot, message reads, and QUIT's update. It decides nothing the session
//! decides. However the connection ends, the mailbox lock is released, and only QUIT changes
//! the store.

use crate::Shared;
use crate::inbox_snapshot;
use crate::line_reader::{LineEvent, LineReader};
use crate::mailbox_lock::MailboxLock;
use crate::maildrop::UpdatePlan;
use crate::session::{Action, Credentials, LoginOutcome, Session, Settings};
use mailstead_directory::{LoginError, Protocol};
use mailstead_listener::Connection;
use mailstead_store::{BlobId, FlagOp, Flags, FolderId};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Time a client has to log in. Before login a connection costs us without serving anyone.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);
/// RFC 1939 §3: the inactivity autologout timer is at least 10 minutes.
const AUTOLOGOUT: Duration = Duration::from_secs(10 * 60);
/// The longest line read. Commands are held to 255 octets by the parser (RFC 2449 §4); this
/// bound is for the AUTH PLAIN response, which is not a command.
const MAX_LINE: usize = 8 * 1024;
/// Output is sent once this much is waiting, so pipelined RETRs do not pile up in memory.
const FLUSH_AT: usize = 64 * 1024;
/// How long the goodbye to an idle client may take to send.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended, for the log.
#[derive(Debug)]
enum End {
    /// QUIT, or the session closed it (too many errors).
    Closed,
    ClientClosed,
    Shutdown,
}

struct Shell {
    shared: Arc<Shared>,
    conn: Connection,
    peer: IpAddr,
    reader: LineReader,
    buf: Vec<u8>,
    /// Held from login to the end of the connection.
    lock: Option<MailboxLock>,
    folder: Option<FolderId>,
    user: Option<String>,
}

/// Runs one POP3 session to its end.
pub(crate) async fn run(shared: Arc<Shared>, conn: Connection) {
    let peer = conn.peer.ip();
    let settings = Settings {
        hostname: shared.cfg.hostname.clone(),
        tls: conn.tls_info().is_some(),
        stls: conn.can_start_tls(),
        // Dovecot's rule: a client on the server's own address is as safe as one over TLS.
        local: peer == conn.local.ip(),
        allow_plaintext: shared.cfg.allow_plaintext_auth,
    };
    let listener = conn.listener;
    let mut session = Session::new(settings);
    let mut shell = Shell {
        shared,
        conn,
        peer,
        reader: LineReader::new(MAX_LINE),
        buf: vec![0; 16 * 1024],
        lock: None,
        folder: None,
        user: None,
    };
    shell.conn.stream.set_idle_timeout(LOGIN_TIMEOUT);
    session.greeting();
    let end = shell.serve(&mut session).await;
    let user = shell.user.take().unwrap_or_default();
    match end {
        Ok(why) => {
            tracing::debug!(listener, client = %peer, user, end = ?why, "pop3 session ended")
        }
        Err(e) => {
            if e.kind() == io::ErrorKind::TimedOut {
                // RFC 1939 §3: autologout, without entering the UPDATE state.
                let goodbye = shell
                    .conn
                    .stream
                    .write_all(b"-ERR disconnected for inactivity\r\n");
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
            }
            tracing::debug!(listener, client = %peer, user, error = %e, "pop3 session ended")
        }
    }
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, shell.conn.stream.shutdown()).await;
    // The lock goes with the shell, after the connection is closed.
    drop(shell.lock.take());
}

/// A name a client sent, fit for a log line: no control characters, bounded length.
fn loggable(name: &str) -> String {
    name.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect::<String>()
        .to_lowercase()
}

impl Shell {
    async fn send(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.conn.stream.write_all(out).await?;
        out.clear();
        self.conn.stream.flush().await
    }

    async fn serve(&mut self, session: &mut Session) -> io::Result<End> {
        let shutdown = self.conn.shutdown.clone();
        loop {
            while let Some(event) = self.reader.next_event() {
                let action = match event {
                    LineEvent::Line(line) => session.line(&line),
                    LineEvent::TooLong => session.line_too_long(),
                };
                if let Some(end) = self.act(session, action).await? {
                    return Ok(end);
                }
                if session.out.len() >= FLUSH_AT {
                    self.send(&mut session.out).await?;
                }
            }
            self.send(&mut session.out).await?;
            tokio::select! {
                biased;
                // A command half received is finished first.
                _ = shutdown.cancelled(), if !self.reader.in_line() => {
                    session.shutting_down();
                    self.send(&mut session.out).await?;
                    return Ok(End::Shutdown);
                }
                n = self.conn.stream.read(&mut self.buf) => {
                    let n = n?;
                    if n == 0 {
                        // The client went away: RFC 1939 §6, no UPDATE state, nothing deleted.
                        return Ok(End::ClientClosed);
                    }
                    self.reader.push(self.buf.get(..n).unwrap_or_default());
                }
            }
        }
    }

    /// Carries out an action and the ones that follow from it; `Some` when the session is
    /// over.
    async fn act(&mut self, session: &mut Session, mut action: Action) -> io::Result<Option<End>> {
        loop {
            action = match action {
                Action::Continue => return Ok(None),
                Action::Close => {
                    self.send(&mut session.out).await?;
                    return Ok(Some(End::Closed));
                }
                Action::StartTls => {
                    self.send(&mut session.out).await?;
                    // What came after STLS in clear text is dropped: it must not run inside the
                    // TLS session (the 2011 STARTTLS command injection).
                    let injected = self.reader.clear();
                    if injected > 0 {
                        tracing::warn!(client = %self.peer, bytes = injected, "discarded input sent in clear text after STLS");
                    }
                    self.conn.start_tls().await?;
                    session.tls_started();
                    return Ok(None);
                }
                Action::Login(credentials) => {
                    let outcome = self.login(session.tls(), credentials).await;
                    let next = session.login_result(outcome);
                    if session.logged_in() {
                        self.conn.stream.set_idle_timeout(AUTOLOGOUT);
                    }
                    next
                }
                Action::ReadMessage(blob) => {
                    let raw = self.read_message(blob).await;
                    session.message_read(raw.as_deref())
                }
                Action::Update(plan) => {
                    let removed = self.update(plan).await;
                    session.update_done(removed)
                }
            };
        }
    }

    /// Checks a login as IMAP does (directory, pop3 access flag, failure delay), then takes
    /// the mailbox's lock and reads its INBOX. One log line per attempt; never the password.
    async fn login(&mut self, tls: bool, c: Credentials) -> LoginOutcome {
        let shared = self.shared.clone();
        let peer = self.peer;
        let mechanism = c.mechanism;
        let result = shared
            .directory
            .login(&c.user, &c.password, Protocol::Pop3, peer)
            .await;
        let mailbox = match result {
            Ok(Ok(mailbox)) => mailbox,
            Ok(Err(why)) => {
                tracing::info!(protocol = "pop3", user = %loggable(&c.user), client = %peer, tls, mechanism, result = ?why, "login failed");
                tokio::time::sleep(shared.cfg.auth_failure_delay).await;
                return match why {
                    LoginError::BadCredentials | LoginError::Disabled => LoginOutcome::Failed,
                    LoginError::ProtocolDenied(_) => LoginOutcome::Denied,
                };
            }
            Err(e) => {
                tracing::error!(protocol = "pop3", user = %loggable(&c.user), client = %peer, tls, mechanism, result = "unavailable", error = %e, "login failed");
                return LoginOutcome::Unavailable;
            }
        };
        let user = mailbox.address.clone();
        let Some(lock) = shared.locks.try_lock(mailbox.id) else {
            tracing::info!(protocol = "pop3", user = %user, client = %peer, tls, mechanism, result = "in use", "login failed");
            return LoginOutcome::InUse;
        };
        match inbox_snapshot::load(&shared.store, &shared.sizes, mailbox.id).await {
            Ok((folder, maildrop)) => {
                tracing::info!(protocol = "pop3", user = %user, client = %peer, tls, mechanism, messages = maildrop.len(), result = "ok", "login");
                self.lock = Some(lock);
                self.folder = Some(folder);
                self.user = Some(user);
                LoginOutcome::LoggedIn(maildrop)
            }
            Err(e) => {
                tracing::error!(protocol = "pop3", user = %user, client = %peer, tls, mechanism, result = "unavailable", error = %e, "login failed");
                LoginOutcome::Unavailable
            }
        }
    }

    async fn read_message(&self, blob: BlobId) -> Option<Vec<u8>> {
        match self.shared.store.blobs().read(blob).await {
            Ok(raw) => Some(raw),
            Err(e) => {
                tracing::warn!(user = self.user.as_deref().unwrap_or(""), blob = %blob.to_hex(), error = %e, "message cannot be read");
                None
            }
        }
    }

    /// RFC 1939 §6 UPDATE: \Seen on what RETR sent, then the deleted messages expunged.
    /// Returns how many were removed, or None when the deletions failed.
    async fn update(&mut self, plan: UpdatePlan) -> Option<usize> {
        let folder = self.folder?;
        let store = &self.shared.store;
        let user = self.user.as_deref().unwrap_or("");
        let seen = plan.seen.len();
        if !plan.seen.is_empty() {
            let r = store
                .set_flags(
                    folder,
                    plan.seen,
                    FlagOp::Add,
                    Flags::SEEN,
                    Vec::new(),
                    None,
                )
                .await;
            if let Err(e) = r {
                // The messages are fetched and kept; only their flag is missing.
                tracing::warn!(protocol = "pop3", user, error = %e, "retrieved messages not marked seen");
            }
        }
        if plan.deleted.is_empty() {
            return Some(0);
        }
        let flagged = store
            .set_flags(
                folder,
                plan.deleted.clone(),
                FlagOp::Add,
                Flags::DELETED,
                Vec::new(),
                None,
            )
            .await;
        let removed = match flagged {
            Ok(_) => store.expunge(folder, Some(plan.deleted)).await,
            Err(e) => Err(e),
        };
        match removed {
            Ok(uids) => {
                tracing::info!(
                    protocol = "pop3",
                    user,
                    deleted = uids.len(),
                    seen,
                    "messages deleted at QUIT"
                );
                Some(uids.len())
            }
            Err(e) => {
                tracing::error!(protocol = "pop3", user, error = %e, "deleted messages not removed at QUIT");
                None
            }
        }
    }
}
