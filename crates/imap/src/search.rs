//! SEARCH evaluation (RFC 9051 §6.4.4, with RFC 7162 §3.1.5 MODSEQ, RFC 5032 OLDER/YOUNGER and
//! RFC 5182 `$`): whether one message matches a search key. Pure: the caller loads what the
//! key needs (the summary always, the raw message only when [`needs_content`] says so) and
//! asks message by message.
//!
//! What each key reads:
//! - FROM, TO, CC, BCC, SUBJECT, and HEADER for the envelope fields (Subject, From, Sender,
//!   Reply-To, To, Cc, Bcc, Date, Message-ID, In-Reply-To) read the summary's envelope, always,
//!   so a key gives the same answer whether or not another key in the same command loaded the
//!   raw message. HEADER Message-ID in particular (clients use it to find a message they just
//!   appended) stays an index-only search.
//! - HEADER for any other field reads the raw top-level header, every occurrence of the field.
//! - BODY reads the decoded text of the text parts (transfer encoding and charset undone),
//!   including the parts and header of attached messages; TEXT reads that and every header.
//!
//! Strings match as case-insensitive substrings after RFC 2047 decoding, with the comparison
//! keys of [`fold`] (I18NLEVEL=1 of RFC 5255 asks for i;unicode-casemap, RFC 5051).

use std::cell::OnceCell;

use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};
use mailstead_store::Flags;
use mailstead_store::summary::{EnvAddress, Envelope, Summary};

use crate::proto::types::{Date, SearchKey, SeqNum, SequenceSet};

/// Attached messages nested deeper than this are not searched (a bound on hostile input;
/// mail-parser bounds transfer-encoded nesting itself, this bounds the walk).
const MAX_NESTING: usize = 16;

/// What a search can see of one message.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    pub flags: Flags,
    pub keywords: &'a [String],
    /// `\Recent` in this session (RFC 3501 §2.3.2; gone from RFC 9051 but kept for rev1).
    pub recent: bool,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u64,
    pub modseq: u64,
    pub summary: &'a Summary,
    /// The whole message, loaded only when [`needs_content`] is true for the key. A key that
    /// needs it and does not get it does not match (so `NOT BODY x` would then match).
    pub raw: Option<&'a [u8]>,
}

/// The mailbox-wide facts a search needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchContext {
    /// Unix seconds, for OLDER and YOUNGER.
    pub now: i64,
    /// The number of messages: `*` in a sequence set.
    pub max_seq: u32,
    /// The highest UID in use: `*` in a UID set.
    pub max_uid: u32,
    /// The saved result `$` of SEARCHRES (RFC 5182), as UIDs in ascending order (as SEARCH
    /// returns them; membership is a binary search). `None` is the empty set: RFC 5182 §2.1
    /// starts every selected mailbox with an empty saved result.
    pub saved: Option<Vec<u32>>,
    /// The zone INTERNALDATE is shown in, seconds east of UTC. BEFORE, ON and SINCE compare
    /// the internal date "disregarding time and timezone" (RFC 9051 §6.4.4): its calendar day
    /// as the server presents it, which is the day in this zone.
    pub tz_offset_secs: i32,
}

/// Whether evaluating `key` needs the raw message ([`Candidate::raw`]).
pub fn needs_content(key: &SearchKey) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        SearchKey::Header(name, _) => envelope_field(name).is_none(),
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::And(keys) => keys.iter().any(needs_content),
        _ => false,
    }
}

/// Whether message `m` matches `key`.
pub fn matches(key: &SearchKey, m: &Candidate<'_>, ctx: &SearchContext) -> bool {
    let eval = Eval {
        m,
        ctx,
        parsed: OnceCell::new(),
        texts: OnceCell::new(),
        fields: OnceCell::new(),
    };
    eval.eval(key)
}

/// Sequence-set membership (RFC 9051 §9 sequence-set): `*` is `max`, `a:b` is the same range
/// as `b:a`, so `5:*` with 3 messages is `3:5`. `$` is not looked at here; [`matches`]
/// resolves it against [`SearchContext::saved`].
pub fn in_set(set: &SequenceSet, n: u32, max: u32) -> bool {
    let value = |s: SeqNum| match s {
        SeqNum::Value(v) => v,
        SeqNum::Star => max,
    };
    set.ranges.iter().any(|r| {
        let (a, b) = (value(r.start), value(r.end));
        a.min(b) <= n && n <= a.max(b)
    })
}

/// The comparison key of a string: case-insensitive, for substring search and for SORT and
/// THREAD collation. RFC 5051 i;unicode-casemap titlecases each character and decomposes it;
/// this maps each character to lower case and then to upper case (full mappings), which for
/// ASCII is i;ascii-casemap exactly (so ordering matches RFC 4790 §9.2: `_` after `Z`), folds
/// the Greek final sigma and the Kelvin sign, and folds `ß` to `SS` (full case folding, a
/// little wider than RFC 5051). There is no normalisation table in std, so a precomposed
/// character and its decomposed form stay different.
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        for l in c.to_lowercase() {
            out.extend(l.to_uppercase());
        }
    }
    out
}

