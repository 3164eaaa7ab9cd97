//! The scripts behind `mailstead vacation` and `mailstead forward`: what mailcow users set in
//! the web interface, written as Sieve and stored as the mailbox's `_vacation` and `_forward`
//! scripts, which run before the user's own (see [`crate::filter`]).

use std::fmt::Write;

/// An out-of-office reply (RFC 5230).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vacation {
    pub subject: String,
    pub message: String,
    /// One reply per sender in this many days (RFC 5230 §4.1: at least 1).
    pub days: u32,
    /// First and last day (YYYY-MM-DD) the reply is sent; open when absent.
    pub from: Option<String>,
    pub until: Option<String>,
}

/// A Sieve string literal (RFC 5228 §2.4.2): quotes escaped; line breaks are allowed inside
/// and become CRLF. A backslash and a dollar sign are written as encoded characters (RFC
/// 5228 §2.4.2.4, needs "encoded-character"): sieve-rs misreads `\\` before the closing
/// quote, and a literal `${` in the text must not be decoded.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.replace("\r\n", "\n").chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("${unicode:5C}"),
            '$' => out.push_str("${unicode:24}"),
            '\n' => out.push_str("\r\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `s` is a calendar date YYYY-MM-DD.
pub fn is_date(s: &str) -> bool {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
}

pub fn vacation(v: &Vacation) -> String {
    let mut s = String::from(
        "# The out-of-office reply, written by `mailstead vacation set`; replaced by the next.\r\n\
         require [\"vacation\", \"date\", \"relational\", \"encoded-character\"];\r\n",
    );
    let mut conditions = Vec::new();
    if let Some(from) = &v.from {
        conditions.push(format!(
            "currentdate :value \"ge\" \"date\" {}",
            quote(from)
        ));
    }
    if let Some(until) = &v.until {
        conditions.push(format!(
            "currentdate :value \"le\" \"date\" {}",
            quote(until)
        ));
    }
    let action = format!(
        "vacation :days {} :subject {} {};\r\n",
        v.days.max(1),
        quote(&v.subject),
        quote(&v.message)
    );
    if conditions.is_empty() {
        s.push_str(&action);
    } else {
        let _ = write!(
            s,
            "if allof ({}) {{\r\n    {action}}}\r\n",
            conditions.join(", ")
        );
    }
    s
}

/// Forwarding to `to` (at most [`crate::filter::MAX_REDIRECTS`] addresses): with `keep` a
/// copy stays and the user's own script still runs; without, filtering ends here.
pub fn forward(to: &[String], keep: bool) -> String {
    let mut s =
        String::from("# Forwarding, written by `mailstead forward set`; replaced by the next.\r\n");
    s.push_str(if keep {
        "require [\"copy\", \"encoded-character\"];\r\n"
    } else {
        "require \"encoded-character\";\r\n"
    });
    for address in to {
        let copy = if keep { ":copy " } else { "" };
        let _ = write!(s, "redirect {copy}{};\r\n", quote(address));
    }
    if !keep {
        s.push_str("stop;\r\n");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_scripts_compile() {
        let v = Vacation {
            subject: "Away \"for now\"".into(),
            message: "Back on Monday.\nC:\\path\n.\n".into(),
            days: 3,
            from: Some("2026-11-01".into()),
            until: Some("2026-12-01".into()),
        };
        crate::compile(vacation(&v).as_bytes()).unwrap();
        let open = Vacation {
            from: None,
            until: None,
            ..v
        };
        crate::compile(vacation(&open).as_bytes()).unwrap();
        crate::compile(forward(&["a@x.test".into(), "b@y.test".into()], true).as_bytes()).unwrap();
        crate::compile(forward(&["a@x.test".into()], false).as_bytes()).unwrap();
        assert!(is_date("2026-02-28") && !is_date("2026-02-30") && !is_date("tomorrow"));
    }

    proptest! {
        #[test]
        fn any_text_is_quoted_into_a_valid_script(subject in ".{0,80}", message in "(?s).{0,300}") {
            let v = Vacation { subject, message, days: 7, from: None, until: None };
            prop_assert!(crate::compile(vacation(&v).as_bytes()).is_ok());
        }
    }
}
