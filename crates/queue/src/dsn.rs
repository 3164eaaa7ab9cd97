//! Delivery status notifications (RFC 3464) for the outbound queue.
//!
//! [`build_dsn`] turns the outcome of delivery attempts into a complete
//! RFC 5322 message: a `multipart/report` (RFC 6522) with a human-readable
//! explanation, a machine-readable `message/delivery-status` part, and the
//! original message or its header section.
//!
//! The caller sends the result with a null reverse-path (`MAIL FROM:<>`,
//! RFC 5321 §4.5.5) so that a notification can never cause another one. The result contains 8-bit octets only when the returned
//! original does, or when the envelope sender is a non-ASCII address; the
//! caller then needs `BODY=8BITMIME` (RFC 6152) or `SMTPUTF8` (RFC 6531) on
//! the way out.

use std::borrow::Cow;
use std::fmt::Write as _;

use rand::Rng as _;
use rand::distr::Alphanumeric;

/// Originals above this size are returned as their header section only,
/// even under `RET=FULL`: a bounce carrying a huge message is more likely to
/// be refused by the sender's own server than to help the sender.
pub const MAX_RETURNED_MESSAGE: usize = 10 * 1024 * 1024;

/// Remote replies are cut to this many octets: enough for the multi-line
/// replies large providers send, small enough to keep the report readable.
const MAX_DIAGNOSTIC: usize = 2000;

/// Longest physical line we produce apart from the returned original.
/// RFC 5322 §2.1.1 recommends 78 characters.
const SOFT_LINE: usize = 78;

/// Pieces of an unbreakable header token are cut at this length, well under
/// the 998-octet hard limit of RFC 5322 §2.1.1 once the folding space and
/// a field name are added.
const HARD_CHUNK: usize = 900;

/// What the reporting MTA did for one recipient (RFC 3464 §2.3.3).
/// `expanded` is not offered: the queue does not expand aliases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl DsnAction {
    fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }

    /// The status to report when nothing more precise is known.
    fn default_status(self) -> &'static str {
        match self {
            DsnAction::Failed => "5.0.0",
            DsnAction::Delayed => "4.0.0",
            DsnAction::Delivered | DsnAction::Relayed => "2.0.0",
        }
    }
}

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The envelope recipient address (without angle brackets).
    pub final_recipient: String,
    /// The `ORCPT` parameter exactly as received, still xtext-encoded,
    /// e.g. `rfc822;Bob@Example.org`.
    pub original_recipient: Option<String>,
    pub action: DsnAction,
    /// An RFC 3463 status code such as `5.1.1`; see [`status_of`].
    pub status: String,
    /// Host name of the server that gave `diagnostic`.
    pub remote_mta: Option<String>,
    /// The remote reply, e.g. `550 5.1.1 <bob@x>: user unknown`, or a local
    /// explanation when no server answered.
    pub diagnostic: Option<String>,
    /// Unix time of the last delivery attempt.
    pub last_attempt: Option<i64>,
    /// Unix time after which the queue gives up; only reported for
    /// [`DsnAction::Delayed`].
    pub will_retry_until: Option<i64>,
}

/// Everything needed to build one notification.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// Our host name, used in `Reporting-MTA`, `From` and `Message-ID`.
    pub reporting_mta: &'a str,
    /// The `ENVID` parameter exactly as received, still xtext-encoded.
    pub envid: Option<&'a str>,
    /// Unix time the message was accepted.
    pub arrival_date: i64,
    /// The envelope sender of the original message: the notification's `To`.
    pub sender: &'a str,
    pub recipients: Vec<DsnRecipient>,
    /// The original message as it was queued.
    pub original: &'a [u8],
    /// `RET=FULL`: return the whole message; otherwise its headers only.
    pub return_full: bool,
    /// Unix time used for the `Date` field.
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("no notification is sent to the null reverse-path")]
    NullSender,
    #[error("a notification needs at least one recipient")]
    NoRecipients,
}