/// A header value with RFC 2047 encoded words decoded (charsets converted by mail-parser).
/// Line breaks become spaces, so a folded value decodes like an unfolded one (RFC 2047 §6.2:
/// white space between adjacent encoded words is dropped).
pub fn decode_text(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_string();
    }
    let mut buf: Vec<u8> = value
        .bytes()
        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect();
    // parse_unstructured reads up to the line break that ends a header field.
    buf.push(b'\n');
    match MessageStream::new(&buf).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        HeaderValue::Empty => String::new(),
        _ => value.to_string(),
    }
}

/// The fields of a message's top-level header (up to the first empty line), unfolded
/// (RFC 5322 §2.2.3: the line breaks are removed, the white space kept) and trimmed, as
/// (name, value). Lines that are not fields (an mbox `From ` line, garbage) are skipped.
pub fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    // Whether the last line started a field that continuation lines may extend.
    let mut open = false;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if open && let Some((_, value)) = out.last_mut() {
                value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            // RFC 5322 §3.6.8: a field name is printable ASCII other than the colon;
            // §4.5 (obsolete syntax) allows white space before the colon.
            Some(colon) if colon > 0 => {
                let name = String::from_utf8_lossy(&line[..colon])
                    .trim_end()
                    .to_string();
                if name.is_empty() || name.contains(' ') {
                    open = false;
                    continue;
                }
                let value = String::from_utf8_lossy(&line[colon + 1..]).into_owned();
                out.push((name, value));
                open = true;
            }
            _ => open = false,
        }
    }
    for (_, value) in &mut out {
        *value = value.trim().to_string();
    }
    out
}

/// The envelope header fields, which HEADER reads from the summary.
#[derive(Clone, Copy)]
enum EnvField {
    Date,
    Subject,
    From,
    Sender,
    ReplyTo,
    To,
    Cc,
    Bcc,
    InReplyTo,
    MessageId,
}

fn envelope_field(name: &str) -> Option<EnvField> {
    const NAMES: [(&str, EnvField); 10] = [
        ("date", EnvField::Date),
        ("subject", EnvField::Subject),
        ("from", EnvField::From),
        ("sender", EnvField::Sender),
        ("reply-to", EnvField::ReplyTo),
        ("to", EnvField::To),
        ("cc", EnvField::Cc),
        ("bcc", EnvField::Bcc),
        ("in-reply-to", EnvField::InReplyTo),
        ("message-id", EnvField::MessageId),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, f)| f)
}

/// An address list as text to search: `Name <local@domain>, other@domain, group: ...;`.
/// Names in the summary are already decoded.
pub fn addresses_text(list: &[EnvAddress]) -> String {
    let mut out = String::new();
    for a in list {
        match a {
            EnvAddress::Mailbox {
                name,
                local,
                domain,
            } => {
                if !out.is_empty() && !out.ends_with(": ") {
                    out.push_str(", ");
                }
                let addr = match domain {
                    Some(d) => format!("{local}@{d}"),
                    None => local.clone(),
                };
                match name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                    Some(n) => {
                        out.push_str(n);
                        out.push_str(" <");
                        out.push_str(&addr);
                        out.push('>');
                    }
                    None => out.push_str(&addr),
                }
            }
            EnvAddress::GroupStart(name) => {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(name);
                out.push_str(": ");
            }
            EnvAddress::GroupEnd => {
                if out.ends_with(": ") {
                    out.truncate(out.len() - 1);
                }
                out.push(';');
            }
        }
    }
    out
}

/// The envelope's text for a header field, `None` when the field is absent.
fn envelope_text(env: &Envelope, field: EnvField) -> Option<String> {
    let list = |l: &[EnvAddress]| (!l.is_empty()).then(|| addresses_text(l));
    match field {
        EnvField::Date => env.date.clone(),
        EnvField::Subject => env.subject.as_deref().map(decode_text),
        EnvField::From => list(&env.from),
        EnvField::Sender => list(&env.sender),
        EnvField::ReplyTo => list(&env.reply_to),
        EnvField::To => list(&env.to),
        EnvField::Cc => list(&env.cc),
        EnvField::Bcc => list(&env.bcc),
        EnvField::InReplyTo => env.in_reply_to.clone(),
        EnvField::MessageId => env.message_id.clone(),
    }
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date {
        year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
        month: u8::try_from(month).unwrap_or(1),
        day: u8::try_from(day).unwrap_or(1),
    }
}

/// The calendar day of a Unix time in a zone `offset` seconds east of UTC.
pub fn day_of(unix: i64, offset: i32) -> Date {
    civil_from_days(unix.saturating_add(i64::from(offset)).div_euclid(86_400))
}

/// The day a Date header names, in its own zone (RFC 9051 §6.4.4 SENTBEFORE/SENTON/SENTSINCE
/// compare "the message's Date: header (disregarding time and timezone)").
fn sent_day(date_header: &str) -> Option<Date> {
    let dt = mail_parser::DateTime::parse_rfc822(date_header)?;
    dt.is_valid().then_some(Date {
        year: i32::from(dt.year),
        month: dt.month,
        day: dt.day,
    })
}

