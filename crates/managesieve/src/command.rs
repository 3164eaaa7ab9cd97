//! Parsing one framed command (RFC 5804 §2 and the grammar of §4), sans-I/O.
//!
//! Input is what [`crate::framing::Framer`] hands out: one command with its literals inline,
//! ending with its line end. Command names are case-insensitive atoms; arguments are strings
//! (quoted, or literals `{n+}` / `{n}`) and, for HAVESPACE, a number. Every failure is a
//! [`ParseError`] whose text can go into a NO response as it is.

use crate::framing::literal_header;
use crate::script_name::{NameError, ScriptName};

/// RFC 5804 §4: quoted = DQUOTE *1024QUOTED-CHAR DQUOTE.
pub const MAX_QUOTED: usize = 1024;
/// RFC 5804 §4: atom = 1*1024ATOM-CHAR.
const MAX_ATOM: usize = 1024;

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// §2.1: the mechanism (upper-cased) and the initial response (still base64).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    /// §2.2
    StartTls,
    /// §2.3
    Logout,
    /// §2.4
    Capability,
    /// §2.5
    HaveSpace { name: ScriptName, size: u32 },
    /// §2.6
    PutScript { name: ScriptName, script: Vec<u8> },
    /// §2.7
    ListScripts,
    /// §2.8: `None` for the empty name, which deactivates.
    SetActive { name: Option<ScriptName> },
    /// §2.9
    GetScript { name: ScriptName },
    /// §2.10
    DeleteScript { name: ScriptName },
    /// §2.11.1
    RenameScript { from: ScriptName, to: ScriptName },
    /// §2.12
    CheckScript { script: Vec<u8> },
    /// §2.13: the optional string echoed in the TAG response code.
    Noop { tag: Option<Vec<u8>> },
    /// §2.14
    Unauthenticate,
}

/// The client's answer to a SASL challenge (§2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaslResponse {
    /// `"*"` (or a bare `*`): the client gives up.
    Cancel,
    /// The response, still base64.
    Data(Vec<u8>),
}

/// Why a command could not be parsed; the text is printable ASCII, fit for a NO response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    /// The command name was not recognised (not just its arguments).
    pub unknown_command: bool,
}

fn error(message: impl Into<String>) -> ParseError {
    ParseError {
        message: message.into(),
        unknown_command: false,
    }
}

impl From<NameError> for ParseError {
    fn from(e: NameError) -> ParseError {
        error(e.to_string())
    }
}

/// RFC 5804 §4: ATOM-CHAR = "!" / %x23-27 / %x2A-5B / %x5D-7A / %x7C-7E.
fn is_atom_char(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x27 | 0x2a..=0x5b | 0x5d..=0x7a | 0x7c..=0x7e)
}

