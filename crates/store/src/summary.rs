//! The parsed form of a message that readers need again and again (IMAP ENVELOPE and
//! BODYSTRUCTURE, part offsets for `BODY[1.2]`), computed once when a blob is first stored and
//! kept beside it, so no reader re-parses a message to list it.
//!
//! Header values are kept raw (unfolded, encoded words untouched), which is what RFC 9051 §7.5.2
//! ENVELOPE returns; address names are kept decoded, and the IMAP layer encodes them again for
//! clients that did not enable UTF-8. `v` is bumped when the shape changes; readers re-summarise
//! blobs with an older version.

use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, PartType,
};
use serde::{Deserialize, Serialize};

/// The current shape of [`Summary`].
pub const SUMMARY_VERSION: u32 = 1;

/// Parts nested deeper than this are summarised as opaque leaves (a bound on hostile input).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub v: u32,
    pub envelope: Envelope,
    pub body: Part,
}

/// RFC 9051 §7.5.2 envelope fields, raw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<EnvAddress>,
    pub sender: Vec<EnvAddress>,
    pub reply_to: Vec<EnvAddress>,
    pub to: Vec<EnvAddress>,
    pub cc: Vec<EnvAddress>,
    pub bcc: Vec<EnvAddress>,
    pub in_reply_to: Option<String>,
    pub message_id: Option<String>,
}

/// One entry of an address list. A group is `GroupStart`, its members, `GroupEnd`, as IMAP
/// encodes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvAddress {
    Mailbox {
        name: Option<String>,
        local: String,
        domain: Option<String>,
    },
    GroupStart(String),
    GroupEnd,
}

/// A MIME part. Offsets are into the whole message: `header_start..body_start` is the part's
/// header, `body_start..body_end` its body (encoded, as stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub media_type: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub encoding: Option<String>,
    pub md5: Option<String>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    pub language: Vec<String>,
    pub location: Option<String>,
    pub header_start: u64,
    pub body_start: u64,
    pub body_end: u64,
    /// Lines of the body (text parts and message/rfc822).
    pub lines: u64,
    /// Children of a multipart.
    pub parts: Vec<Part>,
    /// The message inside a message/rfc822 part.
    pub message: Option<Box<Nested>>,
}

/// A message/rfc822 part's content. When the part is transfer-encoded (base64), the nested
/// offsets are relative to the decoded content and `decoded` is true.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nested {
    pub envelope: Envelope,
    pub body: Part,
    pub decoded: bool,
}

/// The stored form of a summary.
pub fn to_json(s: &Summary) -> Result<String, crate::StoreError> {
    serde_json::to_string(s)
        .map_err(|e| crate::StoreError::Invalid(format!("summary not serialisable: {e}")))
}

impl Part {
    pub fn size(&self) -> u64 {
        self.body_end.saturating_sub(self.body_start)
    }
}

/// Summarises a raw message. Never fails: unparseable input becomes one text/plain part.
pub fn summarize(raw: &[u8]) -> Summary {
    let parser = MessageParser::default();
    match parser.parse(raw) {
        Some(msg) if !msg.parts.is_empty() => {
            let envelope = envelope(&msg, raw);
            let body = part(&msg, 0, raw, 0);
            Summary {
                v: SUMMARY_VERSION,
                envelope,
                body,
            }
        }
        _ => Summary {
            v: SUMMARY_VERSION,
            envelope: Envelope::default(),
            body: Part {
                media_type: "text".into(),
                subtype: "plain".into(),
                params: vec![("charset".into(), "us-ascii".into())],
                body_end: raw.len() as u64,
                lines: count_lines(raw),
                ..Part::default()
            },
        },
    }
}

/// Text lines of a body for BODYSTRUCTURE (RFC 9051 §7.5.2): complete lines only, so the CRLF
/// that belongs to a following MIME boundary (RFC 2046 §5.1.1) does not make one more. This is
/// what Dovecot reports, which clients have long seen.
fn count_lines(body: &[u8]) -> u64 {
    memchr_count(body)
}

fn memchr_count(body: &[u8]) -> u64 {
    body.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The raw value of a header: unfolded, surrounding whitespace trimmed.
fn raw_value(raw: &[u8], start: u32, end: u32) -> Option<String> {
    let bytes = raw.get(start as usize..end as usize)?;
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        out.push_str(line.trim_end_matches('\r'));
    }
    Some(out.trim().to_string())
}

fn first_raw(part: &MessagePart<'_>, raw: &[u8], name: HeaderName<'_>) -> Option<String> {
    part.headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| raw_value(raw, h.offset_start, h.offset_end))
}

