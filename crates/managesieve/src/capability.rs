//! The capability list (RFC 5804 §1.7), sent in the greeting, after STARTTLS (§2.2) and in
//! answer to CAPABILITY (§2.4).

use crate::response::string;
use mailstead_sieve::script::{NOTIFY_METHODS, extensions};

/// Redirects one script may do; Pigeonhole's default (sieve_max_redirects = 4).
pub const MAX_REDIRECTS: u32 = 4;

/// What the list depends on.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// STARTTLS can be done now: a certificate exists, TLS is off and nobody is logged in.
    pub starttls: bool,
    /// PLAIN may be used now: over TLS, or from the server's own address.
    pub plain: bool,
    /// The logged-in user (§1.7 OWNER: only in the authenticated state).
    pub owner: Option<&'a str>,
}

fn line(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    string(out, name.as_bytes());
    if let Some(value) = value {
        out.push(b' ');
        string(out, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The capability lines, without the OK that ends them.
pub fn write(out: &mut Vec<u8>, offer: Offer<'_>) {
    line(
        out,
        "IMPLEMENTATION",
        Some(concat!("mailstead ", env!("CARGO_PKG_VERSION"))),
    );
    // §1.7: a server that offers no mechanism now sends an empty SASL list.
    line(out, "SASL", Some(if offer.plain { "PLAIN" } else { "" }));
    line(out, "SIEVE", Some(&extensions()));
    // §1.7 NOTIFY: the enotify methods (RFC 5435).
    line(out, "NOTIFY", Some(&NOTIFY_METHODS.join(" ")));
    line(out, "MAXREDIRECTS", Some(&MAX_REDIRECTS.to_string()));
    if offer.starttls {
        line(out, "STARTTLS", None);
    }
    if let Some(owner) = offer.owner {
        line(out, "OWNER", Some(owner));
    }
    line(out, "VERSION", Some("1.0"));
    // §2.14
    line(out, "UNAUTHENTICATE", None);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn lists() {
        let mut out = Vec::new();
        write(
            &mut out,
            Offer {
                starttls: true,
                plain: false,
                owner: None,
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("\"IMPLEMENTATION\" \"mailstead "), "{s}");
        assert!(s.contains("\r\n\"SASL\" \"\"\r\n"), "{s}");
        assert!(s.contains("\r\n\"SIEVE\" \"fileinto "), "{s}");
        assert!(s.contains("\r\n\"NOTIFY\" \"mailto\"\r\n"), "{s}");
        assert!(s.contains("\r\n\"MAXREDIRECTS\" \"4\"\r\n"), "{s}");
        assert!(s.contains("\r\n\"STARTTLS\"\r\n"), "{s}");
        assert!(s.contains("\r\n\"VERSION\" \"1.0\"\r\n"), "{s}");
        assert!(s.ends_with("\"UNAUTHENTICATE\"\r\n"), "{s}");
        assert!(!s.contains("OWNER"));
        let mut out = Vec::new();
        write(
            &mut out,
            Offer {
                starttls: false,
                plain: true,
                owner: Some("a@example.test"),
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("\"SASL\" \"PLAIN\"\r\n") && !s.contains("STARTTLS"),
            "{s}"
        );
        assert!(s.contains("\"OWNER\" \"a@example.test\"\r\n"), "{s}");
    }
}
