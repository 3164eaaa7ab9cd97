//! One client's ManageSieve session (RFC 5804): its state, and the answer to each framed
//! command. Frames come in from [`crate::framing`]; responses go out as bytes into
//! [`Session::out`], which the shell sends. The session reaches users and scripts only
//! through [`Accounts`] and never touches the socket: the shell does STARTTLS and timeouts.

mod login;
mod scripts;
#[cfg(test)]
mod tests;

use crate::accounts::{Accounts, User};
use crate::capability::{self, Offer};
use crate::command::{Command, parse_command};
use crate::framing::{Frame, Limits};
use crate::response::{self, Code};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Invalid commands in a row after which the connection is closed.
const MAX_BAD_COMMANDS: u32 = 10;
/// Failed logins after which the connection is closed (Dovecot's login processes close after
/// three); the directory counts failures across connections as well.
const MAX_AUTH_FAILURES: u32 = 3;

/// What every session of a server shares.
#[derive(Clone, Debug)]
pub struct Settings {
    pub hostname: String,
    /// Pause after a failed login.
    pub auth_failure_delay: Duration,
}

/// What the shell must do after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Send the output, then do the TLS handshake and call [`Session::tls_started`].
    StartTls,
    /// Send the output and close the connection.
    Close,
}

/// Where the session is (RFC 5804 §1.2: non-authenticated, then authenticated).
#[derive(Clone, Debug)]
enum State {
    NotAuthenticated,
    Authenticated(User),
}

/// One client.
pub struct Session<A: Accounts> {
    accounts: Arc<A>,
    settings: Arc<Settings>,
    state: State,
    /// AUTHENTICATE sent its challenge and waits for the client's response (§2.1).
    sasl_pending: bool,
    tls: bool,
    /// STARTTLS can be offered (there is a certificate and TLS is not on yet).
    starttls: bool,
    /// The client connects from the server's own address: its traffic never leaves the host,
    /// so a password may go without TLS (Dovecot's rule, as IMAP has it).
    local: bool,
    peer: IpAddr,
    failed_logins: u32,
    bad_in_a_row: u32,
    /// Output waiting to be sent.
    pub out: Vec<u8>,
}

impl<A: Accounts> Session<A> {
    pub fn new(
        accounts: Arc<A>,
        settings: Arc<Settings>,
        tls: bool,
        starttls: bool,
        peer: IpAddr,
        local: bool,
    ) -> Session<A> {
        Session {
            accounts,
            settings,
            state: State::NotAuthenticated,
            sasl_pending: false,
            tls,
            starttls: starttls && !tls,
            local,
            peer,
            failed_logins: 0,
            bad_in_a_row: 0,
            out: Vec::new(),
        }
    }

    /// The greeting: the capabilities and OK (§1.7: the server sends them on connect).
    pub fn greeting(&mut self) {
        self.capabilities();
        let text = format!("{} ManageSieve ready", self.settings.hostname);
        self.ok(None, &text);
    }

    /// The logged-in user's address, for logs.
    pub fn user_name(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated(user) => Some(&user.address),
            State::NotAuthenticated => None,
        }
    }

    pub fn authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated(_))
    }

    /// The input limits for the current state.
    pub fn limits(&self) -> Limits {
        if self.authenticated() {
            Limits::after_login()
        } else {
            Limits::before_login()
        }
    }

    /// Whether a password may be sent now (over TLS, or from the server's own address).
    fn plaintext_ok(&self) -> bool {
        self.tls || self.local
    }

    fn capabilities(&mut self) {
        let owner = match &self.state {
            State::Authenticated(user) => Some(user.address.as_str()),
            State::NotAuthenticated => None,
        };
        let offer = Offer {
            starttls: self.starttls && owner.is_none(),
            plain: self.tls || self.local,
            owner,
        };
        capability::write(&mut self.out, offer);
    }

    fn ok(&mut self, code: Option<&Code>, text: &str) {
        response::ok(&mut self.out, code, text);
    }

    fn no(&mut self, code: Option<&Code>, text: &str) {
        response::no(&mut self.out, code, text);
    }

    fn bye(&mut self, code: Option<&Code>, text: &str) {
        response::bye(&mut self.out, code, text);
    }

    /// An invalid command: answered, and counted.
    fn bad(&mut self, text: &str) -> Next {
        self.no(None, text);
        self.count_bad()
    }

    /// Counts an invalid command already answered; too many in a row end the session.
    fn count_bad(&mut self) -> Next {
        self.bad_in_a_row += 1;
        if self.bad_in_a_row >= MAX_BAD_COMMANDS {
            self.bye(None, "too many invalid commands");
            return Next::Close;
        }
        Next::Continue
    }

    /// The server is shutting down (between commands).
    pub fn shutting_down(&mut self) {
        self.bye(Some(&Code::TryLater), "server shutting down");
    }

    /// The client was silent too long.
    pub fn timed_out(&mut self) {
        self.bye(None, "disconnected for inactivity");
    }

    /// Handles one event of the framer.
    pub async fn frame(&mut self, frame: Frame) -> Next {
        // Whatever comes while AUTHENTICATE waits is the client's response to it.
        let sasl = std::mem::take(&mut self.sasl_pending);
        match frame {
            Frame::Command(bytes) if sasl => self.sasl_response(&bytes).await,
            Frame::Command(bytes) => match parse_command(&bytes) {
                Ok(cmd) => {
                    self.bad_in_a_row = 0;
                    self.command(cmd).await
                }
                Err(e) => self.bad(&e.message),
            },
            Frame::LineTooLong => self.bad(&format!(
                "a line may have at most {} bytes; send long strings as literals",
                self.limits().max_line
            )),
            Frame::LiteralTooLarge { size } => {
                let limit = self.limits().max_literal;
                let text = format!("a literal of {size} bytes is over the limit of {limit}");
                if self.authenticated() {
                    // §1.3 QUOTA/MAXSIZE: the one literal worth sending is a script.
                    self.no(Some(&Code::QuotaMaxSize), &text);
                    // Each one costs reading it; a client that keeps sending them goes.
                    self.count_bad()
                } else {
                    self.bad(&text)
                }
            }
            Frame::CommandTooLarge => self.bad(&format!(
                "a command may have at most {} bytes",
                self.limits().max_command
            )),
            Frame::Lost { size } => {
                self.bye(
                    None,
                    &format!("{size} bytes of refused input are more than this server reads"),
                );
                Next::Close
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Next {
        match cmd {
            // §2.4
            Command::Capability => {
                self.capabilities();
                self.ok(None, "Capability completed.");
            }
            // §2.13: the string comes back in the TAG response code.
            Command::Noop { tag } => self.ok(tag.map(Code::Tag).as_ref(), "Done"),
            // §2.3: OK, then the server closes the connection.
            Command::Logout => {
                self.ok(None, "Logout completed.");
                return Next::Close;
            }
            Command::StartTls => return self.starttls(),
            Command::Authenticate { mechanism, initial } => {
                return self.authenticate(&mechanism, initial).await;
            }
            Command::Unauthenticate => self.unauthenticate(),
            other => {
                let State::Authenticated(user) = &self.state else {
                    self.no(None, "authenticate first");
                    return Next::Continue;
                };
                let user = user.clone();
                self.script_command(&user, other).await;
            }
        }
        Next::Continue
    }
}
