//! The IMAP command parser: one complete command (as the framer delivers it, literals inline)
//! to a [`Command`]. Grammar of RFC 9051 §9, with the RFC 3501 §9 forms still in use (CHECK,
//! LSUB, NEW/OLD/RECENT) and the extensions the server offers: LITERAL+/- (RFC 7888), BINARY
//! (RFC 3516), MULTIAPPEND (RFC 3502), CONDSTORE/QRESYNC (RFC 7162), ESEARCH (RFC 4731),
//! SEARCHRES (RFC 5182), LIST-EXTENDED (RFC 5258), SPECIAL-USE (RFC 6154), LIST-STATUS
//! (RFC 5819), SORT/THREAD (RFC 5256), ESORT (RFC 5267), WITHIN (RFC 5032), ID (RFC 2971),
//! SASL-IR (RFC 4959), QUOTA (RFC 9208), COMPRESS (RFC 4978), UTF8=ACCEPT (RFC 6855).
//!
//! Sans-I/O and total: any input gives a value or a [`ParseError`], never a panic, and the
//! work is linear in the input (the only recursion, nested search keys, is bounded by
//! [`MAX_SEARCH_DEPTH`]).
//!
//! Normalisations: command names, keywords of the grammar and system flags are matched
//! case-insensitively; a mailbox argument spelled `inbox` in any case becomes `INBOX`.
//! Everything else (keywords, capability names, mailbox names, strings) is kept as sent.

use super::types::*;

/// What the session has enabled that changes the grammar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// UTF-8 is accepted in quoted strings: UTF8=ACCEPT (RFC 6855 §3) or IMAP4rev2
    /// (RFC 9051 §9 QUOTED-CHAR) is enabled. Without it 8-bit text must come as a literal.
    pub utf8: bool,
}

/// Deepest nesting of search keys (parentheses, NOT, OR) accepted. Real clients stay in
/// single digits; the bound keeps the recursive descent off the end of the stack.
pub const MAX_SEARCH_DEPTH: usize = 64;

/// Longest piece of client input quoted back in an error message.
const SHOW_MAX: usize = 40;

/// Parses one complete command: its line(s) with literals inline, ending with CRLF (or a
/// bare LF).
pub fn parse_command(input: &[u8], opts: &ParseOptions) -> Result<Command, ParseError> {
    let mut p = Parser {
        input,
        pos: 0,
        utf8: opts.utf8,
        depth: 0,
    };
    let tag = p
        .tag()
        .map_err(|message| ParseError { tag: None, message })?;
    match p.command() {
        Ok(body) => Ok(Command { tag, body }),
        Err(message) => Err(ParseError {
            tag: Some(tag),
            message,
        }),
    }
}

/// Whether `tag` is a valid command tag (RFC 9051 §9: `1*<any ASTRING-CHAR except "+">`).
pub fn is_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.bytes().all(is_tag_char)
}

/// ATOM-CHAR (RFC 9051 §9): CHAR except atom-specials `( ) { SP CTL % * " \ ]`.
fn is_atom_char(c: u8) -> bool {
    (0x21..0x7f).contains(&c) && !b"(){%*\"\\]".contains(&c)
}

/// ASTRING-CHAR = ATOM-CHAR / resp-specials (RFC 9051 §9): `]` is allowed in astrings.
fn is_astring_char(c: u8) -> bool {
    is_atom_char(c) || c == b']'
}

/// tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9): "+" starts continuation requests.
fn is_tag_char(c: u8) -> bool {
    is_astring_char(c) && c != b'+'
}

/// list-char = ATOM-CHAR / list-wildcards / resp-specials (RFC 9051 §9).
fn is_list_char(c: u8) -> bool {
    is_astring_char(c) || c == b'%' || c == b'*'
}

