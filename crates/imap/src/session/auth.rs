//! Logging in: STARTTLS, LOGIN and AUTHENTICATE PLAIN with SASL-IR (RFC 9051 §6.2, RFC 4959,
//! RFC 4616). Without TLS, logins are refused (LOGINDISABLED) unless the configuration allows
//! plain text for local testing.

use super::{Next, Session, State};
use base64::Engine as _;
use mailstead_directory::{LoginError, Protocol};

impl Session {
    pub(super) fn starttls(&mut self, tag: &str) -> Next {
        if self.tls {
            self.bad(tag, "TLS is already active");
        } else if !matches!(self.state, State::NotAuthenticated) {
            self.bad(tag, "STARTTLS is only allowed before logging in");
        } else if !self.starttls {
            self.no(tag, "TLS is not available");
        } else {
            self.ok(tag, "begin TLS negotiation now");
            return Next::StartTls;
        }
        Next::Continue
    }

    /// After the TLS handshake: a new capability list may be asked for (RFC 9051 §6.2.1).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.starttls = false;
    }

    pub(super) async fn login(&mut self, tag: &str, user: &[u8], password: &[u8]) -> Next {
        if !matches!(self.state, State::NotAuthenticated) {
            self.bad(tag, "already logged in");
            return Next::Continue;
        }
        if !self.plaintext_ok() {
            // RFC 9051 §6.2.3: LOGINDISABLED is in force before TLS.
            self.no(
                tag,
                "[PRIVACYREQUIRED] use STARTTLS or port 993 before logging in",
            );
            return Next::Continue;
        }
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            self.no(tag, "[AUTHENTICATIONFAILED] authentication failed");
            return Next::Continue;
        };
        self.check_login(tag, user, password).await
    }

    pub(super) async fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Next {
        if !matches!(self.state, State::NotAuthenticated) {
            self.bad(tag, "already logged in");
            return Next::Continue;
        }
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            self.no(tag, "[CANNOT] only AUTHENTICATE PLAIN is supported");
            return Next::Continue;
        }
        if !self.plaintext_ok() {
            self.no(
                tag,
                "[PRIVACYREQUIRED] use STARTTLS or port 993 before logging in",
            );
            return Next::Continue;
        }
        match initial {
            Some(response) => self.plain_response(tag, &response).await,
            None => {
                // RFC 9051 §6.2.2: an empty challenge.
                self.out.extend_from_slice(b"+ \r\n");
                self.auth_tag = Some(tag.to_string());
                Next::AuthContinue
            }
        }
    }

    /// The client's line after `+ ` in AUTHENTICATE (base64, or `*` to cancel).
    pub async fn auth_line(&mut self, line: &[u8]) -> Next {
        let Some(tag) = self.auth_tag.take() else {
            return Next::Continue;
        };
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"*" {
            self.bad(&tag, "authentication cancelled");
            return Next::Continue;
        }
        match base64::engine::general_purpose::STANDARD.decode(line) {
            Ok(decoded) => self.plain_response(&tag, &decoded).await,
            Err(_) => {
                self.bad(&tag, "the response is not base64");
                Next::Continue
            }
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`.
    async fn plain_response(&mut self, tag: &str, response: &[u8]) -> Next {
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.bad(tag, "malformed PLAIN response");
            return Next::Continue;
        };
        let (Ok(authz), Ok(authc), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pass),
        ) else {
            self.no(tag, "[AUTHENTICATIONFAILED] authentication failed");
            return Next::Continue;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            self.no(
                tag,
                "[AUTHORIZATIONFAILED] acting as another user is not allowed",
            );
            return Next::Continue;
        }
        self.check_login(tag, authc, pass).await
    }

    async fn check_login(&mut self, tag: &str, user: &str, password: &str) -> Next {
        let shared = self.shared.clone();
        match shared
            .directory
            .login(user, password, Protocol::Imap, self.peer)
            .await
        {
            Ok(Ok(mailbox)) => {
                let address = mailbox.address.clone();
                {
                    let mut sessions = shared
                        .user_sessions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let n = sessions.entry((address.clone(), self.peer)).or_insert(0);
                    if *n >= shared.cfg.max_user_connections {
                        drop(sessions);
                        tracing::info!(protocol = "imap", user = %address, client = %self.peer, result = "too many connections", "login failed");
                        self.no(tag, "[LIMIT] too many connections for this user from this address; close some and try again");
                        return Next::Continue;
                    }
                    *n += 1;
                }
                tracing::info!(protocol = "imap", user = %address, client = %self.peer, tls = self.tls, result = "ok", "login");
                self.user = Some(mailbox);
                self.state = State::Authenticated;
                let caps = self.capabilities();
                self.ok(tag, &format!("[CAPABILITY {caps}] logged in"));
            }
            Ok(Err(why)) => {
                tracing::info!(protocol = "imap", user = %user.to_lowercase(), client = %self.peer, result = ?why, "login failed");
                tokio::time::sleep(shared.cfg.auth_failure_delay).await;
                match why {
                    LoginError::BadCredentials | LoginError::Disabled => {
                        self.no(tag, "[AUTHENTICATIONFAILED] authentication failed")
                    }
                    LoginError::ProtocolDenied(_) => {
                        self.no(tag, "[AUTHORIZATIONFAILED] this account may not use IMAP")
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "login check failed");
                self.no(tag, "[UNAVAILABLE] temporary failure, try again later");
            }
        }
        Next::Continue
    }

    /// Releases the per-user connection count; called when the connection ends.
    pub fn finish(&mut self) {
        if let Some(user) = &self.user {
            let mut sessions = self
                .shared
                .user_sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (user.address.clone(), self.peer);
            if let Some(n) = sessions.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    sessions.remove(&key);
                }
            }
        }
    }
}
