//! Script names (RFC 5804 §1.6): a value of [`ScriptName`] is a name the server accepts.

use std::fmt;

/// Longest name in octets. RFC 5804 §1.6: servers MUST allow names of up to 128 Unicode
/// characters; 128 characters of UTF-8 take at most 512 octets.
pub const MAX_NAME_OCTETS: usize = 512;

/// A script name: UTF-8, not empty, at most [`MAX_NAME_OCTETS`] octets, without the
/// characters RFC 5804 §1.6 forbids.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScriptName(String);

/// Why a name is refused; the text is for the client and is printable ASCII.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a script name must not be empty")]
    Empty,
    #[error("a script name may have at most {MAX_NAME_OCTETS} octets")]
    TooLong,
    #[error("a script name must be UTF-8")]
    NotUtf8,
    #[error("a script name must not contain control characters or line separators")]
    Forbidden,
}

/// RFC 5804 §1.6: names MUST NOT contain 0000-001F, 007F, 0080-009F, 2028 or 2029.
fn forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}')
}

impl ScriptName {
    /// Checks a name as the client sent it. A name longer than the limit is refused, never
    /// truncated (§1.6).
    pub fn new(bytes: &[u8]) -> Result<ScriptName, NameError> {
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > MAX_NAME_OCTETS {
            return Err(NameError::TooLong);
        }
        let name = std::str::from_utf8(bytes).map_err(|_| NameError::NotUtf8)?;
        if name.chars().any(forbidden) {
            return Err(NameError::Forbidden);
        }
        Ok(ScriptName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScriptName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rules_of_section_1_6() {
        for ok in [
            "main",
            "vacation script",
            "\"quoted\" \\ back",
            "ünïcödé €",
            "a{1}",
        ] {
            assert_eq!(ScriptName::new(ok.as_bytes()).unwrap().as_str(), ok);
        }
        assert_eq!(ScriptName::new(b""), Err(NameError::Empty));
        assert_eq!(ScriptName::new(b"a\tb"), Err(NameError::Forbidden));
        assert_eq!(ScriptName::new(b"a\x7fb"), Err(NameError::Forbidden));
        assert_eq!(
            ScriptName::new("a\u{85}b".as_bytes()),
            Err(NameError::Forbidden)
        );
        assert_eq!(
            ScriptName::new("a\u{2028}b".as_bytes()),
            Err(NameError::Forbidden)
        );
        assert_eq!(ScriptName::new(b"a\xffb"), Err(NameError::NotUtf8));
        // 128 characters of four octets each fit; one octet more does not.
        let long = "😀".repeat(128);
        assert!(ScriptName::new(long.as_bytes()).is_ok());
        assert_eq!(
            ScriptName::new(format!("{long}x").as_bytes()),
            Err(NameError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn a_name_is_valid_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(name) = ScriptName::new(&bytes) {
                prop_assert_eq!(name.as_str().as_bytes(), &bytes[..]);
                prop_assert!(!name.as_str().chars().any(forbidden));
            }
        }
    }
}
