//! Trace headers (RFC 5321 §4.4): Received on every message, Return-Path at delivery.

use crate::session::Session;
use mailstead_listener::TlsInfo;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Keeps a client-supplied token safe inside a header: no line breaks, no control characters,
/// bounded length.
pub fn header_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if c == '(' || c == ')' || c == ';' {
                '_'
            } else {
                c
            }
        })
        .take(255)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

/// RFC 5322 §3.3 date-time, in UTC.
pub fn rfc5322_date(t: time::OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The `with` protocol name (RFC 3848, RFC 6531 §4.3): ESMTP, ESMTPS, ESMTPA, ESMTPSA, their
/// UTF8 forms, or SMTP after HELO.
pub fn with_protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> String {
    if !esmtp {
        return "SMTP".into();
    }
    let mut p = String::from(if utf8 { "UTF8SMTP" } else { "ESMTP" });
    if tls {
        p.push('S');
    }
    if auth {
        p.push('A');
    }
    p
}

/// The Received header this server adds to a message of the current transaction.
pub fn received(
    session: &Session,
    host: &str,
    peer: IpAddr,
    tls: Option<&TlsInfo>,
    now: time::OffsetDateTime,
) -> String {
    let tx = session.transaction();
    let helo = header_safe(session.helo().unwrap_or("unknown"));
    let mut h = format!("Received: from {helo} ([{peer}])\r\n");
    if let Some(t) = tls {
        let _ = write!(
            h,
            "\t(using {} with cipher {})\r\n",
            header_safe(&t.version),
            header_safe(&t.cipher)
        );
    }
    let proto = with_protocol(
        session.esmtp(),
        tls.is_some(),
        session.user().is_some(),
        tx.is_some_and(|t| t.params.smtputf8),
    );
    let id = tx.map(|t| t.id.as_str()).unwrap_or("unknown");
    let _ = write!(h, "\tby {host} with {proto} id {id}");
    // Naming the recipient only when there is one keeps a Bcc list private.
    if let Some(t) = tx
        && t.rcpts.len() == 1
    {
        let _ = write!(h, "\r\n\tfor <{}>", header_safe(&t.rcpts[0].address));
    }
    let _ = write!(h, "; {}\r\n", rfc5322_date(now));
    h
}

/// `Return-Path: <sender>` (RFC 5321 §4.4), added at final delivery.
pub fn return_path(from: &str) -> String {
    // The null sender is `<>` (RFC 5321 §4.4), not a placeholder.
    if from.is_empty() {
        return "Return-Path: <>\r\n".into();
    }
    format!("Return-Path: <{}>\r\n", header_safe(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_protocols() {
        let t = time::macros::datetime!(2026-11-21 10:05:09 UTC);
        assert_eq!(rfc5322_date(t), "Sat, 21 Nov 2026 10:05:09 +0000");
        assert_eq!(with_protocol(true, true, true, false), "ESMTPSA");
        assert_eq!(with_protocol(true, false, false, true), "UTF8SMTP");
        assert_eq!(with_protocol(false, true, false, false), "SMTP");
    }

    #[test]
    fn header_injection_is_defused() {
        assert_eq!(header_safe("evil\r\nBcc: x"), "evilBcc: x");
        assert_eq!(header_safe("a(b);c"), "a_b__c");
        assert_eq!(header_safe(""), "unknown");
        assert_eq!(return_path(""), "Return-Path: <>\r\n");
    }
}
