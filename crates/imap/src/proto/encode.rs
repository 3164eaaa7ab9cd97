//! Writing IMAP data (RFC 9051 §4): atoms, quoted strings, literals, NIL. A string goes out
//! quoted when that is safe and short, else as a literal. 8-bit text may be quoted only once
//! the client enabled UTF-8 (RFC 9051 §4.3, RFC 6855 §3); otherwise it is a literal.

use std::io::Write as _;

/// Longest string sent quoted; longer ones are literals, which clients read without scanning.
const MAX_QUOTED: usize = 1024;

/// Characters that may not appear in an atom (RFC 9051 §9 atom-specials), besides controls
/// and space.
const ATOM_SPECIALS: &[u8] = b"(){%*\"\\]";

pub fn is_atom(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b > 0x20 && b < 0x7f && !ATOM_SPECIALS.contains(&b))
}

/// Whether `s` may go in a quoted string: no CR, LF or NUL, and 8-bit only with UTF-8.
fn quotable(s: &[u8], utf8: bool) -> bool {
    s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (b < 0x80 || utf8))
        && (!utf8 || std::str::from_utf8(s).is_ok())
}

/// A string: quoted when possible, else a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if quotable(s, utf8) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// A literal: `{n}` CRLF bytes.
///
/// A literal is CHAR8, %x01-ff (RFC 9051 §4.3, §9): a NUL in the data (only BINARY may carry
/// one, as literal8) is sent as 0x80, as Dovecot does, keeping the length.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "{{{}}}\r\n", s.len());
    let start = out.len();
    out.extend_from_slice(s);
    if memchr::memchr(0, s).is_some() {
        for b in out.get_mut(start..).unwrap_or_default() {
            if *b == 0 {
                *b = 0x80;
            }
        }
    }
}

/// A literal8 (RFC 3516 §4.2): `~{n}` CRLF bytes, for BINARY data with NUL octets.
pub fn literal8(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(out, "~{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// NIL or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An atom when the value is one (and not NIL), else a string.
pub fn astring(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if is_atom(s) && !s.eq_ignore_ascii_case(b"NIL") {
        out.extend_from_slice(s);
    } else {
        string(out, s, utf8);
    }
}

/// A parenthesised list of items written by `each`, space-separated.
pub fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'(');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        each(out, item);
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn strings() {
        assert_eq!(s(|o| string(o, b"hello world", false)), "\"hello world\"");
        assert_eq!(s(|o| string(o, b"a\"b\\c", false)), "\"a\\\"b\\\\c\"");
        assert_eq!(
            s(|o| string(o, b"two\r\nlines", false)),
            "{10}\r\ntwo\r\nlines"
        );
        assert_eq!(s(|o| string(o, "grüße".as_bytes(), false)), "{7}\r\ngrüße");
        assert_eq!(s(|o| string(o, "grüße".as_bytes(), true)), "\"grüße\"");
        assert_eq!(s(|o| nstring(o, None, false)), "NIL");
        assert_eq!(s(|o| astring(o, b"INBOX", false)), "INBOX");
        assert_eq!(s(|o| astring(o, b"My Folder", false)), "\"My Folder\"");
        assert_eq!(s(|o| astring(o, b"nil", false)), "\"nil\"");
        assert_eq!(s(|o| astring(o, b"", false)), "\"\"");
        assert_eq!(
            s(|o| list(o, &[1, 2, 3], |o, n| o
                .extend_from_slice(n.to_string().as_bytes()))),
            "(1 2 3)"
        );
    }
}
