//! The async shell around [`Session`]: it owns the connection, reads commands through the
//! framer (answering literal continuation requests), sends the session's output, and does what
//! the session asks for that needs the socket: STARTTLS, COMPRESS, IDLE and the second step of
//! AUTHENTICATE. It decides nothing the session decides.

use crate::compress::Deflate;
use crate::proto::framer::{FrameEvent, Framer, Limits};
use crate::proto::parse::{ParseOptions, parse_command};
use crate::session::{Next, Session, Shared};
use mailstead_listener::Connection;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Time a client has to log in. Before login a connection costs us without serving anyone.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(180);
/// The inactivity autologout timer: at least 30 minutes (RFC 9051 §5.4).
const AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);
/// How often an idling client hears that the connection is alive (Dovecot's
/// imap_idle_notify_interval), which keeps NAT and firewall state from expiring.
const IDLE_KEEPALIVE: Duration = Duration::from_secs(120);
/// Invalid commands in a row after which the connection is closed (Dovecot closes after 10).
const MAX_BAD_COMMANDS: u32 = 20;
/// Longest command line, as Dovecot's imap_max_line_length.
const MAX_LINE: usize = 64 * 1024;
/// Literal limit before login: enough for any user name and password, and no room for a
/// stranger to make us hold megabytes.
const PRE_AUTH_LITERAL: u64 = 64 * 1024;

fn limits(append_limit: u64, authenticated: bool) -> Limits {
    let max_literal = if authenticated {
        append_limit
    } else {
        PRE_AUTH_LITERAL
    };
    Limits {
        max_line: MAX_LINE,
        max_literal,
        // MULTIAPPEND sends several literals in one command; together they stay within the
        // append limit, plus room for the command text.
        max_command: usize::try_from(max_literal)
            .unwrap_or(usize::MAX)
            .saturating_add(1 << 20),
        // LITERAL+ (RFC 7888): non-synchronizing literals up to the same size.
        max_nonsync_literal: max_literal,
    }
}

/// The connection, with compression once it is on.
struct Io {
    conn: Connection,
    deflate: Option<Deflate>,
    buf: Vec<u8>,
    /// The last read filled the buffer: more is coming.
    streaming: bool,
}

/// Read buffer of a connection waiting for its client.
const WAITING_READ: usize = 1024;
/// Read buffer while a client streams (a literal).
const STREAM_READ: usize = 64 * 1024;
/// Output capacity a connection keeps between commands.
const KEPT_OUTPUT: usize = 16 * 1024;

impl Io {
    /// Sends and clears `out`.
    async fn send(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        match &mut self.deflate {
            Some(d) => {
                let wire = d.compress(out)?;
                self.conn.stream.write_all(&wire).await?;
            }
            None => self.conn.stream.write_all(out).await?,
        }
        out.clear();
        // A large FETCH's output room is not kept by a connection that then sits idle.
        if out.capacity() > KEPT_OUTPUT {
            *out = Vec::new();
        }
        self.conn.stream.flush().await
    }

    /// Reads what the client sent into the framer; `false` at the end of the stream.
    ///
    /// Thousands of connections wait here (IDLE), so a waiting read holds a small buffer, and
    /// a large one only while the client streams (the last read filled the buffer: a literal).
    async fn read(&mut self, framer: &mut Framer) -> io::Result<bool> {
        let size = if self.streaming {
            STREAM_READ
        } else {
            WAITING_READ
        };
        if self.buf.len() != size {
            self.buf = vec![0; size];
        }
        let n = self.conn.stream.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(false);
        }
        self.streaming = n == size;
        let data = self.buf.get(..n).unwrap_or_default();
        match &mut self.deflate {
            Some(d) => d.decompress(data, |b| framer.push(b))?,
            None => framer.push(data),
        }
        Ok(true)
    }
}

/// Why a session ended, for the log.
#[derive(Debug)]
enum End {
    Logout,
    ClientClosed,
    Shutdown,
    TooManyErrors,
}

