//! The SMTP client that hands messages to other servers (RFC 5321 §3 and §4 from the client's
//! side, with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, DSN, STARTTLS and AUTH PLAIN).
//!
//! A peer is not trusted: every reply is read with a deadline, a bound on its lines and on their
//! length, so a server that stalls, babbles or sends endless continuation lines costs a bounded
//! time and memory and ends in an error the queue turns into a retry.

use base64::Engine as _;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Most lines of one reply.
const MAX_REPLY_LINES: usize = 100;
/// Longest reply line we read (RFC 5321 §4.5.3.1.5 says 512; peers are generous).
const MAX_REPLY_LINE: usize = 4096;

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// For each reply, including the greeting (Postfix's smtp_helo_timeout etc. are 300 s).
    pub command: Duration,
    /// For sending the message and its final reply.
    pub data: Duration,
}

/// How TLS is handled with a peer.
#[derive(Clone)]
pub enum TlsMode {
    /// STARTTLS if offered, certificate not checked; clear text otherwise (RFC 7435).
    Opportunistic(Arc<rustls::ClientConfig>),
    /// STARTTLS required and the certificate checked by this configuration (PKIX or DANE).
    Required(Arc<rustls::ClientConfig>),
    /// No TLS even if offered (a TLS policy of `none`).
    Never,
}

/// A reply: the code and its text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn synthetic(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply on one line, as logs and DSNs show it: `550 5.1.1 text / more text`.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("timeout waiting for {0}")]
    Timeout(&'static str),
    #[error("connection error: {0}")]
    Io(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer refused a step outside a mail transaction (greeting, EHLO, STARTTLS, AUTH).
    #[error("{stage} refused: {reply}")]
    Refused { stage: &'static str, reply: Reply },
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("TLS is required but {0} does not offer STARTTLS")]
    TlsNotOffered(String),
}

/// What EHLO told us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub esmtp: bool,
    pub pipelining: bool,
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub starttls: bool,
    pub auth_plain: bool,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut c = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eight_bit = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "CHUNKING" => c.chunking = true,
                "DSN" => c.dsn = true,
                "STARTTLS" => c.starttls = true,
                "AUTH" => c.auth_plain = words.any(|w| w.eq_ignore_ascii_case("PLAIN")),
                _ => {}
            }
        }
        c
    }
}

/// The envelope of one message.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    pub from: String,
    pub rcpts: Vec<EnvRcpt>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub ret_full: Option<bool>,
    pub envid: Option<String>,
}

#[derive(Clone, Debug)]
pub struct EnvRcpt {
    pub address: String,
    /// smtp-proto's RCPT_NOTIFY_* bits.
    pub notify: u64,
    /// `rfc822;addr`.
    pub orcpt: Option<String>,
}

/// RFC 3461 §4: xtext encodes `+`, `=` and everything outside `!`..`~` as `+HH`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open SMTP session with a peer.
pub struct SmtpSession {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    pub caps: Capabilities,
    /// The host name we connected to (the MX).
    pub host: String,
    pub addr: SocketAddr,
    /// `TLSv1.3 TLS_AES_256_GCM_SHA384` when encrypted.
    pub tls: Option<String>,
    timeouts: Timeouts,
}

/// The outcome of one transaction for each recipient, in envelope order: the reply that
/// decided it (the RCPT reply if refused there, else the reply to the message data).
pub type RcptReplies = Vec<Reply>;

