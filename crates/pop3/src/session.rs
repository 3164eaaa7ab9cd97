//! One POP3 session as a state machine without I/O: lines in, reply bytes and [`Action`]s out
//! (RFC 1939 §3: AUTHORIZATION, TRANSACTION, UPDATE). What needs the outside world (checking a
//! password, reading a message, applying QUIT) is asked for with an action, and its result is
//! handed back by the matching method; the shell does the asking. Replies accumulate in
//! [`Session::out`] until the shell sends them.

use crate::command::{self, Command, ParseError};
use crate::maildrop::{Maildrop, UpdatePlan};
use crate::message_text;
use crate::sasl_plain::{self, PlainError};
use mailstead_store::BlobId;
use std::fmt;
use std::io::Write as _;

/// Failed logins after which the connection is closed. The directory counts failures per
/// address and account as well; this bounds what one connection may try.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// Invalid commands (unknown, malformed, or not allowed in the state) after which the
/// connection is closed.
pub const MAX_BAD_COMMANDS: u32 = 20;

/// What the session is, from the connection.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The server's name, for the greeting.
    pub hostname: String,
    /// TLS is on (implicit TLS, or after STLS).
    pub tls: bool,
    /// STLS can be offered: a certificate exists and TLS is not on yet.
    pub stls: bool,
    /// The client is on the server's own address: its passwords never cross a network.
    pub local: bool,
    /// ALLOW_PLAINTEXT_AUTH: passwords are accepted without TLS from anywhere.
    pub allow_plaintext: bool,
}

/// A user name and password to check.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// "USER" or "PLAIN", for the log.
    pub mechanism: &'static str,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// What the shell must do after sending [`Session::out`].
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the next line.
    Continue,
    /// Close the connection.
    Close,
    /// Drop input already received, negotiate TLS, then call [`Session::tls_started`].
    StartTls,
    /// Check the credentials (and the pop3 access flag), take the mailbox's lock, load the
    /// maildrop, and call [`Session::login_result`].
    Login(Credentials),
    /// Read the message's bytes and call [`Session::message_read`].
    ReadMessage(BlobId),
    /// Enter the UPDATE state: apply the plan and call [`Session::update_done`].
    Update(UpdatePlan),
}

/// How a login check ended.
#[derive(Debug)]
pub enum LoginOutcome {
    LoggedIn(Maildrop),
    /// Wrong user or password, or a disabled mailbox: the client learns nothing more.
    Failed,
    /// The mailbox may not use POP3 (its pop3_access flag).
    Denied,
    /// Another POP3 session holds the mailbox (RFC 1939 §4: an exclusive-access lock).
    InUse,
    /// The directory or store failed.
    Unavailable,
}

/// A RETR or TOP waiting for the message's bytes.
#[derive(Debug, Clone, Copy)]
struct Pending {
    number: u32,
    /// TOP's line count; None for RETR.
    top: Option<u64>,
}

#[derive(Debug)]
enum State {
    /// RFC 1939 §4; `user` is the name given with USER, waiting for PASS.
    Authorization {
        user: Option<String>,
    },
    /// AUTH PLAIN sent its "+ " challenge and waits for the response line (RFC 5034 §4).
    SaslResponse,
    /// A login is being checked.
    Authenticating,
    /// RFC 1939 §5.
    Transaction {
        maildrop: Box<Maildrop>,
        pending: Option<Pending>,
    },
    /// RFC 1939 §6: QUIT is being applied.
    Update,
    Closed,
}