/// Runs one IMAP session to its end.
pub async fn run(shared: Arc<Shared>, conn: Connection) {
    let peer = conn.peer.ip();
    // Dovecot's rule: a client on the server's own address is as safe as one over TLS.
    let local = conn.peer.ip() == conn.local.ip() || shared.cfg.allow_plaintext_auth;
    let tls = conn.tls_info().is_some();
    let mut session = Session::new(shared.clone(), tls, conn.can_start_tls(), peer, local);
    let listener = conn.listener;
    let mut io = Io {
        conn,
        deflate: None,
        buf: Vec::new(),
        streaming: false,
    };
    io.conn.stream.set_idle_timeout(LOGIN_TIMEOUT);
    let mut framer = Framer::new(limits(shared.cfg.append_limit, false));
    session.greeting();
    let end = serve(&mut session, &mut io, &mut framer).await;
    let user = session.user_name().unwrap_or("").to_string();
    session.finish();
    match end {
        Ok(why) => {
            tracing::debug!(listener, client = %peer, user, end = ?why, "imap session ended")
        }
        Err(e) => tracing::debug!(listener, client = %peer, user, error = %e, "imap session ended"),
    }
    let _ = io.conn.stream.shutdown().await;
}

/// `tag BAD text`, or `* BAD text` when the tag is unknown.
fn bad(out: &mut Vec<u8>, tag: Option<&str>, text: &str) {
    out.extend_from_slice(tag.unwrap_or("*").as_bytes());
    out.extend_from_slice(b" BAD ");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

async fn serve(session: &mut Session, io: &mut Io, framer: &mut Framer) -> io::Result<End> {
    let shutdown = io.conn.shutdown.clone();
    let append_limit = session.shared.cfg.append_limit;
    let mut bad_in_a_row = 0u32;
    let mut authenticated = false;
    loop {
        while let Some(event) = framer.next() {
            let mut next = match event {
                FrameEvent::Command(bytes) => {
                    let opts = ParseOptions {
                        utf8: session.utf8(),
                    };
                    match parse_command(&bytes, &opts) {
                        Ok(cmd) => {
                            bad_in_a_row = 0;
                            // Boxed here and below: a command's future (store queries and all)
                            // is large, and inline it would size the task of every connection,
                            // the idle ones too.
                            Box::pin(session.handle(cmd)).await
                        }
                        Err(e) => {
                            bad_in_a_row += 1;
                            bad(&mut session.out, e.tag.as_deref(), &e.message);
                            Next::Continue
                        }
                    }
                }
                // RFC 9051 §7.5: the client may send the literal now.
                FrameEvent::Continue => {
                    session
                        .out
                        .extend_from_slice(b"+ Ready for literal data\r\n");
                    Next::Continue
                }
                FrameEvent::LiteralTooLarge {
                    tag,
                    size,
                    synchronizing,
                } => {
                    let limit = if authenticated {
                        append_limit
                    } else {
                        PRE_AUTH_LITERAL
                    };
                    let text =
                        format!("[TOOBIG] a literal of {size} bytes is over the limit of {limit}");
                    if synchronizing && let Some(tag) = &tag {
                        // RFC 7888 §4 / RFC 7889: the client has not sent it; NO and it stops.
                        session
                            .out
                            .extend_from_slice(format!("{tag} NO {text}\r\n").as_bytes());
                    } else {
                        bad(&mut session.out, tag.as_deref(), &text);
                    }
                    Next::Continue
                }
                FrameEvent::LineTooLong { tag } => {
                    bad_in_a_row += 1;
                    bad(
                        &mut session.out,
                        tag.as_deref(),
                        &format!("the line is longer than {MAX_LINE} bytes"),
                    );
                    Next::Continue
                }
            };
            while next == Next::Resume {
                io.send(&mut session.out).await?;
                next = Box::pin(session.resume()).await;
            }
            if bad_in_a_row >= MAX_BAD_COMMANDS {
                session
                    .out
                    .extend_from_slice(b"* BYE too many invalid commands\r\n");
                io.send(&mut session.out).await?;
                return Ok(End::TooManyErrors);
            }
            match next {
                Next::Continue | Next::Resume => {}
                Next::Close => {
                    io.send(&mut session.out).await?;
                    return Ok(End::Logout);
                }
                Next::StartTls => {
                    io.send(&mut session.out).await?;
                    // Whatever came after STARTTLS arrived in clear text and must not count as
                    // commands of the encrypted session (RFC 9051 §11.1).
                    let injected = framer.clear();
                    if injected > 0 {
                        tracing::warn!(client = %io.conn.peer, bytes = injected, "discarded input sent in clear text after STARTTLS");
                    }
                    io.conn.start_tls().await?;
                    session.tls_started();
                }
                Next::Compress => {
                    io.send(&mut session.out).await?;
                    // RFC 4978 §3: compression starts right after the OK; the client sends
                    // nothing in between.
                    framer.clear();
                    io.deflate = Some(Deflate::new());
                }
                Next::AuthContinue => {
                    let line = match read_line(io, framer, &mut session.out).await? {
                        Some(Ok(line)) => line,
                        Some(Err(_)) => b"*".to_vec(),
                        None => return Ok(End::ClientClosed),
                    };
                    Box::pin(session.auth_line(&line)).await;
                }
                Next::Idle => {
                    if let Some(end) = idle(session, io, framer).await? {
                        return Ok(end);
                    }
                }
            }
            if !authenticated && session.user_name().is_some() {
                authenticated = true;
                framer.set_limits(limits(append_limit, true));
                io.conn.stream.set_idle_timeout(AUTOLOGOUT);
            }
        }
        io.send(&mut session.out).await?;
        tokio::select! {
            biased;
            // A command half received (an APPEND on its way) is finished first.
            _ = shutdown.cancelled(), if framer.buffered() == 0 => {
                session.out.extend_from_slice(b"* BYE server shutting down\r\n");
                io.send(&mut session.out).await?;
                return Ok(End::Shutdown);
            }
            more = io.read(framer) => {
                if !more? {
                    return Ok(End::ClientClosed);
                }
            }
        }
    }
}

/// Reads one raw line (a SASL response); `None` at the end of the stream.
async fn read_line(
    io: &mut Io,
    framer: &mut Framer,
    out: &mut Vec<u8>,
) -> io::Result<Option<Result<Vec<u8>, crate::proto::framer::LineTooLong>>> {
    loop {
        if let Some(line) = framer.take_line() {
            return Ok(Some(line));
        }
        io.send(out).await?;
        if !io.read(framer).await? {
            return Ok(None);
        }
    }
}

/// IDLE (RFC 2177, RFC 9051 §6.3.13): tells the client of changes in its selected mailbox as
/// they happen, until it sends DONE. `Some` when the session is over.
async fn idle(session: &mut Session, io: &mut Io, framer: &mut Framer) -> io::Result<Option<End>> {
    // Catch up first; the selected folder's receiver has held every event since SELECT.
    Box::pin(session.idle_check()).await;
    let shutdown = io.conn.shutdown.clone();
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + IDLE_KEEPALIVE, IDLE_KEEPALIVE);
    loop {
        if let Some(line) = framer.take_line() {
            let done = matches!(&line, Ok(l) if l.eq_ignore_ascii_case(b"DONE"));
            session.idle_end(done);
            return Ok(None);
        }
        io.send(&mut session.out).await?;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                session.out.extend_from_slice(b"* BYE server shutting down\r\n");
                io.send(&mut session.out).await?;
                return Ok(Some(End::Shutdown));
            }
            more = io.read(framer) => {
                if !more? {
                    return Ok(Some(End::ClientClosed));
                }
            }
            _ = session.selected_changed() => Box::pin(session.idle_check()).await,
            _ = keepalive.tick() => session.out.extend_from_slice(b"* OK still here\r\n"),
        }
    }
}
