//! The SASL PLAIN response (RFC 4616 §2) as POP3 carries it: base64 (RFC 5034 §4), `=` for an
//! empty initial response, `*` to cancel.

use base64::Engine as _;

/// A user name and password from a PLAIN response.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a response gives no credentials; the text goes after `-ERR `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// RFC 5034 §4: the client sent "*".
    #[error("authentication cancelled")]
    Cancelled,
    #[error("the response is not base64")]
    NotBase64,
    #[error("malformed PLAIN response")]
    Malformed,
    /// RFC 4616 §2: an authorization identity other than the user's own.
    #[error("[AUTH] acting as another user is not allowed")]
    OtherIdentity,
}

/// Decodes a client response line (or an initial response).
pub fn decode(response: &str) -> Result<PlainCredentials, PlainError> {
    if response == "*" {
        return Err(PlainError::Cancelled);
    }
    // RFC 5034 §4: "=" is an initial response of zero length, which PLAIN cannot use.
    let decoded = if response == "=" {
        Vec::new()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(response)
            .map_err(|_| PlainError::NotBase64)?
    };
    // authzid NUL authcid NUL passwd
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let (Ok(authz), Ok(user), Ok(password)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(authc),
        std::str::from_utf8(pass),
    ) else {
        return Err(PlainError::Malformed);
    };
    if user.is_empty() {
        return Err(PlainError::Malformed);
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
        return Err(PlainError::OtherIdentity);
    }
    Ok(PlainCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn plain_responses() {
        let c = decode(&b64(b"\0alice@example.test\0pw with space")).unwrap();
        assert_eq!(c.user, "alice@example.test");
        assert_eq!(c.password, "pw with space");
        assert!(!format!("{c:?}").contains("space"));
        assert!(decode(&b64(b"ALICE@example.test\0alice@example.test\0pw")).is_ok());
        assert_eq!(
            decode(&b64(b"bob@example.test\0alice@example.test\0pw")),
            Err(PlainError::OtherIdentity)
        );
        assert_eq!(decode("*"), Err(PlainError::Cancelled));
        assert_eq!(decode("="), Err(PlainError::Malformed));
        assert_eq!(decode("!!!"), Err(PlainError::NotBase64));
        assert_eq!(decode(&b64(b"a\0b")), Err(PlainError::Malformed));
        assert_eq!(decode(&b64(b"\0a\0b\0c")), Err(PlainError::Malformed));
        assert_eq!(decode(&b64(b"\0\0pw")), Err(PlainError::Malformed));
        assert_eq!(decode(&b64(b"\0a\0\xff")), Err(PlainError::Malformed));
    }

    proptest! {
        #[test]
        fn any_response_decodes_or_fails(s in ".{0,200}") {
            let _ = decode(&s);
        }
    }
}
