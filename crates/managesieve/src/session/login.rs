//! Logging in and out: STARTTLS (RFC 5804 §2.2), AUTHENTICATE with SASL PLAIN (§2.1,
//! RFC 4616) and UNAUTHENTICATE (§2.14). A password is taken only over TLS or from the
//! server's own address, as IMAP does.

use super::{MAX_AUTH_FAILURES, Next, Session, State};
use crate::accounts::{Accounts, LoginError};
use crate::command::{SaslResponse, parse_sasl_response};
use crate::response::{self, Code};
use base64::Engine as _;

impl<A: Accounts> Session<A> {
    pub(super) fn starttls(&mut self) -> Next {
        if self.tls {
            self.no(None, "TLS is already active");
        } else if self.authenticated() {
            self.no(None, "STARTTLS is only allowed before authenticating");
        } else if !self.starttls {
            self.no(None, "TLS is not available");
        } else {
            self.ok(None, "Begin TLS negotiation now.");
            return Next::StartTls;
        }
        Next::Continue
    }

    /// After the TLS handshake: §2.2, the server sends the capabilities again, then OK.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.starttls = false;
        self.capabilities();
        self.ok(None, "TLS negotiation successful.");
    }

    pub(super) async fn authenticate(&mut self, mechanism: &str, initial: Option<Vec<u8>>) -> Next {
        if self.authenticated() {
            self.no(None, "already authenticated");
            return Next::Continue;
        }
        if mechanism != "PLAIN" {
            self.no(None, "only the PLAIN mechanism is supported");
            return Next::Continue;
        }
        if !self.plaintext_ok() {
            // §1.3 ENCRYPT-NEEDED: the mechanism needs TLS first.
            self.no(
                Some(&Code::EncryptNeeded),
                "use STARTTLS before authenticating",
            );
            return Next::Continue;
        }
        match initial {
            Some(response) => self.plain_base64(&response).await,
            None => {
                // §2.1: the challenge is a string; PLAIN's is empty.
                response::string(&mut self.out, b"");
                self.out.extend_from_slice(b"\r\n");
                self.sasl_pending = true;
                Next::Continue
            }
        }
    }

    /// The client's line after the challenge: a string, or `"*"` to cancel (§2.1).
    pub(super) async fn sasl_response(&mut self, line: &[u8]) -> Next {
        match parse_sasl_response(line) {
            Ok(SaslResponse::Cancel) => {
                // §2.1: a cancelled exchange is answered NO.
                self.no(None, "authentication cancelled");
                Next::Continue
            }
            Ok(SaslResponse::Data(data)) => self.plain_base64(&data).await,
            Err(e) => self.bad(&format!("authentication failed: {e}")),
        }
    }

    async fn plain_base64(&mut self, response: &[u8]) -> Next {
        match base64::engine::general_purpose::STANDARD.decode(response) {
            Ok(decoded) => self.plain(&decoded).await,
            Err(_) => self.bad("authentication failed: the response is not base64"),
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`.
    async fn plain(&mut self, response: &[u8]) -> Next {
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.bad("authentication failed: malformed PLAIN response");
        };
        let (Ok(authz), Ok(authc), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pass),
        ) else {
            return self.login_failed("authentication failed").await;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            self.no(None, "acting as another user is not allowed");
            return Next::Continue;
        }
        self.check_login(authc, pass).await
    }

    async fn check_login(&mut self, user: &str, password: &str) -> Next {
        let accounts = self.accounts.clone();
        match accounts.login(user, password, self.peer).await {
            Ok(user) => {
                tracing::info!(protocol = "managesieve", user = %user.address, client = %self.peer, tls = self.tls, result = "ok", "login");
                self.state = State::Authenticated(user);
                self.ok(None, "Logged in.");
                Next::Continue
            }
            Err(LoginError::Unavailable(e)) => {
                tracing::error!(error = %e, "login check failed");
                self.no(Some(&Code::TryLater), "temporary failure, try again later");
                Next::Continue
            }
            Err(why) => {
                tracing::info!(protocol = "managesieve", user = %user.trim().to_lowercase(), client = %self.peer, tls = self.tls, result = ?why, "login failed");
                let text = match why {
                    LoginError::NoSieveAccess => "this account may not use ManageSieve",
                    _ => "authentication failed",
                };
                self.login_failed(text).await
            }
        }
    }

    /// After the pause, NO; after too many, BYE.
    async fn login_failed(&mut self, text: &str) -> Next {
        tokio::time::sleep(self.settings.auth_failure_delay).await;
        self.failed_logins += 1;
        if self.failed_logins >= MAX_AUTH_FAILURES {
            self.bye(None, "too many failed logins");
            return Next::Close;
        }
        self.no(None, text);
        Next::Continue
    }

    /// §2.14: back to the non-authenticated state; TLS stays on.
    pub(super) fn unauthenticate(&mut self) {
        match &self.state {
            State::Authenticated(user) => {
                tracing::debug!(protocol = "managesieve", user = %user.address, client = %self.peer, "unauthenticated");
                self.state = State::NotAuthenticated;
                self.ok(None, "Unauthenticated.");
            }
            State::NotAuthenticated => self.no(None, "not authenticated"),
        }
    }
}
