//! Reads `mailstead.conf`: `KEY=VALUE` lines and `#` comments, as mailcow.conf and Docker
//! Compose `.env` files are written. This layer only splits lines; the key table gives meaning.

use super::{ConfigError, Origin};
use std::path::Path;

/// One `KEY=VALUE` assignment and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// Splits a configuration text into assignments. Syntax errors are collected, not fatal, so the
/// user sees every bad line at once.
pub fn parse(text: &str, path: &Path) -> (Vec<Assignment>, Vec<ConfigError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw_line) in text.lines().enumerate() {
        let origin = Origin::File {
            path: path.to_path_buf(),
            line: idx + 1,
        };
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            errors.push(ConfigError::syntax(
                origin,
                format!("expected KEY=VALUE, found {:?}", truncate(line)),
            ));
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            errors.push(ConfigError::syntax(
                origin,
                format!(
                    "{:?} is not a key name; keys are upper-case letters, digits and _",
                    truncate(key)
                ),
            ));
            continue;
        }
        match parse_value(rest) {
            Ok(value) => out.push(Assignment {
                key: key.to_string(),
                value,
                origin,
            }),
            Err(msg) => errors.push(ConfigError::syntax(origin, format!("{key}: {msg}"))),
        }
    }
    (out, errors)
}

/// A value is the rest of the line: quoted with `"` or `'`, or bare up to an inline ` #` comment
/// (mailcow's documentation writes `SKIP_CLAMD=n   # ClamAV antivirus`).
fn parse_value(rest: &str) -> Result<String, String> {
    let rest = rest.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = rest.strip_prefix(quote) {
            let Some(end) = inner.find(quote) else {
                return Err(format!(
                    "the value opens a {quote} quote that is never closed"
                ));
            };
            let after = inner[end + 1..].trim_start();
            if !after.is_empty() && !after.starts_with('#') {
                return Err(format!(
                    "unexpected text after the closing quote: {after:?}"
                ));
            }
            return Ok(inner[..end].to_string());
        }
    }
    let mut value = rest;
    if let Some(pos) = rest.find(" #").or_else(|| rest.find("\t#")) {
        value = &rest[..pos];
    }
    Ok(value.trim_end().to_string())
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<String, String> {
        let (a, e) = parse(text, Path::new("t.conf"));
        if let Some(err) = e.first() {
            return Err(err.to_string());
        }
        Ok(a[0].value.clone())
    }

    #[test]
    fn values() {
        assert_eq!(one("A=b"), Ok("b".into()));
        assert_eq!(one("A = b "), Ok("b".into()));
        assert_eq!(one("A="), Ok("".into()));
        assert_eq!(one("A=n      # comment"), Ok("n".into()));
        assert_eq!(one("A=\"a # b\"  # c"), Ok("a # b".into()));
        assert_eq!(one("A='x'"), Ok("x".into()));
        assert_eq!(one("export A=1"), Ok("1".into()));
        assert_eq!(one("A=a#b"), Ok("a#b".into()));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let (_, e) = parse("# c\n\nNOEQUALS\n", Path::new("x.conf"));
        assert_eq!(
            e[0].to_string(),
            "x.conf line 3: expected KEY=VALUE, found \"NOEQUALS\""
        );
        let (_, e) = parse("A=\"open", Path::new("x.conf"));
        assert_eq!(
            e[0].to_string(),
            "x.conf line 1: A: the value opens a \" quote that is never closed"
        );
        let (_, e) = parse("lower=1", Path::new("x.conf"));
        assert!(e[0].to_string().contains("\"lower\" is not a key name"));
        let (_, e) = parse("A=\"x\" y", Path::new("x.conf"));
        assert!(
            e[0].to_string()
                .contains("unexpected text after the closing quote")
        );
    }
}
