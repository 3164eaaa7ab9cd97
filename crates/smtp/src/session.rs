//! The SMTP session as a state machine without I/O (RFC 5321 §4.1, with the extensions of
//! RFC 1870 SIZE, 2920 PIPELINING, 3030 CHUNKING, 3207 STARTTLS, 3461 DSN, 4954 AUTH, 6152
//! 8BITMIME, 6531 SMTPUTF8 and 2034 ENHANCEDSTATUSCODES).
//!
//! A command line goes in; replies and [`Action`]s come out. When the session needs something
//! only the outside world has (is this recipient ours? is this password right? the message
//! body), it asks with an action and waits for the matching answer method. The relay decision
//! is made here, from the mode and the authentication state, and nowhere else.

use crate::reply::{self, Reply};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use smtp_proto::{Error as ParseError, Request};
use std::sync::Arc;

/// Which service a session belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail from other servers. No AUTH; only local recipients.
    Mx,
    /// Port 587: clients, STARTTLS, AUTH required (RFC 6409).
    Submission,
    /// Port 465: clients, implicit TLS, AUTH required (RFC 8314).
    Submissions,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Mx => "smtp",
            Mode::Submission => "submission",
            Mode::Submissions => "submissions",
        }
    }
}

/// Limits from the configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub line_limit: usize,
}

/// A recipient as the client gave it, with its DSN parameters (RFC 3461 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// `RCPT_NOTIFY_*` bits of smtp-proto.
    pub notify: u64,
    pub orcpt: Option<String>,
}

/// The parameters of MAIL FROM worth keeping with the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// RET=FULL (`Some(true)`) or RET=HDRS (`Some(false)`).
    pub ret_full: Option<bool>,
    pub envid: Option<String>,
}

/// Where an accepted recipient's mail goes, as the directory said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub mailbox: i64,
    /// The mailbox's address.
    pub address: String,
    /// The recipient as the client gave it (an alias, a `+tag`): Sieve's envelope "to".
    pub rcpt: String,
}

/// The answer to [`Action::CheckRecipient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Ours: deliver to these mailboxes and forward to these remote addresses.
    Local {
        targets: Vec<Target>,
        forward: Vec<String>,
    },
    /// Not one of our domains.
    Remote,
    Unknown,
    Disabled,
    /// The mailbox `address` cannot take more mail now.
    Full(String),
    /// Something went wrong looking it up; the client should try again later.
    TempFail(String),
}

/// The answer to [`Action::Authenticate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The mailbox address that logged in.
    Ok(String),
    Failed,
    TempFail,
}

/// An envelope being built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Short id for logs and the Received header.
    pub id: String,
    /// The reverse path; empty for the null sender.
    pub from: String,
    pub params: MailParams,
    /// Accepted recipients, as given.
    pub rcpts: Vec<Recipient>,
    /// Local mailboxes, each once.
    pub targets: Vec<Target>,
    /// Remote recipients (relay for an authenticated user, or alias forwarding).
    pub remote: Vec<Recipient>,
    /// Recipients refused, for the log.
    pub refused: Vec<(String, u16)>,
    /// BDAT chunks were used.
    pub chunked: bool,
}