/// Decoded texts of a message: every header field (TEXT) and the body (BODY), folded.
struct Texts {
    headers: String,
    body: String,
}

struct Eval<'e, 'a> {
    m: &'e Candidate<'a>,
    ctx: &'e SearchContext,
    parsed: OnceCell<Option<Message<'a>>>,
    texts: OnceCell<Texts>,
    fields: OnceCell<Vec<(String, String)>>,
}

impl<'a> Eval<'_, 'a> {
    fn eval(&self, key: &SearchKey) -> bool {
        let m = self.m;
        let env = &m.summary.envelope;
        match key {
            SearchKey::All => true,
            SearchKey::Answered => m.flags.contains(Flags::ANSWERED),
            SearchKey::Deleted => m.flags.contains(Flags::DELETED),
            SearchKey::Draft => m.flags.contains(Flags::DRAFT),
            SearchKey::Flagged => m.flags.contains(Flags::FLAGGED),
            SearchKey::Seen => m.flags.contains(Flags::SEEN),
            SearchKey::Unanswered => !m.flags.contains(Flags::ANSWERED),
            SearchKey::Undeleted => !m.flags.contains(Flags::DELETED),
            SearchKey::Undraft => !m.flags.contains(Flags::DRAFT),
            SearchKey::Unflagged => !m.flags.contains(Flags::FLAGGED),
            SearchKey::Unseen => !m.flags.contains(Flags::SEEN),
            SearchKey::Recent => m.recent,
            // RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT.
            SearchKey::New => m.recent && !m.flags.contains(Flags::SEEN),
            SearchKey::Old => !m.recent,
            SearchKey::Keyword(k) => self.has_keyword(k),
            SearchKey::Unkeyword(k) => !self.has_keyword(k),
            SearchKey::Larger(n) => m.size > *n,
            SearchKey::Smaller(n) => m.size < *n,
            SearchKey::Before(d) => self.internal_day() < *d,
            SearchKey::On(d) => self.internal_day() == *d,
            SearchKey::Since(d) => self.internal_day() >= *d,
            SearchKey::SentBefore(d) => self.sent_day() < *d,
            SearchKey::SentOn(d) => self.sent_day() == *d,
            SearchKey::SentSince(d) => self.sent_day() >= *d,
            // RFC 5032: OLDER is "older than the interval", YOUNGER "within" it, so the
            // two are complements: age > n, age <= n.
            SearchKey::Older(n) => self.age() > i128::from(*n),
            SearchKey::Younger(n) => self.age() <= i128::from(*n),
            // RFC 7162 §3.1.5: mod-sequence equal to or greater than the value.
            SearchKey::ModSeq(n) => m.modseq >= *n,
            SearchKey::SequenceSet(set) => self.in_set(set, m.seq, self.ctx.max_seq),
            SearchKey::Uid(set) => self.in_set(set, m.uid, self.ctx.max_uid),
            SearchKey::From(s) => contains(&addresses_text(&env.from), s),
            SearchKey::To(s) => contains(&addresses_text(&env.to), s),
            SearchKey::Cc(s) => contains(&addresses_text(&env.cc), s),
            SearchKey::Bcc(s) => contains(&addresses_text(&env.bcc), s),
            SearchKey::Subject(s) => contains(
                &env.subject.as_deref().map(decode_text).unwrap_or_default(),
                s,
            ),
            SearchKey::Header(name, s) => self.header(name, s),
            SearchKey::Body(s) => self
                .texts()
                .is_some_and(|t| t.body.contains(&fold(&String::from_utf8_lossy(s)))),
            SearchKey::Text(s) => self.texts().is_some_and(|t| {
                let needle = fold(&String::from_utf8_lossy(s));
                t.headers.contains(&needle) || t.body.contains(&needle)
            }),
            SearchKey::Not(k) => !self.eval(k),
            SearchKey::Or(a, b) => self.eval(a) || self.eval(b),
            // Keys that need no content first: a cheap mismatch spares parsing the message.
            SearchKey::And(keys) => {
                keys.iter()
                    .filter(|k| !needs_content(k))
                    .all(|k| self.eval(k))
                    && keys
                        .iter()
                        .filter(|k| needs_content(k))
                        .all(|k| self.eval(k))
            }
        }
    }

    /// `$` (RFC 5182 §2.1) stands for the saved UIDs wherever a set may appear; other ranges
    /// of the set are ordinary numbers.
    fn in_set(&self, set: &SequenceSet, n: u32, max: u32) -> bool {
        (set.saved
            && self
                .ctx
                .saved
                .as_ref()
                .is_some_and(|s| s.binary_search(&self.m.uid).is_ok()))
            || in_set(set, n, max)
    }

    /// Keywords compare case-insensitively (RFC 9051 §2.3.2 flags are atoms, and servers
    /// match them without regard to case). A system flag name given as a keyword asks for
    /// the system flag, so a lenient parser's `KEYWORD \Seen` still means something.
    fn has_keyword(&self, k: &str) -> bool {
        if let Some(flag) = Flags::from_name(k) {
            return self.m.flags.contains(flag);
        }
        if k.eq_ignore_ascii_case("\\Recent") {
            return self.m.recent;
        }
        self.m.keywords.iter().any(|kw| kw.eq_ignore_ascii_case(k))
    }

    fn internal_day(&self) -> Date {
        day_of(self.m.internal_date, self.ctx.tz_offset_secs)
    }

    /// Without a parseable Date header the internal date stands in, as RFC 5256 §2.2 does for
    /// SORT; RFC 9051 says nothing, and this keeps SENT* and SORT DATE consistent.
    fn sent_day(&self) -> Date {
        self.m
            .summary
            .envelope
            .date
            .as_deref()
            .and_then(sent_day)
            .unwrap_or_else(|| self.internal_day())
    }

    fn age(&self) -> i128 {
        i128::from(self.ctx.now) - i128::from(self.m.internal_date)
    }

    /// HEADER field-name string (RFC 9051 §6.4.4): the field exists and its value contains
    /// the string; an empty string asks only that the field exists.
    fn header(&self, name: &str, s: &[u8]) -> bool {
        let needle = fold(&String::from_utf8_lossy(s));
        if let Some(field) = envelope_field(name) {
            return envelope_text(&self.m.summary.envelope, field)
                .is_some_and(|v| needle.is_empty() || fold(&v).contains(&needle));
        }
        let Some(raw) = self.m.raw else {
            return false;
        };
        self.fields
            .get_or_init(|| header_fields(raw))
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| needle.is_empty() || fold(&decode_text(v)).contains(&needle))
    }

    fn texts(&self) -> Option<&Texts> {
        let raw = self.m.raw?;
        Some(self.texts.get_or_init(|| {
            match self
                .parsed
                .get_or_init(|| MessageParser::default().parse(raw))
            {
                Some(msg) => message_texts(msg),
                // Not MIME-parseable at all: the bytes are all there is.
                None => Texts {
                    headers: String::new(),
                    body: fold(&String::from_utf8_lossy(raw)),
                },
            }
        }))
    }
}

