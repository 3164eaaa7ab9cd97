//! Checking and compiling a Sieve script: the size and nesting bounds, the extensions this
//! server runs, and errors that name the line (ManageSieve PUTSCRIPT and CHECKSCRIPT, RFC 5804
//! §2.6, and the admin commands that store scripts).

use sieve::{Compiler, Sieve};
use std::fmt;
use std::sync::Arc;

/// The largest script accepted (Pigeonhole's sieve_max_script_size default).
pub const MAX_SCRIPT_SIZE: usize = 1 << 20;
/// Scripts one mailbox may hold (ManageSieve refuses more with QUOTA/MAXSCRIPTS).
pub const MAX_SCRIPTS: usize = 100;
/// Bytes of script one mailbox may hold in all (QUOTA/MAXSIZE).
pub const MAX_STORAGE: usize = 8 << 20;
/// How deep blocks and tests may nest: a pathological script is refused when it is checked,
/// not when mail arrives.
const MAX_NESTING: usize = 15;

/// The extensions scripts may `require`, as ManageSieve's SIEVE capability lists them
/// (RFC 5804 §1.7). Each one runs at delivery.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "imap4flags",
    "copy",
    "body",
    "variables",
    "vacation",
    "vacation-seconds",
    "relational",
    "comparator-i;ascii-numeric",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "date",
    "index",
    "subaddress",
    "mailbox",
    "include",
    "duplicate",
    "editheader",
    "enotify",
    "ihave",
];

/// The notification methods `notify` may use (RFC 5435): mailto only (RFC 5436).
pub const NOTIFY_METHODS: &[&str] = &["mailto"];

/// Why a script was refused, with the place in it when there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    /// 1-based line, 0 when the error is about the script as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

fn whole(message: String) -> ScriptError {
    ScriptError {
        line: 0,
        column: 0,
        message,
    }
}

/// The compiler with this server's bounds.
fn compiler() -> Compiler {
    Compiler::new()
        .with_max_script_size(MAX_SCRIPT_SIZE)
        .with_max_nested_blocks(MAX_NESTING)
        .with_max_nested_tests(MAX_NESTING)
}

/// Compiles a script, refusing what this server would not run: too large, not UTF-8 (RFC
/// 5228 §2.2), syntax errors, or a `require` of an extension outside [`EXTENSIONS`].
pub fn compile(text: &[u8]) -> Result<Arc<Sieve>, ScriptError> {
    if text.len() > MAX_SCRIPT_SIZE {
        return Err(whole(format!(
            "the script is {} bytes; at most {MAX_SCRIPT_SIZE} are allowed",
            text.len()
        )));
    }
    if let Err(e) = std::str::from_utf8(text) {
        let line = 1 + text
            .get(..e.valid_up_to())
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        return Err(ScriptError {
            line,
            column: 0,
            message: "the script is not UTF-8".into(),
        });
    }
    let script = compiler().compile(text).map_err(|e| ScriptError {
        line: e.line_num(),
        column: e.line_pos(),
        message: e.to_string(),
    })?;
    for (name, line) in required(text) {
        if !EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(&name)) {
            return Err(ScriptError {
                line,
                column: 0,
                message: format!("the extension {name:?} is not supported"),
            });
        }
    }
    Ok(Arc::new(script))
}

/// The space-separated extension list of ManageSieve's SIEVE capability.
pub fn extensions() -> String {
    EXTENSIONS.join(" ")
}

/// The names of every `require` in a script, with their lines. A scan of the tokens, enough
/// for `require` whose arguments are literal strings (RFC 5228 §3.2); the compiler has
/// already checked the syntax.
fn required(text: &[u8]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Whether the last identifier was `require` and its argument is still open.
    let mut in_require = false;
    while let Some(&b) = text.get(i) {
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'#' => {
                while text.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'/' if text.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < text.len() && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                    line += usize::from(text[i] == b'\n');
                    i += 1;
                }
                i += 2;
            }
            b'"' => {
                let start_line = line;
                let mut s = Vec::new();
                i += 1;
                while let Some(&c) = text.get(i) {
                    match c {
                        b'"' => break,
                        b'\\' => {
                            if let Some(&n) = text.get(i + 1) {
                                s.push(n);
                            }
                            i += 2;
                            continue;
                        }
                        b'\n' => line += 1,
                        _ => {}
                    }
                    s.push(c);
                    i += 1;
                }
                i += 1;
                if in_require {
                    out.push((String::from_utf8_lossy(&s).into_owned(), start_line));
                }
            }
            b';' => {
                in_require = false;
                i += 1;
            }
            b'{' | b'}' => {
                in_require = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while text
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    i += 1;
                }
                let word = text.get(start..i).unwrap_or_default();
                if word.eq_ignore_ascii_case(b"text") && text.get(i) == Some(&b':') {
                    // A multi-line string (RFC 5228 §2.4.2) ends at a line of one dot.
                    while i < text.len()
                        && !text[i..].starts_with(b"\n.\n")
                        && !text[i..].starts_with(b"\n.\r\n")
                    {
                        line += usize::from(text[i] == b'\n');
                        i += 1;
                    }
                } else {
                    in_require = word.eq_ignore_ascii_case(b"require");
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_good_script_compiles() {
        let s = br#"require ["fileinto", "imap4flags", "vacation"];
if header :contains "subject" "report" { fileinto "Reports"; addflag "\\Seen"; }
vacation :days 3 "away";
"#;
        compile(s).unwrap();
    }

    #[test]
    fn errors_name_the_line() {
        let e = compile(b"require \"fileinto\";\n\nif true {\n  fileinto \"x\"\n}\n").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let e = compile(b"keep;\nfileinto \"x\";\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("line 2: "), "{e}");
    }

    #[test]
    fn unsupported_extensions_are_refused_with_their_line() {
        let e = compile(b"require \"fileinto\";\nrequire [\"regex\",\n \"x-unknown\"];\nkeep;\n")
            .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("regex"), "{e}");
        compile(b"# require \"regex\";\n/* require \"regex\"; */ keep;\n").unwrap();
        compile(b"require \"vacation\";\nvacation text:\nrequire \"regex\";\n.\n;\n").unwrap();
    }

    #[test]
    fn pathological_scripts_are_refused() {
        let deep = format!("{}keep;{}", "if true {".repeat(200), "}".repeat(200));
        assert!(compile(deep.as_bytes()).is_err());
        let big = "keep;\n".repeat(MAX_SCRIPT_SIZE / 6 + 1);
        assert_eq!(compile(big.as_bytes()).unwrap_err().line, 0);
        assert_eq!(compile(b"keep;\n\xff\n").unwrap_err().line, 2);
    }

    proptest! {
        #[test]
        fn any_bytes_get_an_answer(s in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = compile(&s);
        }

        #[test]
        fn any_token_soup_gets_an_answer(parts in prop::collection::vec(
            prop::sample::select(vec![
                "require", "\"fileinto\"", "[", "]", ";", "if", "{", "}", "header", ":is",
                "\"a\"", "fileinto", "keep", "text:\n", "\n.\n", "/*", "*/", "#", "\n",
                "anyof", "(", ")", ",", "not", "stop", "vacation", ":days", "1",
            ]), 0..60)) {
            let _ = compile(parts.join(" ").as_bytes());
        }
    }
}