/// What the session wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Reply(Reply),
    /// Send the replies so far, then switch to TLS and call [`Session::tls_started`]. Input
    /// already buffered must be discarded (it came in clear text).
    StartTls,
    /// Send the replies so far and close the connection.
    Close,
    /// Is this address one the logged-in user may send as? Answer with
    /// [`Session::sender_checked`].
    CheckSender(String),
    /// Where does mail for this address go? Answer with [`Session::recipient_checked`].
    CheckRecipient(String),
    /// Check a login. Answer with [`Session::auth_checked`].
    Authenticate {
        user: String,
        password: String,
    },
    /// Read the DATA body (after the 354 reply). Answer with [`Session::data_read`].
    ReadData,
    /// Read exactly `size` bytes of a BDAT chunk, keeping them unless `discard`. Answer with
    /// [`Session::chunk_read`].
    ReadChunk {
        size: usize,
        discard: bool,
    },
    /// The message is complete: deliver the transaction ([`Session::transaction`]) and answer
    /// with [`Session::delivered`].
    Deliver,
    /// A transaction ended without delivery, for the log.
    Ended(Transaction, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Awaiting {
    Command,
    /// AUTH PLAIN sent "334 " and waits for the response line.
    AuthPlain,
    /// AUTH LOGIN waits for the user name, then for the password.
    AuthLoginUser,
    AuthLoginPassword(String),
    /// An answer from outside.
    Authentication,
    Sender(String, MailParams),
    Recipient(Recipient),
    Data,
    Chunk {
        last: bool,
        discard: bool,
        size: usize,
    },
    Delivery,
    Closed,
}

/// One SMTP session.
pub struct Session {
    host: Arc<str>,
    mode: Mode,
    limits: Limits,
    tls: bool,
    tls_available: bool,
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
    awaiting: Awaiting,
    /// The reply for a BDAT chunk that is read only to be thrown away.
    pending_chunk_error: Option<Reply>,
    next_id: fn() -> String,
}

impl Session {
    /// A session; `tls` is true on an implicit-TLS listener, `tls_available` when STARTTLS can
    /// be offered. `next_id` makes transaction ids.
    pub fn new(
        host: Arc<str>,
        mode: Mode,
        limits: Limits,
        tls: bool,
        tls_available: bool,
        next_id: fn() -> String,
    ) -> Session {
        Session {
            host,
            mode,
            limits,
            tls,
            tls_available,
            helo: None,
            esmtp: false,
            user: None,
            tx: None,
            errors: 0,
            awaiting: Awaiting::Command,
            pending_chunk_error: None,
            next_id,
        }
    }

    pub fn greeting(&self) -> Reply {
        reply::greeting(&self.host)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn esmtp(&self) -> bool {
        self.esmtp
    }

    pub fn transaction(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// Takes the transaction away (when it ends without delivery, for the log).
    pub fn take_transaction(&mut self) -> Option<Transaction> {
        self.tx.take()
    }

    pub fn is_closed(&self) -> bool {
        self.awaiting == Awaiting::Closed
    }

    /// Counts a failed command; too many close the session (RFC 5321 §4.5.3 leaves the number
    /// to the server; Postfix's smtpd_hard_error_limit is 20).
    fn fail(&mut self, r: Reply, out: &mut Vec<Action>) {
        self.errors += 1;
        out.push(Action::Reply(r));
        if self.errors >= self.limits.max_errors {
            out.push(Action::Reply(reply::too_many_errors(&self.host)));
            out.push(Action::Close);
            self.awaiting = Awaiting::Closed;
        }
    }

    /// A command line that was longer than the limit (its bytes are already discarded).
    pub fn line_too_long(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        self.fail(reply::line_too_long(self.limits.line_limit), &mut out);
        out
    }

    /// One line from the client, with its line end.
    pub fn line(&mut self, line: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.awaiting, Awaiting::Command) {
            Awaiting::Command => self.command(line, &mut out),
            Awaiting::AuthPlain => self.auth_plain_response(line, &mut out),
            Awaiting::AuthLoginUser => match decode_b64_line(line) {
                Some(user) => {
                    self.awaiting = Awaiting::AuthLoginPassword(user);
                    out.push(Action::Reply(Reply::new(334, "", "UGFzc3dvcmQ6")));
                }
                None => self.auth_cancelled_or_bad(line, &mut out),
            },
            Awaiting::AuthLoginPassword(user) => match decode_b64_line(line) {
                Some(password) => {
                    self.awaiting = Awaiting::Authentication;
                    out.push(Action::Authenticate { user, password });
                }
                None => self.auth_cancelled_or_bad(line, &mut out),
            },
            other => {
                // A line while an answer from outside is pending is a bug in the shell; keep
                // the state and refuse the line rather than lose track.
                self.awaiting = other;
                out.push(Action::Reply(reply::bad_sequence(
                    "command out of sequence",
                )));
            }
        }
        out
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<Action>) {
        if line.contains(&0) {
            return self.fail(
                reply::syntax("NUL characters are not allowed in commands"),
                out,
            );
        }
        let req = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(ParseError::UnknownCommand) => return self.fail(reply::unknown_command(), out),
            Err(ParseError::SyntaxError { syntax }) => {
                return self.fail(reply::syntax(&format!("syntax: {syntax}")), out);
            }
            Err(ParseError::InvalidSenderAddress) => {
                return self.fail(Reply::new(501, "5.1.7", "bad sender address syntax"), out);
            }
            Err(ParseError::InvalidRecipientAddress) => {
                // smtp-proto does not take address literals (RFC 5321 §4.1.3); they are
                // valid, and the relay rules, not a syntax error, decide about them.
                if let Some(address) = literal_recipient(line) {
                    let to = smtp_proto::RcptTo {
                        address,
                        orcpt: None,
                        rrvs: 0,
                        flags: 0,
                    };
                    return self.rcpt(to, line, out);
                }
                return self.fail(
                    Reply::new(501, "5.1.3", "bad recipient address syntax"),
                    out,
                );
            }
            Err(ParseError::InvalidParameter { param }) => {
                return self.fail(
                    Reply::new(501, "5.5.4", format!("invalid value of parameter {param}")),
                    out,
                );
            }
            Err(ParseError::UnsupportedParameter { param }) => {
                return self.fail(
                    Reply::new(555, "5.5.4", format!("unsupported parameter {param}")),
                    out,
                );
            }
            Err(e) => {
                return self.fail(
                    reply::syntax(&format!("cannot parse the command: {e:?}")),
                    out,
                );
            }
        };
        match req {
            Request::Ehlo { host } => self.ehlo(host.into_owned(), true, out),
            Request::Helo { host } => self.ehlo(host.into_owned(), false, out),
            Request::Lhlo { .. } => self.fail(reply::unknown_command(), out),
            Request::StartTls => self.starttls(out),
            Request::Auth { mechanism, initial_response } => {
                self.auth(mechanism, initial_response.into_owned(), out)
            }
            Request::Mail { from } => self.mail(from.into_owned(), out),
            Request::Rcpt { to } => self.rcpt(to.into_owned(), line, out),
            Request::Data => self.data(out),
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last, out),
            Request::Rset => {
                self.end_transaction("reset by RSET", out);
                out.push(Action::Reply(reply::ok("reset")));
            }
            Request::Noop { .. } => out.push(Action::Reply(reply::ok("OK"))),
            // RFC 5321 §3.5.3: 252 without confirming anything (no address harvesting).
            Request::Vrfy { .. } => out.push(Action::Reply(Reply::new(
                252,
                "2.5.2",
                "cannot VRFY user, but will accept message and attempt delivery",
            ))),
            Request::Expn { .. } => self.fail(reply::not_implemented("EXPN is not available"), out),
            Request::Help { .. } => {
                out.push(Action::Reply(Reply::new(214, "2.0.0", "see RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS AUTH")))
            }
            Request::Quit => {
                out.push(Action::Reply(reply::bye(&self.host)));
                out.push(Action::Close);
                self.awaiting = Awaiting::Closed;
            }
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.fail(reply::not_implemented("command not implemented"), out)
            }
        }
    }

    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            self.host.to_string(),
            "PIPELINING".into(),
            format!("SIZE {}", self.limits.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if !self.tls && self.tls_available {
            caps.push("STARTTLS".into());
        }
        // RFC 4954 §4: AUTH only where it is allowed, which here means over TLS.
        if self.mode != Mode::Mx && self.tls {
            caps.push("AUTH PLAIN LOGIN".into());
        }
        caps
    }

    /// Drops the current transaction, reporting it for the log.
    fn end_transaction(&mut self, why: &str, out: &mut Vec<Action>) {
        if let Some(tx) = self.tx.take() {
            out.push(Action::Ended(tx, why.to_string()));
        }
    }

    fn ehlo(&mut self, host: String, esmtp: bool, out: &mut Vec<Action>) {
        // RFC 5321 §4.1.4: EHLO resets the transaction like RSET.
        self.end_transaction("reset by EHLO", out);
        self.helo = Some(host);
        self.esmtp = esmtp;
        if esmtp {
            out.push(Action::Reply(Reply::multi(250, "", self.capabilities())));
        } else {
            out.push(Action::Reply(Reply::new(250, "", self.host.to_string())));
        }
    }

    fn starttls(&mut self, out: &mut Vec<Action>) {
        if self.tls {
            return self.fail(reply::bad_sequence("TLS is already active"), out);
        }
        if !self.tls_available {
            return self.fail(Reply::new(454, "4.7.0", "TLS not available"), out);
        }
        out.push(Action::Reply(Reply::new(
            220,
            "2.0.0",
            "ready to start TLS",
        )));
        out.push(Action::StartTls);
    }

    /// After a successful STARTTLS: RFC 3207 §4.2, forget everything learned in clear text.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.tx = None;
    }

    fn auth(&mut self, mechanism: u64, initial: String, out: &mut Vec<Action>) {
        if self.mode == Mode::Mx {
            return self.fail(
                reply::not_implemented("AUTH is not available on this port; use port 587 or 465"),
                out,
            );
        }
        if !self.tls {
            // RFC 4954 §6: 538 when the mechanism needs an encrypted channel.
            return self.fail(
                Reply::new(538, "5.7.11", "encryption required: use STARTTLS first"),
                out,
            );
        }
        if self.user.is_some() {
            return self.fail(reply::bad_sequence("already authenticated"), out);
        }
        if self.tx.is_some() {
            return self.fail(
                reply::bad_sequence("AUTH is not allowed during a mail transaction"),
                out,
            );
        }
        if mechanism == smtp_proto::AUTH_PLAIN {
            if initial.is_empty() {
                self.awaiting = Awaiting::AuthPlain;
                out.push(Action::Reply(Reply::new(334, "", "")));
            } else {
                self.auth_plain_response(initial.as_bytes(), out);
            }
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            if initial.is_empty() {
                self.awaiting = Awaiting::AuthLoginUser;
                out.push(Action::Reply(Reply::new(334, "", "VXNlcm5hbWU6")));
            } else {
                match decode_b64_line(initial.as_bytes()) {
                    Some(user) => {
                        self.awaiting = Awaiting::AuthLoginPassword(user);
                        out.push(Action::Reply(Reply::new(334, "", "UGFzc3dvcmQ6")));
                    }
                    None => self.fail(Reply::new(501, "5.5.2", "cannot decode the response"), out),
                }
            }
        } else {
            self.fail(
                Reply::new(
                    504,
                    "5.5.4",
                    "unsupported authentication mechanism; use PLAIN or LOGIN",
                ),
                out,
            )
        }
    }

    fn auth_cancelled_or_bad(&mut self, line: &[u8], out: &mut Vec<Action>) {
        if trim_eol(line) == b"*" {
            self.fail(Reply::new(501, "5.0.0", "authentication cancelled"), out);
        } else {
            self.fail(Reply::new(501, "5.5.2", "cannot decode the response"), out);
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`, base64.
    fn auth_plain_response(&mut self, line: &[u8], out: &mut Vec<Action>) {
        let Some(decoded) = BASE64.decode(trim_eol(line)).ok() else {
            return self.auth_cancelled_or_bad(line, out);
        };
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.fail(Reply::new(501, "5.5.2", "malformed PLAIN response"), out);
        };
        let (Ok(authz), Ok(authc), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pass),
        ) else {
            return self.fail(
                Reply::new(501, "5.5.2", "the PLAIN response is not UTF-8"),
                out,
            );
        };
        // Acting as another user is not supported: the authorisation identity must be empty or
        // the user's own.
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            return self.fail(
                Reply::new(535, "5.7.8", "authentication credentials invalid"),
                out,
            );
        }
        self.awaiting = Awaiting::Authentication;
        out.push(Action::Authenticate {
            user: authc.to_string(),
            password: pass.to_string(),
        });
    }

    /// The result of [`Action::Authenticate`].
    pub fn auth_checked(&mut self, verdict: AuthVerdict) -> Vec<Action> {
        let mut out = Vec::new();
        self.awaiting = Awaiting::Command;
        match verdict {
            AuthVerdict::Ok(user) => {
                self.user = Some(user);
                out.push(Action::Reply(Reply::new(
                    235,
                    "2.7.0",
                    "authentication successful",
                )));
            }
            AuthVerdict::Failed => self.fail(
                Reply::new(535, "5.7.8", "authentication credentials invalid"),
                &mut out,
            ),
            AuthVerdict::TempFail => self.fail(
                Reply::new(
                    454,
                    "4.7.0",
                    "temporary authentication failure, try again later",
                ),
                &mut out,
            ),
        }
        out
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>, out: &mut Vec<Action>) {
        if self.helo.is_none() {
            return self.fail(reply::bad_sequence("send EHLO first"), out);
        }
        if self.mode != Mode::Mx && self.user.is_none() {
            return self.fail(Reply::new(530, "5.7.0", "authentication required"), out);
        }
        if self.tx.is_some() {
            return self.fail(reply::bad_sequence("nested MAIL command"), out);
        }
        let unsupported = from.flags
            & (smtp_proto::MAIL_BODY_BINARYMIME
                | smtp_proto::MAIL_REQUIRETLS
                | smtp_proto::MAIL_CONPERM
                | smtp_proto::MAIL_BY_NOTIFY
                | smtp_proto::MAIL_BY_RETURN)
            != 0
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mtrk.is_some()
            || from.solicit.is_some()
            || from.trans_id.is_some()
            || from.by != 0;
        if unsupported {
            return self.fail(
                Reply::new(
                    555,
                    "5.5.4",
                    "a MAIL parameter names an extension this server does not offer",
                ),
                out,
            );
        }
        let size = u64::try_from(from.size).unwrap_or(u64::MAX);
        if from.size > 0 && size > self.limits.max_message_size {
            return self.fail(
                Reply::new(
                    552,
                    "5.3.4",
                    format!(
                        "message size exceeds the limit of {} bytes",
                        self.limits.max_message_size
                    ),
                ),
                out,
            );
        }
        let params = MailParams {
            size: (from.size > 0).then_some(size),
            eight_bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
            ret_full: if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
                Some(true)
            } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
                Some(false)
            } else {
                None
            },
            envid: from.env_id,
        };
        let address = from.address;
        if !address.is_empty()
            && let Err(r) = check_path(&address, params.smtputf8, "5.1.7")
        {
            return self.fail(r, out);
        }
        if self.mode != Mode::Mx && !address.is_empty() {
            // RFC 6409 §6.1: submission may check that the sender is the user's.
            self.awaiting = Awaiting::Sender(address.clone(), params);
            out.push(Action::CheckSender(address));
            return;
        }
        self.start_transaction(address, params, out);
    }

    fn start_transaction(&mut self, from: String, params: MailParams, out: &mut Vec<Action>) {
        self.tx = Some(Transaction {
            id: (self.next_id)(),
            from,
            params,
            ..Transaction::default()
        });
        out.push(Action::Reply(Reply::new(250, "2.1.0", "sender OK")));
    }

    /// The result of [`Action::CheckSender`].
    pub fn sender_checked(&mut self, allowed: bool) -> Vec<Action> {
        let mut out = Vec::new();
        let Awaiting::Sender(address, params) =
            std::mem::replace(&mut self.awaiting, Awaiting::Command)
        else {
            return out;
        };
        if allowed {
            self.start_transaction(address, params, &mut out);
        } else {
            let user = self.user.clone().unwrap_or_default();
            self.fail(
                Reply::new(
                    553,
                    "5.7.1",
                    format!("<{address}>: sender address rejected: not owned by user {user}"),
                ),
                &mut out,
            );
        }
        out
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>, line: &[u8], out: &mut Vec<Action>) {
        let Some(tx) = &self.tx else {
            return self.fail(reply::bad_sequence("need MAIL before RCPT"), out);
        };
        if tx.chunked {
            return self.fail(reply::bad_sequence("RCPT after BDAT"), out);
        }
        // RFC 5321 §4.5.3.1.10: 452 for one recipient too many, and keep the others.
        if tx.rcpts.len() >= self.limits.max_recipients {
            // Not counted as an error: a big mailing goes on in the next transaction.
            out.push(Action::Reply(Reply::new(
                452,
                "4.5.3",
                format!(
                    "too many recipients (at most {})",
                    self.limits.max_recipients
                ),
            )));
            return;
        }
        if to.flags
            & (smtp_proto::RCPT_CONNEG
                | smtp_proto::RCPT_RRVS_REJECT
                | smtp_proto::RCPT_RRVS_CONTINUE)
            != 0
        {
            return self.fail(
                Reply::new(
                    555,
                    "5.5.4",
                    "a RCPT parameter names an extension this server does not offer",
                ),
                out,
            );
        }
        let mut address = to.address;
        // RFC 5321 §4.5.1: "postmaster" without a domain must be accepted. The parser gives an
        // empty address for it, as for the invalid `<>`.
        if address.is_empty()
            && line
                .to_ascii_lowercase()
                .windows(12)
                .any(|w| w == b"<postmaster>")
        {
            address = format!("postmaster@{}", self.host);
        }
        if address.is_empty() {
            return self.fail(
                Reply::new(501, "5.1.3", "a recipient address is required"),
                out,
            );
        }
        if let Err(r) = check_path(&address, tx.params.smtputf8, "5.1.3") {
            return self.fail(r, out);
        }
        // smtp-proto keeps only the address of ORCPT; RFC 3461 §4.2 types it, and it is rfc822.
        let orcpt = to.orcpt.map(|o| format!("rfc822;{o}"));
        let rcpt = Recipient {
            address: address.clone(),
            notify: to.flags,
            orcpt,
        };
        self.awaiting = Awaiting::Recipient(rcpt);
        out.push(Action::CheckRecipient(address));
    }

    /// The result of [`Action::CheckRecipient`]. The relay decision is here: an address of no
    /// local domain is accepted only from an authenticated user (never on port 25).
    pub fn recipient_checked(&mut self, verdict: RcptVerdict) -> Vec<Action> {
        let mut out = Vec::new();
        let Awaiting::Recipient(rcpt) = std::mem::replace(&mut self.awaiting, Awaiting::Command)
        else {
            return out;
        };
        let Some(tx) = self.tx.as_mut() else {
            return out;
        };
        let refuse = |code: u16, status: &'static str, text: String| Reply::new(code, status, text);
        let addr = rcpt.address.clone();
        let result = match verdict {
            RcptVerdict::Local { targets, forward } => {
                for t in targets {
                    if !tx.targets.iter().any(|x| x.mailbox == t.mailbox) {
                        tx.targets.push(t);
                    }
                }
                for f in forward {
                    if !tx.remote.iter().any(|r| r.address.eq_ignore_ascii_case(&f)) {
                        tx.remote.push(Recipient {
                            address: f,
                            notify: rcpt.notify,
                            orcpt: Some(format!("rfc822;{addr}")),
                        });
                    }
                }
                Ok(())
            }
            RcptVerdict::Remote if self.user.is_some() => {
                tx.remote.push(rcpt.clone());
                Ok(())
            }
            RcptVerdict::Remote => Err(refuse(
                554,
                "5.7.1",
                format!("<{addr}>: relay access denied"),
            )),
            RcptVerdict::Unknown => Err(refuse(
                550,
                "5.1.1",
                format!("<{addr}>: recipient address rejected: user unknown"),
            )),
            RcptVerdict::Disabled => Err(refuse(
                550,
                "5.2.1",
                format!("<{addr}>: mailbox disabled, not accepting messages"),
            )),
            RcptVerdict::Full(mb) => Err(refuse(
                452,
                "4.2.2",
                format!("<{addr}>: mailbox {mb} is full, try again later"),
            )),
            RcptVerdict::TempFail(why) => Err(refuse(
                451,
                "4.3.0",
                format!("<{addr}>: {why}, try again later"),
            )),
        };
        match result {
            Ok(()) => {
                tx.rcpts.push(rcpt);
                out.push(Action::Reply(Reply::new(250, "2.1.5", "recipient OK")));
            }
            Err(r) => {
                tx.refused.push((addr, r.code));
                self.fail(r, &mut out);
            }
        }
        out
    }

    fn data(&mut self, out: &mut Vec<Action>) {
        match &self.tx {
            None => self.fail(reply::bad_sequence("need MAIL and RCPT before DATA"), out),
            Some(tx) if tx.chunked => self.fail(reply::bad_sequence("DATA after BDAT"), out),
            // RFC 5321 §3.3: no valid recipients, 554.
            Some(tx) if tx.rcpts.is_empty() => {
                self.fail(Reply::new(554, "5.5.1", "no valid recipients"), out)
            }
            Some(_) => {
                self.awaiting = Awaiting::Data;
                out.push(Action::Reply(Reply::new(
                    354,
                    "",
                    "end data with <CR><LF>.<CR><LF>",
                )));
                out.push(Action::ReadData);
            }
        }
    }

    /// The result of [`Action::ReadData`]: how many bytes the message had.
    pub fn data_read(&mut self, size: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.awaiting != Awaiting::Data {
            return out;
        }
        self.awaiting = Awaiting::Command;
        self.body_complete(size, &mut out);
        out
    }

    fn too_big(&mut self, out: &mut Vec<Action>) {
        let r = Reply::new(
            552,
            "5.3.4",
            format!(
                "message size exceeds the limit of {} bytes",
                self.limits.max_message_size
            ),
        );
        self.end_transaction(&r.summary(), out);
        self.fail(r, out);
    }

    fn body_complete(&mut self, size: u64, out: &mut Vec<Action>) {
        if size > self.limits.max_message_size {
            return self.too_big(out);
        }
        self.awaiting = Awaiting::Delivery;
        out.push(Action::Deliver);
    }

    fn bdat(&mut self, size: usize, last: bool, out: &mut Vec<Action>) {
        // The chunk's bytes follow the command whatever happens; they must be read and, on an
        // error, thrown away (RFC 3030 §4).
        let error = match &self.tx {
            None => Some(reply::bad_sequence("need MAIL and RCPT before BDAT")),
            Some(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, "5.5.1", "no valid recipients"))
            }
            Some(_) => None,
        };
        if let Some(tx) = &mut self.tx {
            tx.chunked = true;
        }
        self.awaiting = Awaiting::Chunk {
            last,
            discard: error.is_some(),
            size,
        };
        out.push(Action::ReadChunk {
            size,
            discard: error.is_some(),
        });
        if let Some(e) = error {
            // Remember the reply; it is sent after the chunk is read.
            self.pending_chunk_error = Some(e);
        }
    }

    /// The result of [`Action::ReadChunk`]: `total` is the message size so far.
    pub fn chunk_read(&mut self, total: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Awaiting::Chunk {
            last,
            discard,
            size,
        } = std::mem::replace(&mut self.awaiting, Awaiting::Command)
        else {
            return out;
        };
        if discard {
            let r = self
                .pending_chunk_error
                .take()
                .unwrap_or_else(|| reply::bad_sequence("BDAT out of sequence"));
            self.fail(r, &mut out);
            return out;
        }
        if total > self.limits.max_message_size {
            self.too_big(&mut out);
            return out;
        }
        if last {
            self.body_complete(total, &mut out);
        } else {
            out.push(Action::Reply(Reply::new(
                250,
                "2.0.0",
                format!("{size} octets received"),
            )));
        }
        out
    }

    /// The result of [`Action::Deliver`]: the reply for the whole message. The transaction ends
    /// either way and is returned for the log.
    pub fn delivered(&mut self, result: Reply) -> (Vec<Action>, Option<Transaction>) {
        let mut out = Vec::new();
        self.awaiting = Awaiting::Command;
        let tx = self.tx.take();
        if result.is_positive() {
            out.push(Action::Reply(result));
        } else {
            self.fail(result, &mut out);
        }
        (out, tx)
    }
}

/// `RCPT TO:<local@[192.0.2.1]>` or `<local@[IPv6:...]>`, without parameters: the address.
fn literal_recipient(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(trim_eol(line)).ok()?;
    let upper = text.to_ascii_uppercase();
    let rest = upper.strip_prefix("RCPT TO:")?;
    let start = text.len() - rest.len() + rest.find('<')? + 1;
    let end = start + text[start..].find('>')?;
    if !text[end + 1..].trim().is_empty() {
        return None;
    }
    let address = &text[start..end];
    let (local, domain) = address.rsplit_once('@')?;
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let ip = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    let valid_local = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:@\"".contains(&b));
    (valid_local && ip.parse::<std::net::IpAddr>().is_ok()).then(|| address.to_string())
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn decode_b64_line(line: &[u8]) -> Option<String> {
    let l = trim_eol(line);
    if l == b"*" {
        return None;
    }
    BASE64
        .decode(l)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Checks an envelope address: it has a local part and a domain, and, without SMTPUTF8, only
/// ASCII (RFC 6531 §3.5: 553 5.6.7).
fn check_path(address: &str, smtputf8: bool, bad_syntax_status: &'static str) -> Result<(), Reply> {
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {}
        _ => {
            return Err(Reply::new(
                501,
                bad_syntax_status,
                format!("<{address}>: an address needs a local part and a domain"),
            ));
        }
    }
    if !smtputf8 && !address.is_ascii() {
        return Err(Reply::new(
            553,
            "5.6.7",
            format!("<{address}>: non-ASCII address without SMTPUTF8"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