fn addresses(part: &MessagePart<'_>, name: HeaderName<'_>) -> Vec<EnvAddress> {
    let Some(header) = part.headers.iter().find(|h| h.name == name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let push = |out: &mut Vec<EnvAddress>, addr: &mail_parser::Addr<'_>| {
        if let Some(a) = addr.address.as_deref() {
            let (local, domain) = match a.rsplit_once('@') {
                Some((l, d)) => (l.to_string(), Some(d.to_string())),
                None => (a.to_string(), None),
            };
            out.push(EnvAddress::Mailbox {
                name: addr.name.as_deref().map(str::to_string),
                local,
                domain,
            });
        }
    };
    match &header.value {
        HeaderValue::Address(Address::List(list)) => {
            for a in list {
                push(&mut out, a);
            }
        }
        HeaderValue::Address(Address::Group(groups)) => {
            for g in groups {
                match &g.name {
                    Some(name) => {
                        out.push(EnvAddress::GroupStart(name.to_string()));
                        for a in &g.addresses {
                            push(&mut out, a);
                        }
                        out.push(EnvAddress::GroupEnd);
                    }
                    None => {
                        for a in &g.addresses {
                            push(&mut out, a);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

fn envelope(msg: &Message<'_>, raw: &[u8]) -> Envelope {
    let Some(root) = msg.parts.first() else {
        return Envelope::default();
    };
    Envelope {
        date: first_raw(root, raw, HeaderName::Date),
        subject: first_raw(root, raw, HeaderName::Subject),
        from: addresses(root, HeaderName::From),
        sender: addresses(root, HeaderName::Sender),
        reply_to: addresses(root, HeaderName::ReplyTo),
        to: addresses(root, HeaderName::To),
        cc: addresses(root, HeaderName::Cc),
        bcc: addresses(root, HeaderName::Bcc),
        in_reply_to: first_raw(root, raw, HeaderName::InReplyTo),
        message_id: first_raw(root, raw, HeaderName::MessageId),
    }
}

fn attribute_list(ct: Option<&mail_parser::ContentType<'_>>) -> Vec<(String, String)> {
    ct.and_then(|c| c.attributes())
        .map(|attrs| {
            attrs
                .iter()
                .map(|a| (a.name.to_string(), a.value.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn part(msg: &Message<'_>, id: usize, raw: &[u8], depth: usize) -> Part {
    let Some(p) = msg.parts.get(id) else {
        return Part::default();
    };
    let ct = p.headers.iter().find_map(|h| match (&h.name, &h.value) {
        (HeaderName::ContentType, HeaderValue::ContentType(ct)) => Some(ct),
        _ => None,
    });
    let disposition = p.headers.iter().find_map(|h| match (&h.name, &h.value) {
        (HeaderName::ContentDisposition, HeaderValue::ContentType(cd)) => Some(cd),
        _ => None,
    });
    let is_multipart = matches!(p.body, PartType::Multipart(_));
    // RFC 2045 §5.2: without Content-Type a part is text/plain; charset=us-ascii, except inside
    // multipart/digest, where it is message/rfc822 (RFC 2046 §5.1.5; mail-parser applies that).
    let (media_type, subtype) = match ct {
        Some(c) => (
            c.ctype().to_ascii_lowercase(),
            c.subtype().map(str::to_ascii_lowercase).unwrap_or_else(|| {
                if is_multipart {
                    "mixed".into()
                } else {
                    "plain".into()
                }
            }),
        ),
        None if matches!(p.body, PartType::Message(_)) => ("message".into(), "rfc822".into()),
        None if is_multipart => ("multipart".into(), "mixed".into()),
        None => ("text".into(), "plain".into()),
    };
    let mut params = attribute_list(ct);
    if ct.is_none() && media_type == "text" {
        params.push(("charset".into(), "us-ascii".into()));
    }
    let body_start = u64::from(p.offset_body);
    let body_end = u64::from(p.offset_end).max(body_start);
    let body_bytes = raw
        .get(body_start as usize..body_end as usize)
        .unwrap_or_default();
    let mut out = Part {
        media_type,
        subtype,
        params,
        id: first_raw(p, raw, HeaderName::ContentId),
        description: first_raw(p, raw, HeaderName::ContentDescription),
        encoding: first_raw(p, raw, HeaderName::ContentTransferEncoding),
        md5: first_raw(p, raw, HeaderName::ContentMd5),
        disposition: disposition.map(|d| (d.ctype().to_ascii_lowercase(), attribute_list(Some(d)))),
        language: first_raw(p, raw, HeaderName::ContentLanguage)
            .map(|l| {
                l.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        location: first_raw(p, raw, HeaderName::ContentLocation),
        header_start: u64::from(p.offset_header),
        body_start,
        body_end,
        lines: 0,
        parts: Vec::new(),
        message: None,
    };
    if depth >= MAX_DEPTH {
        return out;
    }
    match &p.body {
        PartType::Multipart(children) => {
            out.parts = children
                .iter()
                .map(|&c| part(msg, c as usize, raw, depth + 1))
                .collect();
        }
        PartType::Message(nested) => {
            out.lines = count_lines(body_bytes);
            // An inline nested message shares the outer buffer (absolute offsets); a transfer-
            // encoded one was parsed from its decoded bytes.
            let decoded = !std::ptr::eq(nested.raw_message.as_ref(), raw);
            let nested_raw: &[u8] = if decoded {
                nested.raw_message.as_ref()
            } else {
                raw
            };
            out.message = Some(Box::new(Nested {
                envelope: envelope(nested, nested_raw),
                body: part(nested, 0, nested_raw, depth + 1),
                decoded,
            }));
        }
        _ => {
            if out.media_type == "text" {
                out.lines = count_lines(body_bytes);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"From: Alice <alice@example.test>\r\n\
To: bob@example.test, \"Carol C\" <carol@example.test>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n folded\r\n\
Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <1@example.test>\r\n\
\r\n\
Hello\r\nWorld\r\n";

    #[test]
    fn simple_message() {
        let s = summarize(SIMPLE);
        assert_eq!(s.v, SUMMARY_VERSION);
        assert_eq!(
            s.envelope.subject.as_deref(),
            Some("=?utf-8?q?Gr=C3=BC=C3=9Fe?= folded")
        );
        assert_eq!(s.envelope.message_id.as_deref(), Some("<1@example.test>"));
        assert_eq!(
            s.envelope.from,
            vec![EnvAddress::Mailbox {
                name: Some("Alice".into()),
                local: "alice".into(),
                domain: Some("example.test".into())
            }]
        );
        assert_eq!(s.envelope.to.len(), 2);
        assert_eq!(
            (s.body.media_type.as_str(), s.body.subtype.as_str()),
            ("text", "plain")
        );
        assert_eq!(
            s.body.params,
            vec![("charset".to_string(), "us-ascii".to_string())]
        );
        assert_eq!(
            &SIMPLE[s.body.body_start as usize..s.body.body_end as usize],
            b"Hello\r\nWorld\r\n"
        );
        assert_eq!(s.body.lines, 2);
    }

    #[test]
    fn multipart_with_nested_message() {
        let raw = b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody one\r\n\
--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.test\r\nSubject: inner\r\n\r\ninner body\r\n\
--b1\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b1--\r\n";
        let s = summarize(raw);
        assert_eq!(s.body.media_type, "multipart");
        assert_eq!(s.body.subtype, "mixed");
        assert_eq!(
            s.body.params,
            vec![("boundary".to_string(), "b1".to_string())]
        );
        assert_eq!(s.body.parts.len(), 3);
        let text = &s.body.parts[0];
        assert_eq!(
            &raw[text.body_start as usize..text.body_end as usize],
            b"body one"
        );
        let msg = &s.body.parts[1];
        assert_eq!(
            (msg.media_type.as_str(), msg.subtype.as_str()),
            ("message", "rfc822")
        );
        let nested = msg.message.as_ref().unwrap();
        assert!(!nested.decoded);
        assert_eq!(nested.envelope.subject.as_deref(), Some("inner"));
        assert_eq!(
            &raw[nested.body.body_start as usize..nested.body.body_end as usize],
            b"inner body"
        );
        let pdf = &s.body.parts[2];
        assert_eq!(pdf.encoding.as_deref(), Some("base64"));
        assert_eq!(pdf.disposition.as_ref().unwrap().0, "attachment");
        assert_eq!(
            &raw[pdf.body_start as usize..pdf.body_end as usize],
            b"AAAA"
        );
        // The summary survives its own serialisation.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
    }

    #[test]
    fn garbage_is_a_text_part() {
        let s = summarize(b"");
        assert_eq!(s.body.media_type, "text");
        let s = summarize(&[0xff, 0xfe, 0, 1, 2]);
        assert!(s.body.body_end <= 5);
    }

    proptest::proptest! {
        #[test]
        fn offsets_stay_inside_the_message(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            fn check(p: &Part, len: u64) {
                assert!(p.header_start <= p.body_start && p.body_start <= p.body_end && p.body_end <= len);
                for c in &p.parts { check(c, len); }
            }
            let s = summarize(&raw);
            check(&s.body, raw.len() as u64);
        }
    }
}
