//! Modified UTF-7 for mailbox names (RFC 3501 §5.1.3), the form clients use unless they
//! enabled UTF-8 (RFC 9051 §5.1, RFC 6855).
//!
//! Decoding is strict: a name decodes only if it is the one canonical encoding of its text,
//! i.e. `encode(decode(x)?) == x`. Otherwise two different byte strings could name the same
//! mailbox (`&AOk-&AOk-` and `&AOkA6Q-`, or `&AGE-` and `a`), and a client could create
//! look-alike duplicates or reach a mailbox under a name the access checks did not see.

use thiserror::Error;

/// Why a name is not valid modified UTF-7.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Utf7Error {
    /// Outside a shift only printable US-ASCII may appear (RFC 3501 §5.1.3).
    #[error("byte 0x{0:02x} is not printable ASCII")]
    NotPrintable(u8),
    /// A `&` without the `-` that ends the shift.
    #[error("a \"&\" shift is not terminated by \"-\"")]
    Unterminated,
    /// A character outside the modified base64 alphabet, or a length/padding that does not
    /// end on a UTF-16 unit.
    #[error("bad modified base64 in a \"&\" shift")]
    BadBase64,
    /// A lone UTF-16 surrogate.
    #[error("invalid UTF-16 in a \"&\" shift")]
    BadUtf16,
    /// Valid, but not the one canonical form (printable ASCII inside a shift, two adjacent
    /// shifts, ...).
    #[error("not the canonical modified UTF-7 encoding")]
    NotCanonical,
}

/// Modified base64 (RFC 3501 §5.1.3): RFC 2045 base64 with `,` instead of `/`, no padding.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Characters that represent themselves (RFC 3501 §5.1.3: "printable US-ASCII ... 0x20-0x7e").
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Decodes a mailbox name as sent by a client that did not enable UTF-8.
pub fn decode(name: &[u8]) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'&' {
            // "There is no implicit shift from BASE64 to US-ASCII, and '-' absorption is not
            // allowed" (§5.1.3): every shift ends at an explicit '-'.
            let end = tail
                .iter()
                .position(|&c| c == b'-')
                .ok_or(Utf7Error::Unterminated)?;
            let (b64, after) = tail.split_at(end);
            if b64.is_empty() {
                // "&-" is the only way to write '&' itself.
                out.push('&');
            } else {
                decode_shift(b64, &mut out)?;
            }
            rest = after.get(1..).unwrap_or_default();
        } else if (0x20..=0x7e).contains(&b) {
            out.push(char::from(b));
            rest = tail;
        } else {
            return Err(Utf7Error::NotPrintable(b));
        }
    }
    // The per-shift checks catch most non-canonical input; this catches the rest (two
    // adjacent shifts) and guarantees one name, one encoding.
    if encode(&out) != name {
        return Err(Utf7Error::NotCanonical);
    }
    Ok(out)
}

/// One shift's modified base64: big-endian UTF-16 (RFC 3501 §5.1.3, "modified UTF-7").
fn decode_shift(b64: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let mut units = Vec::with_capacity(b64.len() * 6 / 16);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in b64 {
        acc = (acc << 6) | sextet(c).ok_or(Utf7Error::BadBase64)?;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            // The mask keeps exactly 16 bits, so the conversion cannot fail.
            units.push(u16::try_from((acc >> bits) & 0xffff).map_err(|_| Utf7Error::BadBase64)?);
            acc &= (1 << bits) - 1;
        }
    }
    // What is left must be padding: fewer than 6 bits (else a whole extra character was
    // sent) and all zero (else the encoding is not the only one for this text).
    if bits >= 6 || acc != 0 {
        return Err(Utf7Error::BadBase64);
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| Utf7Error::BadUtf16)?;
        // "Modified BASE64 MUST NOT be used to represent any printing US-ASCII character
        // which can represent itself" (§5.1.3); '&' has its own form "&-".
        if is_direct(c) {
            return Err(Utf7Error::NotCanonical);
        }
        out.push(c);
    }
    Ok(())
}

