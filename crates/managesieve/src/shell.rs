//! The async shell around [`Session`]: it owns the connection, feeds what the client sends
//! through the framer, sends the session's output, and does what needs the socket: the TLS
//! handshake after STARTTLS, the idle timeouts and the goodbye at shutdown. It decides nothing
//! the session decides.

use crate::accounts::DirectoryAccounts;
use crate::framing::Framer;
use crate::session::{Next, Session, Settings};
use mailstead_listener::Connection;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Time a client has to log in: before login a connection costs without serving anyone.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);
/// Inactivity after login before the connection is closed (as IMAP's autologout).
const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);
/// Output is sent once this much waits, even in the middle of pipelined commands, so that a
/// client that sends many GETSCRIPTs without reading cannot make the server hold it all.
const FLUSH_AT: usize = 64 * 1024;
/// Bytes read at a time.
const READ_SIZE: usize = 16 * 1024;

/// Why a session ended, for the log.
#[derive(Debug)]
enum End {
    /// LOGOUT, or a BYE of the session's own.
    Closed,
    ClientClosed,
    Shutdown,
    TimedOut,
}

async fn send(conn: &mut Connection, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    conn.stream.write_all(out).await?;
    out.clear();
    conn.stream.flush().await
}

/// Runs one session to its end.
pub(crate) async fn run(
    accounts: Arc<DirectoryAccounts>,
    settings: Arc<Settings>,
    allow_plaintext_auth: bool,
    mut conn: Connection,
) {
    let peer = conn.peer.ip();
    // Dovecot's rule, as IMAP has it: a client on the server's own address is as safe as one
    // over TLS; ALLOW_PLAINTEXT_AUTH extends that to every address.
    let local = conn.peer.ip() == conn.local.ip() || allow_plaintext_auth;
    let tls = conn.tls_info().is_some();
    let mut session = Session::new(accounts, settings, tls, conn.can_start_tls(), peer, local);
    conn.stream.set_idle_timeout(LOGIN_TIMEOUT);
    let mut framer = Framer::new(session.limits());
    session.greeting();
    let end = serve(&mut session, &mut conn, &mut framer).await;
    let user = session.user_name().unwrap_or("").to_string();
    let listener = conn.listener;
    match end {
        Ok(why) => {
            tracing::debug!(listener, client = %peer, user, end = ?why, "managesieve session ended")
        }
        Err(e) => {
            tracing::debug!(listener, client = %peer, user, error = %e, "managesieve session ended")
        }
    }
    let _ = conn.stream.shutdown().await;
}

async fn serve(
    session: &mut Session<DirectoryAccounts>,
    conn: &mut Connection,
    framer: &mut Framer,
) -> io::Result<End> {
    let shutdown = conn.shutdown.clone();
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        while let Some(frame) = framer.next() {
            let was_authenticated = session.authenticated();
            match session.frame(frame).await {
                Next::Continue => {}
                Next::Close => {
                    send(conn, &mut session.out).await?;
                    return Ok(End::Closed);
                }
                Next::StartTls => {
                    send(conn, &mut session.out).await?;
                    // Whatever came after STARTTLS arrived in clear text and must not count
                    // as commands of the encrypted session (RFC 5804 §2.2).
                    let injected = framer.clear();
                    if injected > 0 {
                        tracing::warn!(client = %conn.peer, bytes = injected, "discarded input sent in clear text after STARTTLS");
                    }
                    conn.start_tls().await?;
                    session.tls_started();
                }
            }
            if session.authenticated() != was_authenticated {
                // A login (or UNAUTHENTICATE) changes what the client may send.
                framer.set_limits(session.limits());
                conn.stream.set_idle_timeout(if session.authenticated() {
                    AUTOLOGOUT
                } else {
                    LOGIN_TIMEOUT
                });
            }
            if session.out.len() >= FLUSH_AT {
                send(conn, &mut session.out).await?;
            }
        }
        send(conn, &mut session.out).await?;
        tokio::select! {
            biased;
            // A command half received (a PUTSCRIPT on its way) is finished first.
            _ = shutdown.cancelled(), if !framer.mid_command() => {
                session.shutting_down();
                send(conn, &mut session.out).await?;
                return Ok(End::Shutdown);
            }
            read = conn.stream.read(&mut buf) => match read {
                Ok(0) => return Ok(End::ClientClosed),
                Ok(n) => framer.push(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    session.timed_out();
                    // Best effort: a client that does not read does not get it.
                    let _ = send(conn, &mut session.out).await;
                    return Ok(End::TimedOut);
                }
                Err(e) => return Err(e),
            },
        }
    }
}
