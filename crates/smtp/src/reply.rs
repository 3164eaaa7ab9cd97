//! SMTP replies. Every reply carries an enhanced status code (RFC 2034, codes from RFC 3463):
//! clients and logs can tell "mailbox full" from "no such user" without parsing English.

use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail`, e.g. `5.1.1`.
    pub status: &'static str,
    /// One or more lines of text.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    pub fn multi(code: u16, status: &'static str, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status,
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as sent: `250-...` continuation lines, `250 ...` last.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 < n { '-' } else { ' ' };
            // The EHLO keyword lines carry no status code (RFC 2034 §3 exempts them).
            if self.status.is_empty() {
                let _ = write!(out, "{}{sep}{text}\r\n", self.code);
            } else {
                let _ = write!(out, "{}{sep}{} {text}\r\n", self.code, self.status);
            }
        }
        out
    }

    /// One line for logs: `550 5.1.1 ...`.
    pub fn summary(&self) -> String {
        format!(
            "{} {} {}",
            self.code,
            self.status,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
}

/// The greeting and goodbyes.
pub fn greeting(host: &str) -> Reply {
    Reply::new(220, "", format!("{host} ESMTP ready"))
}

pub fn ok(text: &str) -> Reply {
    Reply::new(250, "2.0.0", text)
}

pub fn bye(host: &str) -> Reply {
    Reply::new(221, "2.0.0", format!("{host} closing connection"))
}

pub fn shutting_down(host: &str) -> Reply {
    Reply::new(
        421,
        "4.3.2",
        format!("{host} service shutting down, try again later"),
    )
}

pub fn timeout(host: &str) -> Reply {
    Reply::new(
        421,
        "4.4.2",
        format!("{host} timeout exceeded, closing connection"),
    )
}

pub fn too_many_errors(host: &str) -> Reply {
    Reply::new(
        421,
        "4.7.0",
        format!("{host} too many errors, closing connection"),
    )
}

pub fn too_many_connections(host: &str) -> Reply {
    Reply::new(
        421,
        "4.7.0",
        format!("{host} too many connections from your address, try again later"),
    )
}

pub fn line_too_long(limit: usize) -> Reply {
    Reply::new(
        500,
        "5.5.2",
        format!("line too long (more than {limit} bytes)"),
    )
}

pub fn syntax(text: &str) -> Reply {
    Reply::new(501, "5.5.4", text)
}

pub fn bad_sequence(text: &str) -> Reply {
    Reply::new(503, "5.5.1", text)
}

pub fn unknown_command() -> Reply {
    Reply::new(500, "5.5.1", "command not recognised")
}

pub fn not_implemented(text: &str) -> Reply {
    Reply::new(502, "5.5.1", text)
}

pub fn local_error() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "local error while storing the message; try again later",
    )
}