/// Builds the notification as a complete message with CRLF line ends.
pub fn build_dsn(input: &DsnInput<'_>) -> Result<Vec<u8>, DsnError> {
    let sender = one_line(strip_brackets(input.sender));
    // RFC 5321 §4.5.5: a message with a null reverse-path never gets a
    // notification, or two MTAs could bounce mail between them forever.
    if sender.is_empty() {
        return Err(DsnError::NullSender);
    }
    if input.recipients.is_empty() {
        return Err(DsnError::NoRecipients);
    }
    let mta = ascii_only(&one_line(input.reporting_mta));
    let kind = Kind::of(&input.recipients);
    let returned = Returned::choose(input.original, input.return_full);

    let human = human_text(input, &mta, kind, &returned);
    let (human_charset, human_cte, human_body) = if human.is_ascii() {
        ("us-ascii", "7bit", human)
    } else {
        // Non-ASCII addresses or replies: quoted-printable keeps this part
        // 7-bit, so only the returned original decides whether the whole
        // notification needs 8BITMIME.
        ("utf-8", "quoted-printable", quoted_printable(&human))
    };
    let status = delivery_status(input, &mta);
    let returned_body: &[u8] = match &returned {
        Returned::Message(m) | Returned::Headers(m) => m,
        Returned::Nothing => b"",
    };
    let boundary = pick_boundary(
        &[human_body.as_bytes(), status.as_bytes(), returned_body],
        random_boundary,
    );
    let eight_bit = !returned_body.is_ascii();

    let mut head = String::new();
    fold_field(
        &mut head,
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{mta}>"),
    );
    fold_field(&mut head, "To", &format!("<{sender}>"));
    fold_field(&mut head, "Subject", kind.subject());
    fold_field(&mut head, "Date", &rfc5322_date(input.now));
    fold_field(
        &mut head,
        "Message-ID",
        &format!("<{}@{mta}>", random_token(24)),
    );
    // RFC 3834 §5: marks the notification as machine-generated, so that
    // vacation responders and similar robots do not answer it.
    fold_field(&mut head, "Auto-Submitted", "auto-replied");
    fold_field(&mut head, "MIME-Version", "1.0");
    // RFC 6522 §3: the report-type parameter names the second part's type.
    fold_field(
        &mut head,
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    fold_field(
        &mut head,
        "Content-Transfer-Encoding",
        if eight_bit { "8bit" } else { "7bit" },
    );
    head.push_str("\r\nThis is a MIME-formatted delivery status notification.\r\n");

    let mut out = head.into_bytes();
    // RFC 6522 §3: the first part explains the report to a person.
    let mut part = format!("\r\n--{boundary}\r\n");
    fold_field(
        &mut part,
        "Content-Type",
        &format!("text/plain; charset={human_charset}"),
    );
    fold_field(&mut part, "Content-Transfer-Encoding", human_cte);
    fold_field(&mut part, "Content-Description", "Notification");
    part.push_str("\r\n");
    part.push_str(&human_body);
    // RFC 3464 §2.1: the second part carries the machine-readable fields.
    write_str(&mut part, format_args!("\r\n--{boundary}\r\n"));
    fold_field(&mut part, "Content-Type", "message/delivery-status");
    fold_field(&mut part, "Content-Description", "Delivery report");
    part.push_str("\r\n");
    part.push_str(&status);
    out.extend_from_slice(part.as_bytes());

    // RFC 3464 §2.1 / RFC 6522 §3: the optional third part is the original
    // message (RET=FULL) or its header section (RET=HDRS, RFC 3461 §4.3).
    let (ctype, description) = match &returned {
        Returned::Message(_) => (Some("message/rfc822"), "Undelivered message"),
        Returned::Headers(_) => (Some("text/rfc822-headers"), "Message headers"),
        Returned::Nothing => (None, ""),
    };
    if let Some(ctype) = ctype {
        let mut part = format!("\r\n--{boundary}\r\n");
        fold_field(&mut part, "Content-Type", ctype);
        fold_field(&mut part, "Content-Description", description);
        // RFC 2046 §5.2.1: message/rfc822 may not be base64 or
        // quoted-printable encoded, so 8-bit content stays 8-bit and is
        // labelled as such (RFC 6152 8BITMIME transports it).
        fold_field(
            &mut part,
            "Content-Transfer-Encoding",
            if eight_bit { "8bit" } else { "7bit" },
        );
        part.push_str("\r\n");
        out.extend_from_slice(part.as_bytes());
        out.extend_from_slice(returned_body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// The RFC 3463 status code for an SMTP reply, for use in
/// [`DsnRecipient::status`].
///
/// The enhanced code (RFC 3463 §2) that follows the reply code wins when
/// present and of the same class; one that contradicts the reply code is
/// ignored, since SMTP clients act on the reply code (RFC 5321 §4.2.1).
/// Otherwise the reply code gives the class: `550 no such user` is
/// `5.0.0`, `421 busy` is `4.0.0`. A reply without a usable code (a broken
/// connection, a local error) takes the class from `action`, because only
/// the caller knows whether it gave up (`5.0.0`) or will retry (`4.0.0`).
pub fn status_of(reply: &str, action: DsnAction) -> String {
    let reply = reply.trim_start();
    let bytes = reply.as_bytes();
    let class = match bytes {
        [
            c @ (b'2' | b'4' | b'5'),
            b'0'..=b'9',
            b'0'..=b'9',
            rest @ ..,
        ] if matches!(
            rest.first(),
            None | Some(b' ' | b'-' | b'\t' | b'\r' | b'\n')
        ) =>
        {
            *c
        }
        _ => return action.default_status().to_string(),
    };
    let text = reply
        .get(3..)
        .unwrap_or("")
        .trim_start_matches(['-', ' ', '\t']);
    let token: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    match parse_status(token.trim_end_matches('.')) {
        Some(code) if code.as_bytes().first() == Some(&class) => code,
        _ => format!("{}.0.0", char::from(class)),
    }
}

/// Parses `class.subject.detail` (RFC 3463 §2, RFC 3464 §2.3.4) and returns
/// it without leading zeros, which §2.3.4 forbids.
fn parse_status(s: &str) -> Option<String> {
    let mut parts = s.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !matches!(class, "2" | "4" | "5") {
        return None;
    }
    let number = |p: &str| -> Option<u16> {
        if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    Some(format!("{class}.{}.{}", number(subject)?, number(detail)?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failure,
    Delay,
    Success,
}

impl Kind {
    /// A report about several recipients is named after the worst outcome,
    /// since that is what the sender has to act on.
    fn of(recipients: &[DsnRecipient]) -> Kind {
        if recipients.iter().any(|r| r.action == DsnAction::Failed) {
            Kind::Failure
        } else if recipients.iter().any(|r| r.action == DsnAction::Delayed) {
            Kind::Delay
        } else {
            Kind::Success
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Kind::Failure => "Undelivered Mail Returned to Sender",
            Kind::Delay => "Delayed Mail (still being retried)",
            Kind::Success => "Successful Mail Delivery Report",
        }
    }
}

/// What goes into the third part.
enum Returned<'a> {
    Message(Cow<'a, [u8]>),
    Headers(Cow<'a, [u8]>),
    /// Not even the header section survives transport unchanged.
    Nothing,
}

impl<'a> Returned<'a> {
    fn choose(original: &'a [u8], return_full: bool) -> Returned<'a> {
        if return_full && original.len() <= MAX_RETURNED_MESSAGE {
            let message = crlf_lines(original);
            if transportable(&message) {
                return Returned::Message(message);
            }
        }
        let headers = crlf_lines(header_section(original));
        if !headers.is_empty() && transportable(&headers) {
            Returned::Headers(headers)
        } else {
            Returned::Nothing
        }
    }

    fn note(&self, return_full: bool) -> &'static str {
        match self {
            Returned::Message(_) => "A copy of your message is attached below.",
            Returned::Headers(_) if return_full => {
                "Your message was too large to return in full; its headers are attached below."
            }
            Returned::Headers(_) => "The headers of your message are attached below.",
            Returned::Nothing => "Your message could not be attached to this notice.",
        }
    }
}

/// The header section: everything before the first empty line
/// (RFC 5322 §2.1), tolerating bare LF line ends.
fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") || message.starts_with(b"\n") {
        return b"";
    }
    for (i, _) in message.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        let rest = message.get(i + 1..).unwrap_or_default();
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return message.get(..=i).unwrap_or(message);
        }
    }
    message
}

/// Turns bare CR and bare LF into CRLF and makes the data end with CRLF:
/// RFC 5321 §2.3.8 allows no other line ends in a message in transit.
fn crlf_lines(data: &[u8]) -> Cow<'_, [u8]> {
    let mut clean = true;
    let mut prev = 0u8;
    for (i, &b) in data.iter().enumerate() {
        let next = data.get(i + 1).copied();
        if (b == b'\n' && prev != b'\r') || (b == b'\r' && next != Some(b'\n')) {
            clean = false;
            break;
        }
        prev = b;
    }
    if clean && (data.is_empty() || data.ends_with(b"\r\n")) {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

/// Whether CRLF-normalised data can travel as 7bit or 8bit content:
/// no NUL, no line over 998 octets (RFC 2045 §2.7–2.8, RFC 5322 §2.1.1).
/// Anything else would need BINARYMIME, which the return path may lack.
fn transportable(data: &[u8]) -> bool {
    !data.contains(&0) && data.split(|&b| b == b'\n').all(|line| line.len() <= 999)
}

/// The human-readable first part (RFC 6522 §3), with CRLF line ends.
fn human_text(input: &DsnInput<'_>, mta: &str, kind: Kind, returned: &Returned<'_>) -> String {
    let mut t = String::new();
    write_str(
        &mut t,
        format_args!("This is the mail system at {mta}.\r\n\r\n"),
    );
    let intro = match kind {
        Kind::Failure => {
            "Your message could not be delivered to one or more of its recipients. \
             What happened for each address is described below."
        }
        Kind::Delay => {
            "Your message has not been delivered yet to one or more of its recipients. \
             The mail system is still trying; you do not need to send it again."
        }
        Kind::Success => "As you asked, here is a report on the delivery of your message.",
    };
    wrap(&mut t, intro, "");
    let sections = [
        (DsnAction::Failed, "Could not be delivered:"),
        (DsnAction::Delayed, "Not delivered yet, still trying:"),
        (DsnAction::Delivered, "Delivered:"),
        (
            DsnAction::Relayed,
            "Passed on to a mail system that sends no further reports:",
        ),
    ];
    for (action, title) in sections {
        let mut listed = input
            .recipients
            .iter()
            .filter(|r| r.action == action)
            .peekable();
        if listed.peek().is_none() {
            continue;
        }
        write_str(&mut t, format_args!("\r\n{title}\r\n"));
        for r in listed {
            let status = normalize_status(&r.status, r.action);
            write_str(
                &mut t,
                format_args!(
                    "\r\n  <{}>\r\n",
                    one_line(strip_brackets(&r.final_recipient))
                ),
            );
            wrap(
                &mut t,
                &format!("What happened: {} ({status})", explain(&status)),
                "      ",
            );
            if let Some(diagnostic) = r.diagnostic.as_deref().map(diagnostic_text) {
                let host = r.remote_mta.as_deref().map(one_line).unwrap_or_default();
                if host.is_empty() {
                    wrap(&mut t, "Details:", "      ");
                } else {
                    wrap(
                        &mut t,
                        &format!("The mail server {host} answered:"),
                        "      ",
                    );
                }
                wrap(&mut t, &diagnostic, "          ");
            }
            if let Some(at) = r.last_attempt {
                wrap(
                    &mut t,
                    &format!("Last attempt: {}", rfc5322_date(at)),
                    "      ",
                );
            }
            if let (DsnAction::Delayed, Some(until)) = (r.action, r.will_retry_until) {
                wrap(
                    &mut t,
                    &format!("Will keep trying until: {}", rfc5322_date(until)),
                    "      ",
                );
            }
        }
    }
    t.push_str("\r\n");
    let advice = match kind {
        Kind::Failure => {
            "What you can do: check the addresses above for typing mistakes. If an \
             address is right, the answer from the other mail server usually says why \
             the message was refused. You can try again later, reach the recipient \
             another way, or forward this notice to your mail administrator."
        }
        Kind::Delay => {
            "What you can do: nothing for now. If the message still cannot be \
             delivered in time, you will receive another notice."
        }
        Kind::Success => "No action is needed.",
    };
    wrap(&mut t, advice, "");
    t.push_str("\r\n");
    wrap(&mut t, returned.note(input.return_full), "");
    t
}

/// A short explanation of an RFC 3463 code for people who do not know them.
fn explain(status: &str) -> &'static str {
    let mut parts = status.split('.');
    let (class, subject, detail) = (parts.next(), parts.next(), parts.next());
    if class == Some("2") {
        return "delivered";
    }
    match (subject, detail) {
        (Some("1"), Some("1")) => "the mailbox does not exist",
        (Some("1"), Some("2")) => "the recipient's domain does not exist or receives no mail",
        (Some("1"), Some("3")) => "the address is not valid",
        (Some("1"), Some("6")) => "the mailbox has moved",
        (Some("2"), Some("1")) => "the mailbox is disabled",
        (Some("2"), Some("2")) => "the mailbox is full",
        (Some("2"), Some("3")) | (Some("3"), Some("4")) => "the message is too large",
        (Some("4"), Some("1")) => "the recipient's mail server did not answer",
        (Some("4"), Some("2")) => "the connection to the recipient's mail server broke",
        (Some("4"), Some("4")) => "no mail server could be found for the recipient's domain",
        (Some("4"), Some("7")) => "the message could not be delivered in the time allowed",
        (Some("7"), _) => "the recipient's mail system refused it for security or policy reasons",
        _ if class == Some("4") => "a temporary problem",
        _ => "a permanent problem",
    }
}

/// The second part (RFC 3464 §2.1.1): per-message fields, then one block of
/// per-recipient fields for each recipient, each block preceded by one
/// blank line.
fn delivery_status(input: &DsnInput<'_>, mta: &str) -> String {
    let mut s = String::new();
    // RFC 3464 §2.2: the per-message fields, in the order of the ABNF.
    if let Some(envid) = input.envid {
        // RFC 3461 §6.3 (a): the ENVID value, decoded from xtext (§4).
        let envid = ascii_only(&one_line(&xtext_decode(envid)));
        if !envid.is_empty() {
            fold_field(&mut s, "Original-Envelope-Id", &envid);
        }
    }
    // RFC 3464 §2.2.2: "dns" names the MTA by its host name.
    fold_field(&mut s, "Reporting-MTA", &format!("dns; {mta}"));
    fold_field(&mut s, "Arrival-Date", &rfc5322_date(input.arrival_date));

    for r in &input.recipients {
        s.push_str("\r\n");
        // RFC 3464 §2.3: the per-recipient fields, in the order of the ABNF.
        // RFC 3461 §6.3 (d): Original-Recipient only when ORCPT was given.
        if let Some(orcpt) = r.original_recipient.as_deref().and_then(original_recipient) {
            fold_field(&mut s, "Original-Recipient", &orcpt);
        }
        // RFC 3464 §2.3.2: the envelope address exactly, save for CR/LF.
        fold_field(
            &mut s,
            "Final-Recipient",
            &typed_address("rfc822", &one_line(strip_brackets(&r.final_recipient))),
        );
        fold_field(&mut s, "Action", r.action.as_str());
        fold_field(&mut s, "Status", &normalize_status(&r.status, r.action));
        // RFC 3464 §2.3.5: only when a remote MTA was involved.
        if let Some(host) = r.remote_mta.as_deref().map(|h| ascii_only(&one_line(h)))
            && !host.is_empty()
        {
            fold_field(&mut s, "Remote-MTA", &format!("dns; {host}"));
        }
        if let Some(diagnostic) = r.diagnostic.as_deref() {
            let text = ascii_only(&diagnostic_text(diagnostic));
            if !text.is_empty() {
                // RFC 3464 §2.3.6: "smtp" types an SMTP reply; text
                // produced here is no such reply and gets a private type.
                let kind = if looks_like_reply(&text) {
                    "smtp"
                } else {
                    "X-mailstead"
                };
                fold_field(&mut s, "Diagnostic-Code", &format!("{kind}; {text}"));
            }
        }
        if let Some(at) = r.last_attempt {
            fold_field(&mut s, "Last-Attempt-Date", &rfc5322_date(at));
        }
        // RFC 3464 §2.3.9: Will-Retry-Until MUST NOT appear unless delayed.
        if let (DsnAction::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            fold_field(&mut s, "Will-Retry-Until", &rfc5322_date(until));
        }
    }
    s
}

/// `type;xtext` from the ORCPT parameter as `type; address`.
fn original_recipient(orcpt: &str) -> Option<String> {
    let (kind, address) = match orcpt.split_once(';') {
        Some((kind, address)) => (kind.trim(), address.trim()),
        // RFC 3464 §2.3.1: "unknown" when the type cannot be determined.
        None => ("unknown", orcpt.trim()),
    };
    let kind = if !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        kind
    } else {
        "unknown"
    };
    // RFC 3461 §4.2: the address part of ORCPT is xtext.
    let address = one_line(&xtext_decode(address));
    (!address.is_empty()).then(|| typed_address(kind, &address))
}

/// `type; address`, switching to the RFC 6533 §3 `utf-8` type in its
/// ASCII-only utf-8-addr-xtext form when the address is not ASCII, since
/// message/delivery-status is US-ASCII text (RFC 3464 §2.1.1).
fn typed_address(kind: &str, address: &str) -> String {
    if address.is_ascii() {
        return format!("{kind}; {address}");
    }
    let mut out = String::from("utf-8; ");
    for c in address.chars() {
        // RFC 6533 §3: QCHAR is printable ASCII except "+", "=" and "\".
        if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            write_str(&mut out, format_args!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// RFC 3461 §4: "+" and two upper-case hex digits stand for one octet.
/// Anything malformed is kept as it is rather than rejected.
fn xtext_decode(s: &str) -> String {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'+'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn normalize_status(status: &str, action: DsnAction) -> String {
    parse_status(status.trim()).unwrap_or_else(|| action.default_status().to_string())
}

/// A remote reply flattened to one line and cut to a bounded length.
fn diagnostic_text(reply: &str) -> String {
    let mut text = one_line(reply);
    if text.len() > MAX_DIAGNOSTIC {
        let mut cut = MAX_DIAGNOSTIC;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" [...]");
    }
    text
}

fn looks_like_reply(text: &str) -> bool {
    let b = text.as_bytes();
    matches!(b, [b'2'..=b'5', b'0'..=b'9', b'0'..=b'9', ..])
        && matches!(b.get(3), None | Some(b' ' | b'-'))
}

fn strip_brackets(address: &str) -> &str {
    let a = address.trim();
    a.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
}

/// Makes text from elsewhere safe inside a header field or a line of the
/// report: control characters (CR and LF above all, which would end the
/// field and let a remote server inject fields of its own) become spaces,
/// and runs of white space shrink to one.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() {
            gap = true;
        } else {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        }
    }
    out
}

/// For fields that must stay US-ASCII (RFC 3464 §2.1.1).
fn ascii_only(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// Appends `Name: value` CRLF, folded at spaces (RFC 5322 §2.2.3) so that
/// lines stay near 78 characters; a token too long to fit is cut into
/// pieces, so no line ever reaches the 998-octet limit of §2.1.1.
fn fold_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut line = name.len() + 1;
    let mut has_word = false;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        for piece in pieces(word, HARD_CHUNK) {
            if has_word && line + 1 + piece.len() > SOFT_LINE {
                out.push_str("\r\n");
                line = 0;
            }
            out.push(' ');
            out.push_str(piece);
            line += 1 + piece.len();
            has_word = true;
        }
    }
    out.push_str("\r\n");
}

/// Splits `word` into pieces of at most `max` bytes on character boundaries.
fn pieces(word: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // Only when `max` is smaller than one character.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// Appends `text` as lines of at most 76 columns after `indent`.
fn wrap(out: &mut String, text: &str, indent: &str) {
    const WIDTH: usize = 76;
    let room = WIDTH.saturating_sub(indent.len()).max(20);
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        for piece in pieces(word, room) {
            if !line.is_empty() && line.len() + 1 + piece.len() > room {
                write_str(out, format_args!("{indent}{line}\r\n"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(piece);
        }
    }
    if !line.is_empty() {
        write_str(out, format_args!("{indent}{line}\r\n"));
    }
}

/// Quoted-printable (RFC 2045 §6.7) for text whose lines end in CRLF.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.split_terminator("\r\n") {
        let bytes = line.as_bytes();
        let mut width = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            // Rule 3: white space at the end of a line must be encoded, or
            // transports that strip trailing blanks would change the text.
            let literal =
                (b == b' ' || b == b'\t') && !last || (b'!'..=b'~').contains(&b) && b != b'=';
            let len = if literal { 1 } else { 3 };
            // Rule 5: at most 76 characters, counting the soft break's "=".
            if width + len > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                write_str(&mut out, format_args!("={b:02X}"));
            }
            width += len;
        }
        out.push_str("\r\n");
    }
    out
}

/// A boundary that occurs in none of the parts (RFC 2046 §5.1.1).
fn pick_boundary(parts: &[&[u8]], mut candidate: impl FnMut() -> String) -> String {
    loop {
        let boundary = candidate();
        let needle = boundary.as_bytes();
        if !parts
            .iter()
            .any(|p| p.windows(needle.len()).any(|w| w == needle))
        {
            return boundary;
        }
    }
}

/// "=_" cannot occur in quoted-printable text, and 32 random characters
/// make a collision with anything else vanishingly unlikely.
fn random_boundary() -> String {
    format!("=_report_{}", random_token(32))
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// RFC 5322 §3.3 date-time in UTC, with the numeric zone that RFC 3464
/// §2.3.7 requires.
fn rfc5322_date(unix: i64) -> String {
    use time::{Month, OffsetDateTime, Weekday};
    let at = OffsetDateTime::from_unix_timestamp(unix.clamp(0, 253_402_300_799))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let day = match at.weekday() {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    let month = match at.month() {
        Month::January => "Jan",
        Month::February => "Feb",
        Month::March => "Mar",
        Month::April => "Apr",
        Month::May => "May",
        Month::June => "Jun",
        Month::July => "Jul",
        Month::August => "Aug",
        Month::September => "Sep",
        Month::October => "Oct",
        Month::November => "Nov",
        Month::December => "Dec",
    };
    format!(
        "{day}, {:02} {month} {:04} {:02}:{:02}:{:02} +0000",
        at.day(),
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Writing into a String cannot fail; this keeps the call sites free of
/// results that can only be `Ok`.
fn write_str(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    const ORIGINAL: &[u8] = b"From: Alice <alice@example.net>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: Lunch\r\n\
Message-ID: <lunch-1@example.net>\r\n\
\r\n\
Shall we meet at noon?\r\n";

    fn failed(address: &str, reply: &str) -> DsnRecipient {
        DsnRecipient {
            final_recipient: address.to_string(),
            original_recipient: None,
            action: DsnAction::Failed,
            status: status_of(reply, DsnAction::Failed),
            remote_mta: Some("mx.example.org".to_string()),
            diagnostic: Some(reply.to_string()),
            last_attempt: Some(1_700_000_100),
            will_retry_until: None,
        }
    }

    fn input(recipients: Vec<DsnRecipient>) -> DsnInput<'static> {
        DsnInput {
            reporting_mta: "mail.example.net",
            envid: None,
            arrival_date: 1_700_000_000,
            sender: "alice@example.net",
            recipients,
            original: ORIGINAL,
            return_full: true,
            now: 1_700_000_200,
        }
    }

    fn build(input: &DsnInput<'_>) -> Vec<u8> {
        build_dsn(input).expect("a notification")
    }

    /// The blocks of a message/delivery-status body as (name, unfolded
    /// value) pairs, in order.
    fn blocks(body: &str) -> Vec<Vec<(String, String)>> {
        body.split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .map(|block| {
                let mut fields: Vec<(String, String)> = Vec::new();
                for line in block.split("\r\n").filter(|l| !l.is_empty()) {
                    if line.starts_with(' ') || line.starts_with('\t') {
                        let last = fields.last_mut().expect("a field to continue");
                        last.1.push_str(line);
                    } else {
                        let (name, value) = line.split_once(':').expect("a field");
                        fields.push((name.to_string(), value.to_string()));
                    }
                }
                fields
                    .into_iter()
                    .map(|(n, v)| (n, v.trim().to_string()))
                    .collect()
            })
            .collect()
    }

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn part_type(part: &mail_parser::MessagePart<'_>) -> String {
        let ct = part.content_type().expect("a content type");
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
    }

    fn status_part(dsn: &[u8]) -> String {
        let message = MessageParser::default().parse(dsn).expect("parses");
        let part = message.part(2).expect("a second part");
        assert_eq!(part_type(part), "message/delivery-status");
        String::from_utf8(part.contents().to_vec()).expect("ASCII")
    }

    #[test]
    fn structure_of_a_failure_report() {
        let dsn = build(&input(vec![failed(
            "bob@example.org",
            "550 5.1.1 <bob@example.org>: user unknown",
        )]));
        let message = MessageParser::default().parse(&dsn).expect("parses");

        let root = message.root_part();
        let ct = root.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let sub = root.sub_parts().expect("sub-parts");
        assert_eq!(sub.len(), 3);
        let types: Vec<String> = (1..=3)
            .map(|i| part_type(message.part(i).expect("part")))
            .collect();
        assert_eq!(
            types,
            ["text/plain", "message/delivery-status", "message/rfc822"]
        );

        assert_eq!(
            message.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
        let from = message.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.name(), Some("Mail Delivery System"));
        assert_eq!(from.address(), Some("MAILER-DAEMON@mail.example.net"));
        let to = message.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.address(), Some("alice@example.net"));
        assert_eq!(
            message.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert!(
            message
                .message_id()
                .expect("Message-ID")
                .ends_with("@mail.example.net")
        );
        let date = message.date().expect("Date");
        assert_eq!((date.year, date.month, date.day), (2023, 11, 14));

        let human = message
            .part(1)
            .and_then(|p| p.text_contents())
            .expect("text");
        assert!(human.contains("<bob@example.org>"));
        assert!(human.contains("550 5.1.1 <bob@example.org>: user unknown"));
        assert!(human.contains("the mailbox does not exist"));
        assert!(human.contains("mx.example.org"));

        let returned = message.part(3).and_then(|p| p.message()).expect("original");
        assert_eq!(returned.subject(), Some("Lunch"));
        assert_eq!(
            returned.body_text(0).as_deref(),
            Some("Shall we meet at noon?\r\n")
        );

        assert!(dsn.is_ascii());
        assert_crlf_and_short_lines(&dsn);
    }

    #[test]
    fn exact_delivery_status_fields() {
        let mut bob = failed(
            "bob@example.org",
            "550 5.1.1 <bob@example.org>: user unknown",
        );
        bob.original_recipient = Some("rfc822;Bob+2Bx@Example.org".to_string());
        let carol = DsnRecipient {
            final_recipient: "carol@example.com".to_string(),
            original_recipient: None,
            action: DsnAction::Delayed,
            status: status_of("421 4.4.2 timeout", DsnAction::Delayed),
            remote_mta: None,
            diagnostic: Some("connection timed out".to_string()),
            last_attempt: Some(1_700_000_150),
            will_retry_until: Some(1_700_432_000),
        };
        let mut dsn_input = input(vec![bob, carol]);
        dsn_input.envid = Some("QQ+2B314159");
        let status = status_part(&build(&dsn_input));

        assert_eq!(
            blocks(&status),
            vec![
                pairs(&[
                    ("Original-Envelope-Id", "QQ+314159"),
                    ("Reporting-MTA", "dns; mail.example.net"),
                    ("Arrival-Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
                ]),
                pairs(&[
                    ("Original-Recipient", "rfc822; Bob+x@Example.org"),
                    ("Final-Recipient", "rfc822; bob@example.org"),
                    ("Action", "failed"),
                    ("Status", "5.1.1"),
                    ("Remote-MTA", "dns; mx.example.org"),
                    (
                        "Diagnostic-Code",
                        "smtp; 550 5.1.1 <bob@example.org>: user unknown"
                    ),
                    ("Last-Attempt-Date", "Tue, 14 Nov 2023 22:15:00 +0000"),
                ]),
                pairs(&[
                    ("Final-Recipient", "rfc822; carol@example.com"),
                    ("Action", "delayed"),
                    ("Status", "4.4.2"),
                    ("Diagnostic-Code", "X-mailstead; connection timed out"),
                    ("Last-Attempt-Date", "Tue, 14 Nov 2023 22:15:50 +0000"),
                    ("Will-Retry-Until", "Sun, 19 Nov 2023 22:13:20 +0000"),
                ]),
            ]
        );
        // One blank line between the blocks, and none inside them.
        assert!(status.starts_with("Original-Envelope-Id: QQ+314159\r\n"));
        assert_eq!(status.trim_end().matches("\r\n\r\n").count(), 2, "{status}");
    }

    #[test]
    fn will_retry_until_only_for_delayed_recipients() {
        let mut bob = failed("bob@example.org", "550 5.1.1 gone");
        bob.will_retry_until = Some(1_700_432_000);
        let status = status_part(&build(&input(vec![bob])));
        assert!(!status.contains("Will-Retry-Until"));
    }

    #[test]
    fn a_hostile_diagnostic_is_flattened_and_bounded() {
        let mut reply =
            String::from("550-5.7.1 first line\r\n550-5.7.1 Bcc: injected@evil.example\r\n");
        reply.push_str("Subject: also injected\n\r\x00\x1b[31m");
        while reply.len() < 5000 {
            reply.push_str("blah ");
        }
        reply.push_str(&"x".repeat(1200));
        let mut bob = failed("bob@example.org", &reply);
        bob.remote_mta = Some("mx.example.org\r\nX-Evil: 1".to_string());
        let dsn = build(&input(vec![bob]));
        assert_crlf_and_short_lines(&dsn);

        let status = status_part(&dsn);
        for line in status.split("\r\n") {
            assert!(
                !line.starts_with("Bcc")
                    && !line.starts_with("Subject")
                    && !line.starts_with("X-Evil"),
                "injected field: {line}"
            );
            assert!(
                line.len() <= SOFT_LINE,
                "long line of {} octets",
                line.len()
            );
        }
        let fields = blocks(&status);
        let recipient = fields.get(1).expect("recipient block");
        let diagnostic = &recipient
            .iter()
            .find(|(n, _)| n == "Diagnostic-Code")
            .expect("diagnostic")
            .1;
        assert!(diagnostic.starts_with(
            "smtp; 550-5.7.1 first line 550-5.7.1 Bcc: injected@evil.example Subject"
        ));
        assert!(diagnostic.ends_with("[...]"));
        assert!(diagnostic.len() < MAX_DIAGNOSTIC + 200);
        assert!(!diagnostic.chars().any(|c| c.is_control()));
        let remote = &recipient
            .iter()
            .find(|(n, _)| n == "Remote-MTA")
            .expect("remote")
            .1;
        assert_eq!(remote, "dns; mx.example.org X-Evil: 1");

        let message = MessageParser::default().parse(&dsn).expect("parses");
        assert!(message.header_raw("Bcc").is_none() && message.header_raw("X-Evil").is_none());
        assert_eq!(message.root_part().sub_parts().map(<[_]>::len), Some(3));
    }

    #[test]
    fn an_unbreakable_token_is_cut_below_the_hard_limit() {
        let mut field = String::new();
        fold_field(
            &mut field,
            "Diagnostic-Code",
            &format!("smtp; {}", "y".repeat(3000)),
        );
        for line in field.split_terminator("\r\n") {
            assert!(line.len() < 998, "{}", line.len());
        }
        let unfolded: String = field.replace("\r\n", "");
        assert_eq!(unfolded.matches('y').count(), 3000);
    }

    #[test]
    fn ret_hdrs_returns_the_header_section_only() {
        let mut dsn_input = input(vec![failed("bob@example.org", "550 5.1.1 gone")]);
        dsn_input.return_full = false;
        let dsn = build(&dsn_input);
        let message = MessageParser::default().parse(&dsn).expect("parses");
        let third = message.part(3).expect("third part");
        assert_eq!(part_type(third), "text/rfc822-headers");
        let headers = third.text_contents().expect("text");
        assert!(headers.starts_with("From: Alice <alice@example.net>\r\n"));
        assert!(headers.contains("Subject: Lunch\r\n"));
        assert!(!headers.contains("noon"));
        let human = message
            .part(1)
            .and_then(|p| p.text_contents())
            .expect("text");
        assert!(human.contains("The headers of your message are attached"));
    }

    #[test]
    fn an_oversized_original_is_returned_as_headers() {
        let mut original = ORIGINAL.to_vec();
        let line = [b'z'; 98];
        while original.len() <= MAX_RETURNED_MESSAGE {
            original.extend_from_slice(&line);
            original.extend_from_slice(b"\r\n");
        }
        let mut dsn_input = input(vec![failed("bob@example.org", "552 5.3.4 too big")]);
        dsn_input.original = &original;
        let dsn = build(&dsn_input);
        assert!(dsn.len() < 10_000);
        let message = MessageParser::default().parse(&dsn).expect("parses");
        assert_eq!(
            part_type(message.part(3).expect("part")),
            "text/rfc822-headers"
        );
        let human = message
            .part(1)
            .and_then(|p| p.text_contents())
            .expect("text");
        assert!(human.contains("too large to return in full"));
        assert!(human.contains("the message is too large (5.3.4)"));
    }

    #[test]
    fn eight_bit_originals_are_labelled_and_bare_line_ends_repaired() {
        let original = "From: José <jose@example.net>\nSubject: Café\n\nÀ bientôt\rfin".as_bytes();
        let mut dsn_input = input(vec![failed("bob@example.org", "550 5.1.1 gone")]);
        dsn_input.original = original;
        let dsn = build(&dsn_input);
        assert!(!dsn.is_ascii());
        assert_crlf_and_short_lines(&dsn);
        let message = MessageParser::default().parse(&dsn).expect("parses");
        let third = message.part(3).expect("part");
        assert_eq!(part_type(third), "message/rfc822");
        let cte = third.content_transfer_encoding().expect("CTE");
        assert_eq!(cte, "8bit");
        let returned = third.message().expect("message");
        assert_eq!(returned.subject(), Some("Café"));
        assert_eq!(
            returned.body_text(0).as_deref(),
            Some("À bientôt\r\nfin\r\n")
        );
        let root_cte = message.root_part().content_transfer_encoding();
        assert_eq!(root_cte, Some("8bit"));
    }

    #[test]
    fn binary_originals_fall_back_to_headers_or_nothing() {
        let mut long_line = ORIGINAL.to_vec();
        long_line.extend_from_slice(&[b'q'; 1200]);
        let mut dsn_input = input(vec![failed("bob@example.org", "550 5.1.1 gone")]);
        dsn_input.original = &long_line;
        let message_bytes = build(&dsn_input);
        let message = MessageParser::default()
            .parse(&message_bytes)
            .expect("parses");
        assert_eq!(
            part_type(message.part(3).expect("part")),
            "text/rfc822-headers"
        );

        let garbage = b"\x00\x01\x02 no header section at all";
        dsn_input.original = garbage;
        let dsn = build(&dsn_input);
        let message = MessageParser::default().parse(&dsn).expect("parses");
        assert_eq!(message.root_part().sub_parts().map(<[_]>::len), Some(2));
        let human = message
            .part(1)
            .and_then(|p| p.text_contents())
            .expect("text");
        assert!(human.contains("could not be attached"));
    }

    #[test]
    fn non_ascii_recipients_keep_the_report_ascii() {
        let mut bob = failed("jörg@bücher.example", "550 5.1.1 unknown");
        bob.original_recipient = Some("utf-8;j\\x{F6}rg@b\\x{FC}cher.example".to_string());
        let dsn = build(&input(vec![bob]));
        assert!(dsn.is_ascii());
        let status = status_part(&dsn);
        let fields = blocks(&status);
        let recipient = fields.get(1).expect("recipient");
        assert_eq!(
            recipient.first(),
            Some(&(
                "Original-Recipient".to_string(),
                "utf-8; j\\x{F6}rg@b\\x{FC}cher.example".to_string()
            ))
        );
        assert_eq!(
            recipient.get(1),
            Some(&(
                "Final-Recipient".to_string(),
                "utf-8; j\\x{F6}rg@b\\x{FC}cher.example".to_string()
            ))
        );
        let message = MessageParser::default().parse(&dsn).expect("parses");
        let human = message.part(1).expect("part");
        assert_eq!(human.content_transfer_encoding(), Some("quoted-printable"));
        assert!(
            human
                .text_contents()
                .expect("text")
                .contains("<jörg@bücher.example>")
        );
    }

    #[test]
    fn delay_and_success_subjects() {
        let mut carol = failed("carol@example.com", "451 4.3.0 try later");
        carol.action = DsnAction::Delayed;
        carol.status = status_of("451 4.3.0 try later", DsnAction::Delayed);
        carol.will_retry_until = Some(1_700_432_000);
        let dsn = build(&input(vec![carol.clone()]));
        let message = MessageParser::default().parse(&dsn).expect("parses");
        assert_eq!(
            message.subject(),
            Some("Delayed Mail (still being retried)")
        );
        let human = message
            .part(1)
            .and_then(|p| p.text_contents())
            .expect("text");
        assert!(human.contains("Will keep trying until: Sun, 19 Nov 2023 22:13:20 +0000"));

        let mut dave = failed("dave@example.com", "250 2.0.0 OK queued");
        dave.action = DsnAction::Delivered;
        dave.status = status_of("250 2.0.0 OK queued", DsnAction::Delivered);
        let dsn = build(&input(vec![dave.clone()]));
        let message = MessageParser::default().parse(&dsn).expect("parses");
        assert_eq!(message.subject(), Some("Successful Mail Delivery Report"));

        let bob = failed("bob@example.org", "550 5.1.1 gone");
        let dsn = build(&input(vec![dave, carol, bob]));
        let message = MessageParser::default().parse(&dsn).expect("parses");
        assert_eq!(
            message.subject(),
            Some("Undelivered Mail Returned to Sender")
        );
    }

    #[test]
    fn invalid_status_falls_back_to_the_action() {
        let mut bob = failed("bob@example.org", "550 gone");
        bob.status = "garbage".to_string();
        let mut carol = bob.clone();
        carol.action = DsnAction::Delayed;
        carol.status = "4.04.007".to_string();
        let status = status_part(&build(&input(vec![bob, carol])));
        let fields = blocks(&status);
        let status_of_block = |i: usize| {
            fields
                .get(i)
                .and_then(|b| b.iter().find(|(n, _)| n == "Status"))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(status_of_block(1).as_deref(), Some("5.0.0"));
        assert_eq!(status_of_block(2).as_deref(), Some("4.4.7"));
    }

    #[test]
    fn refuses_the_null_sender_and_empty_reports() {
        let mut dsn_input = input(vec![failed("bob@example.org", "550 5.1.1 gone")]);
        dsn_input.sender = "<>";
        assert_eq!(build_dsn(&dsn_input), Err(DsnError::NullSender));
        dsn_input.sender = "";
        assert_eq!(build_dsn(&dsn_input), Err(DsnError::NullSender));
        let dsn_input = input(Vec::new());
        assert_eq!(build_dsn(&dsn_input), Err(DsnError::NoRecipients));
    }

    #[test]
    fn boundary_avoids_the_content() {
        let original = b"--=_report_AAAA\r\n";
        let mut candidates = ["=_report_AAAA", "=_report_BBBB"].into_iter();
        let chosen = pick_boundary(&[original], || {
            candidates.next().unwrap_or("=_report_CCCC").to_string()
        });
        assert_eq!(chosen, "=_report_BBBB");

        let dsn = build(&input(vec![failed("bob@example.org", "550 5.1.1 gone")]));
        let message = MessageParser::default().parse(&dsn).expect("parses");
        let ct = message.root_part().content_type().expect("content type");
        let boundary = ct.attribute("boundary").expect("boundary");
        assert!(boundary.len() > 32);
        let text = String::from_utf8(dsn.clone()).expect("ASCII");
        assert_eq!(text.matches(&format!("--{boundary}")).count(), 4);
    }

    #[test]
    fn status_of_replies() {
        use DsnAction::{Delayed, Delivered, Failed};
        assert_eq!(
            status_of("550 5.1.1 <bob@x>: user unknown", Failed),
            "5.1.1"
        );
        assert_eq!(status_of("550-5.7.26 unauthenticated", Failed), "5.7.26");
        assert_eq!(status_of("550 no such user", Failed), "5.0.0");
        assert_eq!(status_of("421 mx.example.org closing", Delayed), "4.0.0");
        assert_eq!(status_of("451 4.7.1 greylisted", Delayed), "4.7.1");
        assert_eq!(status_of("250 2.1.5 OK", Delivered), "2.1.5");
        // The enhanced code must agree with the reply's class.
        assert_eq!(status_of("550 4.2.2 mailbox full", Failed), "5.0.0");
        assert_eq!(status_of("554 5.01.001 odd zeros", Failed), "5.1.1");
        assert_eq!(status_of("550 5.1.1234 too long", Failed), "5.0.0");
        assert_eq!(status_of("550", Failed), "5.0.0");
        assert_eq!(status_of("550 5.1.1. no such user", Failed), "5.1.1");
        assert_eq!(status_of("  552 5.2.2 full", Failed), "5.2.2");
        // No usable reply: the action decides.
        assert_eq!(status_of("", Failed), "5.0.0");
        assert_eq!(status_of("connection reset", Failed), "5.0.0");
        assert_eq!(status_of("connection reset", Delayed), "4.0.0");
        assert_eq!(status_of("5501 nonsense", Delayed), "4.0.0");
        assert_eq!(status_of("354 go ahead", Failed), "5.0.0");
    }

    #[test]
    fn helpers() {
        assert_eq!(xtext_decode("a+2Bb+3Dc"), "a+b=c");
        assert_eq!(xtext_decode("a+2b+"), "a+2b+");
        assert_eq!(
            quoted_printable("caf\u{e9} = ok \r\n"),
            "caf=C3=A9 =3D ok=20\r\n"
        );
        let long = quoted_printable(&format!("{}\r\n", "é".repeat(60)));
        assert!(long.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody"), b"A: 1\nB: 2\n");
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(&*crlf_lines(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n");
        assert!(matches!(crlf_lines(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(-5), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    fn assert_crlf_and_short_lines(dsn: &[u8]) {
        for (i, &b) in dsn.iter().enumerate() {
            match b {
                b'\n' => assert_eq!(dsn.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}"),
                b'\r' => assert_eq!(dsn.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
                0 => panic!("NUL at {i}"),
                _ => {}
            }
        }
        for line in dsn.split(|&b| b == b'\n') {
            assert!(line.len() <= 999, "line of {} octets", line.len());
        }
    }

    #[test]
    fn python_email_package_reads_it() {
        let python = std::process::Command::new("python3")
            .arg("--version")
            .output();
        if !python.is_ok_and(|o| o.status.success()) {
            eprintln!("python3 not found; skipping the cross-check with its email package");
            return;
        }
        let mut bob = failed(
            "bob@example.org",
            &format!("550 5.1.1 {}", "long ".repeat(100)),
        );
        bob.original_recipient = Some("rfc822;bob@example.org".to_string());
        let mut carol = failed("carol@example.com", "451 4.4.1 no answer");
        carol.action = DsnAction::Delayed;
        carol.status = "4.4.1".to_string();
        carol.will_retry_until = Some(1_700_432_000);
        let mut dsn_input = input(vec![bob, carol]);
        dsn_input.envid = Some("env-1");
        let dsn = build(&dsn_input);

        let path = std::env::temp_dir().join(format!(
            "mailstead-dsn-{}-{}.eml",
            std::process::id(),
            random_token(8)
        ));
        std::fs::write(&path, &dsn).expect("write");
        let script = r#"
import email, email.policy, sys
with open(sys.argv[1], 'rb') as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
assert msg.get_content_type() == 'multipart/report', msg.get_content_type()
assert msg.get_param('report-type') == 'delivery-status'
assert msg['Auto-Submitted'] == 'auto-replied'
parts = msg.get_payload()
assert [p.get_content_type() for p in parts] == ['text/plain', 'message/delivery-status', 'message/rfc822'], [p.get_content_type() for p in parts]
assert '<bob@example.org>' in parts[0].get_content()
blocks = parts[1].get_payload()
assert len(blocks) == 3, len(blocks)
assert blocks[0]['Reporting-MTA'] == 'dns; mail.example.net', blocks[0]['Reporting-MTA']
assert blocks[0]['Original-Envelope-Id'] == 'env-1'
assert blocks[0]['Arrival-Date'] == 'Tue, 14 Nov 2023 22:13:20 +0000'
assert blocks[1]['Original-Recipient'] == 'rfc822; bob@example.org'
assert blocks[1]['Final-Recipient'] == 'rfc822; bob@example.org'
assert blocks[1]['Action'] == 'failed'
assert blocks[1]['Status'] == '5.1.1'
assert blocks[1]['Remote-MTA'] == 'dns; mx.example.org'
diag = ' '.join(str(blocks[1]['Diagnostic-Code']).split())
assert diag == 'smtp; 550 5.1.1 ' + ' '.join(['long'] * 100), diag
assert blocks[2]['Action'] == 'delayed'
assert blocks[2]['Status'] == '4.4.1'
assert blocks[2]['Will-Retry-Until'] == 'Sun, 19 Nov 2023 22:13:20 +0000'
assert blocks[1]['Will-Retry-Until'] is None
inner = parts[2].get_payload()[0]
assert inner['Subject'] == 'Lunch'
print('ok')
"#;
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .expect("python3 runs");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "python3 rejected the report:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
}