/// A cursor over one command.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn atom(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_atom_char) {
            self.pos += 1;
        }
        let atom = self.input.get(start..self.pos).unwrap_or_default();
        if atom.is_empty() {
            return Err(error("expected a word"));
        }
        if atom.len() > MAX_ATOM {
            return Err(error(format!("words are at most {MAX_ATOM} octets")));
        }
        Ok(atom)
    }

    /// One or more spaces between arguments.
    fn space(&mut self) -> Result<(), ParseError> {
        if self.peek() != Some(b' ') {
            return Err(error("expected a space and another argument"));
        }
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        Ok(())
    }

    /// Whether another argument follows (spaces and then not the line end).
    fn more(&self) -> bool {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let after = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
        after > 0 && !matches!(rest.get(after), None | Some(b'\r' | b'\n'))
    }

    /// The line end, after optional trailing spaces, and nothing after it.
    fn end(&mut self) -> Result<(), ParseError> {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        let rest = self.input.get(self.pos..).unwrap_or_default();
        if rest == b"\r\n" || rest == b"\n" {
            Ok(())
        } else {
            Err(error("unexpected text after the arguments"))
        }
    }

    /// A string: quoted or literal (§4 string).
    fn string(&mut self) -> Result<Vec<u8>, ParseError> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(error("expected a string (quoted or a literal)")),
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(error("a quoted string does not end"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => match self.peek() {
                    // QUOTED-CHAR = SAFE-UTF8-CHAR / "\" QUOTED-SPECIALS
                    Some(e @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        out.push(e);
                    }
                    _ => return Err(error("a backslash may only escape \" or \\")),
                },
                // SAFE-CHAR excludes NUL, CR and LF: a longer text goes as a literal.
                0 | b'\r' | b'\n' => {
                    return Err(error("a quoted string cannot hold NUL, CR or LF"));
                }
                c => out.push(c),
            }
            if out.len() > MAX_QUOTED {
                return Err(error(format!(
                    "quoted strings are at most {MAX_QUOTED} octets; send a literal"
                )));
            }
        }
        // SAFE-UTF8-CHAR: quoted strings are UTF-8.
        if std::str::from_utf8(&out).is_err() {
            return Err(error("a quoted string must be UTF-8"));
        }
        Ok(out)
    }

    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(lf) = rest.iter().position(|&c| c == b'\n') else {
            return Err(error("a literal header must end its line"));
        };
        let line = rest.get(..lf).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let size = match literal_header(line) {
            Some(size) if line.first() == Some(&b'{') => size,
            _ => {
                return Err(error(
                    "a literal header is {n+} or {n} at the end of a line",
                ));
            }
        };
        let from = self.pos + lf + 1;
        let data = usize::try_from(size)
            .ok()
            .and_then(|n| self.input.get(from..from.checked_add(n)?))
            .ok_or_else(|| error("the literal is shorter than announced"))?;
        self.pos = from + data.len();
        Ok(data.to_vec())
    }

    fn name(&mut self) -> Result<ScriptName, ParseError> {
        Ok(ScriptName::new(&self.string()?)?)
    }

    fn number(&mut self) -> Result<u32, ParseError> {
        let digits = self.atom()?;
        // §4: number = 1*DIGIT, 0 .. 4,294,967,295
        std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| error("expected a number from 0 to 4294967295"))
    }
}

/// The command name for a message: printable ASCII, short.
fn shown(name: &[u8]) -> String {
    let mut s: String = name.iter().take(40).map(|&c| char::from(c)).collect();
    if name.len() > 40 {
        s.push_str("...");
    }
    s
}

/// Parses one command as the framer handed it out.
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let mut r = Reader { input, pos: 0 };
    if matches!(r.peek(), None | Some(b'\r' | b'\n')) {
        return Err(error("empty command"));
    }
    let name = r
        .atom()
        .map_err(|_| error("a command starts with its name"))?;
    let upper = name.to_ascii_uppercase();
    let cmd = match upper.as_slice() {
        b"AUTHENTICATE" => {
            r.space()?;
            // §2.1: auth-type = string; a bare word is taken too.
            let mechanism = if r.peek().is_some_and(is_atom_char) {
                r.atom()?.to_vec()
            } else {
                r.string()?
            };
            let mechanism = String::from_utf8(mechanism)
                .ok()
                .filter(|m| !m.is_empty() && m.bytes().all(is_atom_char))
                .ok_or_else(|| error("not a SASL mechanism name"))?
                .to_ascii_uppercase();
            let initial = if r.more() {
                r.space()?;
                Some(r.string()?)
            } else {
                None
            };
            Command::Authenticate { mechanism, initial }
        }
        b"STARTTLS" => Command::StartTls,
        b"LOGOUT" => Command::Logout,
        b"CAPABILITY" => Command::Capability,
        b"HAVESPACE" => {
            r.space()?;
            let name = r.name()?;
            r.space()?;
            let size = r.number()?;
            Command::HaveSpace { name, size }
        }
        b"PUTSCRIPT" => {
            r.space()?;
            let name = r.name()?;
            r.space()?;
            let script = r.string()?;
            Command::PutScript { name, script }
        }
        b"LISTSCRIPTS" => Command::ListScripts,
        b"SETACTIVE" => {
            r.space()?;
            let name = r.string()?;
            let name = if name.is_empty() {
                None
            } else {
                Some(ScriptName::new(&name)?)
            };
            Command::SetActive { name }
        }
        b"GETSCRIPT" => {
            r.space()?;
            Command::GetScript { name: r.name()? }
        }
        b"DELETESCRIPT" => {
            r.space()?;
            Command::DeleteScript { name: r.name()? }
        }
        b"RENAMESCRIPT" => {
            r.space()?;
            let from = r.name()?;
            r.space()?;
            let to = r.name()?;
            Command::RenameScript { from, to }
        }
        b"CHECKSCRIPT" => {
            r.space()?;
            Command::CheckScript {
                script: r.string()?,
            }
        }
        b"NOOP" => {
            let tag = if r.more() {
                r.space()?;
                Some(r.string()?)
            } else {
                None
            };
            Command::Noop { tag }
        }
        b"UNAUTHENTICATE" => Command::Unauthenticate,
        _ => {
            return Err(ParseError {
                message: format!("unknown command {}", shown(name)),
                unknown_command: true,
            });
        }
    };
    r.end()?;
    Ok(cmd)
}

