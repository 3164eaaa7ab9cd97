//! POP3 commands as the client sends them: a keyword and its arguments (RFC 1939 §3,
//! RFC 2449 §4), parsed from one line without its line end. Parsing knows nothing of the
//! session's state; whether a command is allowed now is the session's business.

use std::fmt;

/// RFC 2449 §4: a command is at most 255 octets, CRLF included.
pub const MAX_COMMAND: usize = 255;

/// A parsed command.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 1939 §7 USER name.
    User(String),
    /// RFC 1939 §7 PASS string: everything after the keyword, spaces included.
    Pass(String),
    /// RFC 5034 §4 AUTH mechanism [initial-response]; AUTH alone asks for the mechanism list
    /// (the RFC 1734 form some clients still send).
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
    /// RFC 1939 §7 APOP: not offered (it needs the password in clear on the server), but
    /// known, so that the refusal says so rather than "unknown command".
    Apop,
    /// RFC 2595 §4.
    Stls,
    /// RFC 2449 §5.
    Capa,
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    /// RFC 1939 §7 TOP msg n.
    Top(u32, u64),
    Uidl(Option<u32>),
}

impl fmt::Debug for Command {
    /// Never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Pass(_) => f.write_str("Pass(..)"),
            Command::Auth { mechanism, initial } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial", &initial.as_ref().map(|_| ".."))
                .finish(),
            Command::User(u) => f.debug_tuple("User").field(u).finish(),
            Command::Apop => f.write_str("Apop"),
            Command::Stls => f.write_str("Stls"),
            Command::Capa => f.write_str("Capa"),
            Command::Quit => f.write_str("Quit"),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Top(n, l) => f.debug_tuple("Top").field(n).field(l).finish(),
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
        }
    }
}

/// Why a line is not a command; the text goes after `-ERR `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the command is longer than {MAX_COMMAND} octets")]
    TooLong,
    #[error("the command contains control characters")]
    ControlCharacters,
    #[error("the command is not valid UTF-8")]
    NotUtf8,
    #[error("unknown command")]
    Unknown,
    #[error("{0}")]
    Arguments(&'static str),
}

/// Parses one line (without CRLF). `line.len()` may be up to the reader's bound; only AUTH may
/// be longer than [`MAX_COMMAND`].
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // RFC 1939 §3: keywords and arguments are printable characters; UTF-8 is let through for
    // user names and passwords, control characters (NUL, CR, ESC, ...) never.
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::ControlCharacters);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let (keyword, rest) = match text.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (text, None),
    };
    let is_auth = keyword.eq_ignore_ascii_case("AUTH");
    // RFC 5034 §4 keeps AUTH within the limit too, but a longer initial response costs
    // nothing more than the response line after "+ " may; both are bounded by the reader.
    if !is_auth && line.len() + 2 > MAX_COMMAND {
        return Err(ParseError::TooLong);
    }
    // RFC 1939 §3: keywords are three or four characters, case-insensitive.
    let keyword = keyword.to_ascii_uppercase();
    let args: Vec<&str> = rest
        .map(|r| r.split(' ').filter(|a| !a.is_empty()).collect())
        .unwrap_or_default();
    let cmd = match keyword.as_str() {
        "USER" => {
            // One argument; a user name never holds a space.
            match args.as_slice() {
                [name] => Command::User((*name).to_string()),
                [] => return Err(ParseError::Arguments("USER needs a user name")),
                _ => return Err(ParseError::Arguments("a user name has no spaces")),
            }
        }
        // RFC 1939 §7: "the POP3 server may treat spaces in the argument as part of the
        // password": everything after the single space is the password.
        "PASS" => match rest {
            Some(p) if !p.is_empty() => Command::Pass(p.to_string()),
            _ => return Err(ParseError::Arguments("PASS needs a password")),
        },
        "AUTH" => match args.as_slice() {
            [] => Command::Auth {
                mechanism: None,
                initial: None,
            },
            [m] => Command::Auth {
                mechanism: Some((*m).to_string()),
                initial: None,
            },
            [m, i] => Command::Auth {
                mechanism: Some((*m).to_string()),
                initial: Some((*i).to_string()),
            },
            _ => {
                return Err(ParseError::Arguments(
                    "AUTH takes a mechanism and a response",
                ));
            }
        },
        "APOP" => Command::Apop,
        "STLS" => no_args(&args, Command::Stls)?,
        "CAPA" => no_args(&args, Command::Capa)?,
        "QUIT" => no_args(&args, Command::Quit)?,
        "STAT" => no_args(&args, Command::Stat)?,
        "NOOP" => no_args(&args, Command::Noop)?,
        "RSET" => no_args(&args, Command::Rset)?,
        "LIST" => Command::List(optional_number(&args)?),
        "UIDL" => Command::Uidl(optional_number(&args)?),
        "RETR" => Command::Retr(one_number(&args)?),
        "DELE" => Command::Dele(one_number(&args)?),
        "TOP" => match args.as_slice() {
            [m, n] => Command::Top(message_number(m)?, line_count(n)?),
            _ => {
                return Err(ParseError::Arguments(
                    "TOP takes a message number and a number of lines",
                ));
            }
        },
        _ => return Err(ParseError::Unknown),
    };
    Ok(cmd)
}