/// Encodes a mailbox name for a client that did not enable UTF-8.
pub fn encode(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.extend_from_slice(b"&-");
            } else {
                // `is_direct` admits only ASCII, so this is the character's one byte.
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        } else {
            // Everything else, controls included, goes into one shift per run of characters
            // (a run split in two shifts would not be canonical).
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Writes pending UTF-16 units as one `&...-` shift.
fn flush(units: &mut Vec<u16>, out: &mut Vec<u8>) {
    if units.is_empty() {
        return;
    }
    out.push(b'&');
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for u in units.drain(..) {
        acc = (acc << 16) | u32::from(u);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 0x3f) as usize]);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // Zero-filled to a whole character, without '=' padding (§5.1.3).
        out.push(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]);
    }
    out.push(b'-');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc3501_example() {
        // RFC 3501 §5.1.3: "~peter/mail/台北/日本語".
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        let wire = b"~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        assert_eq!(encode(name), wire);
        assert_eq!(decode(wire).unwrap(), name);
    }

    #[test]
    fn known_forms() {
        assert_eq!(encode("INBOX"), b"INBOX");
        assert_eq!(encode("&"), b"&-");
        assert_eq!(encode("Tom & Jerry"), b"Tom &- Jerry");
        assert_eq!(encode("Entw\u{fc}rfe"), b"Entw&APw-rfe");
        assert_eq!(encode("\u{e9}\u{e9}"), b"&AOkA6Q-");
        assert_eq!(encode("\u{1f600}"), b"&2D3eAA-");
        assert_eq!(encode("a\tb"), b"a&AAk-b");
        assert_eq!(encode(""), b"");
        assert_eq!(decode(b"&-&-").unwrap(), "&&");
        assert_eq!(decode(b"Entw&APw-rfe").unwrap(), "Entw\u{fc}rfe");
        assert_eq!(decode(b"&2D3eAA-").unwrap(), "\u{1f600}");
        assert_eq!(decode(b"").unwrap(), "");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(decode(b"&AOk"), Err(Utf7Error::Unterminated));
        assert_eq!(decode(b"a&"), Err(Utf7Error::Unterminated));
        assert_eq!(decode(b"&AO.-"), Err(Utf7Error::BadBase64));
        assert_eq!(decode(b"&AOk=-"), Err(Utf7Error::BadBase64));
        assert_eq!(decode(b"&AOl-"), Err(Utf7Error::BadBase64)); // non-zero padding bits
        assert_eq!(decode(b"&AOkA-"), Err(Utf7Error::BadBase64)); // a stray sextet
        assert_eq!(decode(b"&A-"), Err(Utf7Error::BadBase64));
        assert_eq!(decode(b"&2D0-"), Err(Utf7Error::BadUtf16)); // lone high surrogate
        assert_eq!(decode(b"&3gA-"), Err(Utf7Error::BadUtf16)); // lone low surrogate
        assert_eq!(decode(b"&AGE-"), Err(Utf7Error::NotCanonical)); // "a" in base64
        assert_eq!(decode(b"&ACY-"), Err(Utf7Error::NotCanonical)); // "&" must be "&-"
        assert_eq!(decode(b"&AOk-&AOk-"), Err(Utf7Error::NotCanonical));
        assert_eq!(
            decode("gr\u{fc}n".as_bytes()),
            Err(Utf7Error::NotPrintable(0xc3))
        );
        assert_eq!(decode(b"a\tb"), Err(Utf7Error::NotPrintable(9)));
        assert_eq!(decode(b"a\x7fb"), Err(Utf7Error::NotPrintable(0x7f)));
    }

    proptest! {
        #[test]
        fn round_trip(s in any::<String>()) {
            let wire = encode(&s);
            prop_assert!(wire.iter().all(|b| (0x20..=0x7e).contains(b)));
            prop_assert_eq!(decode(&wire), Ok(s));
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(s) = decode(&b) {
                prop_assert_eq!(encode(&s), b);
            }
        }

        #[test]
        fn decode_never_panics_near_valid(
            b in proptest::collection::vec(
                prop_oneof![Just(b'&'), Just(b'-'), Just(b'A'), Just(b','), Just(b'2'), Just(b'D'), Just(b'3'), any::<u8>()],
                0..40,
            )
        ) {
            if let Ok(s) = decode(&b) {
                prop_assert_eq!(encode(&s), b);
            }
        }
    }
}
