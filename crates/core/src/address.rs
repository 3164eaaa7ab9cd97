//! E-mail addresses as the directory knows them: `local@domain`, compared case-insensitively
//! (as Dovecot's `%Lu` and mailcow do), with `+` sub-addressing (RFC 5233).
//!
//! This is the form an administrator types and the directory stores: a dot-atom local part
//! (RFC 5322 §3.4.1) and a host-name domain. UTF-8 is accepted in both (RFC 6531 allows it in
//! the local part with SMTPUTF8). SMTP's wire forms (quoted local parts, source routes) are
//! parsed by the SMTP service, which hands the result here.

use crate::config::kinds::is_valid_hostname;
use std::fmt;

/// The separator of RFC 5233 sub-addressing (`user+tag@domain`), mailcow's default.
pub const DETAIL_SEPARATOR: char = '+';

/// A normalised address: both parts lower-case, so equal addresses are equal strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Address {
    local: String,
    domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an address of the form user@domain")]
    Shape(String),
    #[error(
        "the local part {0:?} is not valid: use letters, digits and !#$%&'*+-/=?^_`{{|}}~ separated by single dots, at most 64 bytes"
    )]
    Local(String),
    #[error("the domain {0:?} is not a valid domain name")]
    Domain(String),
}

/// Characters RFC 5322 §3.2.3 allows in an atom, besides letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || ATEXT_SPECIALS.contains(c)
                        || (!c.is_ascii() && !c.is_control())
                })
        })
}

/// Normalises and checks a domain name: lower-case, no trailing dot.
pub fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    let d = domain.trim().trim_end_matches('.').to_lowercase();
    let ascii_form_ok = if d.is_ascii() {
        is_valid_hostname(&d)
    } else {
        // Internationalised names: every label must still be sane; the A-label form is the
        // resolver's business.
        !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
    };
    if ascii_form_ok && d.contains('.') {
        Ok(d)
    } else {
        Err(AddressError::Domain(domain.to_string()))
    }
}

impl Address {
    /// Parses `local@domain`. Surrounding whitespace and one pair of angle brackets are dropped.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        let t = s.trim();
        let t = t
            .strip_prefix('<')
            .and_then(|x| x.strip_suffix('>'))
            .unwrap_or(t);
        let Some((local, domain)) = t.rsplit_once('@') else {
            return Err(AddressError::Shape(s.to_string()));
        };
        if !valid_local(local) {
            return Err(if local.is_empty() || local.contains('@') {
                AddressError::Shape(s.to_string())
            } else {
                AddressError::Local(local.to_string())
            });
        }
        Ok(Address {
            local: local.to_lowercase(),
            domain: normalize_domain(domain)?,
        })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The same address in another domain (for alias domains).
    pub fn with_domain(&self, domain: &str) -> Address {
        Address {
            local: self.local.clone(),
            domain: domain.to_string(),
        }
    }

    /// `user+tag@d` -> `user@d` and `Some("tag")`; addresses without a tag come back unchanged.
    /// A local part that starts with the separator is not sub-addressed.
    pub fn without_detail(&self) -> (Address, Option<&str>) {
        match self.local.split_once(DETAIL_SEPARATOR) {
            Some((base, tag)) if !base.is_empty() => (
                Address {
                    local: base.to_string(),
                    domain: self.domain.clone(),
                },
                Some(tag),
            ),
            _ => (self.clone(), None),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case() {
        let a = Address::parse(" <Alice@Example.TEST> ").unwrap();
        assert_eq!(a.to_string(), "alice@example.test");
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            "alice",
            "@example.test",
            "a@b@example.test",
            "a..b@example.test",
            ".a@example.test",
            "a@example",
            "a@-x.test",
            "a b@example.test",
            "a\"b@example.test",
            "a@exa mple.test",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            Address::parse("a..b@example.test").unwrap_err().to_string(),
            "the local part \"a..b\" is not valid: use letters, digits and !#$%&'*+-/=?^_`{|}~ separated by single dots, at most 64 bytes"
        );
        assert_eq!(
            Address::parse("x@example").unwrap_err().to_string(),
            "the domain \"example\" is not a valid domain name"
        );
    }

    #[test]
    fn utf8_addresses() {
        let a = Address::parse("Jörg@Bücher.example").unwrap();
        assert_eq!(a.to_string(), "jörg@bücher.example");
    }

    #[test]
    fn sub_addressing() {
        let a = Address::parse("bob+lists@example.test").unwrap();
        let (base, tag) = a.without_detail();
        assert_eq!(base.to_string(), "bob@example.test");
        assert_eq!(tag, Some("lists"));
        let b = Address::parse("+x@example.test").unwrap();
        assert_eq!(b.without_detail().1, None);
        let c = Address::parse("bob+@example.test").unwrap();
        assert_eq!(
            c.without_detail(),
            (Address::parse("bob@example.test").unwrap(), Some(""))
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(a) = Address::parse(&s) {
                prop_assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
            }
        }
    }
}