/// One client's session.
pub struct Session {
    settings: Settings,
    state: State,
    auth_failures: u32,
    bad_commands: u32,
    /// Replies waiting to be sent.
    pub out: Vec<u8>,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            state: State::Authorization { user: None },
            auth_failures: 0,
            bad_commands: 0,
            out: Vec::new(),
        }
    }

    /// RFC 1939 §4: the greeting. It carries no APOP timestamp: APOP is not offered.
    pub fn greeting(&mut self) {
        let _ = write!(
            self.out,
            "+OK {} POP3 server ready\r\n",
            self.settings.hostname
        );
    }

    /// Logged in (TRANSACTION state or later).
    pub fn logged_in(&self) -> bool {
        matches!(self.state, State::Transaction { .. } | State::Update)
    }

    pub fn tls(&self) -> bool {
        self.settings.tls
    }

    /// RFC 2595 §2.3: passwords only over TLS, unless the client is on the server's own
    /// address (its traffic never leaves the host) or the configuration allows it.
    pub fn plaintext_ok(&self) -> bool {
        self.settings.tls || self.settings.local || self.settings.allow_plaintext
    }

    /// After the TLS handshake that STLS started.
    pub fn tls_started(&mut self) {
        self.settings.tls = true;
        self.settings.stls = false;
    }

    /// The server is stopping: the session ends without entering the UPDATE state, so
    /// nothing is deleted (RFC 1939 §6).
    pub fn shutting_down(&mut self) {
        self.err("[SYS/TEMP] the server is shutting down, try again later");
        self.state = State::Closed;
    }

    fn ok(&mut self, text: &str) {
        let _ = write!(self.out, "+OK {text}\r\n");
    }

    fn err(&mut self, text: &str) {
        let _ = write!(self.out, "-ERR {text}\r\n");
    }

    /// An invalid command: `-ERR text`, or the connection closes once there were too many.
    fn bad(&mut self, text: &str) -> Action {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            self.err("too many invalid commands, closing the connection");
            self.state = State::Closed;
            return Action::Close;
        }
        self.err(text);
        Action::Continue
    }

    /// A line of more than the reader's bound (RFC 2449 §4).
    pub fn line_too_long(&mut self) -> Action {
        match self.state {
            State::SaslResponse => {
                self.state = State::Authorization { user: None };
                self.bad("the authentication response is too long")
            }
            _ => self.bad(&ParseError::TooLong.to_string()),
        }
    }

    /// One line from the client, without its line end.
    pub fn line(&mut self, line: &[u8]) -> Action {
        match self.state {
            State::SaslResponse => return self.sasl_response(line),
            State::Closed => return Action::Close,
            // The shell hands back a result before it reads another line.
            State::Authenticating | State::Update => return Action::Continue,
            State::Transaction {
                pending: Some(_), ..
            } => return Action::Continue,
            State::Authorization { .. } | State::Transaction { pending: None, .. } => {}
        }
        match command::parse(line) {
            Ok(cmd) => self.command(cmd),
            Err(e) => self.bad(&e.to_string()),
        }
    }

    fn command(&mut self, cmd: Command) -> Action {
        if let Command::Capa = cmd {
            self.capa();
            return Action::Continue;
        }
        match self.state {
            State::Authorization { .. } => self.authorization(cmd),
            State::Transaction { .. } => self.transaction(cmd),
            _ => Action::Continue,
        }
    }

    /// RFC 2449 §5 CAPA. What works before login is listed after it too, except STLS, which
    /// is only allowed before login (RFC 2595 §4).
    fn capa(&mut self) {
        let mut caps = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        if self.plaintext_ok() {
            caps.push("USER");
            caps.push("SASL PLAIN");
        }
        if self.settings.stls
            && !self.settings.tls
            && matches!(self.state, State::Authorization { .. })
        {
            caps.push("STLS");
        }
        caps.push("EXPIRE NEVER");
        caps.push("IMPLEMENTATION mailstead");
        self.ok("capability list follows");
        for c in caps {
            self.out.extend_from_slice(c.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b".\r\n");
    }

    /// RFC 2595 §2.3 and RFC 3206 §4: a password must not travel in clear text.
    fn refuse_plaintext(&mut self) -> Action {
        self.state = State::Authorization { user: None };
        self.err("[AUTH] plaintext authentication is not allowed without TLS; use STLS first");
        Action::Continue
    }

    fn authorization(&mut self, cmd: Command) -> Action {
        match cmd {
            Command::Quit => {
                // RFC 1939 §6: QUIT in the AUTHORIZATION state does not enter UPDATE.
                let text = format!("{} POP3 server signing off", self.settings.hostname);
                self.ok(&text);
                self.state = State::Closed;
                Action::Close
            }
            Command::Stls => {
                // RFC 2595 §4: only in the AUTHORIZATION state, and not twice.
                if self.settings.tls {
                    self.bad("TLS is already active")
                } else if !self.settings.stls {
                    self.err("TLS is not available");
                    Action::Continue
                } else {
                    self.ok("begin TLS negotiation");
                    Action::StartTls
                }
            }
            Command::User(name) => {
                if !self.plaintext_ok() {
                    return self.refuse_plaintext();
                }
                // RFC 1939 §7: the server may say +OK whether or not the name exists, which
                // keeps user names from being probed.
                self.state = State::Authorization { user: Some(name) };
                self.ok("send PASS");
                Action::Continue
            }
            Command::Pass(password) => {
                if !self.plaintext_ok() {
                    return self.refuse_plaintext();
                }
                let State::Authorization { user } = &mut self.state else {
                    return Action::Continue;
                };
                match user.take() {
                    Some(user) => {
                        self.state = State::Authenticating;
                        Action::Login(Credentials {
                            user,
                            password,
                            mechanism: "USER",
                        })
                    }
                    None => self.bad("send USER first"),
                }
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
            Command::Apop => self.bad("APOP is not supported; use USER and PASS, or AUTH PLAIN"),
            Command::Capa => Action::Continue,
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top(..)
            | Command::Uidl(_) => self.bad("log in first"),
        }
    }

    /// RFC 5034 §4 AUTH.
    fn auth(&mut self, mechanism: Option<String>, initial: Option<String>) -> Action {
        self.state = State::Authorization { user: None };
        let Some(mechanism) = mechanism else {
            // AUTH without arguments lists the mechanisms (RFC 1734's form, still sent by
            // some clients to probe).
            if !self.plaintext_ok() {
                return self.refuse_plaintext();
            }
            self.ok("mechanisms follow");
            self.out.extend_from_slice(b"PLAIN\r\n.\r\n");
            return Action::Continue;
        };
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            self.err("unsupported authentication mechanism; use PLAIN");
            return Action::Continue;
        }
        if !self.plaintext_ok() {
            return self.refuse_plaintext();
        }
        match initial {
            Some(response) => self.plain(&response),
            None => {
                // RFC 5034 §4: an empty challenge is "+ " and CRLF.
                self.out.extend_from_slice(b"+ \r\n");
                self.state = State::SaslResponse;
                Action::Continue
            }
        }
    }

    /// The client's line after the "+ " challenge.
    fn sasl_response(&mut self, line: &[u8]) -> Action {
        self.state = State::Authorization { user: None };
        match std::str::from_utf8(line) {
            Ok(text) => self.plain(text.trim_end_matches(' ')),
            Err(_) => self.bad(&PlainError::NotBase64.to_string()),
        }
    }

    fn plain(&mut self, response: &str) -> Action {
        match sasl_plain::decode(response) {
            Ok(c) => {
                self.state = State::Authenticating;
                Action::Login(Credentials {
                    user: c.user,
                    password: c.password,
                    mechanism: "PLAIN",
                })
            }
            // RFC 5034 §4: a cancelled exchange gets -ERR.
            Err(PlainError::Cancelled) => {
                self.err(&PlainError::Cancelled.to_string());
                Action::Continue
            }
            Err(e @ PlainError::OtherIdentity) => self.login_failed(&e.to_string()),
            Err(e) => self.bad(&e.to_string()),
        }
    }

    fn login_failed(&mut self, text: &str) -> Action {
        self.auth_failures += 1;
        self.state = State::Authorization { user: None };
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.err(&format!(
                "{text}; too many failures, closing the connection"
            ));
            self.state = State::Closed;
            return Action::Close;
        }
        self.err(text);
        Action::Continue
    }

    /// The end of [`Action::Login`].
    pub fn login_result(&mut self, outcome: LoginOutcome) -> Action {
        if !matches!(self.state, State::Authenticating) {
            return Action::Continue;
        }
        self.state = State::Authorization { user: None };
        match outcome {
            LoginOutcome::LoggedIn(maildrop) => {
                let (n, octets) = maildrop.stat();
                self.ok(&format!("maildrop has {n} messages ({octets} octets)"));
                self.state = State::Transaction {
                    maildrop: Box::new(maildrop),
                    pending: None,
                };
                Action::Continue
            }
            // RFC 3206 §4: [AUTH] for a problem with the credentials.
            LoginOutcome::Failed => self.login_failed("[AUTH] authentication failed"),
            // RFC 3206 §3: SYS/PERM, a refusal only the administrator can lift.
            LoginOutcome::Denied => {
                self.err("[SYS/PERM] this account may not use POP3; ask the administrator");
                Action::Continue
            }
            // RFC 2449 §8.1: IN-USE, another session has the maildrop.
            LoginOutcome::InUse => {
                self.err("[IN-USE] the mailbox is open in another POP3 session; try again later");
                Action::Continue
            }
            LoginOutcome::Unavailable => {
                self.err("[SYS/TEMP] temporary failure, try again later");
                Action::Continue
            }
        }
    }

    fn transaction(&mut self, cmd: Command) -> Action {
        let State::Transaction { maildrop, pending } = &mut self.state else {
            return Action::Continue;
        };
        let reply: Result<String, String> = match cmd {
            // RFC 1939 §5 STAT: "+OK nn mm".
            Command::Stat => {
                let (n, octets) = maildrop.stat();
                Ok(format!("{n} {octets}"))
            }
            // RFC 1939 §5 LIST: a scan listing, of one message or of all.
            Command::List(Some(n)) => maildrop
                .get(n)
                .map(|m| format!("{n} {}", m.size))
                .map_err(|e| e.to_string()),
            Command::List(None) => {
                let (count, octets) = maildrop.stat();
                let mut listing = format!("+OK {count} messages ({octets} octets)\r\n");
                for (n, m) in maildrop.live() {
                    listing.push_str(&format!("{n} {}\r\n", m.size));
                }
                listing.push_str(".\r\n");
                self.out.extend_from_slice(listing.as_bytes());
                return Action::Continue;
            }
            // RFC 1939 §7 UIDL.
            Command::Uidl(Some(n)) => maildrop
                .get(n)
                .map(|m| format!("{n} {}", maildrop.uidl(m)))
                .map_err(|e| e.to_string()),
            Command::Uidl(None) => {
                let mut listing = String::from("+OK unique-id listing follows\r\n");
                for (n, m) in maildrop.live() {
                    listing.push_str(&format!("{n} {}\r\n", maildrop.uidl(m)));
                }
                listing.push_str(".\r\n");
                self.out.extend_from_slice(listing.as_bytes());
                return Action::Continue;
            }
            Command::Retr(number) | Command::Top(number, _) => {
                let top = match cmd {
                    Command::Top(_, lines) => Some(lines),
                    _ => None,
                };
                match maildrop.get(number) {
                    Ok(m) => {
                        let blob = m.blob;
                        *pending = Some(Pending { number, top });
                        return Action::ReadMessage(blob);
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            // RFC 1939 §5 DELE: only marked; removed at QUIT.
            Command::Dele(n) => maildrop
                .delete(n)
                .map(|()| format!("message {n} deleted"))
                .map_err(|e| e.to_string()),
            Command::Noop => Ok(String::new()),
            Command::Rset => {
                maildrop.reset();
                let (n, octets) = maildrop.stat();
                Ok(format!("maildrop has {n} messages ({octets} octets)"))
            }
            // RFC 1939 §6: QUIT enters the UPDATE state.
            Command::Quit => {
                let plan = maildrop.plan();
                self.state = State::Update;
                return Action::Update(plan);
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop => {
                return self.bad("already logged in");
            }
            Command::Stls => return self.bad("STLS is only allowed before logging in"),
            Command::Capa => return Action::Continue,
        };
        match reply {
            Ok(text) if text.is_empty() => self.out.extend_from_slice(b"+OK\r\n"),
            Ok(text) => self.ok(&text),
            Err(text) => self.err(&text),
        }
        Action::Continue
    }

    /// The end of [`Action::ReadMessage`]: the message's stored bytes, or None when they
    /// cannot be read.
    pub fn message_read(&mut self, raw: Option<&[u8]>) -> Action {
        let State::Transaction { maildrop, pending } = &mut self.state else {
            return Action::Continue;
        };
        let Some(p) = pending.take() else {
            return Action::Continue;
        };
        let Some(raw) = raw else {
            let text = format!(
                "[SYS/TEMP] message {} cannot be read now, try again later",
                p.number
            );
            self.err(&text);
            return Action::Continue;
        };
        let text = message_text::crlf_lines(raw);
        match p.top {
            None => {
                // RFC 1939 §5 RETR: the size, then the message, byte-stuffed.
                maildrop.mark_retrieved(p.number);
                let _ = write!(self.out, "+OK {} octets\r\n", text.len());
                message_text::dot_stuff_into(&mut self.out, &text);
            }
            Some(lines) => {
                // RFC 1939 §7 TOP: leaves the message as it was (no \Seen).
                self.out
                    .extend_from_slice(b"+OK top of message follows\r\n");
                message_text::dot_stuff_into(&mut self.out, message_text::top(&text, lines));
            }
        }
        Action::Continue
    }

    /// The end of [`Action::Update`]: how many messages were removed, or None when the
    /// store failed. The session ends either way.
    pub fn update_done(&mut self, removed: Option<usize>) -> Action {
        if !matches!(self.state, State::Update) {
            return Action::Continue;
        }
        self.state = State::Closed;
        match removed {
            Some(n) => {
                let text = format!(
                    "{} POP3 server signing off ({n} messages deleted)",
                    self.settings.hostname
                );
                self.ok(&text);
            }
            // RFC 1939 §6: "-ERR some deleted messages not removed".
            None => self.err("[SYS/TEMP] some deleted messages not removed"),
        }
        Action::Close
    }
}

#[cfg(test)]
mod tests;
