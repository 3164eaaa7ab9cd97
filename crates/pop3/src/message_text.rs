//! A stored message as POP3 sends it: CRLF lines (RFC 1939 §3, "multi-line responses"), the
//! size a scan listing announces, the part TOP sends, and the byte-stuffing of lines that start
//! with ".".
//!
//! Messages are stored with CRLF line ends when they arrive by SMTP; other writers may leave a
//! bare LF or a missing line end at the end, so both are mended here. The size of a message is
//! the number of octets RETR sends before byte-stuffing, CRLF line ends included (RFC 1939
//! §11), which is what [`size`] counts.

use std::borrow::Cow;

/// The message with every line ending in CRLF: a bare LF becomes CRLF, and a last line
/// without a line end gets one. An empty message stays empty.
pub fn crlf_lines(raw: &[u8]) -> Cow<'_, [u8]> {
    if size(raw) == raw.len() as u64 {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        // A last line without LF; a CR at the very end becomes CRLF.
        if prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    Cow::Owned(out)
}

/// The length of [`crlf_lines`] of `raw`, without building it.
pub fn size(raw: &[u8]) -> u64 {
    let mut n = raw.len() as u64;
    for i in memchr::memchr_iter(b'\n', raw) {
        if i == 0 || raw.get(i - 1) != Some(&b'\r') {
            n += 1;
        }
    }
    match raw.last() {
        None | Some(b'\n') => n,
        Some(b'\r') => n + 1,
        Some(_) => n + 2,
    }
}

/// RFC 1939 §7 TOP: the header, the empty line after it, and the first `lines` lines of the
/// body, from a message in CRLF lines. A message without an empty line is all header.
pub fn top(text: &[u8], lines: u64) -> &[u8] {
    let Some(body_start) = body_start(text) else {
        return text;
    };
    let body = text.get(body_start..).unwrap_or_default();
    let mut end = body_start;
    let mut taken = 0u64;
    let mut from = 0usize;
    while taken < lines {
        match memchr::memchr(b'\n', body.get(from..).unwrap_or_default()) {
            Some(i) => {
                from += i + 1;
                end = body_start + from;
                taken += 1;
            }
            None => {
                end = text.len();
                break;
            }
        }
    }
    text.get(..end).unwrap_or(text)
}

/// Where the body starts: after the first empty line (RFC 5322 §2.1).
fn body_start(text: &[u8]) -> Option<usize> {
    if text.starts_with(b"\r\n") {
        return Some(2);
    }
    memchr::memmem::find(text, b"\r\n\r\n").map(|i| i + 4)
}

/// Appends `text` (CRLF lines) as the body of a multi-line response, byte-stuffing every line
/// that starts with "." (RFC 1939 §3), and the terminating ".CRLF".
pub fn dot_stuff_into(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + text.len() / 64 + 3);
    let mut line_start = true;
    let mut rest = text;
    while !rest.is_empty() {
        if line_start && rest.first() == Some(&b'.') {
            out.push(b'.');
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                out.extend_from_slice(rest.get(..=i).unwrap_or_default());
                rest = rest.get(i + 1..).unwrap_or_default();
                line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                rest = &[];
                line_start = false;
            }
        }
    }
    if !line_start {
        // Only for text that does not end in a line end, which crlf_lines never gives.
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a client does with a multi-line response: undo the stuffing, stop at ".".
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in wire.split_inclusive(|&b| b == b'\n') {
            if line == b".\r\n" {
                return out;
            }
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        panic!("no terminating line in {wire:?}");
    }

    #[test]
    fn crlf_lines_mends_line_ends() {
        assert_eq!(&*crlf_lines(b""), b"");
        assert_eq!(&*crlf_lines(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert!(matches!(crlf_lines(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*crlf_lines(b"a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(&*crlf_lines(b"a\r\nb"), b"a\r\nb\r\n");
        assert_eq!(&*crlf_lines(b"a\r\nb\r"), b"a\r\nb\r\n");
        assert_eq!(&*crlf_lines(b"\n"), b"\r\n");
        assert_eq!(&*crlf_lines(b"a\rb\r\n"), b"a\rb\r\n");
    }

    #[test]
    fn size_counts_what_retr_sends() {
        for raw in [
            &b""[..],
            b"a",
            b"\r",
            b"\n",
            b"\r\n",
            b"a\nb",
            b"a\r\nb\r\n",
            b"x\r\r\n\n",
        ] {
            assert_eq!(size(raw), crlf_lines(raw).len() as u64, "{raw:?}");
        }
    }

    #[test]
    fn top_takes_header_blank_line_and_n_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\nline 1\r\nline 2\r\nline 3\r\n";
        assert_eq!(top(m, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top(m, 1), b"A: 1\r\nB: 2\r\n\r\nline 1\r\n");
        assert_eq!(top(m, 3), &m[..]);
        assert_eq!(top(m, u64::MAX), &m[..]);
        // No body at all: the header is the whole message.
        assert_eq!(top(b"A: 1\r\n", 5), b"A: 1\r\n");
        // An empty header.
        assert_eq!(top(b"\r\nbody\r\nmore\r\n", 1), b"\r\nbody\r\n");
        // Empty lines in the body count as lines.
        assert_eq!(
            top(b"A: 1\r\n\r\n\r\n\r\nx\r\n", 2),
            b"A: 1\r\n\r\n\r\n\r\n"
        );
    }

    #[test]
    fn dot_stuffing() {
        let mut out = Vec::new();
        dot_stuff_into(&mut out, b".hidden\r\nnot.\r\n.\r\n..\r\n");
        assert_eq!(out, b"..hidden\r\nnot.\r\n..\r\n...\r\n.\r\n");
        out.clear();
        dot_stuff_into(&mut out, b"");
        assert_eq!(out, b".\r\n");
    }

    proptest! {
        /// Any stored bytes: the text sent has only CRLF line ends, is as long as `size`
        /// says, and a client undoing the stuffing gets it back exactly.
        #[test]
        fn retr_round_trips(raw in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'.'), any::<u8>()], 0..300)) {
            let text = crlf_lines(&raw);
            prop_assert_eq!(text.len() as u64, size(&raw));
            for (i, &b) in text.iter().enumerate() {
                if b == b'\n' {
                    prop_assert_eq!(i.checked_sub(1).map(|j| text[j]), Some(b'\r'));
                }
            }
            prop_assert!(text.is_empty() || text.ends_with(b"\r\n"));
            let mut wire = Vec::new();
            dot_stuff_into(&mut wire, &text);
            prop_assert_eq!(unstuff(&wire), text.to_vec());
            // Mending is idempotent.
            prop_assert_eq!(crlf_lines(&text).to_vec(), text.to_vec());
        }

        /// TOP gives a prefix of the message that ends at a line end, and all of it for
        /// enough lines.
        #[test]
        fn top_is_a_prefix(raw in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300), n in 0u64..20) {
            let text = crlf_lines(&raw);
            let t = top(&text, n);
            prop_assert!(text.starts_with(t));
            prop_assert!(t.is_empty() || t.ends_with(b"\r\n"));
            prop_assert_eq!(top(&text, u64::MAX), &text[..]);
            prop_assert!(top(&text, n + 1).len() >= t.len());
        }
    }
}