fn contains(haystack: &str, needle: &[u8]) -> bool {
    fold(haystack).contains(&fold(&String::from_utf8_lossy(needle)))
}

/// The folded header and body texts of a parsed message. Header fields of every part go to
/// `headers` (TEXT: "the header (including MIME header fields) or body"); the decoded text
/// parts go to `body`, and so does the header of an attached message, which a reader sees as
/// part of the body. Other parts (images, PDFs) are not text and are not searched.
fn message_texts(msg: &Message<'_>) -> Texts {
    let mut headers = String::new();
    let mut body = String::new();
    let mut stack: Vec<(&Message<'_>, usize)> = vec![(msg, 0)];
    while let Some((m, depth)) = stack.pop() {
        let raw: &[u8] = m.raw_message.as_ref();
        for (i, part) in m.parts.iter().enumerate() {
            let out = if i == 0 && depth > 0 {
                &mut body
            } else {
                &mut headers
            };
            for h in &part.headers {
                let value = raw
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                out.push_str(h.name.as_str());
                out.push_str(": ");
                out.push_str(&decode_text(value.trim()));
                out.push('\n');
            }
            match &part.body {
                PartType::Text(t) => {
                    body.push_str(t);
                    body.push('\n');
                }
                // HTML is searched as the text a reader sees, not its markup.
                PartType::Html(h) => {
                    body.push_str(&html_to_text(h));
                    body.push('\n');
                }
                PartType::Message(nested) if depth < MAX_NESTING => {
                    stack.push((nested, depth + 1));
                }
                _ => {}
            }
        }
    }
    Texts {
        headers: fold(&headers),
        body: fold(&body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::types::SeqRange;
    use mailstead_store::summary::summarize;

    const M1: &[u8] = b"From: Alice Example <alice@example.test>\r\n\
To: bob@example.test, \"Carol C\" <carol@example.test>\r\n\
Cc: dave@example.test\r\n\
Subject: Quarterly report\r\n\
Date: Mon, 02 Feb 2026 23:30:00 -0500\r\n\
Message-ID: <m1@example.test>\r\n\
X-Priority: 1\r\n\
X-Empty:\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hello Bob, the numbers are in.\r\n";

    const M2: &[u8] = b"From: =?iso-8859-1?q?J=F6rg?= <joerg@example.test>\r\n\
To: alice@example.test\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n\
Date: Tue, 3 Feb 2026 00:15:00 +0100\r\n\
Message-ID: <m2@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Sch=F6ne Gr=FC=DFe aus K=F6ln, soft=\r\n\
break\r\n";

    const M3: &[u8] = b"From: bob@example.test\r\n\
To: alice@example.test\r\n\
Bcc: secret@example.test\r\n\
Subject: Re: Quarterly report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
0J/RgNC40LLQtdGCLCDQvNC40YAhIMOcbsOvY8O2ZMOpIGJvZHkNCg==\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Visit <b>our</b> site</p>\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.test\r\n\
Subject: Inner subject\r\n\
\r\n\
inner body text\r\n\
--b1\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
SGVsbG8gZnJvbSBiYXNlNjQgbGFuZA0K\r\n\
--b1--\r\n";

    const M4: &[u8] = b"To: undisclosed-recipients:;\r\n\
Subject: [list] Fwd: lunch\r\n\
Date: not a date\r\n\
X-Tag: =?utf-8?q?caf=C3=A9?=\r\n\
\x20\x20au lait\r\n\
\r\n\
short\r\n";

    struct Msg {
        raw: &'static [u8],
        summary: Summary,
        seq: u32,
        uid: u32,
        flags: Flags,
        keywords: Vec<String>,
        recent: bool,
        internal_date: i64,
        modseq: u64,
    }

    fn mailbox() -> Vec<Msg> {
        let msg =
            |raw: &'static [u8], seq, uid, flags, kw: &[&str], recent, internal_date, modseq| Msg {
                raw,
                summary: summarize(raw),
                seq,
                uid,
                flags,
                keywords: kw.iter().map(|k| k.to_string()).collect(),
                recent,
                internal_date,
                modseq,
            };
        vec![
            // 2026-02-03T03:30:00Z
            msg(
                M1,
                1,
                10,
                Flags::SEEN.union(Flags::FLAGGED),
                &["$Forwarded"],
                false,
                1_770_089_400,
                5,
            ),
            // 2026-02-03T00:00:00Z, exactly midnight UTC
            msg(M2, 2, 20, Flags::ANSWERED, &[], true, 1_770_076_800, 7),
            // 2026-02-03T23:59:59Z
            msg(
                M3,
                3,
                30,
                Flags::DELETED.union(Flags::DRAFT),
                &[],
                true,
                1_770_163_199,
                9,
            ),
            // 2026-02-02T00:00:00Z
            msg(
                M4,
                4,
                40,
                Flags::default(),
                &["Work"],
                false,
                1_769_990_400,
                11,
            ),
        ]
    }

    fn ctx() -> SearchContext {
        SearchContext {
            now: 1_770_163_200, // 2026-02-04T00:00:00Z
            max_seq: 4,
            max_uid: 40,
            saved: Some(vec![20, 40]),
            tz_offset_secs: 0,
        }
    }

    fn candidate(m: &Msg, with_raw: bool) -> Candidate<'_> {
        Candidate {
            seq: m.seq,
            uid: m.uid,
            flags: m.flags,
            keywords: &m.keywords,
            recent: m.recent,
            internal_date: m.internal_date,
            size: m.raw.len() as u64,
            modseq: m.modseq,
            summary: &m.summary,
            raw: with_raw.then_some(m.raw),
        }
    }

    /// The sequence numbers matching `key`, loading the raw message only when the key needs
    /// it, and checking that loading it always changes nothing.
    fn search_with(key: &SearchKey, ctx: &SearchContext) -> Vec<u32> {
        let msgs = mailbox();
        let lazy: Vec<u32> = msgs
            .iter()
            .filter(|m| matches(key, &candidate(m, needs_content(key)), ctx))
            .map(|m| m.seq)
            .collect();
        let eager: Vec<u32> = msgs
            .iter()
            .filter(|m| matches(key, &candidate(m, true), ctx))
            .map(|m| m.seq)
            .collect();
        assert_eq!(lazy, eager, "raw changed the answer for {key:?}");
        lazy
    }

    fn search(key: SearchKey) -> Vec<u32> {
        search_with(&key, &ctx())
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn d(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn not(k: SearchKey) -> SearchKey {
        SearchKey::Not(Box::new(k))
    }

    fn or(a: SearchKey, b: SearchKey) -> SearchKey {
        SearchKey::Or(Box::new(a), Box::new(b))
    }

    fn set(ranges: &[(SeqNum, SeqNum)]) -> SequenceSet {
        SequenceSet {
            ranges: ranges
                .iter()
                .map(|&(start, end)| SeqRange { start, end })
                .collect(),
            saved: false,
        }
    }

    use SeqNum::{Star, Value as V};

    #[test]
    fn flags_and_state() {
        use SearchKey as K;
        assert_eq!(search(K::All), [1, 2, 3, 4]);
        assert_eq!(search(K::Seen), [1]);
        assert_eq!(search(K::Unseen), [2, 3, 4]);
        assert_eq!(search(K::Answered), [2]);
        assert_eq!(search(K::Unanswered), [1, 3, 4]);
        assert_eq!(search(K::Flagged), [1]);
        assert_eq!(search(K::Unflagged), [2, 3, 4]);
        assert_eq!(search(K::Deleted), [3]);
        assert_eq!(search(K::Undeleted), [1, 2, 4]);
        assert_eq!(search(K::Draft), [3]);
        assert_eq!(search(K::Undraft), [1, 2, 4]);
        assert_eq!(search(K::Recent), [2, 3]);
        assert_eq!(search(K::New), [2, 3]);
        assert_eq!(search(K::Old), [1, 4]);
        assert_eq!(search(K::Keyword("$forwarded".into())), [1]);
        assert_eq!(search(K::Keyword("WORK".into())), [4]);
        assert_eq!(search(K::Unkeyword("$Forwarded".into())), [2, 3, 4]);
        assert!(search(K::Keyword("Missing".into())).is_empty());
        // A system flag spelt as a keyword means the flag.
        assert_eq!(search(K::Keyword("\\seen".into())), [1]);
        assert_eq!(search(K::ModSeq(9)), [3, 4]);
        assert_eq!(search(K::ModSeq(0)), [1, 2, 3, 4]);
    }

    #[test]
    fn sizes() {
        let sizes: Vec<u64> = mailbox().iter().map(|m| m.raw.len() as u64).collect();
        let m4 = sizes[3];
        assert_eq!(search(SearchKey::Smaller(m4)), Vec::<u32>::new());
        assert_eq!(search(SearchKey::Smaller(m4 + 1)), [4]);
        assert_eq!(search(SearchKey::Larger(m4)), [1, 2, 3]);
        assert_eq!(search(SearchKey::Larger(sizes[2])), Vec::<u32>::new());
    }

    #[test]
    fn internal_dates_around_midnight() {
        use SearchKey as K;
        // UTC: M1 3 Feb 03:30, M2 3 Feb 00:00, M3 3 Feb 23:59:59, M4 2 Feb 00:00.
        assert_eq!(search(K::On(d(2026, 2, 3))), [1, 2, 3]);
        assert_eq!(search(K::On(d(2026, 2, 2))), [4]);
        assert_eq!(search(K::Before(d(2026, 2, 3))), [4]);
        assert_eq!(search(K::Since(d(2026, 2, 3))), [1, 2, 3]);
        assert_eq!(search(K::Since(d(2026, 2, 4))), Vec::<u32>::new());
        assert_eq!(search(K::Before(d(2026, 2, 2))), Vec::<u32>::new());
        // Seen from UTC-05:00, M1 and M2 fall on 2 Feb; M3 still on 3 Feb; M4 on 1 Feb.
        let west = SearchContext {
            tz_offset_secs: -5 * 3600,
            ..ctx()
        };
        assert_eq!(search_with(&K::On(d(2026, 2, 2)), &west), [1, 2]);
        assert_eq!(search_with(&K::On(d(2026, 2, 1)), &west), [4]);
        assert_eq!(search_with(&K::Before(d(2026, 2, 3)), &west), [1, 2, 4]);
        // From UTC+01:00, M3 (23:59:59Z) is already 4 Feb.
        let east = SearchContext {
            tz_offset_secs: 3600,
            ..ctx()
        };
        assert_eq!(search_with(&K::On(d(2026, 2, 4)), &east), [3]);
        assert_eq!(search_with(&K::Since(d(2026, 2, 4)), &east), [3]);
    }

    #[test]
    fn sent_dates_use_the_header_zone() {
        use SearchKey as K;
        // M1: Mon, 02 Feb 2026 23:30:00 -0500 (3 Feb in UTC): SENTON is 2 Feb.
        // M2: Tue, 3 Feb 2026 00:15:00 +0100 (2 Feb in UTC): SENTON is 3 Feb.
        // M3: no Date header, M4: unparseable: their internal dates stand in.
        assert_eq!(search(K::SentOn(d(2026, 2, 2))), [1, 4]);
        assert_eq!(search(K::SentOn(d(2026, 2, 3))), [2, 3]);
        assert_eq!(search(K::SentBefore(d(2026, 2, 3))), [1, 4]);
        assert_eq!(search(K::SentSince(d(2026, 2, 3))), [2, 3]);
        assert_eq!(search(K::SentSince(d(2026, 2, 2))), [1, 2, 3, 4]);
    }

    #[test]
    fn older_and_younger() {
        use SearchKey as K;
        // now is 2026-02-04T00:00:00Z: ages are 73800, 86400, 1, 172800 seconds.
        assert_eq!(search(K::Younger(86_400)), [1, 2, 3]);
        assert_eq!(search(K::Older(86_400)), [4]);
        assert_eq!(search(K::Younger(1)), [3]);
        assert_eq!(search(K::Older(0)), [1, 2, 3, 4]);
        assert_eq!(search(K::Younger(0)), Vec::<u32>::new());
    }

    #[test]
    fn envelope_strings() {
        use SearchKey as K;
        assert_eq!(search(K::From(b("ALICE"))), [1]);
        assert_eq!(search(K::From(b("alice example"))), [1]);
        // The encoded-word display name is searched decoded.
        assert_eq!(search(K::From(b("jörg"))), [2]);
        assert_eq!(search(K::From(b("JÖRG <joerg@"))), [2]);
        assert_eq!(search(K::To(b("alice@example.test"))), [2, 3]);
        assert_eq!(search(K::To(b("carol c"))), [1]);
        assert_eq!(search(K::To(b("undisclosed"))), [4]);
        assert_eq!(search(K::Cc(b("dave"))), [1]);
        assert_eq!(search(K::Bcc(b("secret"))), [3]);
        assert_eq!(search(K::Subject(b("quarterly"))), [1, 3]);
        assert_eq!(search(K::Subject(b("re: quarterly"))), [3]);
        // Encoded words decoded, case folded beyond ASCII: ß is SS, Ö is ö.
        assert_eq!(search(K::Subject(b("grüße aus köln"))), [2]);
        assert_eq!(search(K::Subject(b("GRÜSSE"))), [2]);
        assert_eq!(search(K::Subject(b("=?utf-8"))), Vec::<u32>::new());
        // The empty string is in every string, an absent field included.
        assert_eq!(search(K::Subject(Vec::new())), [1, 2, 3, 4]);
    }

    #[test]
    fn header_key() {
        use SearchKey as K;
        let h = |n: &str, v: &str| K::Header(n.into(), b(v));
        assert_eq!(search(h("X-Priority", "1")), [1]);
        assert_eq!(search(h("x-priority", "")), [1]);
        // A field with an empty value exists: the empty string finds it.
        assert_eq!(search(h("X-Empty", "")), [1]);
        assert_eq!(search(h("X-Empty", "x")), Vec::<u32>::new());
        assert_eq!(search(h("X-Absent", "")), Vec::<u32>::new());
        // Folded and encoded values are searched unfolded and decoded.
        assert_eq!(search(h("X-Tag", "CAFÉ au lait")), [4]);
        // Top-level header only: M3's parts have Content-Transfer-Encoding, its header not.
        assert_eq!(search(h("Content-Transfer-Encoding", "")), [2]);
        assert_eq!(search(h("content-type", "multipart")), [3]);
        // Envelope fields come from the summary.
        assert_eq!(search(h("Subject", "köln")), [2]);
        assert_eq!(search(h("Message-ID", "<m2@")), [2]);
        assert_eq!(search(h("message-id", "")), [1, 2]);
        assert_eq!(search(h("Date", "")), [1, 2, 4]);
        assert_eq!(search(h("Bcc", "")), [3]);
        assert_eq!(search(h("From", "jörg")), [2]);
        assert!(!needs_content(&h("Message-Id", "x")));
        assert!(needs_content(&h("X-Priority", "x")));
    }

    #[test]
    fn body_and_text() {
        use SearchKey as K;
        // Quoted-printable ISO-8859-1, soft line break joined.
        assert_eq!(search(K::Body(b("schöne grüße"))), [2]);
        assert_eq!(search(K::Body(b("softbreak"))), [2]);
        // Base64 UTF-8, searched case-insensitively in Cyrillic.
        assert_eq!(search(K::Body(b("ПРИВЕТ, МИР"))), [3]);
        assert_eq!(search(K::Body(b("ünïcödé"))), [3]);
        // HTML as text, not markup.
        assert_eq!(search(K::Body(b("visit our site"))), [3]);
        assert_eq!(search(K::Body(b("<b>"))), Vec::<u32>::new());
        // An attached message's header and body are part of the body.
        assert_eq!(search(K::Body(b("inner body"))), [3]);
        assert_eq!(search(K::Body(b("inner subject"))), [3]);
        // Binary parts are not text.
        assert_eq!(search(K::Body(b("base64 land"))), Vec::<u32>::new());
        assert_eq!(search(K::Body(b("SGVsbG8"))), Vec::<u32>::new());
        // Header text is not body.
        assert_eq!(search(K::Body(b("quarterly"))), Vec::<u32>::new());
        assert_eq!(search(K::Body(b("numbers are in"))), [1]);
        // TEXT: header (MIME fields included) or body.
        assert_eq!(search(K::Text(b("quarterly"))), [1, 3]);
        assert_eq!(search(K::Text(b("numbers"))), [1]);
        assert_eq!(search(K::Text(b("charset="))), [1, 2, 3]);
        assert_eq!(search(K::Text(b("application/octet-stream"))), [3]);
        assert_eq!(search(K::Text(b("café au lait"))), [4]);
        assert_eq!(search(K::Text(b("köln"))), [2]);
        assert_eq!(search(K::Text(Vec::new())), [1, 2, 3, 4]);
        // Without the raw message, content keys cannot match (the caller must load it).
        let msgs = mailbox();
        let key = K::Body(b("numbers"));
        assert!(matches(&key, &candidate(&msgs[0], true), &ctx()));
        assert!(!matches(&key, &candidate(&msgs[0], false), &ctx()));
    }

    #[test]
    fn not_or_and_nesting() {
        use SearchKey as K;
        assert_eq!(search(not(K::Seen)), [2, 3, 4]);
        assert_eq!(search(not(not(K::Seen))), [1]);
        assert_eq!(search(or(K::Seen, K::Deleted)), [1, 3]);
        assert_eq!(search(not(or(K::Seen, K::Deleted))), [2, 4]);
        assert_eq!(
            search(or(K::Subject(b("report")), not(K::From(b("bob"))))),
            [1, 2, 3, 4]
        );
        assert_eq!(
            search(K::And(vec![
                K::Subject(b("report")),
                not(K::From(b("bob")))
            ])),
            [1]
        );
        // OR of OR with content keys on one side.
        assert_eq!(
            search(or(
                or(
                    K::Body(b("inner body")),
                    K::Header("X-Tag".into(), Vec::new())
                ),
                K::And(vec![K::Answered, K::Text(b("köln"))])
            )),
            [2, 3, 4]
        );
        assert_eq!(
            search(K::And(vec![
                K::Undeleted,
                not(K::Body(b("numbers"))),
                K::Unseen
            ])),
            [2, 4]
        );
        assert_eq!(search(K::And(Vec::new())), [1, 2, 3, 4]);
        assert!(needs_content(&not(or(K::All, K::Text(b("x"))))));
        assert!(!needs_content(&not(or(K::All, K::Subject(b("x"))))));
    }

    #[test]
    fn sequence_and_uid_sets() {
        use SearchKey as K;
        assert_eq!(search(K::SequenceSet(set(&[(V(2), Star)]))), [2, 3, 4]);
        assert_eq!(search(K::SequenceSet(set(&[(Star, V(2))]))), [2, 3, 4]);
        assert_eq!(search(K::SequenceSet(set(&[(V(3), V(1))]))), [1, 2, 3]);
        assert_eq!(search(K::SequenceSet(set(&[(Star, Star)]))), [4]);
        assert_eq!(
            search(K::SequenceSet(set(&[(V(1), V(1)), (V(4), V(4))]))),
            [1, 4]
        );
        // Beyond the end: 9:* is 4:9.
        assert_eq!(search(K::SequenceSet(set(&[(V(9), Star)]))), [4]);
        assert_eq!(search(K::Uid(set(&[(V(15), Star)]))), [2, 3, 4]);
        assert_eq!(search(K::Uid(set(&[(V(35), V(11))]))), [2, 3]);
        assert_eq!(search(K::Uid(set(&[(Star, Star)]))), [4]);
        assert_eq!(search(K::Uid(set(&[(V(100), Star)]))), [4]);
        assert_eq!(search(not(K::Uid(set(&[(V(10), V(10))])))), [2, 3, 4]);
        // `$` is the saved UIDs, as a UID set or a sequence set.
        let saved = SequenceSet {
            ranges: Vec::new(),
            saved: true,
        };
        assert_eq!(search(K::Uid(saved.clone())), [2, 4]);
        assert_eq!(search(K::SequenceSet(saved.clone())), [2, 4]);
        let nothing_saved = SearchContext {
            saved: None,
            ..ctx()
        };
        assert_eq!(
            search_with(&K::Uid(saved), &nothing_saved),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(day_of(0, 0), d(1970, 1, 1));
        assert_eq!(day_of(-1, 0), d(1969, 12, 31));
        assert_eq!(day_of(951_782_400, 0), d(2000, 2, 29));
        assert_eq!(day_of(1_770_076_800, -1), d(2026, 2, 2));
        // Out-of-range times clamp instead of overflowing.
        let _ = (day_of(i64::MAX, i32::MAX), day_of(i64::MIN, i32::MIN));
        assert_eq!(fold("Straße"), "STRASSE");
        assert_eq!(fold("ΣΊΣΥΦΟΣ"), fold("σίσυφος"));
        assert_eq!(fold("σίσυφος"), fold("σίσυφοσ"));
        assert_eq!(fold("a_b"), "A_B");
        assert_eq!(decode_text("=?utf-8?q?a?=\r\n =?utf-8?q?b?="), "ab");
        assert_eq!(decode_text("plain"), "plain");
        assert_eq!(decode_text("=?broken"), "=?broken");
        let fields = header_fields(
            b"From x Mon\r\nA: 1\r\n  2\r\nB :3\r\nnot a field\r\n cont\r\n\r\nC: 4\r\n",
        );
        assert_eq!(
            fields,
            vec![
                ("A".to_string(), "1  2".to_string()),
                ("B".to_string(), "3".to_string())
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn in_set_matches_naive_expansion(
            ranges in proptest::collection::vec(
                (0u32..30, 0u32..30, proptest::bool::ANY, proptest::bool::ANY),
                1..5,
            ),
            max in 0u32..25,
            n in 0u32..35,
        ) {
            let set = SequenceSet {
                ranges: ranges
                    .iter()
                    .map(|&(a, b, sa, sb)| SeqRange {
                        start: if sa { Star } else { V(a) },
                        end: if sb { Star } else { V(b) },
                    })
                    .collect(),
                saved: false,
            };
            let mut members = std::collections::BTreeSet::new();
            for r in &set.ranges {
                let v = |s: SeqNum| match s { Star => max, V(x) => x };
                let (a, b) = (v(r.start), v(r.end));
                for x in a.min(b)..=a.max(b) {
                    members.insert(x);
                }
            }
            proptest::prop_assert_eq!(in_set(&set, n, max), members.contains(&n));
        }

        #[test]
        fn matching_never_panics(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            needle in ".{0,4}",
        ) {
            let summary = summarize(&raw);
            let c = Candidate {
                seq: 1,
                uid: 1,
                flags: Flags::default(),
                keywords: &[],
                recent: false,
                internal_date: 0,
                size: raw.len() as u64,
                modseq: 1,
                summary: &summary,
                raw: Some(&raw),
            };
            let n = needle.into_bytes();
            for key in [
                SearchKey::Text(n.clone()),
                SearchKey::Header("X".into(), n.clone()),
                SearchKey::From(n.clone()),
                SearchKey::SentOn(d(2000, 1, 1)),
            ] {
                let _ = matches(&key, &c, &SearchContext::default());
            }
        }
    }
}