/// Parses the client's line in a SASL exchange (§2.1): a string, or `"*"` to cancel.
pub fn parse_sasl_response(input: &[u8]) -> Result<SaslResponse, ParseError> {
    let mut r = Reader { input, pos: 0 };
    let response = if r.peek() == Some(b'*') {
        r.pos += 1;
        SaslResponse::Cancel
    } else {
        match r.string()? {
            s if s == b"*" => SaslResponse::Cancel,
            s => SaslResponse::Data(s),
        }
    };
    r.end()?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> ScriptName {
        ScriptName::new(s.as_bytes()).unwrap()
    }

    fn parse(s: &[u8]) -> Result<Command, ParseError> {
        parse_command(s)
    }

    #[test]
    fn every_command() {
        assert_eq!(
            parse(b"authenticate \"plain\" \"AGEAYg==\"\r\n"),
            Ok(Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            })
        );
        assert_eq!(
            parse(b"AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYg==\r\n"),
            Ok(Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            })
        );
        assert_eq!(
            parse(b"AUTHENTICATE PLAIN\r\n"),
            Ok(Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: None
            })
        );
        assert_eq!(parse(b"StartTLS\r\n"), Ok(Command::StartTls));
        assert_eq!(parse(b"LOGOUT\n"), Ok(Command::Logout));
        assert_eq!(parse(b"CAPABILITY\r\n"), Ok(Command::Capability));
        assert_eq!(
            parse(b"HAVESPACE \"myscript\" 999999\r\n"),
            Ok(Command::HaveSpace {
                name: name("myscript"),
                size: 999_999
            })
        );
        assert_eq!(
            parse(b"PUTSCRIPT \"my \\\"s\\\\\" {5+}\r\nkeep;\r\n"),
            Ok(Command::PutScript {
                name: name("my \"s\\"),
                script: b"keep;".to_vec()
            })
        );
        assert_eq!(
            parse(b"PUTSCRIPT {3}\r\nfoo {0}\r\n\r\n"),
            Ok(Command::PutScript {
                name: name("foo"),
                script: Vec::new()
            })
        );
        assert_eq!(parse(b"listscripts\r\n"), Ok(Command::ListScripts));
        assert_eq!(
            parse(b"SETACTIVE \"\"\r\n"),
            Ok(Command::SetActive { name: None })
        );
        assert_eq!(
            parse(b"SETACTIVE \"a\"\r\n"),
            Ok(Command::SetActive {
                name: Some(name("a"))
            })
        );
        assert_eq!(
            parse(b"GETSCRIPT \"a\"\r\n"),
            Ok(Command::GetScript { name: name("a") })
        );
        assert_eq!(
            parse(b"DELETESCRIPT \"a\"\r\n"),
            Ok(Command::DeleteScript { name: name("a") })
        );
        assert_eq!(
            parse(b"RENAMESCRIPT \"a\" \"b\"\r\n"),
            Ok(Command::RenameScript {
                from: name("a"),
                to: name("b")
            })
        );
        assert_eq!(
            parse(b"CHECKSCRIPT {5+}\r\nkeep;\r\n"),
            Ok(Command::CheckScript {
                script: b"keep;".to_vec()
            })
        );
        assert_eq!(parse(b"NOOP\r\n"), Ok(Command::Noop { tag: None }));
        assert_eq!(
            parse(b"NOOP \"STARTTLS-SYNC-42\"\r\n"),
            Ok(Command::Noop {
                tag: Some(b"STARTTLS-SYNC-42".to_vec())
            })
        );
        assert_eq!(parse(b"UNAUTHENTICATE\r\n"), Ok(Command::Unauthenticate));
    }

    #[test]
    fn refusals() {
        let e = parse(b"FOO bar\r\n").unwrap_err();
        assert!(
            e.unknown_command && e.message == "unknown command FOO",
            "{e:?}"
        );
        for bad in [
            &b"\r\n"[..],
            b"PUTSCRIPT \"a\"\r\n",
            b"PUTSCRIPT a {5+}\r\nkeep;\r\n",
            b"PUTSCRIPT \"a\" {9+}\r\nkeep;\r\n",
            b"PUTSCRIPT \"\" {5+}\r\nkeep;\r\n",
            b"GETSCRIPT \"a\" \"b\"\r\n",
            b"GETSCRIPT \"a\\n\"\r\n",
            b"GETSCRIPT \"a\x00\"\r\n",
            b"GETSCRIPT \"a\xff\"\r\n",
            b"GETSCRIPT \"a\r\n",
            b"GETSCRIPT {2}\r\na\x01\r\n",
            b"HAVESPACE \"a\" 4294967296\r\n",
            b"HAVESPACE \"a\" -1\r\n",
            b"LISTSCRIPTS x\r\n",
            b"AUTHENTICATE \"\"\r\n",
            b"AUTHENTICATE \"PL AIN\"\r\n",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.unknown_command, "{bad:?}: {e:?}");
        }
        let long = format!("GETSCRIPT \"{}\"\r\n", "a".repeat(MAX_QUOTED + 1));
        assert!(
            parse(long.as_bytes())
                .unwrap_err()
                .message
                .contains("literal")
        );
        let ok = format!("GETSCRIPT \"{}\"\r\n", "a".repeat(500));
        assert!(parse(ok.as_bytes()).is_ok());
        let too_long = format!("GETSCRIPT \"{}\"\r\n", "a".repeat(513));
        assert!(parse(too_long.as_bytes()).is_err());
    }

    #[test]
    fn sasl_responses() {
        assert_eq!(parse_sasl_response(b"\"*\"\r\n"), Ok(SaslResponse::Cancel));
        assert_eq!(parse_sasl_response(b"*\r\n"), Ok(SaslResponse::Cancel));
        assert_eq!(
            parse_sasl_response(b"{4+}\r\nAGE=\r\n"),
            Ok(SaslResponse::Data(b"AGE=".to_vec()))
        );
        assert_eq!(
            parse_sasl_response(b"\"AGE=\"\r\n"),
            Ok(SaslResponse::Data(b"AGE=".to_vec()))
        );
        assert!(parse_sasl_response(b"AGE=\r\n").is_err());
    }

    fn printable(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|c| (0x20..0x7f).contains(&c))
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_with_printable_text(
            bytes in prop::collection::vec(any::<u8>(), 0..200)
        ) {
            for r in [parse_command(&bytes).map(|_| ()), parse_sasl_response(&bytes).map(|_| ())] {
                if let Err(e) = r {
                    prop_assert!(printable(&e.message), "{:?}", e.message);
                }
            }
        }

        #[test]
        fn token_soup_parses_or_fails(parts in prop::collection::vec(
            prop::sample::select(vec![
                "PUTSCRIPT", "GETSCRIPT", "HAVESPACE", "NOOP", "SETACTIVE", "RENAMESCRIPT",
                "AUTHENTICATE", "CHECKSCRIPT", " ", "\"a\"", "\"\"", "{1+}\r\nx", "{0}\r\n",
                "{3}\r\n", "12", "\\", "\"", "\r\n", "\n", "*", "\u{e9}",
            ]), 0..12)) {
            let s = parts.concat();
            if let Err(e) = parse_command(s.as_bytes()) {
                prop_assert!(printable(&e.message), "{:?}", e.message);
            }
        }

        #[test]
        fn quoted_names_round_trip(name in "[^\\x00-\\x1f\\x7f-\\x9f\u{2028}\u{2029}]{1,100}") {
            prop_assume!(name.len() <= 512);
            let mut line = b"GETSCRIPT ".to_vec();
            crate::response::string(&mut line, name.as_bytes());
            line.extend_from_slice(b"\r\n");
            prop_assert_eq!(
                parse_command(&line),
                Ok(Command::GetScript { name: ScriptName::new(name.as_bytes()).unwrap() })
            );
        }
    }
}
