//! Writing responses (RFC 5804 §1.2, §1.3 and the grammar of §4): OK, NO and BYE with their
//! response codes and human-readable text, and strings as quoted strings or literals.

use crate::command::MAX_QUOTED;
use std::io::Write as _;

/// Response codes (§1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// The operation is refused because the script is active (DELETESCRIPT).
    Active,
    /// The named script does not exist.
    NonExistent,
    /// RENAMESCRIPT to a name that is taken.
    AlreadyExists,
    /// §1.3 QUOTA/MAXSCRIPTS: one script too many.
    QuotaMaxScripts,
    /// §1.3 QUOTA/MAXSIZE: a script too large, or all of them together.
    QuotaMaxSize,
    /// Authentication needs TLS first.
    EncryptNeeded,
    /// A temporary failure on the server's side.
    TryLater,
    /// NOOP's string echoed back (§2.13).
    Tag(Vec<u8>),
}

/// A string: quoted when it can be (§4 quoted: no NUL, CR or LF, at most 1024 octets, UTF-8),
/// else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() <= MAX_QUOTED
        && !s.iter().any(|&c| matches!(c, 0 | b'\r' | b'\n'))
        && std::str::from_utf8(s).is_ok();
    if !quotable {
        literal(out, s);
        return;
    }
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// A literal from the server: `{n}` CRLF and the octets (§4 literal-s2c).
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// Text for people: one line, no control characters, within a quoted string's size.
fn human(text: &str) -> String {
    let mut s = String::with_capacity(text.len().min(MAX_QUOTED));
    for c in text.chars() {
        let c = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            ' '
        } else {
            c
        };
        if s.len() + c.len_utf8() > MAX_QUOTED - 3 {
            s.push_str("...");
            break;
        }
        s.push(c);
    }
    s
}

fn code(out: &mut Vec<u8>, code: &Code) {
    out.extend_from_slice(b" (");
    match code {
        Code::Active => out.extend_from_slice(b"ACTIVE"),
        Code::NonExistent => out.extend_from_slice(b"NONEXISTENT"),
        Code::AlreadyExists => out.extend_from_slice(b"ALREADYEXISTS"),
        Code::QuotaMaxScripts => out.extend_from_slice(b"QUOTA/MAXSCRIPTS"),
        Code::QuotaMaxSize => out.extend_from_slice(b"QUOTA/MAXSIZE"),
        Code::EncryptNeeded => out.extend_from_slice(b"ENCRYPT-NEEDED"),
        Code::TryLater => out.extend_from_slice(b"TRYLATER"),
        Code::Tag(tag) => {
            out.extend_from_slice(b"TAG ");
            string(out, tag);
        }
    }
    out.push(b')');
}

/// `OK`, `NO` or `BYE`, an optional response code and text (§4 response-oknobye).
fn status(out: &mut Vec<u8>, word: &str, c: Option<&Code>, text: &str) {
    out.extend_from_slice(word.as_bytes());
    if let Some(c) = c {
        code(out, c);
    }
    if !text.is_empty() {
        out.push(b' ');
        string(out, human(text).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

pub fn ok(out: &mut Vec<u8>, c: Option<&Code>, text: &str) {
    status(out, "OK", c, text);
}

pub fn no(out: &mut Vec<u8>, c: Option<&Code>, text: &str) {
    status(out, "NO", c, text);
}

pub fn bye(out: &mut Vec<u8>, c: Option<&Code>, text: &str) {
    status(out, "BYE", c, text);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings() {
        assert_eq!(text(|o| string(o, b"a \"b\" \\c")), r#""a \"b\" \\c""#);
        assert_eq!(text(|o| string(o, b"")), r#""""#);
        assert_eq!(text(|o| string(o, b"a\r\nb")), "{4}\r\na\r\nb");
        assert_eq!(text(|o| string(o, "é".as_bytes())), "\"é\"");
        let long = "x".repeat(MAX_QUOTED + 1);
        assert!(text(|o| string(o, long.as_bytes())).starts_with("{1025}\r\n"));
    }

    #[test]
    fn responses() {
        assert_eq!(text(|o| ok(o, None, "")), "OK\r\n");
        assert_eq!(
            text(|o| no(o, Some(&Code::QuotaMaxScripts), "too many")),
            "NO (QUOTA/MAXSCRIPTS) \"too many\"\r\n"
        );
        assert_eq!(
            text(|o| ok(o, Some(&Code::Tag(b"x\"y".to_vec())), "Done")),
            "OK (TAG \"x\\\"y\") \"Done\"\r\n"
        );
        assert_eq!(
            text(|o| no(o, None, "line 2:\nbad\ttab")),
            "NO \"line 2: bad tab\"\r\n"
        );
        let long = "é".repeat(2000);
        let r = text(|o| bye(o, None, &long));
        assert!(r.starts_with("BYE \"é") && r.ends_with("...\"\r\n") && r.len() < 1100);
    }
}