fn no_args(args: &[&str], cmd: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(cmd)
    } else {
        Err(ParseError::Arguments("the command takes no arguments"))
    }
}

fn optional_number(args: &[&str]) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [n] => message_number(n).map(Some),
        _ => Err(ParseError::Arguments("one message number at most")),
    }
}

fn one_number(args: &[&str]) -> Result<u32, ParseError> {
    match args {
        [n] => message_number(n),
        _ => Err(ParseError::Arguments(
            "the command takes one message number",
        )),
    }
}

/// Decimal digits and nothing else (no sign, no space). A number too large for any maildrop
/// becomes `u32::MAX`, which the session answers with "no such message".
fn message_number(s: &str) -> Result<u32, ParseError> {
    digits(s)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .ok_or(ParseError::Arguments(
            "a message number is a decimal number",
        ))
}

fn line_count(s: &str) -> Result<u64, ParseError> {
    digits(s).ok_or(ParseError::Arguments(
        "the number of lines is a decimal number",
    ))
}

/// The value of a string of ASCII digits, saturating at `u64::MAX`.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(p("stat"), Ok(Command::Stat));
        assert_eq!(p("Capa"), Ok(Command::Capa));
        assert_eq!(p("sTlS"), Ok(Command::Stls));
        assert_eq!(p("quit"), Ok(Command::Quit));
    }

    #[test]
    fn commands_with_message_numbers() {
        assert_eq!(p("LIST"), Ok(Command::List(None)));
        assert_eq!(p("LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(p("UIDL 12"), Ok(Command::Uidl(Some(12))));
        assert_eq!(p("RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(p("DELE 007"), Ok(Command::Dele(7)));
        assert_eq!(p("TOP 2 0"), Ok(Command::Top(2, 0)));
        assert_eq!(
            p("TOP 2 99999999999999999999999"),
            Ok(Command::Top(2, u64::MAX))
        );
        assert_eq!(p("RETR 99999999999"), Ok(Command::Retr(u32::MAX)));
        // Trailing or doubled spaces, as some clients send them.
        assert_eq!(p("LIST "), Ok(Command::List(None)));
        assert_eq!(p("RETR  4 "), Ok(Command::Retr(4)));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            "RETR", "RETR x", "RETR -1", "RETR +1", "RETR 1 2", "DELE", "TOP 1", "TOP a 1",
            "TOP 1 -2", "LIST 1 2", "STAT 1", "NOOP x", "QUIT now", "USER", "PASS", "PASS ",
            "USER a b",
        ] {
            assert!(
                matches!(p(bad), Err(ParseError::Arguments(_))),
                "{bad}: {:?}",
                p(bad)
            );
        }
    }

    #[test]
    fn user_and_pass() {
        assert_eq!(
            p("USER alice@example.test"),
            Ok(Command::User("alice@example.test".into()))
        );
        // RFC 1939 §7: spaces belong to the password.
        assert_eq!(p("PASS  a secret "), Ok(Command::Pass(" a secret ".into())));
        assert_eq!(p("PASS pässwört"), Ok(Command::Pass("pässwört".into())));
        assert_eq!(format!("{:?}", p("PASS hunter2")), "Ok(Pass(..))");
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            p("AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(
            p("AUTH PLAIN"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: None
            })
        );
        assert_eq!(
            p("auth plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: Some("plain".into()),
                initial: Some("AGEAYg==".into())
            })
        );
        assert!(!format!("{:?}", p("AUTH PLAIN AGEAYg==")).contains("AGEAYg"));
    }

    #[test]
    fn unknown_and_garbage() {
        assert_eq!(p(""), Err(ParseError::Unknown));
        assert_eq!(p("LAST"), Err(ParseError::Unknown));
        assert_eq!(p("XYZZY 1"), Err(ParseError::Unknown));
        assert_eq!(p(" STAT"), Err(ParseError::Unknown));
        assert_eq!(parse(b"STAT\0"), Err(ParseError::ControlCharacters));
        assert_eq!(parse(b"NO\rOP"), Err(ParseError::ControlCharacters));
        assert_eq!(parse(b"\x1b[2J"), Err(ParseError::ControlCharacters));
        assert_eq!(parse(b"USER \xff\xfe"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn the_command_limit_is_255_octets_with_crlf() {
        let at = format!("USER {}", "a".repeat(MAX_COMMAND - 2 - 5));
        assert!(p(&at).is_ok());
        let over = format!("USER {}", "a".repeat(MAX_COMMAND - 2 - 4));
        assert_eq!(p(&over), Err(ParseError::TooLong));
        // RFC 5034: AUTH may carry a longer initial response.
        let auth = format!("AUTH PLAIN {}", "A".repeat(1000));
        assert!(p(&auth).is_ok());
    }

    proptest! {
        /// Any bytes: a command or an error, never a panic; error texts are one printable line.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            match parse(&line) {
                Ok(_) => prop_assert!(line.iter().all(|&b| b >= 0x20 && b != 0x7f)),
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(!text.is_empty());
                    prop_assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)));
                }
            }
        }

        /// Message numbers round-trip.
        #[test]
        fn numbers(n in 1u32..) {
            prop_assert_eq!(p(&format!("RETR {n}")), Ok(Command::Retr(n)));
            prop_assert_eq!(p(&format!("list {n}")), Ok(Command::List(Some(n))));
        }
    }
}