impl SmtpSession {
    /// Connects, reads the greeting, says EHLO (HELO if EHLO is refused), starts TLS as `tls`
    /// says and logs in when `auth` is given (only over TLS: a password never goes in clear).
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        helo_name: &str,
        timeouts: Timeouts,
        tls: &TlsMode,
        auth: Option<(&str, &str)>,
    ) -> Result<SmtpSession, ClientError> {
        let tcp = timeout(timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout("the connection"))?
            .map_err(|e| ClientError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let mut s = SmtpSession {
            io: Box::new(tcp),
            buf: Vec::new(),
            caps: Capabilities::default(),
            host: host.to_string(),
            addr,
            tls: None,
            timeouts,
        };
        let greeting = s.reply("the greeting").await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused {
                stage: "greeting",
                reply: greeting,
            });
        }
        s.hello(helo_name).await?;
        let tls_config = match tls {
            TlsMode::Never => None,
            TlsMode::Opportunistic(c) => s.caps.starttls.then(|| c.clone()),
            TlsMode::Required(c) => {
                if !s.caps.starttls {
                    return Err(ClientError::TlsNotOffered(host.to_string()));
                }
                Some(c.clone())
            }
        };
        if let Some(config) = tls_config {
            s.starttls(config).await?;
            s.hello(helo_name).await?;
        }
        if let Some((user, password)) = auth {
            if s.tls.is_none() {
                return Err(ClientError::TlsNotOffered(host.to_string()));
            }
            s.login(user, password).await?;
        }
        Ok(s)
    }

    async fn hello(&mut self, name: &str) -> Result<(), ClientError> {
        let r = self.command(&format!("EHLO {name}"), "EHLO").await?;
        if r.code == 250 {
            self.caps = Capabilities::from_ehlo(&r);
            return Ok(());
        }
        // RFC 5321 §4.1.1.1: a server that does not know EHLO gets HELO.
        let r = self.command(&format!("HELO {name}"), "HELO").await?;
        if r.code != 250 {
            return Err(ClientError::Refused {
                stage: "HELO",
                reply: r,
            });
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    async fn starttls(&mut self, config: Arc<rustls::ClientConfig>) -> Result<(), ClientError> {
        let r = self.command("STARTTLS", "STARTTLS").await?;
        if r.code != 220 {
            return Err(ClientError::Refused {
                stage: "STARTTLS",
                reply: r,
            });
        }
        if !self.buf.is_empty() {
            return Err(ClientError::Protocol(
                "the server sent data after its STARTTLS reply".into(),
            ));
        }
        let literal = self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("IPv6:");
        let name = match literal.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(self.host.clone())
                .map_err(|e| ClientError::Tls(format!("{}: {e}", self.host)))?,
        };
        let io = std::mem::replace(&mut self.io, Box::new(tokio::io::duplex(1).0));
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = timeout(self.timeouts.command, connector.connect(name, io))
            .await
            .map_err(|_| ClientError::Timeout("the TLS handshake"))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let (_, conn) = stream.get_ref();
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            v => format!("{v:?}"),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("unknown");
        // rustls names TLS 1.3 suites TLS13_*; RFC 8446 §B.4 names them TLS_*.
        let cipher = cipher
            .strip_prefix("TLS13_")
            .map(|r| format!("TLS_{r}"))
            .unwrap_or_else(|| cipher.to_string());
        self.tls = Some(format!("{version} {cipher}"));
        self.io = Box::new(stream);
        Ok(())
    }

    async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        if !self.caps.auth_plain {
            return Err(ClientError::Protocol(format!(
                "{} does not offer AUTH PLAIN",
                self.host
            )));
        }
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        let r = self
            .command_logged(&format!("AUTH PLAIN {token}"), "AUTH PLAIN ****", "AUTH")
            .await?;
        if r.code != 235 {
            return Err(ClientError::Refused {
                stage: "AUTH",
                reply: r,
            });
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8], deadline: Duration) -> Result<(), ClientError> {
        timeout(deadline, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("the peer to take data"))?
        .map_err(|e| ClientError::Io(e.to_string()))
    }

    async fn command(&mut self, line: &str, stage: &'static str) -> Result<Reply, ClientError> {
        self.command_logged(line, line, stage).await
    }

    async fn command_logged(
        &mut self,
        line: &str,
        shown: &str,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        tracing::trace!(host = %self.host, command = shown, "smtp client sends");
        self.write(format!("{line}\r\n").as_bytes(), self.timeouts.command)
            .await?;
        self.reply(stage).await
    }

    /// Reads one reply, bounded in time, lines and line length.
    async fn reply(&mut self, what: &'static str) -> Result<Reply, ClientError> {
        let deadline = self.timeouts.command;
        timeout(deadline, self.read_reply())
            .await
            .map_err(|_| ClientError::Timeout(what))?
    }

    async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line().await?;
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(ClientError::Protocol(format!(
                    "not an SMTP reply: {:?}",
                    truncate(&line)
                )));
            }
            let this: u16 = line[..3]
                .parse()
                .map_err(|_| ClientError::Protocol("bad reply code".into()))?;
            if code.is_some_and(|c| c != this) {
                return Err(ClientError::Protocol(
                    "reply lines with different codes".into(),
                ));
            }
            code = Some(this);
            let sep = bytes.get(3).copied();
            lines.push(line.get(4..).unwrap_or("").to_string());
            match sep {
                None | Some(b' ') => {
                    return Ok(Reply { code: this, lines });
                }
                Some(b'-') => {}
                Some(_) => {
                    return Err(ClientError::Protocol(format!(
                        "not an SMTP reply: {:?}",
                        truncate(&line)
                    )));
                }
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol(format!(
                    "reply longer than {MAX_REPLY_LINES} lines"
                )));
            }
        }
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf) {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&raw);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buf.len() > MAX_REPLY_LINE {
                return Err(ClientError::Protocol(format!(
                    "reply line longer than {MAX_REPLY_LINE} bytes"
                )));
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| ClientError::Io(e.to_string()))?;
            if n == 0 {
                return Err(ClientError::Io("the peer closed the connection".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one message. Returns one reply per recipient; an `Err` means the connection is
    /// unusable and no recipient's fate is known.
    pub async fn send(
        &mut self,
        env: &Envelope,
        message: &[u8],
    ) -> Result<RcptReplies, ClientError> {
        let all = |r: Reply| vec![r; env.rcpts.len()];
        // RFC 6152 §3: 8-bit content goes to a server without 8BITMIME only converted to
        // 7-bit MIME (as Postfix does), never as it is.
        let converted;
        let message = if !self.caps.eight_bit && !message.is_ascii() {
            converted = crate::downgrade::to_seven_bit(message);
            converted.as_deref().unwrap_or(message)
        } else {
            message
        };
        // RFC 6531 §3.7.5: without SMTPUTF8 at the peer the message cannot be sent as it is.
        if env.smtputf8 && !self.caps.smtputf8 {
            return Ok(all(Reply::synthetic(
                550,
                format!(
                    "5.6.7 the message needs SMTPUTF8 and {} does not support it",
                    self.host
                ),
            )));
        }
        if let Some(limit) = self.caps.size
            && limit > 0
            && message.len() as u64 > limit
        {
            return Ok(all(Reply::synthetic(
                552,
                format!(
                    "5.3.4 the message is larger than {} accepts ({limit} bytes)",
                    self.host
                ),
            )));
        }
        let mut mail = format!("MAIL FROM:<{}>", env.from);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if env.eight_bit && self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if env.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            match env.ret_full {
                Some(true) => mail.push_str(" RET=FULL"),
                Some(false) => mail.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(id) = &env.envid {
                mail.push_str(&format!(" ENVID={}", xtext(id)));
            }
        }
        let rcpt_lines: Vec<String> = env.rcpts.iter().map(|r| self.rcpt_line(r)).collect();
        let use_bdat = self.caps.chunking;
        let (mail_reply, rcpt_replies) = if self.caps.pipelining {
            // RFC 2920 §3.1: MAIL and RCPT in one batch, then the replies in order.
            let mut batch = format!("{mail}\r\n");
            for l in &rcpt_lines {
                batch.push_str(l);
                batch.push_str("\r\n");
            }
            self.write(batch.as_bytes(), self.timeouts.command).await?;
            let mail_reply = self.reply("the MAIL reply").await?;
            let mut replies = Vec::with_capacity(rcpt_lines.len());
            for _ in &rcpt_lines {
                replies.push(self.reply("a RCPT reply").await?);
            }
            (mail_reply, replies)
        } else {
            let mail_reply = self.command(&mail, "MAIL").await?;
            let mut replies = Vec::with_capacity(rcpt_lines.len());
            if mail_reply.is_positive() {
                for l in &rcpt_lines {
                    replies.push(self.command(l, "RCPT").await?);
                }
            }
            (mail_reply, replies)
        };
        if !mail_reply.is_positive() {
            self.reset().await?;
            return Ok(all(mail_reply));
        }
        if !rcpt_replies.iter().any(Reply::is_positive) {
            self.reset().await?;
            return Ok(rcpt_replies);
        }
        let final_reply = if use_bdat {
            let mut head = format!("BDAT {} LAST\r\n", message.len()).into_bytes();
            head.extend_from_slice(message);
            self.write(&head, self.timeouts.data).await?;
            timeout(self.timeouts.data, self.read_reply())
                .await
                .map_err(|_| ClientError::Timeout("the reply to BDAT"))??
        } else {
            let r = self.command("DATA", "DATA").await?;
            if r.code != 354 {
                self.reset().await?;
                return Ok(rcpt_replies
                    .into_iter()
                    .map(|x| if x.is_positive() { r.clone() } else { x })
                    .collect());
            }
            let body = dot_stuff(message);
            self.write(&body, self.timeouts.data).await?;
            timeout(self.timeouts.data, self.read_reply())
                .await
                .map_err(|_| ClientError::Timeout("the reply to the message"))??
        };
        if !final_reply.is_positive() {
            // After a refused message the session is still in a clean state (RFC 5321 §4.1.1.4).
            self.reset().await.ok();
        }
        Ok(rcpt_replies
            .into_iter()
            .map(|r| {
                if r.is_positive() {
                    final_reply.clone()
                } else {
                    r
                }
            })
            .collect())
    }

    fn rcpt_line(&self, r: &EnvRcpt) -> String {
        let mut line = format!("RCPT TO:<{}>", r.address);
        if self.caps.dsn {
            let mut notify = Vec::new();
            if r.notify & smtp_proto::RCPT_NOTIFY_NEVER != 0 {
                notify.push("NEVER");
            } else {
                if r.notify & smtp_proto::RCPT_NOTIFY_SUCCESS != 0 {
                    notify.push("SUCCESS");
                }
                if r.notify & smtp_proto::RCPT_NOTIFY_FAILURE != 0 {
                    notify.push("FAILURE");
                }
                if r.notify & smtp_proto::RCPT_NOTIFY_DELAY != 0 {
                    notify.push("DELAY");
                }
            }
            if !notify.is_empty() {
                line.push_str(&format!(" NOTIFY={}", notify.join(",")));
            }
            if let Some(o) = &r.orcpt {
                let (kind, addr) = o.split_once(';').unwrap_or(("rfc822", o));
                line.push_str(&format!(" ORCPT={kind};{}", xtext(addr)));
            }
        }
        line
    }

    /// RSET, to start a new transaction on the same connection.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let r = self.command("RSET", "RSET").await?;
        if r.code != 250 {
            return Err(ClientError::Refused {
                stage: "RSET",
                reply: r,
            });
        }
        Ok(())
    }

    /// QUIT and close; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(5), async {
            let _ = self.io.write_all(b"QUIT\r\n").await;
            let _ = self.read_reply().await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The message as DATA sends it (RFC 5321 §4.5.2): a dot doubled at the start of each line,
/// a CRLF at the end if missing, then `.` CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("a+b=c d@ex"), "a+2Bb+3Dc+20d@ex");
        assert_eq!(xtext("Bob@Example.org"), "Bob@Example.org");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no end"), b"no end\r\n.\r\n");
    }

    #[test]
    fn capabilities() {
        let r = Reply {
            code: 250,
            lines: [
                "mx.test",
                "PIPELINING",
                "SIZE 1000",
                "8BITMIME",
                "SMTPUTF8",
                "CHUNKING",
                "DSN",
                "STARTTLS",
                "AUTH LOGIN PLAIN",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        };
        let c = Capabilities::from_ehlo(&r);
        assert!(
            c.pipelining
                && c.eight_bit
                && c.smtputf8
                && c.chunking
                && c.dsn
                && c.starttls
                && c.auth_plain
        );
        assert_eq!(c.size, Some(1000));
    }

    /// A scripted peer: reads lines, answers from a script.
    async fn peer(script: Vec<&'static str>) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            for step in script {
                if let Some(reply) = step.strip_prefix("> ") {
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                } else {
                    // Wait for a command line.
                    let mut buf = [0u8; 65536];
                    let _ = s.read(&mut buf).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        addr
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_millis(500),
            data: Duration::from_secs(2),
        }
    }

    /// Connects to a scripted peer that must fail the greeting, and returns the error.
    async fn connect_error(addr: SocketAddr) -> ClientError {
        SmtpSession::connect(
            addr,
            "mx.test",
            "me.test",
            timeouts(),
            &TlsMode::Never,
            None,
        )
        .await
        .err()
        .unwrap()
    }

    #[tokio::test]
    async fn stalling_peer_times_out() {
        let addr = peer(vec![]).await;
        let e = connect_error(addr).await;
        assert!(matches!(e, ClientError::Timeout("the greeting")), "{e}");
    }

    #[tokio::test]
    async fn garbage_and_endless_replies_are_errors() {
        let addr = peer(vec!["> HELLO THERE\r\n"]).await;
        let e = connect_error(addr).await;
        assert!(matches!(e, ClientError::Protocol(_)), "{e}");
        let endless: &'static str =
            Box::leak(format!("> {}", "220-more\r\n".repeat(500)).into_boxed_str());
        let addr = peer(vec![endless]).await;
        let e = connect_error(addr).await;
        assert!(e.to_string().contains("longer than 100 lines"), "{e}");
        let long: &'static str =
            Box::leak(format!("> 220 {}\r\n", "x".repeat(10_000)).into_boxed_str());
        let addr = peer(vec![long]).await;
        let e = connect_error(addr).await;
        assert!(e.to_string().contains("longer than 4096 bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_transaction_with_pipelining() {
        let addr = peer(vec![
            "> 220 mx.test ready\r\n",
            "",
            "> 250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "",
            "> 250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n",
            "",
            "> 354 go\r\n",
            "",
            "> 250 2.0.0 queued\r\n",
        ])
        .await;
        let mut s = SmtpSession::connect(
            addr,
            "mx.test",
            "me.test",
            timeouts(),
            &TlsMode::Never,
            None,
        )
        .await
        .unwrap();
        assert!(s.caps.pipelining && !s.caps.chunking);
        let env = Envelope {
            from: "a@me.test".into(),
            rcpts: vec![
                EnvRcpt {
                    address: "b@mx.test".into(),
                    notify: 0,
                    orcpt: None,
                },
                EnvRcpt {
                    address: "c@mx.test".into(),
                    notify: 0,
                    orcpt: None,
                },
            ],
            ..Envelope::default()
        };
        let replies = s.send(&env, b"Subject: x\r\n\r\nhi\r\n").await.unwrap();
        assert_eq!(replies[0].text(), "250 2.0.0 queued");
        assert_eq!(replies[1].text(), "550 5.1.1 no such user");
    }

    #[tokio::test]
    async fn required_tls_without_starttls_is_an_error() {
        let addr = peer(vec!["> 220 mx.test\r\n", "", "> 250 mx.test\r\n"]).await;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let e = SmtpSession::connect(
            addr,
            "mx.test",
            "me.test",
            timeouts(),
            &TlsMode::Required(Arc::new(config)),
            None,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, ClientError::TlsNotOffered(_)));
    }
}