/// Client bytes made safe to quote in a response text: printable ASCII, shortened. The text
/// goes on a response line, so CR/LF must never pass through.
fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(SHOW_MAX) {
        if (0x20..0x7f).contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    if bytes.len() > SHOW_MAX {
        s.push_str("...");
    }
    s
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// nz-number (RFC 9051 §9): `digit-nz *DIGIT`, at most 2^32-1.
fn parse_nz_number(digits: &[u8]) -> Option<u32> {
    if digits.first() == Some(&b'0') {
        return None;
    }
    parse_u64(digits).and_then(|n| u32::try_from(n).ok())
}

/// seq-number = nz-number / "*" (RFC 9051 §9).
fn parse_seq_number(s: &[u8]) -> Option<SeqNum> {
    if s == b"*" {
        Some(SeqNum::Star)
    } else {
        parse_nz_number(s).map(SeqNum::Value)
    }
}

/// sequence-set (RFC 9051 §9), or `$` alone (RFC 5182 §2: `sequence-set =/ seq-last-command`).
fn parse_sequence_set(tok: &[u8]) -> Option<SequenceSet> {
    if tok == b"$" {
        return Some(SequenceSet {
            ranges: Vec::new(),
            saved: true,
        });
    }
    let mut ranges = Vec::new();
    for part in tok.split(|&c| c == b',') {
        let mut ends = part.splitn(2, |&c| c == b':');
        let start = parse_seq_number(ends.next()?)?;
        let end = match ends.next() {
            Some(e) => parse_seq_number(e)?,
            None => start,
        };
        ranges.push(SeqRange { start, end });
    }
    Some(SequenceSet {
        ranges,
        saved: false,
    })
}

/// date-month (RFC 9051 §9); ABNF strings are case-insensitive.
fn parse_month(m: &[u8]) -> Option<u8> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV",
        b"DEC",
    ];
    let upper = m.to_ascii_uppercase();
    let i = MONTHS
        .iter()
        .position(|name| name.as_slice() == upper.as_slice())?;
    u8::try_from(i + 1).ok()
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `n` ASCII digits exactly.
fn fixed_digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// date-text = date-day "-" date-month "-" date-year, date-day = 1*2DIGIT,
/// date-year = 4DIGIT (RFC 9051 §9).
fn parse_date_text(s: &[u8]) -> Option<Date> {
    let mut parts = s.split(|&c| c == b'-');
    let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let year = i32::try_from(fixed_digits(y)?).ok()?;
    let month = parse_month(m)?;
    let day = u8::try_from(fixed_digits(d)?).ok()?;
    (day >= 1 && day <= days_in_month(year, month)).then_some(Date { year, month, day })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = i64::from(year) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// date-time (RFC 9051 §9) without its quotes: `date-day-fixed "-" date-month "-"
/// date-year SP time SP zone`, as Unix seconds.
fn parse_date_time(s: &[u8]) -> Option<i64> {
    // date-day-fixed = (SP DIGIT) / 2DIGIT; a bare single digit is accepted too, as some
    // clients drop the padding.
    let s = s.strip_prefix(b" ").unwrap_or(s);
    let dash = s.iter().position(|&c| c == b'-')?;
    let (d, rest) = s.split_at(dash);
    if d.is_empty() || d.len() > 2 {
        return None;
    }
    let day = u8::try_from(fixed_digits(d)?).ok()?;
    // "-Mon-yyyy hh:mm:ss +hhmm"
    let r = rest;
    if r.len() != 24
        || r[0] != b'-'
        || r[4] != b'-'
        || r[9] != b' '
        || r[12] != b':'
        || r[15] != b':'
        || r[18] != b' '
    {
        return None;
    }
    let month = parse_month(&r[1..4])?;
    let year = i32::try_from(fixed_digits(&r[5..9])?).ok()?;
    let (hh, mm, ss) = (
        fixed_digits(&r[10..12])?,
        fixed_digits(&r[13..15])?,
        fixed_digits(&r[16..18])?,
    );
    let sign = match r[19] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (zh, zm) = (fixed_digits(&r[20..22])?, fixed_digits(&r[22..24])?);
    // A leap second (60) is let through: it is a valid instant and lands on the next minute.
    if day < 1 || day > days_in_month(year, month) || hh > 23 || mm > 59 || ss > 60 || zm > 59 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400
        + i64::from(hh) * 3600
        + i64::from(mm) * 60
        + i64::from(ss);
    // The zone is the local time's offset from UTC (RFC 9051 §9 zone), so UTC = local - zone.
    Some(local - sign * i64::from(zh * 3600 + zm * 60))
}

/// Base64 (RFC 4648 §4, with padding) of SASL responses (RFC 9051 §9 base64).
fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let last = s.len() / 4 - 1;
    for (i, chunk) in s.chunks_exact(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        // base64-terminal: "=" only at the very end, at most two.
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * pad as u32;
        let bytes = acc.to_be_bytes();
        // Bits beyond the last whole byte must be zero: one encoding per value.
        if (pad == 1 && bytes[3] != 0) || (pad == 2 && (bytes[2] != 0 || bytes[3] != 0)) {
            return None;
        }
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

fn utf8_string(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("the {what} is not valid UTF-8"))
}

/// Atom characters are ASCII, so this never replaces anything.
fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A search key list: one key stands alone, several are ANDed (RFC 9051 §6.4.4: "When
/// multiple keys are specified, the result is the intersection").
fn and(keys: Vec<SearchKey>) -> SearchKey {
    match <[SearchKey; 1]>::try_from(keys) {
        Ok([key]) => key,
        Err(keys) => SearchKey::And(keys),
    }
}

type PResult<T> = Result<T, String>;

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    utf8: bool,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&c| !f(c)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    /// The client's token at the cursor, for error messages: up to a space, parenthesis or
    /// line end, or else the one character there.
    fn token(&self) -> &'a [u8] {
        let rest = self.rest();
        let n = rest
            .iter()
            .position(|&c| matches!(c, b' ' | b'\r' | b'\n' | b'(' | b')'))
            .unwrap_or(rest.len());
        let n = if n == 0 && !self.at_line_end() { 1 } else { n };
        &rest[..n]
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
    }

    /// An atom-like keyword of the grammar, matched case-insensitively, upper-cased.
    fn word(&mut self) -> Vec<u8> {
        self.take_while(is_atom_char).to_ascii_uppercase()
    }

    /// Whether the next token is the grammar keyword `w` (case-insensitive, whole token).
    fn peek_word(&self, w: &[u8]) -> bool {
        let rest = self.rest();
        rest.len() >= w.len()
            && rest[..w.len()].eq_ignore_ascii_case(w)
            && !rest.get(w.len()).is_some_and(|&c| is_atom_char(c))
    }

    fn eat_word(&mut self, w: &[u8]) -> bool {
        let hit = self.peek_word(w);
        if hit {
            self.pos += w.len();
        }
        hit
    }

    fn sp(&mut self, after: &str) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_line_end() {
            Err(format!("missing arguments after {after}"))
        } else {
            Err(format!("missing space after {after}"))
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> PResult<()> {
        if self.eat(c) {
            return Ok(());
        }
        if self.at_line_end() {
            Err(format!("expected {what} before the end of the line"))
        } else {
            Err(format!("expected {what} at \"{}\"", show(self.token())))
        }
    }

    /// The error for an unexpected token at `start`: missing, malformed or unknown `what`.
    fn bad_at(&mut self, start: usize, what: &str) -> String {
        self.pos = start;
        if self.at_line_end() {
            return format!("missing {what}");
        }
        let tok = self.token();
        if tok.iter().all(|&c| is_atom_char(c)) {
            format!("unknown {what} \"{}\"", show(tok))
        } else {
            format!("expected {what} at \"{}\"", show(tok))
        }
    }

    /// The end of the command: CRLF, or a bare LF, and nothing after it.
    fn finish(&mut self) -> PResult<()> {
        match self.rest() {
            b"\r\n" | b"\n" => Ok(()),
            b"" => Err("the command does not end with CRLF".into()),
            _ => Err("unexpected characters after the command".into()),
        }
    }

    fn tag(&mut self) -> PResult<String> {
        let tag = self.take_while(is_tag_char);
        if !tag.is_empty() {
            return Ok(ascii(tag));
        }
        Err(if self.at_line_end() {
            "empty command line".into()
        } else {
            "missing tag".into()
        })
    }

    fn number_str(&mut self, what: &str) -> PResult<&'a [u8]> {
        let d = self.take_while(|c| c.is_ascii_digit());
        if d.is_empty() {
            if self.at_line_end() {
                return Err(format!("missing {what}"));
            }
            return Err(format!("expected {what} at \"{}\"", show(self.token())));
        }
        Ok(d)
    }

    /// number (RFC 9051 §9): 0 to 2^32-1.
    fn number(&mut self, what: &str) -> PResult<u32> {
        let d = self.number_str(what)?;
        parse_u64(d)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{what} {} is too large", show(d)))
    }

    /// nz-number (RFC 9051 §9): 1 to 2^32-1.
    fn nz_number(&mut self, what: &str) -> PResult<u32> {
        let d = self.number_str(what)?;
        parse_nz_number(d).ok_or_else(|| format!("bad {what} \"{}\" (1 to 4294967295)", show(d)))
    }

    /// number64 (RFC 9051 §9) and mod-sequence-valzer (RFC 7162 §7): 63-bit unsigned; with
    /// `nonzero`, mod-sequence-value.
    fn number64(&mut self, what: &str, nonzero: bool) -> PResult<u64> {
        let d = self.number_str(what)?;
        match parse_u64(d) {
            Some(0) if nonzero => Err(format!("{what} must not be 0")),
            Some(n) if n <= i64::MAX as u64 => Ok(n),
            _ => Err(format!("{what} {} is too large", show(d))),
        }
    }

    /// quoted (RFC 9051 §9): `DQUOTE *QUOTED-CHAR DQUOTE`; only `\"` and `\\` are escapes.
    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => match self.input.get(self.pos + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        out.push(c);
                        self.pos += 2;
                    }
                    _ => return Err("bad escape in a quoted string (only \\\" and \\\\)".into()),
                },
                // TEXT-CHAR excludes NUL (RFC 9051 §9 CHAR is %x01-7F).
                Some(0) => return Err("NUL in a quoted string".into()),
                Some(c) if c >= 0x80 && !self.utf8 => {
                    // RFC 3501 QUOTED-CHAR is 7-bit; UTF8-2/3/4 join it only with UTF-8
                    // enabled (RFC 6855 §3, RFC 9051 §9).
                    return Err("8-bit characters in a quoted string need a literal".into());
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        if self.utf8 && std::str::from_utf8(&out).is_err() {
            return Err("invalid UTF-8 in a quoted string".into());
        }
        Ok(out)
    }

    /// literal (RFC 9051 §9) `"{" number64 ["+"] "}" CRLF *CHAR8`, the `+` of RFC 7888
    /// (LITERAL+/-), and with `allow8` literal8 `"~{" number64 "}" CRLF *OCTET` (RFC 3516 §4.2).
    /// Returns the bytes and whether it was a literal8.
    fn literal(&mut self, allow8: bool) -> PResult<(&'a [u8], bool)> {
        let binary = self.eat(b'~');
        if binary && !allow8 {
            return Err("a literal8 (~{n}) is only allowed for APPEND data".into());
        }
        self.expect(b'{', "\"{\"")?;
        let d = self.number_str("the literal size")?;
        let n = parse_u64(d).ok_or("the literal size is too large")?;
        self.eat(b'+');
        self.expect(b'}', "\"}\" to end the literal size")?;
        // The header must end the line: the framer only knows it as a literal there.
        if self.rest().starts_with(b"\r\n") {
            self.pos += 2;
        } else if !self.eat(b'\n') {
            return Err("a literal size must be the last thing on its line".into());
        }
        let rest = self.rest();
        let data = usize::try_from(n)
            .ok()
            .and_then(|n| rest.get(..n))
            .ok_or("the literal is shorter than its announced size")?;
        self.pos += data.len();
        Ok((data, binary))
    }

    /// string = quoted / literal (RFC 9051 §9).
    fn string(&mut self, what: &str) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => {
                let (data, _) = self.literal(false)?;
                // CHAR8 excludes NUL (RFC 9051 §9); only literal8 may carry it.
                if data.contains(&0) {
                    return Err("NUL in a literal".into());
                }
                Ok(data.to_vec())
            }
            _ if self.at_line_end() => Err(format!("missing {what}")),
            _ => Err(format!("expected {what} at \"{}\"", show(self.token()))),
        }
    }

    /// astring = 1*ASTRING-CHAR / string (RFC 9051 §9).
    fn astring(&mut self, what: &str) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(what),
            // "~" is an ATOM-CHAR, but "~{" can only be a misplaced literal8: say so.
            Some(b'~') if self.rest().starts_with(b"~{") => self.literal(false).map(|_| Vec::new()),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    return self.string(what);
                }
                Ok(a.to_vec())
            }
        }
    }

    /// nstring = string / nil (RFC 9051 §9); an atom is let through as a string because ID
    /// (the one user) is informational and clients are sloppy with it.
    fn nstring_lenient(&mut self, what: &str) -> PResult<Option<Vec<u8>>> {
        if self.eat_word(b"NIL") {
            return Ok(None);
        }
        self.astring(what).map(Some)
    }

    /// mailbox = "INBOX" / astring (RFC 9051 §9). "INBOX" is case-insensitive (RFC 9051 §5.1),
    /// so every spelling reaches the session as `INBOX`.
    fn mailbox(&mut self) -> PResult<MailboxArg> {
        let name = self.astring("a mailbox name")?;
        if name.eq_ignore_ascii_case(b"INBOX") {
            return Ok(MailboxArg(b"INBOX".to_vec()));
        }
        Ok(MailboxArg(name))
    }

    /// list-mailbox = 1*list-char / string (RFC 9051 §9): `%` and `*` are wildcards here.
    fn list_mailbox(&mut self) -> PResult<MailboxArg> {
        if matches!(self.peek(), Some(b'"' | b'{')) {
            return self.string("a mailbox pattern").map(MailboxArg);
        }
        let p = self.take_while(is_list_char);
        if p.is_empty() {
            return self.string("a mailbox pattern").map(MailboxArg);
        }
        Ok(MailboxArg(p.to_vec()))
    }

    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.at_line_end() {
            return Err("missing sequence set".into());
        }
        // Take the whole token, so that "1:x" is reported as the client wrote it.
        let tok = self.take_while(|c| is_atom_char(c) || c == b'*');
        if tok.is_empty() {
            return Err(format!(
                "expected a sequence set at \"{}\"",
                show(self.token())
            ));
        }
        parse_sequence_set(tok).ok_or_else(|| format!("bad sequence set \"{}\"", show(tok)))
    }

    /// A set of known UIDs or message numbers for QRESYNC: RFC 7162 §3.2.5 forbids `*` (and
    /// `$` would refer to a search the server did not run for this purpose).
    fn known_set(&mut self, what: &str) -> PResult<SequenceSet> {
        let set = self.sequence_set()?;
        let star = set
            .ranges
            .iter()
            .any(|r| r.start == SeqNum::Star || r.end == SeqNum::Star);
        if star || set.saved {
            return Err(format!("{what} must list numbers (no \"*\" or \"$\")"));
        }
        Ok(set)
    }

    /// flag (RFC 9051 §9): a system flag `\Seen`..., `\` atom (flag-extension), or an atom
    /// (flag-keyword).
    fn flag(&mut self) -> PResult<Flag> {
        let start = self.pos;
        let system = self.eat(b'\\');
        let name = self.take_while(is_atom_char);
        if name.is_empty() {
            self.pos = start;
            return Err(if self.at_line_end() {
                "missing flag".into()
            } else {
                format!("bad flag \"{}\"", show(self.token()))
            });
        }
        if !system {
            return Ok(Flag::Keyword(ascii(name)));
        }
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"SEEN" => Flag::Seen,
            b"ANSWERED" => Flag::Answered,
            b"FLAGGED" => Flag::Flagged,
            b"DELETED" => Flag::Deleted,
            b"DRAFT" => Flag::Draft,
            b"RECENT" => Flag::Recent,
            _ => Flag::Extension(format!("\\{}", ascii(name))),
        })
    }

    /// flag-list = "(" [flag *(SP flag)] ")" (RFC 9051 §9).
    fn flag_list(&mut self) -> PResult<Vec<Flag>> {
        self.expect(b'(', "\"(\" to start the flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp("a flag")?;
        }
    }

    /// date = date-text / DQUOTE date-text DQUOTE (RFC 9051 §9).
    fn date(&mut self) -> PResult<Date> {
        let start = self.pos;
        let text = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            self.take_while(is_atom_char).to_vec()
        };
        parse_date_text(&text).ok_or_else(|| {
            let tok = self.input.get(start..self.pos).unwrap_or_default();
            format!("bad date \"{}\" (expected e.g. 1-Feb-2024)", show(tok))
        })
    }

    /// date-time (RFC 9051 §9), always quoted.
    fn date_time(&mut self) -> PResult<i64> {
        let text = self.quoted()?;
        parse_date_time(&text).ok_or_else(|| {
            format!(
                "bad date-time \"{}\" (expected e.g. \"21-Nov-2026 10:00:00 +0100\")",
                show(&text)
            )
        })
    }

    fn command(&mut self) -> PResult<CommandBody> {
        match self.peek() {
            Some(b' ') => self.pos += 1,
            None | Some(b'\r' | b'\n') => return Err("missing command after the tag".into()),
            Some(_) => return Err("missing space after the tag".into()),
        }
        let name = self.take_while(is_atom_char);
        if name.is_empty() {
            return Err(if self.at_line_end() {
                "missing command after the tag".into()
            } else {
                format!("expected a command name at \"{}\"", show(self.token()))
            });
        }
        let body = match name.to_ascii_uppercase().as_slice() {
            b"CAPABILITY" => CommandBody::Capability,
            b"NOOP" => CommandBody::Noop,
            b"LOGOUT" => CommandBody::Logout,
            b"STARTTLS" => CommandBody::StartTls,
            b"NAMESPACE" => CommandBody::Namespace,
            b"IDLE" => CommandBody::Idle,
            b"CHECK" => CommandBody::Check,
            b"CLOSE" => CommandBody::Close,
            b"UNSELECT" => CommandBody::Unselect,
            b"EXPUNGE" => CommandBody::Expunge { uids: None },
            b"ID" => self.id()?,
            b"AUTHENTICATE" => self.authenticate()?,
            b"LOGIN" => {
                self.sp("LOGIN")?;
                let user = self.astring("a user name")?;
                self.sp("the user name")?;
                let password = self.astring("a password")?;
                CommandBody::Login { user, password }
            }
            b"ENABLE" => {
                // enable = "ENABLE" 1*(SP capability) (RFC 9051 §9)
                let mut caps = Vec::new();
                loop {
                    self.sp(if caps.is_empty() {
                        "ENABLE"
                    } else {
                        "a capability"
                    })?;
                    caps.push(self.atom("a capability name")?);
                    if self.peek() != Some(b' ') {
                        break;
                    }
                }
                CommandBody::Enable(caps)
            }
            b"SELECT" => self.select(false)?,
            b"EXAMINE" => self.select(true)?,
            b"CREATE" => self.create()?,
            b"DELETE" => {
                self.sp("DELETE")?;
                CommandBody::Delete(self.mailbox()?)
            }
            b"RENAME" => {
                self.sp("RENAME")?;
                let from = self.mailbox()?;
                self.sp("the mailbox name")?;
                CommandBody::Rename {
                    from,
                    to: self.mailbox()?,
                }
            }
            b"SUBSCRIBE" => {
                self.sp("SUBSCRIBE")?;
                CommandBody::Subscribe(self.mailbox()?)
            }
            b"UNSUBSCRIBE" => {
                self.sp("UNSUBSCRIBE")?;
                CommandBody::Unsubscribe(self.mailbox()?)
            }
            b"LIST" => self.list()?,
            b"LSUB" => {
                // lsub = "LSUB" SP mailbox SP list-mailbox (RFC 3501 §9)
                self.sp("LSUB")?;
                let reference = self.mailbox()?;
                self.sp("the reference name")?;
                CommandBody::Lsub {
                    reference,
                    pattern: self.list_mailbox()?,
                }
            }
            b"STATUS" => {
                self.sp("STATUS")?;
                let mailbox = self.mailbox()?;
                self.sp("the mailbox name")?;
                CommandBody::Status {
                    mailbox,
                    items: self.status_items()?,
                }
            }
            b"APPEND" => self.append()?,
            b"GETQUOTA" => {
                // getquota = "GETQUOTA" SP quota-root-name (RFC 9208 §6)
                self.sp("GETQUOTA")?;
                CommandBody::GetQuota(utf8_string(self.astring("a quota root")?, "quota root")?)
            }
            b"GETQUOTAROOT" => {
                self.sp("GETQUOTAROOT")?;
                CommandBody::GetQuotaRoot(self.mailbox()?)
            }
            b"SETQUOTA" => self.setquota()?,
            b"COMPRESS" => {
                // compress = "COMPRESS" SP algorithm (RFC 4978 §4)
                self.sp("COMPRESS")?;
                CommandBody::Compress(self.atom("a compression mechanism")?)
            }
            b"SEARCH" => self.search(false)?,
            b"FETCH" => self.fetch(false)?,
            b"STORE" => self.store(false)?,
            b"COPY" => self.copy_move(false, false)?,
            b"MOVE" => self.copy_move(false, true)?,
            b"SORT" => self.sort(false)?,
            b"THREAD" => self.thread(false)?,
            b"UID" => {
                // uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)
                // (RFC 9051 §9), plus SORT and THREAD (RFC 5256 §5).
                self.sp("UID")?;
                let sub = self.take_while(is_atom_char);
                match sub.to_ascii_uppercase().as_slice() {
                    b"SEARCH" => self.search(true)?,
                    b"FETCH" => self.fetch(true)?,
                    b"STORE" => self.store(true)?,
                    b"COPY" => self.copy_move(true, false)?,
                    b"MOVE" => self.copy_move(true, true)?,
                    b"SORT" => self.sort(true)?,
                    b"THREAD" => self.thread(true)?,
                    b"EXPUNGE" => {
                        // uid-expunge = "EXPUNGE" SP sequence-set (RFC 4315 §3)
                        self.sp("UID EXPUNGE")?;
                        CommandBody::Expunge {
                            uids: Some(self.sequence_set()?),
                        }
                    }
                    b"" => return Err("missing command after UID".into()),
                    _ => return Err(format!("unknown command UID {}", show(sub))),
                }
            }
            _ => return Err(format!("unknown command {}", show(name))),
        };
        self.finish()?;
        Ok(body)
    }

    fn atom(&mut self, what: &str) -> PResult<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err(if self.at_line_end() {
                format!("missing {what}")
            } else {
                format!("expected {what} at \"{}\"", show(self.token()))
            });
        }
        Ok(ascii(a))
    }

    /// id = "ID" SP id-params-list; id-params-list = "(" *(string SP nstring) ")" / nil
    /// (RFC 2971 §4).
    fn id(&mut self) -> PResult<CommandBody> {
        self.sp("ID")?;
        if self.eat_word(b"NIL") {
            return Ok(CommandBody::Id(None));
        }
        self.expect(b'(', "\"(\" or NIL")?;
        let mut fields = Vec::new();
        if !self.eat(b')') {
            loop {
                // Field and value are informational: invalid UTF-8 is replaced, not refused.
                let name = self.astring("an ID field name")?;
                self.sp("the ID field name")?;
                let value = self.nstring_lenient("an ID field value")?;
                fields.push((
                    String::from_utf8_lossy(&name).into_owned(),
                    value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                ));
                if self.eat(b')') {
                    break;
                }
                self.sp("an ID field value")?;
            }
        }
        Ok(CommandBody::Id(Some(fields)))
    }

    /// authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp] (RFC 9051 §9, SASL-IR
    /// RFC 4959 §7: initial-resp = base64 / "=").
    fn authenticate(&mut self) -> PResult<CommandBody> {
        self.sp("AUTHENTICATE")?;
        let mechanism = self.atom("a SASL mechanism")?;
        let mut initial = None;
        if self.eat(b' ') {
            let tok = self.take_while(is_atom_char);
            initial = Some(if tok == b"=" {
                // "=" is an empty response, distinct from no initial response (RFC 4959 §3).
                Vec::new()
            } else {
                decode_base64(tok).ok_or("the initial response is not valid base64")?
            });
        }
        Ok(CommandBody::Authenticate { mechanism, initial })
    }

    /// select/examine = "SELECT" SP mailbox [select-params] (RFC 9051 §9, RFC 4466 §2.1);
    /// select-param CONDSTORE and QRESYNC (RFC 7162 §3.1.8, §3.2.5).
    fn select(&mut self, examine: bool) -> PResult<CommandBody> {
        self.sp(if examine { "EXAMINE" } else { "SELECT" })?;
        let mailbox = self.mailbox()?;
        let (mut condstore, mut qresync) = (false, None);
        if self.eat(b' ') {
            self.expect(b'(', "\"(\" to start the SELECT parameters")?;
            self.items_to_close("a SELECT parameter", |p, start| {
                match p.word().as_slice() {
                    b"CONDSTORE" => condstore = true,
                    b"QRESYNC" => {
                        p.sp("QRESYNC")?;
                        qresync = Some(p.qresync()?);
                    }
                    _ => return Err(p.bad_at(start, "SELECT parameter")),
                }
                Ok(())
            })?;
        }
        Ok(CommandBody::Select {
            mailbox,
            examine,
            condstore,
            qresync,
        })
    }

    /// "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"
    /// (RFC 7162 §3.2.5, §7).
    fn qresync(&mut self) -> PResult<Qresync> {
        self.expect(b'(', "\"(\" after QRESYNC")?;
        let uidvalidity = self.nz_number("UIDVALIDITY")?;
        self.sp("the UIDVALIDITY")?;
        let modseq = self.number64("the QRESYNC mod-sequence", true)?;
        let (mut known_uids, mut seq_match) = (None, None);
        if self.eat(b' ') {
            if self.peek() != Some(b'(') {
                known_uids = Some(self.known_set("the known UIDs")?);
                if self.eat(b' ') {
                    seq_match = Some(self.seq_match()?);
                }
            } else {
                seq_match = Some(self.seq_match()?);
            }
        }
        self.expect(b')', "\")\" to end the QRESYNC parameters")?;
        Ok(Qresync {
            uidvalidity,
            modseq,
            known_uids,
            seq_match,
        })
    }

    /// seq-match-data = "(" known-sequence-set SP known-uid-set ")" (RFC 7162 §7).
    fn seq_match(&mut self) -> PResult<(SequenceSet, SequenceSet)> {
        self.expect(b'(', "\"(\"")?;
        let seqs = self.known_set("the known sequence numbers")?;
        self.sp("the known sequence numbers")?;
        let uids = self.known_set("the known UIDs")?;
        self.expect(b')', "\")\" after the known UIDs")?;
        Ok((seqs, uids))
    }

    /// create = "CREATE" SP mailbox [create-params] (RFC 4466 §2.2), create-param
    /// "USE" SP "(" [use-attr *(SP use-attr)] ")" (RFC 6154 §6).
    fn create(&mut self) -> PResult<CommandBody> {
        self.sp("CREATE")?;
        let mailbox = self.mailbox()?;
        let mut special_use = Vec::new();
        if self.eat(b' ') {
            self.expect(b'(', "\"(\" to start the CREATE parameters")?;
            loop {
                let start = self.pos;
                if self.word() != b"USE" {
                    return Err(self.bad_at(start, "CREATE parameter"));
                }
                self.sp("USE")?;
                self.expect(b'(', "\"(\" after USE")?;
                if !self.eat(b')') {
                    loop {
                        // use-attr = "\All" / "\Archive" / ... / "\" atom, kept as sent.
                        self.expect(b'\\', "a special-use attribute like \\Drafts")?;
                        special_use.push(format!("\\{}", self.atom("a special-use attribute")?));
                        if self.eat(b')') {
                            break;
                        }
                        self.sp("a special-use attribute")?;
                    }
                }
                if self.eat(b')') {
                    break;
                }
                self.sp("a CREATE parameter")?;
            }
        }
        Ok(CommandBody::Create {
            mailbox,
            special_use,
        })
    }

    /// The items of a parenthesised list up to and including its ")": `item` parses one
    /// (given where it starts, for errors); items are separated by one space.
    fn items_to_close(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Self, usize) -> PResult<()>,
    ) -> PResult<()> {
        loop {
            let start = self.pos;
            item(self, start)?;
            if self.eat(b')') {
                return Ok(());
            }
            self.sp(what)?;
        }
    }

    /// list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    /// (RFC 9051 §9, from RFC 5258 §6).
    fn list(&mut self) -> PResult<CommandBody> {
        self.sp("LIST")?;
        let mut select = Vec::new();
        // A reference name is an astring and cannot start with "(", so this is unambiguous.
        if self.eat(b'(') {
            if !self.eat(b')') {
                self.items_to_close("a LIST selection option", |p, start| {
                    select.push(match p.word().as_slice() {
                        b"SUBSCRIBED" => ListSelect::Subscribed,
                        b"REMOTE" => ListSelect::Remote,
                        b"RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                        b"SPECIAL-USE" => ListSelect::SpecialUse,
                        _ => return Err(p.bad_at(start, "LIST selection option")),
                    });
                    Ok(())
                })?;
            }
            // list-select-mod-opt needs a list-select-base-opt (RFC 5258 §6 grammar; §3:
            // "RECURSIVEMATCH ... MUST NOT occur as the only selection option").
            let base = select
                .iter()
                .any(|s| matches!(s, ListSelect::Subscribed | ListSelect::SpecialUse));
            if select.contains(&ListSelect::RecursiveMatch) && !base {
                return Err("RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE".into());
            }
            self.sp("the selection options")?;
        }
        let reference = self.mailbox()?;
        self.sp("the reference name")?;
        // mbox-or-pat = list-mailbox / patterns; patterns = "(" list-mailbox *(SP list-mailbox) ")"
        let patterns = if self.eat(b'(') {
            let mut patterns = vec![self.list_mailbox()?];
            while self.eat(b' ') {
                patterns.push(self.list_mailbox()?);
            }
            self.expect(b')', "\")\" after the patterns")?;
            patterns
        } else {
            vec![self.list_mailbox()?]
        };
        let mut returns = Vec::new();
        if self.eat(b' ') {
            // list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
            if !self.eat_word(b"RETURN") {
                return Err(format!("expected RETURN at \"{}\"", show(self.token())));
            }
            self.sp("RETURN")?;
            self.expect(b'(', "\"(\" after RETURN")?;
            if !self.eat(b')') {
                self.items_to_close("a LIST return option", |p, start| {
                    returns.push(match p.word().as_slice() {
                        b"SUBSCRIBED" => ListReturn::Subscribed,
                        b"CHILDREN" => ListReturn::Children,
                        b"SPECIAL-USE" => ListReturn::SpecialUse,
                        b"STATUS" => {
                            // RFC 5819 §2: "STATUS" SP "(" status-att *(SP status-att) ")"
                            p.sp("STATUS")?;
                            ListReturn::Status(p.status_items()?)
                        }
                        _ => return Err(p.bad_at(start, "LIST return option")),
                    });
                    Ok(())
                })?;
            }
        }
        Ok(CommandBody::List {
            select,
            reference,
            patterns,
            returns,
        })
    }

    /// "(" status-att *(SP status-att) ")" (RFC 9051 §9 status; SIZE RFC 8438, HIGHESTMODSEQ
    /// RFC 7162, APPENDLIMIT RFC 7889, RECENT RFC 3501).
    fn status_items(&mut self) -> PResult<Vec<StatusItem>> {
        self.expect(b'(', "\"(\" to start the status items")?;
        let mut items = Vec::new();
        loop {
            let start = self.pos;
            items.push(match self.word().as_slice() {
                b"MESSAGES" => StatusItem::Messages,
                b"RECENT" => StatusItem::Recent,
                b"UIDNEXT" => StatusItem::UidNext,
                b"UIDVALIDITY" => StatusItem::UidValidity,
                b"UNSEEN" => StatusItem::Unseen,
                b"DELETED" => StatusItem::Deleted,
                b"SIZE" => StatusItem::Size,
                b"HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                b"APPENDLIMIT" => StatusItem::AppendLimit,
                _ => return Err(self.bad_at(start, "status item")),
            });
            if self.eat(b')') {
                return Ok(items);
            }
            self.sp("a status item")?;
        }
    }

    /// append = "APPEND" SP mailbox 1*append-message (RFC 3502 §6);
    /// append-message = [SP flag-list] [SP date-time] SP append-data;
    /// append-data = literal / literal8 (RFC 3516 §4.4) / "UTF8" SP "(" literal8 ")"
    /// (RFC 6855 §4, only with UTF-8 enabled).
    fn append(&mut self) -> PResult<CommandBody> {
        self.sp("APPEND")?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        while self.peek() == Some(b' ') {
            self.pos += 1;
            let mut flags = Vec::new();
            if self.peek() == Some(b'(') {
                flags = self.flag_list()?;
                self.sp("the flag list")?;
            }
            let mut date = None;
            if self.peek() == Some(b'"') {
                date = Some(self.date_time()?);
                self.sp("the date-time")?;
            }
            let (data, binary) = match self.peek() {
                Some(b'{' | b'~') => self.literal(true)?,
                _ if self.utf8 && self.eat_word(b"UTF8") => {
                    self.sp("UTF8")?;
                    self.expect(b'(', "\"(\" after UTF8")?;
                    if self.peek() != Some(b'~') {
                        return Err("UTF8 APPEND data must be a literal8 (~{n})".into());
                    }
                    let data = self.literal(true)?;
                    self.expect(b')', "\")\" after the UTF8 literal")?;
                    data
                }
                _ if self.at_line_end() => return Err("missing message literal".into()),
                _ => {
                    return Err(format!(
                        "expected the message as a literal at \"{}\"",
                        show(self.token())
                    ));
                }
            };
            // The message is stored as sent: it is not a string, so no CHAR8 check here.
            messages.push(AppendMessage {
                flags,
                date,
                data: data.to_vec(),
                binary,
            });
        }
        if messages.is_empty() {
            return Err("missing message literal".into());
        }
        Ok(CommandBody::Append { mailbox, messages })
    }

    /// setquota = "SETQUOTA" SP quota-root-name SP setquota-list;
    /// setquota-list = "(" [setquota-resource *(SP setquota-resource)] ")";
    /// setquota-resource = resource-name SP resource-limit (RFC 9208 §6).
    fn setquota(&mut self) -> PResult<CommandBody> {
        self.sp("SETQUOTA")?;
        let root = utf8_string(self.astring("a quota root")?, "quota root")?;
        self.sp("the quota root")?;
        self.expect(b'(', "\"(\" to start the resource limits")?;
        let mut limits = Vec::new();
        if !self.eat(b')') {
            loop {
                let name = self.atom("a resource name")?;
                self.sp("the resource name")?;
                let limit = self.number64("the resource limit", false)?;
                limits.push((name, limit));
                if self.eat(b')') {
                    break;
                }
                self.sp("a resource limit")?;
            }
        }
        Ok(CommandBody::SetQuota { root, limits })
    }

    fn copy_move(&mut self, uid: bool, is_move: bool) -> PResult<CommandBody> {
        let name = if is_move { "MOVE" } else { "COPY" };
        self.sp(name)?;
        let set = self.sequence_set()?;
        self.sp("the sequence set")?;
        let mailbox = self.mailbox()?;
        Ok(if is_move {
            CommandBody::Move { uid, set, mailbox }
        } else {
            CommandBody::Copy { uid, set, mailbox }
        })
    }

    /// search = "SEARCH" [search-return-opts] SP search-program (RFC 9051 §9);
    /// search-program = ["CHARSET" SP charset SP] search-key *(SP search-key).
    fn search(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("SEARCH")?;
        let returns = self.search_return_opts()?;
        let mut charset = None;
        if self.eat_word(b"CHARSET") {
            self.sp("CHARSET")?;
            charset = Some(self.charset()?);
            self.sp("the charset")?;
        }
        let criteria = self.search_keys()?;
        Ok(CommandBody::Search {
            uid,
            charset,
            criteria,
            returns,
        })
    }

    /// charset = atom / quoted (RFC 9051 §9); a literal is tolerated.
    fn charset(&mut self) -> PResult<String> {
        utf8_string(self.astring("a charset")?, "charset")
    }

    /// search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
    /// (RFC 9051 §9 from RFC 4731 §7; SAVE RFC 5182 §4). Called after the SP, consumes the
    /// SP that follows. An empty list means ALL (RFC 4731 §3.1); it is returned as sent.
    fn search_return_opts(&mut self) -> PResult<Option<Vec<SearchReturn>>> {
        if !self.eat_word(b"RETURN") {
            return Ok(None);
        }
        self.sp("RETURN")?;
        self.expect(b'(', "\"(\" after RETURN")?;
        let mut opts = Vec::new();
        if !self.eat(b')') {
            self.items_to_close("a RETURN option", |p, start| {
                opts.push(match p.word().as_slice() {
                    b"MIN" => SearchReturn::Min,
                    b"MAX" => SearchReturn::Max,
                    b"ALL" => SearchReturn::All,
                    b"COUNT" => SearchReturn::Count,
                    b"SAVE" => SearchReturn::Save,
                    _ => return Err(p.bad_at(start, "SEARCH RETURN option")),
                });
                Ok(())
            })?;
        }
        self.sp("the RETURN options")?;
        Ok(Some(opts))
    }

    /// search-key *(SP search-key): the top level of a search program.
    fn search_keys(&mut self) -> PResult<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while self.eat(b' ') {
            keys.push(self.search_key()?);
        }
        Ok(and(keys))
    }

    fn search_key(&mut self) -> PResult<SearchKey> {
        if self.depth >= MAX_SEARCH_DEPTH {
            return Err(format!(
                "search keys nested more than {MAX_SEARCH_DEPTH} deep"
            ));
        }
        self.depth += 1;
        let key = self.search_key_inner();
        self.depth -= 1;
        key
    }

    fn search_arg(&mut self, key: &str) -> PResult<Vec<u8>> {
        self.sp(key)?;
        self.astring("a search string")
    }

    fn search_date(&mut self, key: &str) -> PResult<Date> {
        self.sp(key)?;
        self.date()
    }

    /// The keys that nest: "(" search-key *(SP search-key) ")", "NOT" SP search-key and
    /// "OR" SP search-key SP search-key (RFC 9051 §9). Kept apart from the other keys so the
    /// frames on the recursion are small (an unoptimised build spends kilobytes per level on
    /// the big match otherwise).
    fn search_key_inner(&mut self) -> PResult<SearchKey> {
        if self.eat(b'(') {
            let mut keys = vec![self.search_key()?];
            while self.eat(b' ') {
                keys.push(self.search_key()?);
            }
            self.expect(b')', "\")\" to close the search key list")?;
            return Ok(SearchKey::And(keys));
        }
        if self.eat_word(b"NOT") {
            self.sp("NOT")?;
            return Ok(SearchKey::Not(Box::new(self.search_key()?)));
        }
        if self.eat_word(b"OR") {
            self.sp("OR")?;
            let a = self.search_key()?;
            self.sp("the first OR key")?;
            return Ok(SearchKey::Or(Box::new(a), Box::new(self.search_key()?)));
        }
        self.search_key_flat()
    }

    /// The keys that do not nest (RFC 9051 §9 search-key, RFC 3501 §9 NEW/OLD/RECENT,
    /// RFC 7162 §3.1.5 MODSEQ, RFC 5032 §3 OLDER/YOUNGER).
    #[inline(never)]
    fn search_key_flat(&mut self) -> PResult<SearchKey> {
        use SearchKey as K;
        // A sequence-set is a key of its own (RFC 9051 §9 search-key / sequence-set).
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || c == b'*' || c == b'$')
        {
            return Ok(K::SequenceSet(self.sequence_set()?));
        }
        let start = self.pos;
        let name = self.take_while(is_atom_char);
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"ALL" => K::All,
            b"ANSWERED" => K::Answered,
            b"DELETED" => K::Deleted,
            b"DRAFT" => K::Draft,
            b"FLAGGED" => K::Flagged,
            b"NEW" => K::New,
            b"OLD" => K::Old,
            b"RECENT" => K::Recent,
            b"SEEN" => K::Seen,
            b"UNANSWERED" => K::Unanswered,
            b"UNDELETED" => K::Undeleted,
            b"UNDRAFT" => K::Undraft,
            b"UNFLAGGED" => K::Unflagged,
            b"UNSEEN" => K::Unseen,
            b"BCC" => K::Bcc(self.search_arg("BCC")?),
            b"BODY" => K::Body(self.search_arg("BODY")?),
            b"CC" => K::Cc(self.search_arg("CC")?),
            b"FROM" => K::From(self.search_arg("FROM")?),
            b"SUBJECT" => K::Subject(self.search_arg("SUBJECT")?),
            b"TEXT" => K::Text(self.search_arg("TEXT")?),
            b"TO" => K::To(self.search_arg("TO")?),
            b"BEFORE" => K::Before(self.search_date("BEFORE")?),
            b"ON" => K::On(self.search_date("ON")?),
            b"SINCE" => K::Since(self.search_date("SINCE")?),
            b"SENTBEFORE" => K::SentBefore(self.search_date("SENTBEFORE")?),
            b"SENTON" => K::SentOn(self.search_date("SENTON")?),
            b"SENTSINCE" => K::SentSince(self.search_date("SENTSINCE")?),
            b"HEADER" => {
                // "HEADER" SP header-fld-name SP astring
                self.sp("HEADER")?;
                let field = utf8_string(self.astring("a header field name")?, "header field name")?;
                self.sp("the header field name")?;
                K::Header(field, self.astring("a search string")?)
            }
            // "KEYWORD" SP flag-keyword: an atom, so no system flags.
            b"KEYWORD" => {
                self.sp("KEYWORD")?;
                K::Keyword(self.atom("a keyword")?)
            }
            b"UNKEYWORD" => {
                self.sp("UNKEYWORD")?;
                K::Unkeyword(self.atom("a keyword")?)
            }
            b"LARGER" => {
                self.sp("LARGER")?;
                K::Larger(self.number64("the size", false)?)
            }
            b"SMALLER" => {
                self.sp("SMALLER")?;
                K::Smaller(self.number64("the size", false)?)
            }
            b"UID" => {
                self.sp("UID")?;
                K::Uid(self.sequence_set()?)
            }
            b"MODSEQ" => {
                // search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer;
                // search-modseq-ext = SP entry-name SP entry-type-req (RFC 7162 §7). Only
                // "/flags/..." entries exist and the server keeps one MODSEQ per message
                // (§3.1.5 allows that), so the entry is checked and dropped.
                self.sp("MODSEQ")?;
                if self.peek() == Some(b'"') {
                    let entry = self.quoted()?;
                    if entry.len() <= 7 || !entry[..7].eq_ignore_ascii_case(b"/flags/") {
                        return Err(format!(
                            "bad MODSEQ entry name \"{}\" (expected \"/flags/...\")",
                            show(&entry)
                        ));
                    }
                    self.sp("the MODSEQ entry name")?;
                    // entry-type-req = "priv" / "shared" / "all"
                    match self.word().as_slice() {
                        b"PRIV" | b"SHARED" | b"ALL" => {}
                        _ => {
                            return Err(
                                "bad MODSEQ entry type (expected priv, shared or all)".into()
                            );
                        }
                    }
                    self.sp("the MODSEQ entry type")?;
                }
                K::ModSeq(self.number64("the mod-sequence", false)?)
            }
            // "OLDER" / "YOUNGER" SP nz-number (RFC 5032 §4)
            b"OLDER" => {
                self.sp("OLDER")?;
                K::Older(u64::from(self.nz_number("age in seconds")?))
            }
            b"YOUNGER" => {
                self.sp("YOUNGER")?;
                K::Younger(u64::from(self.nz_number("age in seconds")?))
            }
            b"" => {
                self.pos = start;
                return Err(if self.at_line_end() {
                    "missing search key".into()
                } else {
                    format!("expected a search key at \"{}\"", show(self.token()))
                });
            }
            _ => return Err(format!("unknown search key {}", show(name))),
        })
    }

    /// fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
    /// "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers] (RFC 9051 §9, RFC 4466 §2.4).
    fn fetch(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("FETCH")?;
        let set = self.sequence_set()?;
        self.sp("the sequence set")?;
        let items = if self.eat(b'(') {
            let mut attrs = vec![self.fetch_att()?];
            while self.eat(b' ') {
                attrs.push(self.fetch_att()?);
            }
            self.expect(b')', "\")\" to end the fetch items")?;
            FetchItems::List(attrs)
        } else if self.eat_word(b"ALL") {
            FetchItems::All
        } else if self.eat_word(b"FAST") {
            FetchItems::Fast
        } else if self.eat_word(b"FULL") {
            FetchItems::Full
        } else {
            FetchItems::List(vec![self.fetch_att()?])
        };
        let (mut changed_since, mut vanished) = (None, false);
        if self.eat(b' ') {
            self.expect(b'(', "\"(\" to start the FETCH modifiers")?;
            self.items_to_close("a FETCH modifier", |p, start| {
                match p.word().as_slice() {
                    // chgsince-fetch-mod = "CHANGEDSINCE" SP mod-sequence-value (RFC 7162 §7)
                    b"CHANGEDSINCE" => {
                        p.sp("CHANGEDSINCE")?;
                        changed_since = Some(p.number64("the CHANGEDSINCE mod-sequence", true)?);
                    }
                    b"VANISHED" => vanished = true,
                    _ => return Err(p.bad_at(start, "FETCH modifier")),
                }
                Ok(())
            })?;
        }
        // RFC 7162 §3.2.6: VANISHED is a UID FETCH modifier and only with CHANGEDSINCE.
        if vanished && !uid {
            return Err("VANISHED is only allowed with UID FETCH".into());
        }
        if vanished && changed_since.is_none() {
            return Err("VANISHED needs CHANGEDSINCE".into());
        }
        Ok(CommandBody::Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    /// fetch-att (RFC 9051 §9; BINARY RFC 3516 §4.2; MODSEQ RFC 7162 §7).
    fn fetch_att(&mut self) -> PResult<FetchAttr> {
        let start = self.pos;
        // Not an atom: "[" is an ATOM-CHAR, but it starts the section here.
        let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == b'.');
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"ENVELOPE" => FetchAttr::Envelope,
            b"FLAGS" => FetchAttr::Flags,
            b"INTERNALDATE" => FetchAttr::InternalDate,
            b"RFC822.SIZE" => FetchAttr::Rfc822Size,
            b"RFC822" => FetchAttr::Rfc822,
            b"RFC822.HEADER" => FetchAttr::Rfc822Header,
            b"RFC822.TEXT" => FetchAttr::Rfc822Text,
            b"UID" => FetchAttr::Uid,
            b"BODYSTRUCTURE" => FetchAttr::BodyStructure,
            b"MODSEQ" => FetchAttr::ModSeq,
            b"BODY" if self.peek() != Some(b'[') => FetchAttr::Body,
            b"BODY" | b"BODY.PEEK" => {
                let peek = name.len() > 4;
                let section = self.section()?;
                FetchAttr::BodySection {
                    peek,
                    section,
                    partial: self.partial()?,
                }
            }
            b"BINARY" | b"BINARY.PEEK" => {
                let peek = name.len() > 6;
                let part = self.section_binary()?;
                FetchAttr::Binary {
                    peek,
                    part,
                    partial: self.partial()?,
                }
            }
            b"BINARY.SIZE" => FetchAttr::BinarySize {
                part: self.section_binary()?,
            },
            _ => return Err(self.bad_at(start, "fetch item")),
        })
    }

    /// section = "[" [section-spec] "]"; section-spec = section-msgtext /
    /// (section-part ["." section-text]) (RFC 9051 §9).
    fn section(&mut self) -> PResult<Section> {
        self.expect(b'[', "\"[\" to start the section")?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            section.part = self.section_part()?;
            if self.eat(b'.') {
                section.text = Some(self.section_text(true)?);
            }
        } else {
            section.text = Some(self.section_text(false)?);
        }
        self.expect(b']', "\"]\" to end the section")?;
        Ok(section)
    }

    /// section-part = nz-number *("." nz-number) (RFC 9051 §9).
    fn section_part(&mut self) -> PResult<Vec<u32>> {
        let mut part = vec![self.nz_number("section part number")?];
        // A "." followed by a letter starts the section-text instead.
        while self.peek() == Some(b'.')
            && self.input.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            part.push(self.nz_number("section part number")?);
        }
        Ok(part)
    }

    /// section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT";
    /// section-text = section-msgtext / "MIME" (RFC 9051 §9). MIME needs a part.
    fn section_text(&mut self, after_part: bool) -> PResult<SectionText> {
        let start = self.pos;
        let name = self.take_while(|c| c.is_ascii_alphabetic() || c == b'.');
        Ok(match name.to_ascii_uppercase().as_slice() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if after_part => SectionText::Mime,
            b"MIME" => return Err("MIME needs a part number, as in BODY[1.MIME]".into()),
            b"HEADER.FIELDS" => SectionText::HeaderFields(self.header_list()?),
            b"HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(self.header_list()?),
            _ => {
                self.pos = start;
                let tok = self.rest();
                let n = tok
                    .iter()
                    .position(|&c| matches!(c, b']' | b' ' | b'\r' | b'\n'))
                    .unwrap_or(tok.len());
                return Err(format!("bad section \"{}\"", show(&tok[..n])));
            }
        })
    }

    /// header-list = "(" header-fld-name *(SP header-fld-name) ")" (RFC 9051 §9).
    fn header_list(&mut self) -> PResult<Vec<String>> {
        self.sp("HEADER.FIELDS")?;
        self.expect(b'(', "\"(\" to start the header field names")?;
        let mut names = Vec::new();
        loop {
            names.push(utf8_string(
                self.astring("a header field name")?,
                "header field name",
            )?);
            if self.eat(b')') {
                return Ok(names);
            }
            self.sp("a header field name")?;
        }
    }

    /// section-binary = "[" [section-part] "]" (RFC 3516 §4.2).
    fn section_binary(&mut self) -> PResult<Vec<u32>> {
        self.expect(b'[', "\"[\" to start the section")?;
        let part = if self.peek() == Some(b']') {
            Vec::new()
        } else {
            self.section_part()?
        };
        self.expect(b']', "\"]\" to end the section")?;
        Ok(part)
    }

    /// partial = "<" number "." nz-number ">" (RFC 3501 §9; RFC 9051 widens both to
    /// number64, but messages past 4 GiB are not stored, so u32 is the range that can hit).
    fn partial(&mut self) -> PResult<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let offset = self.number("the partial offset")?;
        self.expect(b'.', "\".\" in the partial range")?;
        let length = self.nz_number("partial length")?;
        self.expect(b'>', "\">\" to end the partial range")?;
        Ok(Some((offset, length)))
    }

    /// store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags (RFC 9051 §9,
    /// RFC 4466 §2.5); store-modifier UNCHANGEDSINCE (RFC 7162 §3.1.3);
    /// store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag))).
    fn store(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("STORE")?;
        let set = self.sequence_set()?;
        self.sp("the sequence set")?;
        let mut unchanged_since = None;
        if self.eat(b'(') {
            self.items_to_close("a STORE modifier", |p, start| {
                match p.word().as_slice() {
                    b"UNCHANGEDSINCE" => {
                        p.sp("UNCHANGEDSINCE")?;
                        // mod-sequence-valzer: 0 is allowed and means "fail if changed at all".
                        unchanged_since =
                            Some(p.number64("the UNCHANGEDSINCE mod-sequence", false)?);
                    }
                    _ => return Err(p.bad_at(start, "STORE modifier")),
                }
                Ok(())
            })?;
            self.sp("the STORE modifiers")?;
        }
        let op = if self.eat(b'+') {
            StoreOp::Add
        } else if self.eat(b'-') {
            StoreOp::Remove
        } else {
            StoreOp::Replace
        };
        let start = self.pos;
        let silent = match self
            .take_while(|c| c.is_ascii_alphabetic() || c == b'.')
            .to_ascii_uppercase()
            .as_slice()
        {
            b"FLAGS" => false,
            b"FLAGS.SILENT" => true,
            _ => {
                self.pos = start;
                return Err(format!(
                    "expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT) at \"{}\"",
                    show(self.token())
                ));
            }
        };
        self.sp(if silent { "FLAGS.SILENT" } else { "FLAGS" })?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.eat(b' ') {
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(CommandBody::Store {
            uid,
            set,
            unchanged_since,
            op,
            silent,
            flags,
        })
    }

    /// sort = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria
    /// (RFC 5256 §5, ESORT RFC 5267 §3.2); search-criteria = charset 1*(SP search-key).
    fn sort(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("SORT")?;
        let returns = self.search_return_opts()?;
        self.expect(b'(', "\"(\" to start the sort criteria")?;
        let mut criteria = Vec::new();
        loop {
            // sort-criterion = ["REVERSE" SP] sort-key
            let reverse = self.eat_word(b"REVERSE");
            if reverse {
                self.sp("REVERSE")?;
            }
            let start = self.pos;
            let key = match self.word().as_slice() {
                b"ARRIVAL" => SortKey::Arrival,
                b"CC" => SortKey::Cc,
                b"DATE" => SortKey::Date,
                b"FROM" => SortKey::From,
                b"SIZE" => SortKey::Size,
                b"SUBJECT" => SortKey::Subject,
                b"TO" => SortKey::To,
                // RFC 5957 §3 SORT=DISPLAY
                b"DISPLAYFROM" => SortKey::DisplayFrom,
                b"DISPLAYTO" => SortKey::DisplayTo,
                _ => return Err(self.bad_at(start, "sort key")),
            };
            criteria.push(SortCriterion { reverse, key });
            if self.eat(b')') {
                break;
            }
            self.sp("a sort key")?;
        }
        self.sp("the sort criteria")?;
        let charset = self.charset()?;
        self.sp("the charset")?;
        let search = self.search_keys()?;
        Ok(CommandBody::Sort {
            uid,
            criteria,
            charset,
            search,
            returns,
        })
    }

    /// thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria (RFC 5256 §5).
    fn thread(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp("THREAD")?;
        let start = self.pos;
        let algorithm = match self.word().as_slice() {
            b"ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            b"REFERENCES" => ThreadAlgorithm::References,
            _ => return Err(self.bad_at(start, "THREAD algorithm")),
        };
        self.sp("the THREAD algorithm")?;
        let charset = self.charset()?;
        self.sp("the charset")?;
        let search = self.search_keys()?;
        Ok(CommandBody::Thread {
            uid,
            algorithm,
            charset,
            search,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(utf8: bool) -> ParseOptions {
        ParseOptions { utf8 }
    }

    /// Parses `s` (CRLF appended) and returns the body; the tag must be "a".
    fn p(s: &str) -> CommandBody {
        pb(s.as_bytes(), false)
    }

    fn pb(s: &[u8], utf8: bool) -> CommandBody {
        let mut input = s.to_vec();
        input.extend_from_slice(b"\r\n");
        match parse_command(&input, &opts(utf8)) {
            Ok(c) => c.body,
            Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(s)),
        }
    }

    fn err(s: &str) -> ParseError {
        let mut input = s.as_bytes().to_vec();
        input.extend_from_slice(b"\r\n");
        match parse_command(&input, &opts(false)) {
            Ok(c) => panic!("{s:?} parsed as {c:?}"),
            Err(e) => e,
        }
    }

    fn msg(s: &str) -> String {
        err(s).message
    }

    fn mb(s: &str) -> MailboxArg {
        MailboxArg(s.as_bytes().to_vec())
    }

    fn set(s: &str) -> SequenceSet {
        parse_sequence_set(s.as_bytes()).unwrap()
    }

    fn one(n: u32) -> SequenceSet {
        SequenceSet {
            ranges: vec![SeqRange {
                start: SeqNum::Value(n),
                end: SeqNum::Value(n),
            }],
            saved: false,
        }
    }

    fn date(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn search(s: &str) -> SearchKey {
        match p(&format!("a SEARCH {s}")) {
            CommandBody::Search { criteria, .. } => criteria,
            other => panic!("{other:?}"),
        }
    }

    fn fetch_items(s: &str) -> Vec<FetchAttr> {
        match p(&format!("a FETCH 1 {s}")) {
            CommandBody::Fetch { items, .. } => items.attrs(),
            other => panic!("{other:?}"),
        }
    }

    fn body_section(
        peek: bool,
        part: &[u32],
        text: Option<SectionText>,
        partial: Option<(u32, u32)>,
    ) -> FetchAttr {
        FetchAttr::BodySection {
            peek,
            section: Section {
                part: part.to_vec(),
                text,
            },
            partial,
        }
    }

    // ---- tags, names, line ends, errors ----

    #[test]
    fn tag_and_names() {
        let c = parse_command(b"A001 capability\r\n", &opts(false)).unwrap();
        assert_eq!(
            c,
            Command {
                tag: "A001".into(),
                body: CommandBody::Capability
            }
        );
        let c = parse_command(b"x.y]z NoOp\n", &opts(false)).unwrap();
        assert_eq!(c.tag, "x.y]z");
        assert_eq!(c.body, CommandBody::Noop);
        for (s, body) in [
            ("LOGOUT", CommandBody::Logout),
            ("STARTTLS", CommandBody::StartTls),
            ("NAMESPACE", CommandBody::Namespace),
            ("IDLE", CommandBody::Idle),
            ("CHECK", CommandBody::Check),
            ("CLOSE", CommandBody::Close),
            ("UNSELECT", CommandBody::Unselect),
            ("EXPUNGE", CommandBody::Expunge { uids: None }),
        ] {
            assert_eq!(p(&format!("a {s}")), body);
            assert_eq!(p(&format!("a {}", s.to_lowercase())), body);
        }
        assert!(
            is_tag("A1")
                && is_tag("a]")
                && !is_tag("")
                && !is_tag("a+")
                && !is_tag("a b")
                && !is_tag("*")
        );
    }

    #[test]
    fn errors_are_readable() {
        assert_eq!(
            err(""),
            ParseError {
                tag: None,
                message: "empty command line".into()
            }
        );
        assert_eq!(
            err("+ NOOP"),
            ParseError {
                tag: None,
                message: "missing tag".into()
            }
        );
        assert_eq!(
            err("a1"),
            ParseError {
                tag: Some("a1".into()),
                message: "missing command after the tag".into()
            }
        );
        assert_eq!(err("a1(NOOP").message, "missing space after the tag");
        assert_eq!(err("a1+NOOP").message, "missing space after the tag");
        assert_eq!(
            err("a1 FOO"),
            ParseError {
                tag: Some("a1".into()),
                message: "unknown command FOO".into()
            }
        );
        assert_eq!(msg("a UID FOO 1"), "unknown command UID FOO");
        assert_eq!(
            msg("a NOOP extra"),
            "unexpected characters after the command"
        );
        assert_eq!(msg("a NOOP "), "unexpected characters after the command");
        assert_eq!(msg("a FETCH 1:x FLAGS"), "bad sequence set \"1:x\"");
        assert_eq!(msg("a FETCH 0 FLAGS"), "bad sequence set \"0\"");
        assert_eq!(msg("a FETCH"), "missing arguments after FETCH");
        assert_eq!(msg("a FETCH 1 (FLAGS FOO)"), "unknown fetch item \"FOO\"");
        assert_eq!(msg("a SEARCH FOO"), "unknown search key FOO");
        assert_eq!(
            msg("a SEARCH SINCE 31-Feb-2024"),
            "bad date \"31-Feb-2024\" (expected e.g. 1-Feb-2024)"
        );
        assert_eq!(msg("a SELECT"), "missing arguments after SELECT");
        assert_eq!(
            msg("a SELECT INBOX (FOO)"),
            "unknown SELECT parameter \"FOO\""
        );
        assert_eq!(msg("a LOGIN \"unterminated"), "unterminated quoted string");
        // Client bytes in messages are printable and bounded.
        let m = msg("a \x01\x02FOO");
        assert!(m.is_ascii() && !m.contains('\r'));
        let m = msg(&format!("a {}", "X".repeat(500)));
        assert!(m.len() < 100, "{m}");
        // No CRLF at all.
        let e = parse_command(b"a NOOP", &opts(false)).unwrap_err();
        assert_eq!(e.message, "the command does not end with CRLF");
        // Bare CR is not a line end.
        assert_eq!(
            parse_command(b"a NOOP\r", &opts(false))
                .unwrap_err()
                .message,
            "unexpected characters after the command"
        );
    }

    // ---- strings ----

    #[test]
    fn strings_and_literals() {
        let login = |user: &str, password: &str| CommandBody::Login {
            user: b(user),
            password: b(password),
        };
        assert_eq!(p("a LOGIN SMITH SESAME"), login("SMITH", "SESAME"));
        assert_eq!(
            p(r#"a LOGIN "fred foo" "a\"b\\c""#),
            login("fred foo", "a\"b\\c")
        );
        assert_eq!(p("a LOGIN {4}\r\nfred {3+}\r\nx y"), login("fred", "x y"));
        assert_eq!(p("a LOGIN {0}\r\n \"\""), login("", ""));
        // A bare LF after a literal header, as after a line.
        assert_eq!(p("a LOGIN {4}\nfred x"), login("fred", "x"));
        // astring allows "]" (resp-specials) but an atom does not allow "%".
        assert_eq!(p("a LOGIN a]b x"), login("a]b", "x"));
        assert_eq!(msg("a LOGIN a%b x"), "missing space after the user name");
        assert_eq!(
            msg(r#"a LOGIN "a\b" x"#),
            "bad escape in a quoted string (only \\\" and \\\\)"
        );
        assert_eq!(
            msg("a LOGIN {9}\r\nabc"),
            "the literal is shorter than its announced size"
        );
        assert_eq!(
            msg("a LOGIN {3x}\r\nabc y"),
            "expected \"}\" to end the literal size at \"x}\""
        );
        assert_eq!(
            msg("a LOGIN {3}x\r\nabc y"),
            "a literal size must be the last thing on its line"
        );
        assert_eq!(
            msg("a LOGIN {3} \r\nabc y"),
            "a literal size must be the last thing on its line"
        );
        assert_eq!(
            msg("a LOGIN ~{3}\r\nabc y"),
            "a literal8 (~{n}) is only allowed for APPEND data"
        );
        assert_eq!(msg("a LOGIN {3}\r\na\0c y"), "NUL in a literal");
        assert_eq!(
            msg("a LOGIN {99999999999999999999999}\r\n"),
            "the literal size is too large"
        );
        // 8-bit in quoted strings only with UTF-8 enabled, and then valid UTF-8 only.
        assert_eq!(
            msg("a LOGIN \"j\u{f6}rg\" x"),
            "8-bit characters in a quoted string need a literal"
        );
        assert_eq!(
            pb("a LOGIN \"j\u{f6}rg\" x".as_bytes(), true),
            login("j\u{f6}rg", "x")
        );
        let e = parse_command(b"a LOGIN \"\xff\" x\r\n", &opts(true)).unwrap_err();
        assert_eq!(e.message, "invalid UTF-8 in a quoted string");
        assert_eq!(
            pb(b"a LOGIN {1}\r\n\xff x", false),
            CommandBody::Login {
                user: vec![0xff],
                password: b("x")
            }
        );
    }

    // ---- sequence sets ----

    #[test]
    fn sequence_sets() {
        use SeqNum::*;
        let r = |start, end| SeqRange { start, end };
        assert_eq!(
            set("1,3:5,7:*,*"),
            SequenceSet {
                ranges: vec![
                    r(Value(1), Value(1)),
                    r(Value(3), Value(5)),
                    r(Value(7), Star),
                    r(Star, Star)
                ],
                saved: false
            }
        );
        assert_eq!(set("5:3").ranges, vec![r(Value(5), Value(3))]);
        assert_eq!(
            set("4294967295").ranges,
            vec![r(Value(u32::MAX), Value(u32::MAX))]
        );
        assert_eq!(
            set("$"),
            SequenceSet {
                ranges: vec![],
                saved: true
            }
        );
        for bad in [
            "",
            "0",
            "1:0",
            "01",
            "1,",
            ",1",
            "1::2",
            "1:2:3",
            "4294967296",
            "$,1",
            "$$",
            "a",
            "1 2",
            "-1",
        ] {
            assert_eq!(parse_sequence_set(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(msg("a COPY 1,,2 x"), "bad sequence set \"1,,2\"");
    }

    // ---- SELECT / EXAMINE ----

    #[test]
    fn select_examine() {
        let sel = |mailbox: &str, examine, condstore, qresync| CommandBody::Select {
            mailbox: mb(mailbox),
            examine,
            condstore,
            qresync,
        };
        // RFC 9051 §6.3.2, §6.3.3
        assert_eq!(p("A142 SELECT INBOX"), sel("INBOX", false, false, None));
        assert_eq!(
            p("A932 EXAMINE blurdybloop"),
            sel("blurdybloop", true, false, None)
        );
        assert_eq!(p("a select inbox"), sel("INBOX", false, false, None));
        assert_eq!(p("a SELECT \"InBox\""), sel("INBOX", false, false, None));
        assert_eq!(
            p("a SELECT INBOX.Sent"),
            sel("INBOX.Sent", false, false, None)
        );
        // RFC 7162 §3.1.8
        assert_eq!(
            p("a SELECT INBOX (CONDSTORE)"),
            sel("INBOX", false, true, None)
        );
        assert_eq!(
            p("a EXAMINE INBOX (condstore)"),
            sel("INBOX", true, true, None)
        );
        // RFC 7162 §3.2.5.2 examples
        assert_eq!(
            p("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))"),
            sel(
                "INBOX",
                false,
                false,
                Some(Qresync {
                    uidvalidity: 67890007,
                    modseq: 20050715194045000,
                    known_uids: Some(set("41,43:211,214:541")),
                    seq_match: None
                })
            )
        );
        assert_eq!(
            p("B02 SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))"),
            sel(
                "INBOX",
                false,
                false,
                Some(Qresync {
                    uidvalidity: 67890007,
                    modseq: 90060115194045000,
                    known_uids: Some(set("41:211,214:541")),
                    seq_match: None
                })
            )
        );
        assert_eq!(
            p(
                "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))"
            ),
            sel(
                "INBOX",
                false,
                false,
                Some(Qresync {
                    uidvalidity: 67890007,
                    modseq: 90060115194045000,
                    known_uids: Some(set("1:29997")),
                    seq_match: Some((
                        set("5000,7500,9000,9990:9999"),
                        set(
                            "15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"
                        )
                    )),
                })
            )
        );
        assert_eq!(
            p("a SELECT INBOX (CONDSTORE QRESYNC (1 2))"),
            sel(
                "INBOX",
                false,
                true,
                Some(Qresync {
                    uidvalidity: 1,
                    modseq: 2,
                    known_uids: None,
                    seq_match: None
                })
            )
        );
        assert_eq!(
            p("a SELECT INBOX (QRESYNC (1 2 (1:2 3:4)))"),
            sel(
                "INBOX",
                false,
                false,
                Some(Qresync {
                    uidvalidity: 1,
                    modseq: 2,
                    known_uids: None,
                    seq_match: Some((set("1:2"), set("3:4")))
                })
            )
        );
        assert_eq!(
            msg("a SELECT INBOX (QRESYNC (0 2))"),
            "bad UIDVALIDITY \"0\" (1 to 4294967295)"
        );
        assert_eq!(
            msg("a SELECT INBOX (QRESYNC (1 0))"),
            "the QRESYNC mod-sequence must not be 0"
        );
        assert_eq!(
            msg("a SELECT INBOX (QRESYNC (1 2 1:*))"),
            "the known UIDs must list numbers (no \"*\" or \"$\")"
        );
        assert_eq!(
            msg("a SELECT INBOX ()"),
            "expected SELECT parameter at \")\""
        );
        assert_eq!(
            msg("a SELECT INBOX (CONDSTORE"),
            "missing arguments after a SELECT parameter"
        );
    }

    // ---- mailbox management ----

    #[test]
    fn mailbox_commands() {
        // RFC 9051 §6.3.4 - §6.3.8
        assert_eq!(
            p("A003 CREATE owatagusiam/"),
            CommandBody::Create {
                mailbox: mb("owatagusiam/"),
                special_use: vec![]
            }
        );
        assert_eq!(
            p("A682 DELETE blurdybloop"),
            CommandBody::Delete(mb("blurdybloop"))
        );
        assert_eq!(
            p("A683 RENAME blurdybloop sarasoop"),
            CommandBody::Rename {
                from: mb("blurdybloop"),
                to: mb("sarasoop")
            }
        );
        assert_eq!(
            p("A002 SUBSCRIBE #news.comp.mail.mime"),
            CommandBody::Subscribe(mb("#news.comp.mail.mime"))
        );
        assert_eq!(
            p("A002 UNSUBSCRIBE #news.comp.mail.mime"),
            CommandBody::Unsubscribe(mb("#news.comp.mail.mime"))
        );
        // RFC 6154 §5.2
        assert_eq!(
            p("t1 CREATE MySpecialArchive (USE (\\Archive))"),
            CommandBody::Create {
                mailbox: mb("MySpecialArchive"),
                special_use: vec!["\\Archive".into()]
            }
        );
        assert_eq!(
            p("a CREATE Drafts (USE (\\Drafts \\Sent))"),
            CommandBody::Create {
                mailbox: mb("Drafts"),
                special_use: vec!["\\Drafts".into(), "\\Sent".into()]
            }
        );
        assert_eq!(
            p("a CREATE x (use ())"),
            CommandBody::Create {
                mailbox: mb("x"),
                special_use: vec![]
            }
        );
        assert_eq!(msg("a CREATE x (FOO)"), "unknown CREATE parameter \"FOO\"");
        assert_eq!(
            msg("a CREATE x (USE (Drafts))"),
            "expected a special-use attribute like \\Drafts at \"Drafts\""
        );
        // Modified UTF-7 and UTF-8 names are passed on as sent.
        assert_eq!(
            p("a CREATE Entw&APw-rfe"),
            CommandBody::Create {
                mailbox: mb("Entw&APw-rfe"),
                special_use: vec![]
            }
        );
        assert_eq!(
            pb("a CREATE \"Entw\u{fc}rfe\"".as_bytes(), true),
            CommandBody::Create {
                mailbox: mb("Entw\u{fc}rfe"),
                special_use: vec![]
            }
        );
    }

    // ---- LIST / LSUB ----

    #[test]
    fn list() {
        let list = |select: Vec<ListSelect>,
                    reference: &str,
                    patterns: &[&str],
                    returns: Vec<ListReturn>| CommandBody::List {
            select,
            reference: mb(reference),
            patterns: patterns.iter().map(|p| mb(p)).collect(),
            returns,
        };
        // RFC 9051 §6.3.9 examples
        assert_eq!(p("A101 LIST \"\" \"\""), list(vec![], "", &[""], vec![]));
        assert_eq!(
            p("A102 LIST #news.comp.mail.misc \"\""),
            list(vec![], "#news.comp.mail.misc", &[""], vec![])
        );
        assert_eq!(
            p("A103 LIST /usr/staff/jones \"\""),
            list(vec![], "/usr/staff/jones", &[""], vec![])
        );
        assert_eq!(
            p("A202 LIST ~/Mail/ %"),
            list(vec![], "~/Mail/", &["%"], vec![])
        );
        assert_eq!(
            p("A02 LIST (SUBSCRIBED) \"\" \"*\""),
            list(vec![ListSelect::Subscribed], "", &["*"], vec![])
        );
        assert_eq!(
            p("A03 LIST () \"\" \"%\" RETURN (CHILDREN)"),
            list(vec![], "", &["%"], vec![ListReturn::Children])
        );
        assert_eq!(
            p("A04 LIST (REMOTE) \"\" \"%\" RETURN (CHILDREN)"),
            list(
                vec![ListSelect::Remote],
                "",
                &["%"],
                vec![ListReturn::Children]
            )
        );
        assert_eq!(
            p("A05 LIST (REMOTE SUBSCRIBED) \"\" \"*\""),
            list(
                vec![ListSelect::Remote, ListSelect::Subscribed],
                "",
                &["*"],
                vec![]
            )
        );
        assert_eq!(
            p("A06 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)"),
            list(
                vec![ListSelect::Subscribed, ListSelect::RecursiveMatch],
                "",
                &["%"],
                vec![ListReturn::Children]
            )
        );
        assert_eq!(
            p("A07 LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")"),
            list(vec![], "", &["INBOX", "Drafts", "Sent/%"], vec![])
        );
        assert_eq!(
            p("A10 LIST (SPECIAL-USE) \"\" * RETURN (SPECIAL-USE SUBSCRIBED)"),
            list(
                vec![ListSelect::SpecialUse],
                "",
                &["*"],
                vec![ListReturn::SpecialUse, ListReturn::Subscribed]
            )
        );
        // RFC 5819 §3
        assert_eq!(
            p("A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))"),
            list(
                vec![],
                "",
                &["%"],
                vec![ListReturn::Status(vec![
                    StatusItem::Messages,
                    StatusItem::Unseen
                ])]
            )
        );
        // Patterns keep wildcards and "]"; the reference is a mailbox (INBOX folded), patterns are not.
        assert_eq!(
            p("a LIST inbox inbox.%]*"),
            list(vec![], "INBOX", &["inbox.%]*"], vec![])
        );
        assert_eq!(
            p("a LIST \"\" {3}\r\nA*B"),
            list(vec![], "", &["A*B"], vec![])
        );
        assert_eq!(
            p("a LIST \"\" \"\" RETURN ()"),
            list(vec![], "", &[""], vec![])
        );
        assert_eq!(
            msg("a LIST (RECURSIVEMATCH) \"\" *"),
            "RECURSIVEMATCH needs SUBSCRIBED or SPECIAL-USE"
        );
        assert_eq!(
            msg("a LIST (FOO) \"\" *"),
            "unknown LIST selection option \"FOO\""
        );
        assert_eq!(
            msg("a LIST \"\" * RETURN (FOO)"),
            "unknown LIST return option \"FOO\""
        );
        assert_eq!(msg("a LIST \"\" * (CHILDREN)"), "expected RETURN at \"(\"");
        assert_eq!(
            msg("a LIST \"\" * RETURN"),
            "missing arguments after RETURN"
        );
        assert_eq!(
            msg("a LIST \"\""),
            "missing arguments after the reference name"
        );
        // RFC 3501 §6.3.9 LSUB
        assert_eq!(
            p("A002 LSUB \"#news.\" \"comp.mail.*\""),
            CommandBody::Lsub {
                reference: mb("#news."),
                pattern: mb("comp.mail.*")
            }
        );
    }

    // ---- STATUS ----

    #[test]
    fn status() {
        use StatusItem::*;
        // RFC 9051 §6.3.11
        assert_eq!(
            p("A042 STATUS blurdybloop (UIDNEXT MESSAGES)"),
            CommandBody::Status {
                mailbox: mb("blurdybloop"),
                items: vec![UidNext, Messages]
            }
        );
        assert_eq!(
            p(
                "a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)"
            ),
            CommandBody::Status {
                mailbox: mb("INBOX"),
                items: vec![
                    Messages,
                    Recent,
                    UidNext,
                    UidValidity,
                    Unseen,
                    Deleted,
                    Size,
                    HighestModSeq,
                    AppendLimit
                ]
            }
        );
        assert_eq!(msg("a STATUS INBOX ()"), "expected status item at \")\"");
        assert_eq!(
            msg("a STATUS INBOX (MESSAGES FOO)"),
            "unknown status item \"FOO\""
        );
        assert_eq!(
            msg("a STATUS INBOX"),
            "missing arguments after the mailbox name"
        );
    }

    // ---- APPEND ----

    #[test]
    fn append() {
        let m = |flags: Vec<Flag>, date: Option<i64>, data: &[u8], binary| AppendMessage {
            flags,
            date,
            data: data.to_vec(),
            binary,
        };
        // RFC 9051 §6.3.12, shortened.
        let msg1 = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n";
        let mut wire =
            format!("A003 APPEND saved-messages (\\Seen) {{{}}}\r\n", msg1.len()).into_bytes();
        wire.extend_from_slice(msg1);
        assert_eq!(
            pb(&wire, false),
            CommandBody::Append {
                mailbox: mb("saved-messages"),
                messages: vec![m(vec![Flag::Seen], None, msg1, false)]
            }
        );
        // Date-time with zone, space-padded day, literal8, LITERAL+.
        assert_eq!(
            p("a APPEND INBOX \"21-Nov-2026 10:00:00 +0100\" {3+}\r\nabc"),
            CommandBody::Append {
                mailbox: mb("INBOX"),
                messages: vec![m(vec![], Some(1_795_251_600), b"abc", false)]
            }
        );
        assert_eq!(
            pb(
                b"a APPEND x (\\Draft $Label) \" 1-Jan-1970 00:00:00 -0130\" ~{2}\r\n\0\xff",
                false
            ),
            CommandBody::Append {
                mailbox: mb("x"),
                messages: vec![m(
                    vec![Flag::Draft, Flag::Keyword("$Label".into())],
                    Some(5400),
                    b"\0\xff",
                    true
                )]
            }
        );
        // MULTIAPPEND (RFC 3502 §6 example, shortened): several messages, each with its own
        // optional flags and date.
        assert_eq!(
            p(
                "A003 APPEND saved-messages (\\Seen) {3}\r\none (\\Seen) \"7-Feb-1994 22:43:04 -0800\" {3}\r\ntwo {5}\r\nthree"
            ),
            CommandBody::Append {
                mailbox: mb("saved-messages"),
                messages: vec![
                    m(vec![Flag::Seen], None, b"one", false),
                    m(vec![Flag::Seen], Some(760_689_784), b"two", false),
                    m(vec![], None, b"three", false),
                ]
            }
        );
        // The UTF8 data item (RFC 6855 §4), with UTF-8 enabled only.
        assert_eq!(
            pb(b"a APPEND x UTF8 (~{2}\r\nhi)", true),
            CommandBody::Append {
                mailbox: mb("x"),
                messages: vec![m(vec![], None, b"hi", true)]
            }
        );
        assert_eq!(
            msg("a APPEND x UTF8 (~{2}\r\nhi)"),
            "expected the message as a literal at \"UTF8\""
        );
        assert_eq!(msg("a APPEND x"), "missing message literal");
        assert_eq!(
            msg("a APPEND x (\\Seen)"),
            "missing arguments after the flag list"
        );
        assert_eq!(
            msg("a APPEND x \"abc\" {1}\r\nx"),
            "bad date-time \"abc\" (expected e.g. \"21-Nov-2026 10:00:00 +0100\")"
        );
        assert_eq!(
            msg("a APPEND x \"29-Feb-2023 00:00:00 +0000\" {1}\r\nx")
                .split(' ')
                .next(),
            Some("bad")
        );
        assert_eq!(
            msg("a APPEND x {1}\r\nx {1}\r\ny junk"),
            "expected the message as a literal at \"junk\""
        );
    }

    #[test]
    fn date_times() {
        let dt = |s: &str| parse_date_time(s.as_bytes());
        assert_eq!(dt("01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(dt(" 1-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(dt("1-jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(dt("21-Nov-2026 10:00:00 +0100"), Some(1_795_251_600));
        assert_eq!(dt("21-Nov-2026 09:00:00 +0000"), Some(1_795_251_600));
        assert_eq!(dt("21-Nov-2026 04:00:00 -0500"), Some(1_795_251_600));
        assert_eq!(dt("29-Feb-2024 12:00:00 +0000"), Some(1_709_208_000));
        assert_eq!(dt("31-Dec-1969 23:59:59 +0000"), Some(-1));
        assert_eq!(dt("01-Jan-0000 00:00:00 +0000"), Some(-62_167_219_200));
        assert_eq!(dt("31-Dec-9999 23:59:59 +0000"), Some(253_402_300_799));
        for bad in [
            "29-Feb-2023 00:00:00 +0000",
            "32-Jan-2024 00:00:00 +0000",
            "00-Jan-2024 00:00:00 +0000",
            "01-Foo-2024 00:00:00 +0000",
            "01-Jan-2024 24:00:00 +0000",
            "01-Jan-2024 00:60:00 +0000",
            "01-Jan-2024 00:00:61 +0000",
            "01-Jan-2024 00:00:00 +0060",
            "01-Jan-2024 00:00:00 0000",
            "01-Jan-24 00:00:00 +0000",
            "001-Jan-2024 00:00:00 +0000",
            "01-Jan-2024 00:00:00 +0000 ",
            "01-Jan-2024",
            "",
        ] {
            assert_eq!(dt(bad), None, "{bad}");
        }
    }

    // ---- ENABLE, ID, AUTHENTICATE, LOGIN, COMPRESS, QUOTA ----

    #[test]
    fn session_commands() {
        // RFC 9051 §6.3.1
        assert_eq!(
            p("t2 ENABLE CONDSTORE X-GOOD-IDEA"),
            CommandBody::Enable(vec!["CONDSTORE".into(), "X-GOOD-IDEA".into()])
        );
        assert_eq!(
            p("a ENABLE UTF8=ACCEPT"),
            CommandBody::Enable(vec!["UTF8=ACCEPT".into()])
        );
        assert_eq!(msg("a ENABLE"), "missing arguments after ENABLE");
        // RFC 2971 §3.1
        assert_eq!(p("a023 ID NIL"), CommandBody::Id(None));
        assert_eq!(
            p("a ID (\"name\" \"x\" \"version\" NIL)"),
            CommandBody::Id(Some(vec![
                ("name".into(), Some("x".into())),
                ("version".into(), None)
            ]))
        );
        assert_eq!(
            p(
                "a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")"
            ),
            CommandBody::Id(Some(vec![
                ("name".into(), Some("sodr".into())),
                ("version".into(), Some("19.34".into())),
                ("vendor".into(), Some("Pink Floyd Music Limited".into())),
            ]))
        );
        assert_eq!(p("a ID ()"), CommandBody::Id(Some(vec![])));
        assert_eq!(
            msg("a ID (\"name\")"),
            "missing space after the ID field name"
        );
        // RFC 9051 §6.2.2, RFC 4959 §3
        let auth = |m: &str, initial: Option<&[u8]>| CommandBody::Authenticate {
            mechanism: m.into(),
            initial: initial.map(<[u8]>::to_vec),
        };
        assert_eq!(p("A001 AUTHENTICATE GSSAPI"), auth("GSSAPI", None));
        assert_eq!(
            p("a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q="),
            auth("PLAIN", Some(b"test\0test\0test"))
        );
        assert_eq!(p("a AUTHENTICATE PLAIN ="), auth("PLAIN", Some(b"")));
        assert_eq!(
            p("a AUTHENTICATE XOAUTH2 YQ=="),
            auth("XOAUTH2", Some(b"a"))
        );
        assert_eq!(p("a AUTHENTICATE X YWI="), auth("X", Some(b"ab")));
        for bad in [
            "a AUTHENTICATE PLAIN abc",
            "a AUTHENTICATE PLAIN YR==",
            "a AUTHENTICATE PLAIN Y===",
            "a AUTHENTICATE PLAIN ==",
            "a AUTHENTICATE PLAIN YQ==YQ==",
            "a AUTHENTICATE PLAIN \"YQ==\"",
        ] {
            assert_eq!(
                msg(bad),
                "the initial response is not valid base64",
                "{bad}"
            );
        }
        assert_eq!(
            decode_base64(b"AAECAwQFBgc="),
            Some(vec![0, 1, 2, 3, 4, 5, 6, 7])
        );
        // RFC 9051 §6.2.3
        assert_eq!(
            p("a001 LOGIN SMITH SESAME"),
            CommandBody::Login {
                user: b("SMITH"),
                password: b("SESAME")
            }
        );
        // RFC 4978 §5
        assert_eq!(
            p("a COMPRESS DEFLATE"),
            CommandBody::Compress("DEFLATE".into())
        );
        // RFC 9208 §4
        assert_eq!(
            p("G0001 GETQUOTA \"!partition/sda4\""),
            CommandBody::GetQuota("!partition/sda4".into())
        );
        assert_eq!(
            p("G0002 GETQUOTAROOT INBOX"),
            CommandBody::GetQuotaRoot(mb("INBOX"))
        );
        assert_eq!(
            p("S0000 SETQUOTA \"#user/alice\" (STORAGE 510)"),
            CommandBody::SetQuota {
                root: "#user/alice".into(),
                limits: vec![("STORAGE".into(), 510)]
            }
        );
        assert_eq!(
            p("a SETQUOTA \"\" (STORAGE 1024 MESSAGE 100)"),
            CommandBody::SetQuota {
                root: String::new(),
                limits: vec![("STORAGE".into(), 1024), ("MESSAGE".into(), 100)]
            }
        );
        assert_eq!(
            p("a SETQUOTA \"\" ()"),
            CommandBody::SetQuota {
                root: String::new(),
                limits: vec![]
            }
        );
    }

    // ---- SEARCH ----

    #[test]
    fn search_keys() {
        use SearchKey as K;
        // Every key.
        assert_eq!(search("ALL"), K::All);
        for (s, k) in [
            ("ANSWERED", K::Answered),
            ("DELETED", K::Deleted),
            ("DRAFT", K::Draft),
            ("FLAGGED", K::Flagged),
            ("NEW", K::New),
            ("OLD", K::Old),
            ("RECENT", K::Recent),
            ("SEEN", K::Seen),
            ("UNANSWERED", K::Unanswered),
            ("UNDELETED", K::Undeleted),
            ("UNDRAFT", K::Undraft),
            ("UNFLAGGED", K::Unflagged),
            ("UNSEEN", K::Unseen),
            ("BCC x", K::Bcc(b("x"))),
            ("BODY \"two words\"", K::Body(b("two words"))),
            ("CC {3}\r\na b", K::Cc(b("a b"))),
            ("FROM Smith", K::From(b("Smith"))),
            ("SUBJECT \"\"", K::Subject(b(""))),
            ("TEXT hello", K::Text(b("hello"))),
            ("TO joe@example.org", K::To(b("joe@example.org"))),
            ("BEFORE 1-Feb-2024", K::Before(date(2024, 2, 1))),
            ("ON \"01-Feb-2024\"", K::On(date(2024, 2, 1))),
            ("SINCE 29-feb-2024", K::Since(date(2024, 2, 29))),
            ("SENTBEFORE 31-Dec-1999", K::SentBefore(date(1999, 12, 31))),
            ("SENTON 1-Jan-2000", K::SentOn(date(2000, 1, 1))),
            ("SENTSINCE 1-Jan-0001", K::SentSince(date(1, 1, 1))),
            (
                "HEADER Message-ID <abc@x>",
                K::Header("Message-ID".into(), b("<abc@x>")),
            ),
            ("HEADER X-Empty \"\"", K::Header("X-Empty".into(), b(""))),
            ("KEYWORD $Forwarded", K::Keyword("$Forwarded".into())),
            ("UNKEYWORD NonJunk", K::Unkeyword("NonJunk".into())),
            ("LARGER 1024", K::Larger(1024)),
            ("SMALLER 9223372036854775807", K::Smaller(i64::MAX as u64)),
            ("UID 1:*", K::Uid(set("1:*"))),
            ("UID $", K::Uid(set("$"))),
            ("1,3:5", K::SequenceSet(set("1,3:5"))),
            ("*", K::SequenceSet(set("*"))),
            ("$", K::SequenceSet(set("$"))),
            ("MODSEQ 0", K::ModSeq(0)),
            ("OLDER 3600", K::Older(3600)),
            ("YOUNGER 60", K::Younger(60)),
            ("NOT SEEN", K::Not(Box::new(K::Seen))),
            (
                "OR SEEN FLAGGED",
                K::Or(Box::new(K::Seen), Box::new(K::Flagged)),
            ),
            ("(SEEN)", K::And(vec![K::Seen])),
            ("(SEEN FLAGGED)", K::And(vec![K::Seen, K::Flagged])),
            ("seen", K::Seen),
        ] {
            assert_eq!(search(s), k, "{s}");
        }
        // Top-level keys AND together; nesting keeps its structure.
        assert_eq!(
            search("OR (FROM a TO b) NOT (SEEN OR DRAFT 1:2) UID 5"),
            K::And(vec![
                K::Or(
                    Box::new(K::And(vec![K::From(b("a")), K::To(b("b"))])),
                    Box::new(K::Not(Box::new(K::And(vec![
                        K::Seen,
                        K::Or(Box::new(K::Draft), Box::new(K::SequenceSet(set("1:2")))),
                    ])))),
                ),
                K::Uid(set("5")),
            ])
        );
        assert_eq!(msg("a SEARCH"), "missing arguments after SEARCH");
        assert_eq!(msg("a SEARCH SEEN "), "missing search key");
        assert_eq!(msg("a SEARCH ()"), "expected a search key at \")\"");
        assert_eq!(
            msg("a SEARCH (SEEN"),
            "expected \")\" to close the search key list before the end of the line"
        );
        assert_eq!(
            msg("a SEARCH OR SEEN"),
            "missing arguments after the first OR key"
        );
        assert_eq!(
            msg("a SEARCH KEYWORD \\Seen"),
            "expected a keyword at \"\\Seen\""
        );
        assert_eq!(
            msg("a SEARCH LARGER 9223372036854775808"),
            "the size 9223372036854775808 is too large"
        );
        assert_eq!(
            msg("a SEARCH OLDER 0"),
            "bad age in seconds \"0\" (1 to 4294967295)"
        );
        assert_eq!(
            msg("a SEARCH BEFORE 1-Feb-24"),
            "bad date \"1-Feb-24\" (expected e.g. 1-Feb-2024)"
        );
        assert_eq!(msg("a SEARCH UID"), "missing arguments after UID");
    }

    #[test]
    fn search_commands() {
        use SearchKey as K;
        use SearchReturn as R;
        let s = |uid, charset: Option<&str>, criteria, returns: Option<Vec<SearchReturn>>| {
            CommandBody::Search {
                uid,
                charset: charset.map(str::to_owned),
                criteria,
                returns,
            }
        };
        // RFC 9051 §6.4.4 examples
        assert_eq!(
            p("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
            s(
                false,
                None,
                K::And(vec![
                    K::Flagged,
                    K::Since(date(1994, 2, 1)),
                    K::Not(Box::new(K::From(b("Smith"))))
                ]),
                Some(vec![R::Min, R::Count])
            )
        );
        assert_eq!(
            p("A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\""),
            s(
                false,
                None,
                K::And(vec![
                    K::Flagged,
                    K::Since(date(1994, 2, 1)),
                    K::Not(Box::new(K::From(b("Smith"))))
                ]),
                Some(vec![])
            )
        );
        assert_eq!(
            p("A284 SEARCH TEXT \"string not in mailbox\""),
            s(false, None, K::Text(b("string not in mailbox")), None)
        );
        assert_eq!(
            pb(
                "A285 SEARCH CHARSET UTF-8 TEXT {10}\r\n\u{43a}\u{43e}\u{448}\u{43a}\u{430}"
                    .as_bytes(),
                false
            ),
            s(
                false,
                Some("UTF-8"),
                K::Text("\u{43a}\u{43e}\u{448}\u{43a}\u{430}".as_bytes().to_vec()),
                None
            )
        );
        assert_eq!(
            p("A286 SEARCH CHARSET WHOA TEXT {11}\r\nXXXXXXXXXXX"),
            s(false, Some("WHOA"), K::Text(b("XXXXXXXXXXX")), None)
        );
        assert_eq!(
            p("A301 SEARCH RETURN (SAVE) SINCE 1-Jan-2004 NOT FROM \"Smith\" UID 1:*"),
            s(
                false,
                None,
                K::And(vec![
                    K::Since(date(2004, 1, 1)),
                    K::Not(Box::new(K::From(b("Smith")))),
                    K::Uid(set("1:*"))
                ]),
                Some(vec![R::Save])
            )
        );
        assert_eq!(
            p("A300 SEARCH RETURN (SAVE MIN MAX ALL COUNT) OR OR FROM smith UNSEEN UID 1:*"),
            s(
                false,
                None,
                K::Or(
                    Box::new(K::Or(Box::new(K::From(b("smith"))), Box::new(K::Unseen))),
                    Box::new(K::Uid(set("1:*")))
                ),
                Some(vec![R::Save, R::Min, R::Max, R::All, R::Count])
            )
        );
        assert_eq!(
            p("a UID SEARCH 1:100 UNSEEN"),
            s(
                true,
                None,
                K::And(vec![K::SequenceSet(set("1:100")), K::Unseen]),
                None
            )
        );
        assert_eq!(
            p("a uid search $"),
            s(true, None, K::SequenceSet(set("$")), None)
        );
        assert_eq!(
            p("a SEARCH charset \"us-ascii\" ALL"),
            s(false, Some("us-ascii"), K::All, None)
        );
        // RFC 7162 §3.1.5 examples
        assert_eq!(
            p("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338"),
            s(false, None, K::ModSeq(620162338), None)
        );
        assert_eq!(
            p("t SEARCH OR NOT MODSEQ 720162338 LARGER 50000"),
            s(
                false,
                None,
                K::Or(
                    Box::new(K::Not(Box::new(K::ModSeq(720162338)))),
                    Box::new(K::Larger(50000))
                ),
                None
            )
        );
        assert_eq!(
            p("a SEARCH MODSEQ \"/flags/$Label\" priv 5"),
            s(false, None, K::ModSeq(5), None)
        );
        assert_eq!(
            msg("a SEARCH MODSEQ \"/vendor/x\" all 5"),
            "bad MODSEQ entry name \"/vendor/x\" (expected \"/flags/...\")"
        );
        assert_eq!(
            msg("a SEARCH MODSEQ \"/flags/\\\\Seen\" both 5"),
            "bad MODSEQ entry type (expected priv, shared or all)"
        );
        assert_eq!(
            msg("a SEARCH RETURN (FOO) ALL"),
            "unknown SEARCH RETURN option \"FOO\""
        );
        assert_eq!(
            msg("a SEARCH RETURN (MIN)"),
            "missing arguments after the RETURN options"
        );
        assert_eq!(
            msg("a SEARCH CHARSET UTF-8"),
            "missing arguments after the charset"
        );
    }

    #[test]
    fn search_depth_is_bounded() {
        let nested = |n: usize| format!("a SEARCH {}ALL{}", "(".repeat(n), ")".repeat(n));
        assert!(matches!(
            p(&nested(MAX_SEARCH_DEPTH - 1)),
            CommandBody::Search { .. }
        ));
        assert_eq!(
            msg(&nested(MAX_SEARCH_DEPTH)),
            format!("search keys nested more than {MAX_SEARCH_DEPTH} deep")
        );
        assert_eq!(
            msg(&nested(100_000)),
            format!("search keys nested more than {MAX_SEARCH_DEPTH} deep")
        );
        let nots = |n: usize| format!("a SEARCH {}ALL", "NOT ".repeat(n));
        assert!(matches!(
            p(&nots(MAX_SEARCH_DEPTH - 1)),
            CommandBody::Search { .. }
        ));
        assert!(msg(&nots(100_000)).starts_with("search keys nested"));
        let ors = format!("a SEARCH {}ALL{}", "OR ALL ".repeat(100_000), "");
        assert!(msg(&ors).starts_with("search keys nested"));
        // Width is not depth: many keys side by side are fine.
        let wide = format!("a SEARCH {}", vec!["SEEN"; 10_000].join(" "));
        assert!(
            matches!(p(&wide), CommandBody::Search { criteria: SearchKey::And(k), .. } if k.len() == 10_000)
        );
    }

    // ---- FETCH ----

    #[test]
    fn fetch_items_all_forms() {
        use FetchAttr as A;
        use SectionText as T;
        for (s, a) in [
            ("ENVELOPE", A::Envelope),
            ("FLAGS", A::Flags),
            ("INTERNALDATE", A::InternalDate),
            ("RFC822.SIZE", A::Rfc822Size),
            ("UID", A::Uid),
            ("BODYSTRUCTURE", A::BodyStructure),
            ("BODY", A::Body),
            ("RFC822", A::Rfc822),
            ("RFC822.HEADER", A::Rfc822Header),
            ("RFC822.TEXT", A::Rfc822Text),
            ("MODSEQ", A::ModSeq),
            ("body[]", body_section(false, &[], None, None)),
            (
                "BODY[]<0.100>",
                body_section(false, &[], None, Some((0, 100))),
            ),
            (
                "BODY.PEEK[HEADER]",
                body_section(true, &[], Some(T::Header), None),
            ),
            ("BODY[TEXT]", body_section(false, &[], Some(T::Text), None)),
            ("BODY[1]", body_section(false, &[1], None, None)),
            ("BODY[1.2.3]", body_section(false, &[1, 2, 3], None, None)),
            (
                "BODY[1.2.MIME]",
                body_section(false, &[1, 2], Some(T::Mime), None),
            ),
            (
                "BODY[1.2.TEXT]",
                body_section(false, &[1, 2], Some(T::Text), None),
            ),
            (
                "BODY[1.HEADER]",
                body_section(false, &[1], Some(T::Header), None),
            ),
            (
                "BODY[1.2.HEADER.FIELDS (From To)]<0.100>",
                body_section(
                    false,
                    &[1, 2],
                    Some(T::HeaderFields(vec!["From".into(), "To".into()])),
                    Some((0, 100)),
                ),
            ),
            (
                "BODY.PEEK[HEADER.FIELDS.NOT (\"Received\" {4}\r\nX-Ab)]",
                body_section(
                    true,
                    &[],
                    Some(T::HeaderFieldsNot(vec!["Received".into(), "X-Ab".into()])),
                    None,
                ),
            ),
            (
                "BINARY[1.2]<0.10>",
                A::Binary {
                    peek: false,
                    part: vec![1, 2],
                    partial: Some((0, 10)),
                },
            ),
            (
                "BINARY.PEEK[]",
                A::Binary {
                    peek: true,
                    part: vec![],
                    partial: None,
                },
            ),
            ("BINARY.SIZE[1]", A::BinarySize { part: vec![1] }),
            ("binary.size[]", A::BinarySize { part: vec![] }),
        ] {
            assert_eq!(fetch_items(s), vec![a.clone()], "{s}");
            assert_eq!(fetch_items(&format!("({s})")), vec![a], "({s})");
        }
        assert_eq!(fetch_items("ALL"), FetchItems::All.attrs());
        assert_eq!(
            p("a FETCH 1 fast"),
            CommandBody::Fetch {
                uid: false,
                set: one(1),
                items: FetchItems::Fast,
                changed_since: None,
                vanished: false
            }
        );
        assert_eq!(
            p("a FETCH 1 FULL"),
            CommandBody::Fetch {
                uid: false,
                set: one(1),
                items: FetchItems::Full,
                changed_since: None,
                vanished: false
            }
        );
        for (bad, m) in [
            (
                "a FETCH 1 BODY.PEEK",
                "expected \"[\" to start the section before the end of the line",
            ),
            (
                "a FETCH 1 BODY[MIME]",
                "MIME needs a part number, as in BODY[1.MIME]",
            ),
            (
                "a FETCH 1 BODY[0]",
                "bad section part number \"0\" (1 to 4294967295)",
            ),
            ("a FETCH 1 BODY[1.]", "bad section \"\""),
            ("a FETCH 1 BODY[FOO]", "bad section \"FOO\""),
            (
                "a FETCH 1 BODY[HEADER.FIELDS ()]",
                "expected a header field name at \")\"",
            ),
            (
                "a FETCH 1 BODY[]<0.0>",
                "bad partial length \"0\" (1 to 4294967295)",
            ),
            (
                "a FETCH 1 BODY[]<5>",
                "expected \".\" in the partial range at \">\"",
            ),
            (
                "a FETCH 1 BINARY[TEXT]",
                "expected section part number at \"TEXT]\"",
            ),
            (
                "a FETCH 1 BINARY.SIZE[1]<0.1>",
                "unexpected characters after the command",
            ),
            ("a FETCH 1 ()", "expected fetch item at \")\""),
            ("a FETCH 1 (ALL)", "unknown fetch item \"ALL\""),
            (
                "a FETCH 1 (FLAGS",
                "expected \")\" to end the fetch items before the end of the line",
            ),
        ] {
            assert_eq!(msg(bad), m, "{bad}");
        }
    }

    #[test]
    fn fetch_commands() {
        use FetchAttr as A;
        let f = |uid, s: &str, items, changed_since, vanished| CommandBody::Fetch {
            uid,
            set: set(s),
            items,
            changed_since,
            vanished,
        };
        // RFC 9051 §6.4.5
        assert_eq!(
            p("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
            f(
                false,
                "2:4",
                FetchItems::List(vec![
                    A::Flags,
                    body_section(
                        false,
                        &[],
                        Some(SectionText::HeaderFields(vec![
                            "DATE".into(),
                            "FROM".into()
                        ])),
                        None
                    )
                ]),
                None,
                false
            )
        );
        // RFC 9051 §6.4.9
        assert_eq!(
            p("A999 UID FETCH 4827313:4828442 FLAGS"),
            f(
                true,
                "4827313:4828442",
                FetchItems::List(vec![A::Flags]),
                None,
                false
            )
        );
        // RFC 5182 §2.1: "$" as the set.
        assert_eq!(
            p("A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)"),
            f(
                false,
                "$",
                FetchItems::List(vec![A::Uid, A::InternalDate, A::Flags, A::Rfc822Size]),
                None,
                false
            )
        );
        // RFC 7162 §3.1.4.1, §3.2.6 examples
        assert_eq!(
            p("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"),
            f(
                true,
                "1:*",
                FetchItems::List(vec![A::Flags]),
                Some(12345),
                false
            )
        );
        assert_eq!(
            p("s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)"),
            f(
                true,
                "300:500",
                FetchItems::List(vec![A::Flags]),
                Some(12345),
                true
            )
        );
        assert_eq!(
            p("a FETCH 1:* (MODSEQ) (changedsince 7)"),
            f(
                false,
                "1:*",
                FetchItems::List(vec![A::ModSeq]),
                Some(7),
                false
            )
        );
        assert_eq!(
            p("a FETCH 1 ALL (CHANGEDSINCE 7)"),
            f(false, "1", FetchItems::All, Some(7), false)
        );
        assert_eq!(
            msg("a FETCH 1:* FLAGS (CHANGEDSINCE 12345 VANISHED)"),
            "VANISHED is only allowed with UID FETCH"
        );
        assert_eq!(
            msg("a UID FETCH 1:* FLAGS (VANISHED)"),
            "VANISHED needs CHANGEDSINCE"
        );
        assert_eq!(
            msg("a UID FETCH 1:* FLAGS (CHANGEDSINCE 0)"),
            "the CHANGEDSINCE mod-sequence must not be 0"
        );
        assert_eq!(
            msg("a UID FETCH 1:* FLAGS (FOO)"),
            "unknown FETCH modifier \"FOO\""
        );
    }

    // ---- STORE / COPY / MOVE / EXPUNGE ----

    #[test]
    fn store() {
        let st = |uid, s: &str, unchanged_since, op, silent, flags| CommandBody::Store {
            uid,
            set: set(s),
            unchanged_since,
            op,
            silent,
            flags,
        };
        // RFC 9051 §6.4.6
        assert_eq!(
            p("A003 STORE 2:4 +FLAGS (\\Deleted)"),
            st(false, "2:4", None, StoreOp::Add, false, vec![Flag::Deleted])
        );
        assert_eq!(
            p(
                "a STORE 1 FLAGS.SILENT (\\Seen $Label \\Answered \\Flagged \\Draft \\Recent \\X-Ext)"
            ),
            st(
                false,
                "1",
                None,
                StoreOp::Replace,
                true,
                vec![
                    Flag::Seen,
                    Flag::Keyword("$Label".into()),
                    Flag::Answered,
                    Flag::Flagged,
                    Flag::Draft,
                    Flag::Recent,
                    Flag::Extension("\\X-Ext".into())
                ]
            )
        );
        assert_eq!(
            p("a STORE 1 -flags.silent \\seen"),
            st(false, "1", None, StoreOp::Remove, true, vec![Flag::Seen])
        );
        assert_eq!(
            p("a STORE 1 +FLAGS \\Seen \\Deleted"),
            st(
                false,
                "1",
                None,
                StoreOp::Add,
                false,
                vec![Flag::Seen, Flag::Deleted]
            )
        );
        assert_eq!(
            p("a STORE 1 FLAGS ()"),
            st(false, "1", None, StoreOp::Replace, false, vec![])
        );
        // RFC 7162 §3.1.3 examples
        assert_eq!(
            p("a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)"),
            st(
                true,
                "6,4,8",
                Some(12121230045),
                StoreOp::Add,
                true,
                vec![Flag::Deleted]
            )
        );
        assert_eq!(
            p("d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)"),
            st(
                false,
                "7,5,9",
                Some(320162338),
                StoreOp::Add,
                true,
                vec![Flag::Deleted]
            )
        );
        assert_eq!(
            p("a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()"),
            st(false, "1", Some(0), StoreOp::Replace, false, vec![])
        );
        assert_eq!(msg("a STORE 1 +FLAGS"), "missing arguments after FLAGS");
        assert_eq!(
            msg("a STORE 1 FLAG (\\Seen)"),
            "expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT) at \"FLAG\""
        );
        assert_eq!(msg("a STORE 1 +FLAGS (\\*)"), "bad flag \"\\*\"");
        assert_eq!(
            msg("a STORE 1 +FLAGS (\\Seen"),
            "missing arguments after a flag"
        );
        assert_eq!(
            msg("a STORE 1 (FOO 1) FLAGS ()"),
            "unknown STORE modifier \"FOO\""
        );
    }

    #[test]
    fn copy_move_expunge() {
        // RFC 9051 §6.4.7, §6.4.8, §6.4.9
        assert_eq!(
            p("A003 COPY 2:4 MEETING"),
            CommandBody::Copy {
                uid: false,
                set: set("2:4"),
                mailbox: mb("MEETING")
            }
        );
        assert_eq!(
            p("a UID MOVE 42:69 foo"),
            CommandBody::Move {
                uid: true,
                set: set("42:69"),
                mailbox: mb("foo")
            }
        );
        assert_eq!(
            p("a MOVE $ Trash"),
            CommandBody::Move {
                uid: false,
                set: set("$"),
                mailbox: mb("Trash")
            }
        );
        assert_eq!(
            p("a UID COPY 1 inbox"),
            CommandBody::Copy {
                uid: true,
                set: one(1),
                mailbox: mb("INBOX")
            }
        );
        assert_eq!(p("A202 EXPUNGE"), CommandBody::Expunge { uids: None });
        assert_eq!(
            p("A003 UID EXPUNGE 3000:3002"),
            CommandBody::Expunge {
                uids: Some(set("3000:3002"))
            }
        );
        assert_eq!(msg("a UID EXPUNGE"), "missing arguments after UID EXPUNGE");
        assert_eq!(
            msg("a EXPUNGE 1"),
            "unexpected characters after the command"
        );
    }

    // ---- SORT / THREAD ----

    #[test]
    fn sort_thread() {
        use SearchKey as K;
        let c = |reverse, key| SortCriterion { reverse, key };
        // RFC 5256 §4
        assert_eq!(
            p("A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994"),
            CommandBody::Sort {
                uid: false,
                criteria: vec![c(false, SortKey::Subject)],
                charset: "UTF-8".into(),
                search: K::Since(date(1994, 2, 1)),
                returns: None
            }
        );
        assert_eq!(
            p(
                "A285 SORT (REVERSE ARRIVAL CC DATE FROM SIZE TO DISPLAYFROM reverse DISPLAYTO) US-ASCII ALL UNSEEN"
            ),
            CommandBody::Sort {
                uid: false,
                criteria: vec![
                    c(true, SortKey::Arrival),
                    c(false, SortKey::Cc),
                    c(false, SortKey::Date),
                    c(false, SortKey::From),
                    c(false, SortKey::Size),
                    c(false, SortKey::To),
                    c(false, SortKey::DisplayFrom),
                    c(true, SortKey::DisplayTo),
                ],
                charset: "US-ASCII".into(),
                search: K::And(vec![K::All, K::Unseen]),
                returns: None
            }
        );
        // RFC 5267 §3.2 ESORT
        assert_eq!(
            p("C01 UID SORT RETURN (MIN COUNT) (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk"),
            CommandBody::Sort {
                uid: true,
                criteria: vec![c(true, SortKey::Date)],
                charset: "UTF-8".into(),
                search: K::And(vec![K::Undeleted, K::Unkeyword("$Junk".into())]),
                returns: Some(vec![SearchReturn::Min, SearchReturn::Count])
            }
        );
        assert_eq!(
            p("A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000"),
            CommandBody::Thread {
                uid: false,
                algorithm: ThreadAlgorithm::OrderedSubject,
                charset: "UTF-8".into(),
                search: K::Since(date(2000, 3, 5))
            }
        );
        assert_eq!(
            p("A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\""),
            CommandBody::Thread {
                uid: true,
                algorithm: ThreadAlgorithm::References,
                charset: "US-ASCII".into(),
                search: K::Text(b("gewp"))
            }
        );
        assert_eq!(msg("a SORT () UTF-8 ALL"), "expected sort key at \")\"");
        assert_eq!(
            msg("a SORT (REVERSE) UTF-8 ALL"),
            "missing space after REVERSE"
        );
        assert_eq!(
            msg("a SORT (SUBJECT) ALL"),
            "missing arguments after the charset"
        );
        assert_eq!(
            msg("a THREAD X UTF-8 ALL"),
            "unknown THREAD algorithm \"X\""
        );
    }

    // ---- the test-only encoder and round trips ----

    /// Writes commands the way a client would; the inverse of the parser.
    mod wire {
        use super::super::super::encode;
        use super::*;

        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];

        pub fn command(c: &Command, utf8: bool) -> Vec<u8> {
            let mut w = W {
                out: Vec::new(),
                utf8,
            };
            w.raw(&c.tag);
            w.raw(" ");
            w.body(&c.body);
            w.raw("\r\n");
            w.out
        }

        /// Proleptic Gregorian date of a day number (H. Hinnant's civil_from_days).
        fn civil(days: i64) -> (i64, usize, i64) {
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            (yoe + era * 400 + i64::from(m <= 2), m as usize, d)
        }

        pub fn base64(data: &[u8]) -> String {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for chunk in data.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
                for i in 0..4 {
                    s.push(if i <= chunk.len() {
                        char::from(A[(n >> (18 - 6 * i) & 63) as usize])
                    } else {
                        '='
                    });
                }
            }
            s
        }

        struct W {
            out: Vec<u8>,
            utf8: bool,
        }

        impl W {
            fn raw(&mut self, s: &str) {
                self.out.extend_from_slice(s.as_bytes());
            }
            fn astring(&mut self, s: &[u8]) {
                encode::astring(&mut self.out, s, self.utf8);
            }
            fn string(&mut self, s: &[u8]) {
                encode::string(&mut self.out, s, self.utf8);
            }
            fn mailbox(&mut self, m: &MailboxArg) {
                self.astring(&m.0);
            }
            fn pattern(&mut self, m: &MailboxArg) {
                if !m.0.is_empty() && m.0.iter().all(|&c| is_list_char(c)) {
                    self.out.extend_from_slice(&m.0);
                } else {
                    self.string(&m.0);
                }
            }
            fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
                self.raw("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.raw(" ");
                    }
                    each(self, item);
                }
                self.raw(")");
            }
            fn seq_num(&mut self, n: SeqNum) {
                match n {
                    SeqNum::Star => self.raw("*"),
                    SeqNum::Value(v) => self.raw(&v.to_string()),
                }
            }
            fn set(&mut self, s: &SequenceSet) {
                if s.saved {
                    return self.raw("$");
                }
                for (i, r) in s.ranges.iter().enumerate() {
                    if i > 0 {
                        self.raw(",");
                    }
                    self.seq_num(r.start);
                    if r.end != r.start {
                        self.raw(":");
                        self.seq_num(r.end);
                    }
                }
            }
            fn flag(&mut self, f: &Flag) {
                self.raw(match f {
                    Flag::Seen => "\\Seen",
                    Flag::Answered => "\\Answered",
                    Flag::Flagged => "\\Flagged",
                    Flag::Deleted => "\\Deleted",
                    Flag::Draft => "\\Draft",
                    Flag::Recent => "\\Recent",
                    Flag::Keyword(k) | Flag::Extension(k) => k,
                });
            }
            fn date(&mut self, d: &Date) {
                let text = format!(
                    "{}-{}-{:04}",
                    d.day,
                    MONTHS[usize::from(d.month) - 1],
                    d.year
                );
                // Both forms of RFC 9051 §9 date, chosen by the value so the test is deterministic.
                if d.day.is_multiple_of(2) {
                    self.raw(&format!("\"{text}\""))
                } else {
                    self.raw(&text)
                }
            }
            fn date_time(&mut self, secs: i64) {
                // A zone derived from the value, so the zone arithmetic is exercised too.
                let zone = (secs.rem_euclid(27) - 13) * 3600 + secs.rem_euclid(2) * 1800;
                let local = secs + zone;
                let (y, m, d) = civil(local.div_euclid(86_400));
                let t = local.rem_euclid(86_400);
                let (sign, z) = if zone < 0 { ('-', -zone) } else { ('+', zone) };
                self.raw(&format!(
                    "\"{d:2}-{}-{y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}\"",
                    MONTHS[m - 1],
                    t / 3600,
                    t / 60 % 60,
                    t % 60,
                    z / 3600,
                    z / 60 % 60
                ));
            }
            fn arg(&mut self, name: &str, s: &[u8]) {
                self.raw(name);
                self.raw(" ");
                self.astring(s);
            }
            fn date_arg(&mut self, name: &str, d: &Date) {
                self.raw(name);
                self.raw(" ");
                self.date(d);
            }
            fn key(&mut self, k: &SearchKey) {
                use SearchKey as K;
                match k {
                    K::All => self.raw("ALL"),
                    K::Answered => self.raw("ANSWERED"),
                    K::Deleted => self.raw("DELETED"),
                    K::Draft => self.raw("DRAFT"),
                    K::Flagged => self.raw("FLAGGED"),
                    K::New => self.raw("NEW"),
                    K::Old => self.raw("OLD"),
                    K::Recent => self.raw("RECENT"),
                    K::Seen => self.raw("SEEN"),
                    K::Unanswered => self.raw("UNANSWERED"),
                    K::Undeleted => self.raw("UNDELETED"),
                    K::Undraft => self.raw("UNDRAFT"),
                    K::Unflagged => self.raw("UNFLAGGED"),
                    K::Unseen => self.raw("UNSEEN"),
                    K::Bcc(s) => self.arg("BCC", s),
                    K::Body(s) => self.arg("BODY", s),
                    K::Cc(s) => self.arg("CC", s),
                    K::From(s) => self.arg("FROM", s),
                    K::Subject(s) => self.arg("SUBJECT", s),
                    K::Text(s) => self.arg("TEXT", s),
                    K::To(s) => self.arg("TO", s),
                    K::Before(d) => self.date_arg("BEFORE", d),
                    K::On(d) => self.date_arg("ON", d),
                    K::Since(d) => self.date_arg("SINCE", d),
                    K::SentBefore(d) => self.date_arg("SENTBEFORE", d),
                    K::SentOn(d) => self.date_arg("SENTON", d),
                    K::SentSince(d) => self.date_arg("SENTSINCE", d),
                    K::Header(n, v) => {
                        self.arg("HEADER", n.as_bytes());
                        self.raw(" ");
                        self.astring(v);
                    }
                    K::Keyword(s) => self.raw(&format!("KEYWORD {s}")),
                    K::Unkeyword(s) => self.raw(&format!("UNKEYWORD {s}")),
                    K::Larger(n) => self.raw(&format!("LARGER {n}")),
                    K::Smaller(n) => self.raw(&format!("SMALLER {n}")),
                    K::Older(n) => self.raw(&format!("OLDER {n}")),
                    K::Younger(n) => self.raw(&format!("YOUNGER {n}")),
                    // With and without the (ignored) entry, chosen by the value.
                    K::ModSeq(n) if n % 2 == 1 => {
                        self.raw(&format!("MODSEQ \"/flags/\\\\Seen\" all {n}"))
                    }
                    K::ModSeq(n) => self.raw(&format!("MODSEQ {n}")),
                    K::Uid(s) => {
                        self.raw("UID ");
                        self.set(s);
                    }
                    K::Not(k) => {
                        self.raw("NOT ");
                        self.key(k);
                    }
                    K::Or(a, b) => {
                        self.raw("OR ");
                        self.key(a);
                        self.raw(" ");
                        self.key(b);
                    }
                    K::SequenceSet(s) => self.set(s),
                    K::And(keys) => self.list(keys, |w, k| w.key(k)),
                }
            }
            /// The top level of a search program: several keys without parentheses.
            fn keys(&mut self, k: &SearchKey) {
                match k {
                    SearchKey::And(keys) if keys.len() > 1 => {
                        for (i, k) in keys.iter().enumerate() {
                            if i > 0 {
                                self.raw(" ");
                            }
                            self.key(k);
                        }
                    }
                    _ => self.key(k),
                }
            }
            fn returns(&mut self, r: &Option<Vec<SearchReturn>>) {
                if let Some(r) = r {
                    self.raw(" RETURN ");
                    self.list(r, |w, r| {
                        w.raw(match r {
                            SearchReturn::Min => "MIN",
                            SearchReturn::Max => "MAX",
                            SearchReturn::All => "ALL",
                            SearchReturn::Count => "COUNT",
                            SearchReturn::Save => "SAVE",
                        })
                    });
                }
            }
            fn status_item(&mut self, i: &StatusItem) {
                self.raw(match i {
                    StatusItem::Messages => "MESSAGES",
                    StatusItem::Recent => "RECENT",
                    StatusItem::UidNext => "UIDNEXT",
                    StatusItem::UidValidity => "UIDVALIDITY",
                    StatusItem::Unseen => "UNSEEN",
                    StatusItem::Deleted => "DELETED",
                    StatusItem::Size => "SIZE",
                    StatusItem::HighestModSeq => "HIGHESTMODSEQ",
                    StatusItem::AppendLimit => "APPENDLIMIT",
                });
            }
            fn parts(&mut self, part: &[u32]) {
                let p: Vec<String> = part.iter().map(u32::to_string).collect();
                self.raw(&p.join("."));
            }
            fn partial(&mut self, p: &Option<(u32, u32)>) {
                if let Some((o, l)) = p {
                    self.raw(&format!("<{o}.{l}>"));
                }
            }
            fn fetch_att(&mut self, a: &FetchAttr) {
                match a {
                    FetchAttr::Envelope => self.raw("ENVELOPE"),
                    FetchAttr::Flags => self.raw("FLAGS"),
                    FetchAttr::InternalDate => self.raw("INTERNALDATE"),
                    FetchAttr::Rfc822Size => self.raw("RFC822.SIZE"),
                    FetchAttr::Uid => self.raw("UID"),
                    FetchAttr::BodyStructure => self.raw("BODYSTRUCTURE"),
                    FetchAttr::Body => self.raw("BODY"),
                    FetchAttr::Rfc822 => self.raw("RFC822"),
                    FetchAttr::Rfc822Header => self.raw("RFC822.HEADER"),
                    FetchAttr::Rfc822Text => self.raw("RFC822.TEXT"),
                    FetchAttr::ModSeq => self.raw("MODSEQ"),
                    FetchAttr::BodySection {
                        peek,
                        section,
                        partial,
                    } => {
                        self.raw(if *peek { "BODY.PEEK[" } else { "BODY[" });
                        self.parts(&section.part);
                        if let Some(text) = &section.text {
                            if !section.part.is_empty() {
                                self.raw(".");
                            }
                            let names = |w: &mut Self, n: &[String]| {
                                w.raw(" ");
                                w.list(n, |w, n| w.astring(n.as_bytes()));
                            };
                            match text {
                                SectionText::Header => self.raw("HEADER"),
                                SectionText::Text => self.raw("TEXT"),
                                SectionText::Mime => self.raw("MIME"),
                                SectionText::HeaderFields(n) => {
                                    self.raw("HEADER.FIELDS");
                                    names(self, n);
                                }
                                SectionText::HeaderFieldsNot(n) => {
                                    self.raw("HEADER.FIELDS.NOT");
                                    names(self, n);
                                }
                            }
                        }
                        self.raw("]");
                        self.partial(partial);
                    }
                    FetchAttr::Binary {
                        peek,
                        part,
                        partial,
                    } => {
                        self.raw(if *peek { "BINARY.PEEK[" } else { "BINARY[" });
                        self.parts(part);
                        self.raw("]");
                        self.partial(partial);
                    }
                    FetchAttr::BinarySize { part } => {
                        self.raw("BINARY.SIZE[");
                        self.parts(part);
                        self.raw("]");
                    }
                }
            }
            fn uid(&mut self, uid: bool) {
                if uid {
                    self.raw("UID ");
                }
            }
            fn body(&mut self, b: &CommandBody) {
                use CommandBody as C;
                match b {
                    C::Capability => self.raw("CAPABILITY"),
                    C::Noop => self.raw("NOOP"),
                    C::Logout => self.raw("LOGOUT"),
                    C::StartTls => self.raw("STARTTLS"),
                    C::Namespace => self.raw("NAMESPACE"),
                    C::Idle => self.raw("IDLE"),
                    C::Check => self.raw("CHECK"),
                    C::Close => self.raw("CLOSE"),
                    C::Unselect => self.raw("UNSELECT"),
                    C::Id(None) => self.raw("ID NIL"),
                    C::Id(Some(fields)) => {
                        self.raw("ID ");
                        self.list(fields, |w, (n, v)| {
                            w.string(n.as_bytes());
                            w.raw(" ");
                            encode::nstring(&mut w.out, v.as_ref().map(String::as_bytes), w.utf8);
                        });
                    }
                    C::Authenticate { mechanism, initial } => {
                        self.raw("AUTHENTICATE ");
                        self.raw(mechanism);
                        match initial {
                            Some(i) if i.is_empty() => self.raw(" ="),
                            Some(i) => self.raw(&format!(" {}", base64(i))),
                            None => {}
                        }
                    }
                    C::Login { user, password } => {
                        self.raw("LOGIN ");
                        self.astring(user);
                        self.raw(" ");
                        self.astring(password);
                    }
                    C::Enable(caps) => {
                        self.raw("ENABLE");
                        for c in caps {
                            self.raw(" ");
                            self.raw(c);
                        }
                    }
                    C::Select {
                        mailbox,
                        examine,
                        condstore,
                        qresync,
                    } => {
                        self.raw(if *examine { "EXAMINE " } else { "SELECT " });
                        self.mailbox(mailbox);
                        let mut params: Vec<&dyn Fn(&mut Self)> = Vec::new();
                        let cs = |w: &mut Self| w.raw("CONDSTORE");
                        if *condstore {
                            params.push(&cs);
                        }
                        let qr = |w: &mut Self| {
                            if let Some(q) = qresync {
                                w.raw(&format!("QRESYNC ({} {}", q.uidvalidity, q.modseq));
                                if let Some(k) = &q.known_uids {
                                    w.raw(" ");
                                    w.set(k);
                                }
                                if let Some((s, u)) = &q.seq_match {
                                    w.raw(" (");
                                    w.set(s);
                                    w.raw(" ");
                                    w.set(u);
                                    w.raw(")");
                                }
                                w.raw(")");
                            }
                        };
                        if qresync.is_some() {
                            params.push(&qr);
                        }
                        if !params.is_empty() {
                            self.raw(" ");
                            self.list(&params, |w, f| f(w));
                        }
                    }
                    C::Create {
                        mailbox,
                        special_use,
                    } => {
                        self.raw("CREATE ");
                        self.mailbox(mailbox);
                        if !special_use.is_empty() {
                            self.raw(" (USE ");
                            self.list(special_use, |w, s| w.raw(s));
                            self.raw(")");
                        }
                    }
                    C::Delete(m) => {
                        self.raw("DELETE ");
                        self.mailbox(m);
                    }
                    C::Rename { from, to } => {
                        self.raw("RENAME ");
                        self.mailbox(from);
                        self.raw(" ");
                        self.mailbox(to);
                    }
                    C::Subscribe(m) => {
                        self.raw("SUBSCRIBE ");
                        self.mailbox(m);
                    }
                    C::Unsubscribe(m) => {
                        self.raw("UNSUBSCRIBE ");
                        self.mailbox(m);
                    }
                    C::List {
                        select,
                        reference,
                        patterns,
                        returns,
                    } => {
                        self.raw("LIST ");
                        if !select.is_empty() {
                            self.list(select, |w, s| {
                                w.raw(match s {
                                    ListSelect::Subscribed => "SUBSCRIBED",
                                    ListSelect::Remote => "REMOTE",
                                    ListSelect::RecursiveMatch => "RECURSIVEMATCH",
                                    ListSelect::SpecialUse => "SPECIAL-USE",
                                })
                            });
                            self.raw(" ");
                        }
                        self.mailbox(reference);
                        self.raw(" ");
                        if let [p] = patterns.as_slice() {
                            self.pattern(p);
                        } else {
                            self.list(patterns, |w, p| w.pattern(p));
                        }
                        if !returns.is_empty() {
                            self.raw(" RETURN ");
                            self.list(returns, |w, r| match r {
                                ListReturn::Subscribed => w.raw("SUBSCRIBED"),
                                ListReturn::Children => w.raw("CHILDREN"),
                                ListReturn::SpecialUse => w.raw("SPECIAL-USE"),
                                ListReturn::Status(items) => {
                                    w.raw("STATUS ");
                                    w.list(items, |w, i| w.status_item(i));
                                }
                            });
                        }
                    }
                    C::Lsub { reference, pattern } => {
                        self.raw("LSUB ");
                        self.mailbox(reference);
                        self.raw(" ");
                        self.pattern(pattern);
                    }
                    C::Status { mailbox, items } => {
                        self.raw("STATUS ");
                        self.mailbox(mailbox);
                        self.raw(" ");
                        self.list(items, |w, i| w.status_item(i));
                    }
                    C::Append { mailbox, messages } => {
                        self.raw("APPEND ");
                        self.mailbox(mailbox);
                        for m in messages {
                            self.raw(" ");
                            if !m.flags.is_empty() {
                                self.list(&m.flags, |w, f| w.flag(f));
                                self.raw(" ");
                            }
                            if let Some(d) = m.date {
                                self.date_time(d);
                                self.raw(" ");
                            }
                            if m.binary {
                                encode::literal8(&mut self.out, &m.data);
                            } else {
                                encode::literal(&mut self.out, &m.data);
                            }
                        }
                    }
                    C::GetQuota(root) => {
                        self.raw("GETQUOTA ");
                        self.astring(root.as_bytes());
                    }
                    C::GetQuotaRoot(m) => {
                        self.raw("GETQUOTAROOT ");
                        self.mailbox(m);
                    }
                    C::SetQuota { root, limits } => {
                        self.raw("SETQUOTA ");
                        self.astring(root.as_bytes());
                        self.raw(" ");
                        self.list(limits, |w, (n, l)| w.raw(&format!("{n} {l}")));
                    }
                    C::Compress(m) => {
                        self.raw("COMPRESS ");
                        self.raw(m);
                    }
                    C::Expunge { uids: None } => self.raw("EXPUNGE"),
                    C::Expunge { uids: Some(s) } => {
                        self.raw("UID EXPUNGE ");
                        self.set(s);
                    }
                    C::Search {
                        uid,
                        charset,
                        criteria,
                        returns,
                    } => {
                        self.uid(*uid);
                        self.raw("SEARCH");
                        self.returns(returns);
                        if let Some(c) = charset {
                            self.raw(" CHARSET ");
                            self.astring(c.as_bytes());
                        }
                        self.raw(" ");
                        self.keys(criteria);
                    }
                    C::Fetch {
                        uid,
                        set,
                        items,
                        changed_since,
                        vanished,
                    } => {
                        self.uid(*uid);
                        self.raw("FETCH ");
                        self.set(set);
                        self.raw(" ");
                        match items {
                            FetchItems::All => self.raw("ALL"),
                            FetchItems::Fast => self.raw("FAST"),
                            FetchItems::Full => self.raw("FULL"),
                            FetchItems::List(l) if l.len() == 1 => self.fetch_att(&l[0]),
                            FetchItems::List(l) => self.list(l, |w, a| w.fetch_att(a)),
                        }
                        if let Some(c) = changed_since {
                            self.raw(&format!(" (CHANGEDSINCE {c}"));
                            if *vanished {
                                self.raw(" VANISHED");
                            }
                            self.raw(")");
                        }
                    }
                    C::Store {
                        uid,
                        set,
                        unchanged_since,
                        op,
                        silent,
                        flags,
                    } => {
                        self.uid(*uid);
                        self.raw("STORE ");
                        self.set(set);
                        if let Some(u) = unchanged_since {
                            self.raw(&format!(" (UNCHANGEDSINCE {u})"));
                        }
                        self.raw(match op {
                            StoreOp::Replace => " FLAGS",
                            StoreOp::Add => " +FLAGS",
                            StoreOp::Remove => " -FLAGS",
                        });
                        self.raw(if *silent { ".SILENT " } else { " " });
                        self.list(flags, |w, f| w.flag(f));
                    }
                    C::Copy { uid, set, mailbox } | C::Move { uid, set, mailbox } => {
                        self.uid(*uid);
                        self.raw(if matches!(b, C::Copy { .. }) {
                            "COPY "
                        } else {
                            "MOVE "
                        });
                        self.set(set);
                        self.raw(" ");
                        self.mailbox(mailbox);
                    }
                    C::Sort {
                        uid,
                        criteria,
                        charset,
                        search,
                        returns,
                    } => {
                        self.uid(*uid);
                        self.raw("SORT");
                        self.returns(returns);
                        self.raw(" ");
                        self.list(criteria, |w, c| {
                            if c.reverse {
                                w.raw("REVERSE ");
                            }
                            w.raw(match c.key {
                                SortKey::Arrival => "ARRIVAL",
                                SortKey::Cc => "CC",
                                SortKey::Date => "DATE",
                                SortKey::From => "FROM",
                                SortKey::Size => "SIZE",
                                SortKey::Subject => "SUBJECT",
                                SortKey::To => "TO",
                                SortKey::DisplayFrom => "DISPLAYFROM",
                                SortKey::DisplayTo => "DISPLAYTO",
                            });
                        });
                        self.raw(" ");
                        self.astring(charset.as_bytes());
                        self.raw(" ");
                        self.keys(search);
                    }
                    C::Thread {
                        uid,
                        algorithm,
                        charset,
                        search,
                    } => {
                        self.uid(*uid);
                        self.raw(match algorithm {
                            ThreadAlgorithm::OrderedSubject => "THREAD ORDEREDSUBJECT ",
                            ThreadAlgorithm::References => "THREAD REFERENCES ",
                        });
                        self.astring(charset.as_bytes());
                        self.raw(" ");
                        self.keys(search);
                    }
                }
            }
        }
    }

    #[test]
    fn encoder_helpers() {
        assert_eq!(wire::base64(b"test\0test\0test"), "dGVzdAB0ZXN0AHRlc3Q=");
        assert_eq!(wire::base64(b"a"), "YQ==");
        let c = Command {
            tag: "t".into(),
            body: CommandBody::Append {
                mailbox: mb("x"),
                messages: vec![AppendMessage {
                    flags: vec![],
                    date: Some(1_795_251_600),
                    data: b("m"),
                    binary: false,
                }],
            },
        };
        assert_eq!(
            parse_command(&wire::command(&c, false), &opts(false)),
            Ok(c)
        );
    }

    // Strategies for the round trip.

    fn arb_tag() -> impl Strategy<Value = String> {
        "[A-Za-z0-9.\\]!#-]{1,8}"
    }

    /// Bytes of an astring or string: any but NUL (CHAR8), with atoms, NIL and "" common.
    fn arb_text() -> BoxedStrategy<Vec<u8>> {
        prop_oneof![
            "[A-Za-z0-9]{1,8}".prop_map(String::into_bytes),
            prop::collection::vec(1u8..=255, 0..12),
            any::<String>()
                .prop_filter("no NUL", |s| !s.contains('\0'))
                .prop_map(String::into_bytes),
            Just(b"NIL".to_vec()),
            Just(Vec::new()),
        ]
        .boxed()
    }

    fn arb_utf8_text() -> BoxedStrategy<String> {
        prop_oneof![
            "[A-Za-z0-9-]{1,10}",
            any::<String>().prop_filter("no NUL", |s| !s.contains('\0'))
        ]
        .boxed()
    }

    fn arb_atom() -> impl Strategy<Value = String> {
        "[A-Za-z0-9$_.=+/!#-]{1,8}"
    }

    fn arb_mailbox() -> BoxedStrategy<MailboxArg> {
        prop_oneof![
            Just(b"INBOX".to_vec()),
            "[A-Za-z0-9 /._&%*-]{0,10}".prop_map(String::into_bytes),
            arb_text()
        ]
        .prop_filter("other spellings of INBOX are folded", |m| {
            m == b"INBOX" || !m.eq_ignore_ascii_case(b"INBOX")
        })
        .prop_map(MailboxArg)
        .boxed()
    }

    fn arb_pattern() -> BoxedStrategy<MailboxArg> {
        prop_oneof![
            "[A-Za-z0-9%*/.\\]-]{0,10}".prop_map(String::into_bytes),
            arb_text()
        ]
        .prop_map(MailboxArg)
        .boxed()
    }

    fn arb_seq_num() -> BoxedStrategy<SeqNum> {
        prop_oneof![
            Just(SeqNum::Star),
            (1u32..=u32::MAX).prop_map(SeqNum::Value),
            (1u32..20).prop_map(SeqNum::Value)
        ]
        .boxed()
    }

    fn arb_set() -> BoxedStrategy<SequenceSet> {
        prop_oneof![
            1 => Just(SequenceSet { ranges: vec![], saved: true }),
            6 => prop::collection::vec((arb_seq_num(), arb_seq_num()), 1..4).prop_map(|r| SequenceSet {
                ranges: r.into_iter().map(|(start, end)| SeqRange { start, end }).collect(),
                saved: false,
            }),
        ]
        .boxed()
    }

    fn arb_known_set() -> BoxedStrategy<SequenceSet> {
        prop::collection::vec((1u32..=u32::MAX, 1u32..=u32::MAX), 1..4)
            .prop_map(|r| SequenceSet {
                ranges: r
                    .into_iter()
                    .map(|(a, b)| SeqRange {
                        start: SeqNum::Value(a),
                        end: SeqNum::Value(b),
                    })
                    .collect(),
                saved: false,
            })
            .boxed()
    }

    fn arb_flag() -> BoxedStrategy<Flag> {
        prop_oneof![
            Just(Flag::Seen),
            Just(Flag::Answered),
            Just(Flag::Flagged),
            Just(Flag::Deleted),
            Just(Flag::Draft),
            Just(Flag::Recent),
            arb_atom().prop_map(Flag::Keyword),
            "[A-Za-z][A-Za-z0-9-]{0,6}"
                .prop_filter("not a system flag", |s| {
                    !["SEEN", "ANSWERED", "FLAGGED", "DELETED", "DRAFT", "RECENT"]
                        .contains(&s.to_uppercase().as_str())
                })
                .prop_map(|s| Flag::Extension(format!("\\{s}"))),
        ]
        .boxed()
    }

    fn arb_date() -> BoxedStrategy<Date> {
        (0i32..=9999, 1u8..=12, 1u8..=31)
            .prop_map(|(year, month, day)| Date {
                year,
                month,
                day: day.min(days_in_month(year, month)),
            })
            .boxed()
    }

    fn arb_modseq() -> BoxedStrategy<u64> {
        prop_oneof![1u64..=i64::MAX as u64, 1u64..1000].boxed()
    }

    fn arb_search_key() -> BoxedStrategy<SearchKey> {
        use SearchKey as K;
        let leaf = prop_oneof![
            prop_oneof![
                Just(K::All),
                Just(K::Answered),
                Just(K::Deleted),
                Just(K::Draft),
                Just(K::Flagged),
                Just(K::New),
                Just(K::Old),
                Just(K::Recent),
                Just(K::Seen),
                Just(K::Unanswered),
                Just(K::Undeleted),
                Just(K::Undraft),
                Just(K::Unflagged),
                Just(K::Unseen),
            ],
            prop_oneof![
                arb_text().prop_map(K::Bcc),
                arb_text().prop_map(K::Body),
                arb_text().prop_map(K::Cc),
                arb_text().prop_map(K::From),
                arb_text().prop_map(K::Subject),
                arb_text().prop_map(K::Text),
                arb_text().prop_map(K::To),
                (arb_utf8_text(), arb_text()).prop_map(|(n, v)| K::Header(n, v)),
            ],
            prop_oneof![
                arb_date().prop_map(K::Before),
                arb_date().prop_map(K::On),
                arb_date().prop_map(K::Since),
                arb_date().prop_map(K::SentBefore),
                arb_date().prop_map(K::SentOn),
                arb_date().prop_map(K::SentSince),
            ],
            prop_oneof![
                arb_atom().prop_map(K::Keyword),
                arb_atom().prop_map(K::Unkeyword),
                (0u64..=i64::MAX as u64).prop_map(K::Larger),
                (0u64..=i64::MAX as u64).prop_map(K::Smaller),
                (0u64..=i64::MAX as u64).prop_map(K::ModSeq),
                (1u64..=u64::from(u32::MAX)).prop_map(K::Older),
                (1u64..=u64::from(u32::MAX)).prop_map(K::Younger),
                arb_set().prop_map(K::Uid),
                arb_set().prop_map(K::SequenceSet),
            ],
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|k| K::Not(Box::new(k))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| K::Or(Box::new(a), Box::new(b))),
                prop::collection::vec(inner, 1..4).prop_map(K::And),
            ]
        })
        .boxed()
    }

    fn arb_search_returns() -> BoxedStrategy<Option<Vec<SearchReturn>>> {
        prop::option::of(prop::collection::vec(
            prop_oneof![
                Just(SearchReturn::Min),
                Just(SearchReturn::Max),
                Just(SearchReturn::All),
                Just(SearchReturn::Count),
                Just(SearchReturn::Save)
            ],
            0..4,
        ))
        .boxed()
    }

    fn arb_part() -> BoxedStrategy<Vec<u32>> {
        prop::collection::vec(prop_oneof![1u32..=u32::MAX, 1u32..5], 0..4).boxed()
    }

    fn arb_partial() -> BoxedStrategy<Option<(u32, u32)>> {
        prop::option::of((any::<u32>(), 1u32..=u32::MAX)).boxed()
    }

    fn arb_fetch_att() -> BoxedStrategy<FetchAttr> {
        use FetchAttr as A;
        let names = || prop::collection::vec(arb_utf8_text(), 1..4);
        let section = (
            arb_part(),
            prop::option::of(prop_oneof![
                Just(SectionText::Header),
                Just(SectionText::Text),
                Just(SectionText::Mime),
                names().prop_map(SectionText::HeaderFields),
                names().prop_map(SectionText::HeaderFieldsNot),
            ]),
        )
            .prop_map(|(part, text)| {
                // MIME only after a part number (RFC 9051 §9 section-text).
                let text = if part.is_empty() && text == Some(SectionText::Mime) {
                    None
                } else {
                    text
                };
                Section { part, text }
            });
        prop_oneof![
            prop_oneof![
                Just(A::Envelope),
                Just(A::Flags),
                Just(A::InternalDate),
                Just(A::Rfc822Size),
                Just(A::Uid),
                Just(A::BodyStructure),
                Just(A::Body),
                Just(A::Rfc822),
                Just(A::Rfc822Header),
                Just(A::Rfc822Text),
                Just(A::ModSeq),
            ],
            (any::<bool>(), section, arb_partial()).prop_map(|(peek, section, partial)| {
                A::BodySection {
                    peek,
                    section,
                    partial,
                }
            }),
            (any::<bool>(), arb_part(), arb_partial()).prop_map(|(peek, part, partial)| {
                A::Binary {
                    peek,
                    part,
                    partial,
                }
            }),
            arb_part().prop_map(|part| A::BinarySize { part }),
        ]
        .boxed()
    }

    fn arb_status_items() -> BoxedStrategy<Vec<StatusItem>> {
        use StatusItem::*;
        prop::collection::vec(
            prop::sample::select(vec![
                Messages,
                Recent,
                UidNext,
                UidValidity,
                Unseen,
                Deleted,
                Size,
                HighestModSeq,
                AppendLimit,
            ]),
            1..5,
        )
        .boxed()
    }

    fn arb_append_message() -> BoxedStrategy<AppendMessage> {
        (
            prop::collection::vec(arb_flag(), 0..3),
            // Year 0000 to 9999 in any zone up to ±14 h.
            prop::option::of(-62_167_219_200 + 86_400..=253_402_300_799 - 86_400i64),
            prop::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
        )
            .prop_map(|(flags, date, mut data, binary)| {
                // Only a literal8 carries NUL; a plain literal is CHAR8 (RFC 9051 §4.3).
                if !binary {
                    data.retain(|&b| b != 0);
                }
                AppendMessage {
                    flags,
                    date,
                    data,
                    binary,
                }
            })
            .boxed()
    }

    fn arb_command_body() -> BoxedStrategy<CommandBody> {
        use CommandBody as C;
        prop_oneof![
            // FETCH
            (
                any::<bool>(),
                arb_set(),
                prop_oneof![
                    Just(FetchItems::All),
                    Just(FetchItems::Fast),
                    Just(FetchItems::Full),
                    prop::collection::vec(arb_fetch_att(), 1..5).prop_map(FetchItems::List),
                ],
                prop::option::of(arb_modseq()),
                any::<bool>(),
            )
                .prop_map(|(uid, set, items, changed_since, vanished)| C::Fetch {
                    uid,
                    set,
                    items,
                    changed_since,
                    vanished: vanished && uid && changed_since.is_some(),
                }),
            // STORE
            (
                any::<bool>(),
                arb_set(),
                prop::option::of(0u64..=i64::MAX as u64),
                prop::sample::select(vec![StoreOp::Replace, StoreOp::Add, StoreOp::Remove]),
                any::<bool>(),
                prop::collection::vec(arb_flag(), 0..4),
            )
                .prop_map(|(uid, set, unchanged_since, op, silent, flags)| C::Store {
                    uid,
                    set,
                    unchanged_since,
                    op,
                    silent,
                    flags
                }),
            // SEARCH
            (
                any::<bool>(),
                prop::option::of(arb_utf8_text()),
                arb_search_key(),
                arb_search_returns()
            )
                .prop_map(|(uid, charset, criteria, returns)| C::Search {
                    uid,
                    charset,
                    criteria,
                    returns
                }),
            // SELECT / EXAMINE
            (
                arb_mailbox(),
                any::<bool>(),
                any::<bool>(),
                prop::option::of((
                    1u32..=u32::MAX,
                    arb_modseq(),
                    prop::option::of(arb_known_set()),
                    prop::option::of((arb_known_set(), arb_known_set()))
                )),
            )
                .prop_map(|(mailbox, examine, condstore, q)| C::Select {
                    mailbox,
                    examine,
                    condstore,
                    qresync: q.map(|(uidvalidity, modseq, known_uids, seq_match)| Qresync {
                        uidvalidity,
                        modseq,
                        known_uids,
                        seq_match
                    }),
                }),
            // LIST
            (
                prop::sample::subsequence(
                    vec![
                        ListSelect::Subscribed,
                        ListSelect::Remote,
                        ListSelect::RecursiveMatch,
                        ListSelect::SpecialUse
                    ],
                    0..=4
                ),
                arb_mailbox(),
                prop::collection::vec(arb_pattern(), 1..4),
                prop::collection::vec(
                    prop_oneof![
                        Just(ListReturn::Subscribed),
                        Just(ListReturn::Children),
                        Just(ListReturn::SpecialUse),
                        arb_status_items().prop_map(ListReturn::Status),
                    ],
                    0..4
                ),
            )
                .prop_filter("RECURSIVEMATCH needs a base option", |(s, ..)| {
                    !s.contains(&ListSelect::RecursiveMatch)
                        || s.contains(&ListSelect::Subscribed)
                        || s.contains(&ListSelect::SpecialUse)
                })
                .prop_map(|(select, reference, patterns, returns)| C::List {
                    select,
                    reference,
                    patterns,
                    returns
                }),
            // APPEND
            (
                arb_mailbox(),
                prop::collection::vec(arb_append_message(), 1..4)
            )
                .prop_map(|(mailbox, messages)| C::Append { mailbox, messages }),
            // The rest.
            prop_oneof![
                Just(C::Capability),
                Just(C::Noop),
                Just(C::Logout),
                Just(C::StartTls),
                Just(C::Namespace),
                Just(C::Idle),
                Just(C::Check),
                Just(C::Close),
                Just(C::Unselect),
                prop::option::of(arb_set()).prop_map(|uids| C::Expunge { uids }),
                prop::option::of(prop::collection::vec(
                    (arb_utf8_text(), prop::option::of(arb_utf8_text())),
                    0..3
                ))
                .prop_map(C::Id),
                (
                    arb_atom(),
                    prop::option::of(prop::collection::vec(any::<u8>(), 0..20))
                )
                    .prop_map(|(mechanism, initial)| C::Authenticate { mechanism, initial }),
                (arb_text(), arb_text()).prop_map(|(user, password)| C::Login { user, password }),
                prop::collection::vec(arb_atom(), 1..4).prop_map(C::Enable),
                (
                    arb_mailbox(),
                    prop::collection::vec("[A-Za-z]{1,8}".prop_map(|s| format!("\\{s}")), 0..3)
                )
                    .prop_map(|(mailbox, special_use)| C::Create {
                        mailbox,
                        special_use
                    }),
                arb_mailbox().prop_map(C::Delete),
                (arb_mailbox(), arb_mailbox()).prop_map(|(from, to)| C::Rename { from, to }),
                arb_mailbox().prop_map(C::Subscribe),
                arb_mailbox().prop_map(C::Unsubscribe),
            ],
            prop_oneof![
                (arb_mailbox(), arb_pattern())
                    .prop_map(|(reference, pattern)| C::Lsub { reference, pattern }),
                (arb_mailbox(), arb_status_items())
                    .prop_map(|(mailbox, items)| C::Status { mailbox, items }),
                arb_utf8_text().prop_map(C::GetQuota),
                arb_mailbox().prop_map(C::GetQuotaRoot),
                (
                    arb_utf8_text(),
                    prop::collection::vec(("[A-Z-]{1,8}", 0u64..=i64::MAX as u64), 0..3)
                )
                    .prop_map(|(root, limits)| C::SetQuota { root, limits }),
                arb_atom().prop_map(C::Compress),
                (any::<bool>(), arb_set(), arb_mailbox()).prop_map(|(uid, set, mailbox)| C::Copy {
                    uid,
                    set,
                    mailbox
                }),
                (any::<bool>(), arb_set(), arb_mailbox()).prop_map(|(uid, set, mailbox)| C::Move {
                    uid,
                    set,
                    mailbox
                }),
                (
                    any::<bool>(),
                    prop::collection::vec(
                        (
                            any::<bool>(),
                            prop::sample::select(vec![
                                SortKey::Arrival,
                                SortKey::Cc,
                                SortKey::Date,
                                SortKey::From,
                                SortKey::Size,
                                SortKey::Subject,
                                SortKey::To,
                                SortKey::DisplayFrom,
                                SortKey::DisplayTo
                            ])
                        )
                            .prop_map(|(reverse, key)| SortCriterion { reverse, key }),
                        1..4
                    ),
                    arb_utf8_text(),
                    arb_search_key(),
                    arb_search_returns(),
                )
                    .prop_map(|(uid, criteria, charset, search, returns)| {
                        C::Sort {
                            uid,
                            criteria,
                            charset,
                            search,
                            returns,
                        }
                    }),
                (
                    any::<bool>(),
                    prop::sample::select(vec![
                        ThreadAlgorithm::OrderedSubject,
                        ThreadAlgorithm::References
                    ]),
                    arb_utf8_text(),
                    arb_search_key()
                )
                    .prop_map(|(uid, algorithm, charset, search)| C::Thread {
                        uid,
                        algorithm,
                        charset,
                        search
                    }),
            ],
        ]
        .boxed()
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        (arb_tag(), arb_command_body()).prop_map(|(tag, body)| Command { tag, body })
    }

    /// Pieces that steer random input into the parser's deeper paths.
    const TOKENS: &[&str] = &[
        " ",
        " ",
        " ",
        "(",
        ")",
        "[",
        "]",
        "<",
        ">",
        ".",
        "\"",
        "\\",
        "{",
        "}",
        "~",
        "+",
        "-",
        "%",
        "*",
        ":",
        ",",
        "$",
        "=",
        "{3}\r\n",
        "{2+}\r\n",
        "~{1}\r\n",
        "{0}\r\n",
        "{99999999999999999999}\r\n",
        "\r\n",
        "\n",
        "\r",
        "\0",
        "\u{e9}",
        "0",
        "1",
        "7",
        "4294967295",
        "4294967296",
        "9223372036854775808",
        "1:*",
        "1,3:5",
        "a",
        "A1",
        "NIL",
        "INBOX",
        "UID",
        "FETCH",
        "SEARCH",
        "STORE",
        "SELECT",
        "EXAMINE",
        "LIST",
        "LSUB",
        "APPEND",
        "STATUS",
        "CREATE",
        "USE",
        "ENABLE",
        "ID",
        "AUTHENTICATE",
        "LOGIN",
        "SORT",
        "THREAD",
        "COPY",
        "MOVE",
        "EXPUNGE",
        "SETQUOTA",
        "GETQUOTA",
        "OR",
        "NOT",
        "ALL",
        "MODSEQ",
        "HEADER",
        "KEYWORD",
        "SINCE",
        "OLDER",
        "LARGER",
        "RETURN",
        "CHARSET",
        "UTF-8",
        "MIN",
        "SAVE",
        "BODY",
        "BODY.PEEK",
        "BINARY",
        "BINARY.SIZE",
        "HEADER.FIELDS",
        "HEADER.FIELDS.NOT",
        "MIME",
        "TEXT",
        "FLAGS",
        "+FLAGS.SILENT",
        "\\Seen",
        "$Label",
        "UNCHANGEDSINCE",
        "CHANGEDSINCE",
        "VANISHED",
        "CONDSTORE",
        "QRESYNC",
        "REVERSE",
        "SUBJECT",
        "REFERENCES",
        "SUBSCRIBED",
        "RECURSIVEMATCH",
        "STATUS",
        "MESSAGES",
        "\"/flags/\\\\Seen\"",
        "priv",
        "1-Feb-2024",
        "\"21-Nov-2026 10:00:00 +0100\"",
        "UTF8",
        "dGVzdA==",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn round_trip(cmd in arb_command(), utf8 in any::<bool>()) {
            let wire = wire::command(&cmd, utf8);
            prop_assert_eq!(parse_command(&wire, &opts(utf8)), Ok(cmd), "{}", String::from_utf8_lossy(&wire));
        }

        #[test]
        fn never_panics_on_bytes(input in prop::collection::vec(any::<u8>(), 0..200), utf8 in any::<bool>()) {
            check_any(&input, utf8);
        }

        #[test]
        fn never_panics_on_token_soup(parts in prop::collection::vec(prop::sample::select(TOKENS), 0..40), utf8 in any::<bool>()) {
            let mut input = b"a ".to_vec();
            for p in parts {
                input.extend_from_slice(p.as_bytes());
            }
            check_any(&input, utf8);
            input.extend_from_slice(b"\r\n");
            check_any(&input, utf8);
        }

        #[test]
        fn never_panics_on_mangled_commands(cmd in arb_command(), cut in any::<prop::sample::Index>(), byte in any::<u8>(), utf8 in any::<bool>()) {
            let mut wire = wire::command(&cmd, utf8);
            let i = cut.index(wire.len());
            let mut changed = wire.clone();
            changed[i] = byte;
            check_any(&changed, utf8);
            wire.truncate(i);
            check_any(&wire, utf8);
        }
    }

    /// Any outcome but a panic; a parsed command has a valid tag; an error's tag is valid.
    fn check_any(input: &[u8], utf8: bool) {
        match parse_command(input, &opts(utf8)) {
            Ok(c) => assert!(is_tag(&c.tag)),
            Err(e) => {
                assert!(e.tag.as_deref().is_none_or(is_tag));
                assert!(
                    !e.message.is_empty() && e.message.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "{:?}",
                    e.message
                );
            }
        }
    }
}
