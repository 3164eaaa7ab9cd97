//! Conversion of 8-bit message bodies to 7-bit MIME, for servers that do not offer 8BITMIME.
//!
//! RFC 6152 §3 leaves a client holding 8-bit content, facing a server without 8BITMIME, two
//! choices: convert the message to 7-bit MIME or return it. Like Postfix
//! (`disable_mime_output_conversion = no`) we convert.
//!
//! The MIME walk is our own rather than mail-parser's: the rewrite has to keep every header
//! field, delimiter line and preamble byte where it was, so it needs exact raw offsets of all of
//! them, not decoded parts.
//!
//! Only bodies change. Header fields with raw 8-bit octets (RFC 6532) are left alone, as Postfix
//! leaves them: they need SMTPUTF8, which the caller deals with.

use base64::Engine as _;

/// Structures nested deeper than this are encoded as one leaf, which bounds the recursion
/// (and the stack) on hostile input.
const MAX_DEPTH: usize = 32;

/// Longest encoded line, RFC 2045 §6.7 rule 5 (quoted-printable) and §6.8 (base64).
const ENCODED_LINE: usize = 76;

/// Longest line of 7bit or 8bit data, RFC 2045 §2.7–2.8 and RFC 5322 §2.1.1.
const MAX_LINE: usize = 998;

/// Converts a message with 8-bit content to 7-bit MIME (RFC 6152 §3, RFC 2045 §6).
///
/// Each leaf part whose body is not 7bit data (RFC 2045 §2.7: octets above 127, and also NUL,
/// a lone CR or LF, or a line over 998 octets) is encoded quoted-printable if it is made of
/// lines, otherwise base64, and its Content-Transfer-Encoding fields give way to one naming
/// the new encoding. A part labelled `8bit` or `binary` that holds 7bit data once converted
/// (a multipart, a message/rfc822, or a leaf that was 7bit all along) is relabelled `7bit`.
/// A message/global whose header is UTF-8 is encoded base64 whole. The message itself gets
/// `MIME-Version: 1.0` if it has none, since the labels mean nothing without it (RFC 2045 §4).
/// Header fields are kept byte for byte, 8-bit octets included.
///
/// Returns None when the top-level body has no octet above 127 (RFC 6152 asks for nothing
/// then), or when nothing in it needs changing (8-bit octets only in header fields of parts).
pub fn to_seven_bit(message: &[u8]) -> Option<Vec<u8>> {
    if !has_eight_bit(Entity::split(message).body) {
        return None;
    }
    convert_entity(message, Place::TOP)
}

/// Where an entity sits in the MIME tree.
#[derive(Clone, Copy)]
struct Place<'a> {
    depth: usize,
    /// Parts of multipart/digest default to message/rfc822 (RFC 2046 §5.1.5).
    in_digest: bool,
    /// Only the message itself gets MIME-Version; embedded messages and parts do not need it.
    top: bool,
    enclosing: Option<&'a Boundaries<'a>>,
}

impl<'a> Place<'a> {
    const TOP: Place<'static> = Place {
        depth: 0,
        in_digest: false,
        top: true,
        enclosing: None,
    };

    fn child(self, in_digest: bool, enclosing: Option<&'a Boundaries<'a>>) -> Place<'a> {
        Place {
            depth: self.depth + 1,
            in_digest,
            top: false,
            enclosing,
        }
    }
}

/// The boundaries of the multiparts around an entity, innermost first. No line we write may
/// read as one of their delimiters (RFC 2046 §5.1.1), or the parts would fall apart.
struct Boundaries<'a> {
    boundary: &'a [u8],
    outer: Option<&'a Boundaries<'a>>,
}

/// Whether the line is a delimiter of any of the boundaries.
fn reads_as_delimiter(line: &[u8], mut boundaries: Option<&Boundaries<'_>>) -> bool {
    while let Some(b) = boundaries {
        if delimiter(line, b.boundary).is_some() {
            return true;
        }
        boundaries = b.outer;
    }
    false
}

/// A converted body, and the Content-Transfer-Encoding it needs if the current one is wrong.
struct Rewrite {
    body: Vec<u8>,
    label: Option<&'static str>,
}

/// The entity converted, header and all; None when nothing in it had to change.
fn convert_entity(bytes: &[u8], place: Place<'_>) -> Option<Vec<u8>> {
    let entity = Entity::split(bytes);
    let mime = Mime::of(&entity.fields, place.in_digest);
    let rewrite = convert_body(entity.body, &mime, place)?;
    let add_mime_version = place.top && !mime.has_version;
    Some(entity.assemble(rewrite, add_mime_version))
}

fn convert_body(body: &[u8], mime: &Mime, place: Place<'_>) -> Option<Rewrite> {
    // RFC 2045 §6.4: a composite entity may only be 7bit, 8bit or binary; anything else on one
    // makes it opaque, so it is handled as a leaf.
    if place.depth < MAX_DEPTH && mime.cte.is_identity() {
        match &mime.shape {
            Shape::Multipart { boundary, digest } => {
                if let Some(pieces) = split_multipart(body, boundary) {
                    let multipart = Multipart {
                        boundary,
                        digest: *digest,
                        cte: mime.cte,
                    };
                    return convert_multipart(&multipart, &pieces, place);
                }
            }
            Shape::Message { global } => return convert_message(body, *global, mime.cte, place),
            Shape::Leaf => {}
        }
    }
    convert_leaf(body, mime.cte, place.enclosing)
}

struct Multipart<'a> {
    boundary: &'a [u8],
    digest: bool,
    cte: Cte,
}

fn convert_multipart(
    multipart: &Multipart<'_>,
    pieces: &[Piece<'_>],
    place: Place<'_>,
) -> Option<Rewrite> {
    let boundaries = Boundaries {
        boundary: multipart.boundary,
        outer: place.enclosing,
    };
    let mut body = Vec::new();
    let mut changed = false;
    for piece in pieces {
        let (original, converted) = match *piece {
            Piece::Delimiter(bytes) => (bytes, None),
            Piece::Text(bytes) => (bytes, mask_unsafe_octets(bytes, &boundaries)),
            Piece::Part(bytes) => {
                let place = place.child(multipart.digest, Some(&boundaries));
                (bytes, convert_entity(bytes, place))
            }
        };
        changed |= converted.is_some();
        body.extend_from_slice(converted.as_deref().unwrap_or(original));
    }
    let label = seven_bit_label(multipart.cte, &body);
    (changed || label.is_some()).then_some(Rewrite { body, label })
}

fn convert_message(body: &[u8], global: bool, cte: Cte, place: Place<'_>) -> Option<Rewrite> {
    let inner = convert_entity(body, place.child(false, place.enclosing));
    let converted = inner.as_deref().unwrap_or(body);
    if global && has_eight_bit(converted) {
        // The embedded header is UTF-8 (RFC 6532). message/global, unlike message/rfc822
        // (RFC 2046 §5.2.1), may be transfer-encoded (RFC 6532 §3.5), which is the only way
        // to carry it in 7 bits.
        return Some(Rewrite {
            body: encode_base64(body),
            label: Some("base64"),
        });
    }
    let label = seven_bit_label(cte, converted);
    if inner.is_none() && label.is_none() {
        return None;
    }
    Some(Rewrite {
        body: inner.unwrap_or_else(|| body.to_vec()),
        label,
    })
}

fn convert_leaf(body: &[u8], cte: Cte, enclosing: Option<&Boundaries<'_>>) -> Option<Rewrite> {
    match cte {
        // Octets outside the alphabet are ignored by readers (RFC 2045 §6.8). Dropping them
        // could still leave a line that reads as a delimiter, so the data is encoded afresh.
        Cte::Base64 => has_unsafe_octets(body).then(|| Rewrite {
            body: encode_base64(&decode_base64(body)),
            label: Some("base64"),
        }),
        // Raw 8-bit octets and NUL are illegal in quoted-printable; readers pass them through,
        // so decoding leniently and encoding again keeps what they would see.
        Cte::QuotedPrintable => {
            has_unsafe_octets(body).then(|| encode(&decode_quoted_printable(body), enclosing))
        }
        _ if is_seven_bit_data(body) => seven_bit_label(cte, body).map(|label| Rewrite {
            body: body.to_vec(),
            label: Some(label),
        }),
        _ => Some(encode(body, enclosing)),
    }
}

/// Quoted-printable keeps text readable, so it is the choice for anything made of lines.
/// Other data goes base64, which keeps NUL, lone CRs and LFs and endless lines exactly, and
/// so does text whose encoded lines would read as a delimiter: base64 lines never start with
/// `--`, while a soft line break can put one at the start of a line.
fn encode(data: &[u8], enclosing: Option<&Boundaries<'_>>) -> Rewrite {
    if has_line_structure(data) {
        let body = encode_quoted_printable(data);
        if !lines(&body).any(|line| reads_as_delimiter(line.content, enclosing)) {
            return Rewrite {
                body,
                label: Some("quoted-printable"),
            };
        }
    }
    Rewrite {
        body: encode_base64(data),
        label: Some("base64"),
    }
}

/// A `8bit` or `binary` label on what is now 7bit data would be false (RFC 2045 §6.2).
fn seven_bit_label(cte: Cte, body: &[u8]) -> Option<&'static str> {
    (matches!(cte, Cte::EightBit | Cte::Binary) && !has_eight_bit(body)).then_some("7bit")
}

/// An entity (RFC 2045 §2.4): header fields, the empty line, the body.
struct Entity<'a> {
    fields: Vec<Field<'a>>,
    header: &'a [u8],
    /// The empty line; empty when there is none (no body, or a malformed header).
    separator: &'a [u8],
    body: &'a [u8],
}

struct Field<'a> {
    name: &'a [u8],
    /// The field's lines, continuations and line ends included.
    raw: &'a [u8],
}

impl<'a> Entity<'a> {
    /// The header ends at the first empty line, or, as in Postfix, at the first line that is
    /// neither a field nor a continuation: that line starts the body.
    fn split(bytes: &'a [u8]) -> Entity<'a> {
        let mut fields: Vec<Field<'a>> = Vec::new();
        let mut field_start = 0;
        let at = |range: std::ops::Range<usize>| bytes.get(range).unwrap_or_default();
        for line in lines(bytes) {
            if line.content.is_empty() && !line.terminator.is_empty() {
                return Entity {
                    fields,
                    header: at(0..line.start),
                    separator: at(line.start..line.end),
                    body: at(line.end..bytes.len()),
                };
            }
            let continues = matches!(line.content.first(), Some(b' ' | b'\t'));
            if let (true, Some(last)) = (continues, fields.last_mut()) {
                last.raw = at(field_start..line.end);
            } else if let Some(name) = field_name(line.content) {
                field_start = line.start;
                fields.push(Field {
                    name,
                    raw: at(line.start..line.end),
                });
            } else {
                return Entity {
                    fields,
                    header: at(0..line.start),
                    separator: b"",
                    body: at(line.start..bytes.len()),
                };
            }
        }
        Entity {
            fields,
            header: bytes,
            separator: b"",
            body: b"",
        }
    }

    fn assemble(&self, rewrite: Rewrite, add_mime_version: bool) -> Vec<u8> {
        let header_changes = rewrite.label.is_some() || add_mime_version;
        let mut out = Vec::with_capacity(self.header.len() + rewrite.body.len() + 80);
        if header_changes {
            self.write_header(rewrite.label, add_mime_version, &mut out);
        } else {
            out.extend_from_slice(self.header);
        }
        // Without the empty line, a changed first body line could read as a header field;
        // Postfix too adds the line when a header ends without one.
        if self.separator.is_empty() {
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(self.separator);
        }
        out.extend_from_slice(&rewrite.body);
        out
    }

    /// Every field byte for byte, except the Content-Transfer-Encoding fields when a new label
    /// replaces them; new fields go at the end.
    fn write_header(&self, label: Option<&str>, add_mime_version: bool, out: &mut Vec<u8>) {
        for field in &self.fields {
            if label.is_none() || !field.is_named(b"content-transfer-encoding") {
                out.extend_from_slice(field.raw);
            }
        }
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        if add_mime_version {
            out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        }
        if let Some(label) = label {
            out.extend_from_slice(b"Content-Transfer-Encoding: ");
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl Field<'_> {
    fn is_named(&self, name: &[u8]) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    fn value(&self) -> &[u8] {
        match memchr::memchr(b':', self.raw) {
            Some(colon) => self.raw.get(colon + 1..).unwrap_or_default(),
            None => b"",
        }
    }
}

/// The name of a field starting on this line: printable ASCII up to the colon (RFC 5322
/// §3.6.8), white space before the colon tolerated (obsolete syntax, §4.5).
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = line.get(..colon)?.trim_ascii_end();
    let printable = name.iter().all(|b| (33..=126).contains(b));
    (!name.is_empty() && printable).then_some(name)
}

/// What the MIME fields of an entity say.
struct Mime {
    shape: Shape,
    cte: Cte,
    has_version: bool,
}

enum Shape {
    Multipart { boundary: Vec<u8>, digest: bool },
    Message { global: bool },
    Leaf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cte {
    Absent,
    SevenBit,
    EightBit,
    Binary,
    QuotedPrintable,
    Base64,
    Other,
}

impl Cte {
    /// The identity encodings of RFC 2045 §6.2, under which a body can be walked as it is.
    fn is_identity(self) -> bool {
        matches!(
            self,
            Cte::Absent | Cte::SevenBit | Cte::EightBit | Cte::Binary
        )
    }
}

impl Mime {
    fn of(fields: &[Field<'_>], in_digest: bool) -> Mime {
        let field = |name: &[u8]| fields.iter().find(|f| f.is_named(name)).map(Field::value);
        Mime {
            shape: field(b"content-type")
                .and_then(parse_shape)
                .unwrap_or_else(|| default_shape(in_digest)),
            cte: field(b"content-transfer-encoding").map_or(Cte::Absent, parse_cte),
            has_version: field(b"mime-version").is_some(),
        }
    }
}

/// RFC 2045 §5.2: a missing or unreadable Content-Type means text/plain, except in a digest.
fn default_shape(in_digest: bool) -> Shape {
    if in_digest {
        Shape::Message { global: false }
    } else {
        Shape::Leaf
    }
}

/// RFC 2045 §5.1. None when the value is unreadable.
fn parse_shape(value: &[u8]) -> Option<Shape> {
    let mut c = Cursor { rest: value };
    c.skip_cfws();
    let kind = c.token()?;
    c.skip_cfws();
    if !c.eat(b'/') {
        return None;
    }
    c.skip_cfws();
    let subtype = c.token()?;
    if kind.eq_ignore_ascii_case(b"multipart") {
        // Without a usable boundary the parts cannot be found; the body is then one leaf.
        return Some(match c.boundary() {
            Some(boundary) => Shape::Multipart {
                boundary,
                digest: subtype.eq_ignore_ascii_case(b"digest"),
            },
            None => Shape::Leaf,
        });
    }
    if kind.eq_ignore_ascii_case(b"message") {
        let global = subtype.eq_ignore_ascii_case(b"global");
        if global || subtype.eq_ignore_ascii_case(b"rfc822") {
            return Some(Shape::Message { global });
        }
    }
    Some(Shape::Leaf)
}

/// RFC 2045 §6.1; case does not matter.
fn parse_cte(value: &[u8]) -> Cte {
    let mut c = Cursor { rest: value };
    c.skip_cfws();
    let token = c.token().unwrap_or_default().to_ascii_lowercase();
    match token.as_slice() {
        b"7bit" => Cte::SevenBit,
        b"8bit" => Cte::EightBit,
        b"binary" => Cte::Binary,
        b"quoted-printable" => Cte::QuotedPrintable,
        b"base64" => Cte::Base64,
        _ => Cte::Other,
    }
}

/// Reads the lexical pieces of MIME header values (RFC 2045 §5.1, RFC 5322 §3.2.2).
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn advance(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or_default();
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.advance(1);
        }
        found
    }

    /// White space, folding and comments, which may appear between any two tokens.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.advance(1),
                b'(' => self.skip_comment(),
                _ => break,
            }
        }
    }

    /// Comments nest and may quote any character (RFC 5322 §3.2.2).
    fn skip_comment(&mut self) {
        let mut level = 0usize;
        while let Some(b) = self.peek() {
            self.advance(1);
            match b {
                b'\\' => self.advance(1),
                b'(' => level += 1,
                b')' => {
                    level = level.saturating_sub(1);
                    if level == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let len = self.rest.iter().take_while(|&&b| is_token_octet(b)).count();
        let token = self.rest.get(..len)?;
        self.advance(len);
        (len > 0).then_some(token)
    }

    /// A quoted-string with its quotes, escapes and folding removed; a missing closing quote
    /// ends it at the end of the value.
    fn quoted_string(&mut self) -> Vec<u8> {
        let mut value = Vec::new();
        self.advance(1);
        while let Some(b) = self.peek() {
            self.advance(1);
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(quoted) = self.peek() {
                        value.push(quoted);
                        self.advance(1);
                    }
                }
                b'\r' | b'\n' => {}
                _ => value.push(b),
            }
        }
        value
    }

    fn parameter_value(&mut self) -> Option<Vec<u8>> {
        if self.peek() == Some(b'"') {
            Some(self.quoted_string())
        } else {
            self.token().map(<[u8]>::to_vec)
        }
    }

    /// The boundary parameter among the rest of the value's parameters (RFC 2046 §5.1.1).
    /// Junk between parameters is skipped up to the next `;`, as readers do.
    fn boundary(&mut self) -> Option<Vec<u8>> {
        loop {
            self.skip_cfws();
            if self.rest.is_empty() {
                return None;
            }
            if !self.eat(b';') {
                let next = memchr::memchr(b';', self.rest)?;
                self.advance(next + 1);
            }
            self.skip_cfws();
            let Some(name) = self.token() else { continue };
            self.skip_cfws();
            if !self.eat(b'=') {
                continue;
            }
            self.skip_cfws();
            let Some(value) = self.parameter_value() else {
                continue;
            };
            if name.eq_ignore_ascii_case(b"boundary") {
                return is_usable_boundary(&value).then_some(value);
            }
        }
    }
}

/// RFC 2045 §5.1 token: no controls, space or tspecials. 8-bit octets are tolerated.
fn is_token_octet(b: u8) -> bool {
    b > b' ' && b != 127 && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// RFC 2046 §5.1.1 allows only printable ASCII in a boundary. One with 8-bit octets would put
/// them on the delimiter lines, so such a multipart is encoded whole instead.
fn is_usable_boundary(boundary: &[u8]) -> bool {
    !boundary.is_empty() && boundary.iter().all(|b| (32..=126).contains(b))
}

/// The pieces of a multipart body (RFC 2046 §5.1.1), which concatenated give the body back.
enum Piece<'a> {
    /// A delimiter line with the line break before it, which belongs to it.
    Delimiter(&'a [u8]),
    /// The preamble or the epilogue: no part's content, so only made 7-bit.
    Text(&'a [u8]),
    Part(&'a [u8]),
}

/// None when no delimiter line is found: the body cannot be split.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Option<Vec<Piece<'a>>> {
    let at = |range: std::ops::Range<usize>| body.get(range).unwrap_or_default();
    let mut pieces = Vec::new();
    let mut region_start = 0;
    for line in lines(body) {
        let Some(close) = delimiter(line.content, boundary) else {
            continue;
        };
        let break_start = line_break_before(body, region_start, line.start);
        let region = at(region_start..break_start);
        pieces.push(if pieces.is_empty() {
            Piece::Text(region)
        } else {
            Piece::Part(region)
        });
        pieces.push(Piece::Delimiter(at(break_start..line.end)));
        region_start = line.end;
        if close {
            pieces.push(Piece::Text(at(line.end..body.len())));
            return Some(pieces);
        }
    }
    if pieces.is_empty() {
        return None;
    }
    // A truncated message has no close delimiter; its last part runs to the end.
    pieces.push(Piece::Part(at(region_start..body.len())));
    Some(pieces)
}

/// Whether the line is a delimiter (`Some(false)`) or the close delimiter (`Some(true)`):
/// `--boundary`, `--` for the close one, then only transport padding (RFC 2046 §5.1.1).
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, padding) = match rest.strip_prefix(b"--") {
        Some(padding) => (true, padding),
        None => (false, rest),
    };
    padding
        .iter()
        .all(|&b| b == b' ' || b == b'\t')
        .then_some(close)
}

/// Where the line break before `at` starts, not looking before `floor`.
fn line_break_before(body: &[u8], floor: usize, at: usize) -> usize {
    let before = body.get(floor..at).unwrap_or_default();
    if before.ends_with(b"\r\n") {
        at - 2
    } else if before.ends_with(b"\n") {
        at - 1
    } else {
        at
    }
}

struct Line<'a> {
    start: usize,
    /// After the line break.
    end: usize,
    content: &'a [u8],
    /// CRLF, a bare LF, or empty for a last line without one.
    terminator: &'a [u8],
}

/// Lines ending in CRLF or, to be robust, a bare LF.
fn lines(data: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let rest = data.get(pos..).filter(|rest| !rest.is_empty())?;
        let start = pos;
        let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = rest.get(..len).unwrap_or_default();
        let content = match line.strip_suffix(b"\n") {
            Some(c) => c.strip_suffix(b"\r").unwrap_or(c),
            None => line,
        };
        pos += len;
        Some(Line {
            start,
            end: pos,
            content,
            terminator: line.get(content.len()..).unwrap_or_default(),
        })
    })
}

fn has_eight_bit(data: &[u8]) -> bool {
    !data.is_ascii()
}

/// Octets no 7-bit transport can be trusted with (RFC 2045 §2.7).
fn is_unsafe_octet(b: u8) -> bool {
    b == 0 || b > 127
}

fn has_unsafe_octets(data: &[u8]) -> bool {
    data.iter().any(|&b| is_unsafe_octet(b))
}

/// 7bit data (RFC 2045 §2.7): US-ASCII with line structure.
fn is_seven_bit_data(data: &[u8]) -> bool {
    !has_eight_bit(data) && has_line_structure(data)
}

/// No NUL, CR and LF only together as line breaks, no line over 998 octets (RFC 2045 §2.7–2.8).
fn has_line_structure(data: &[u8]) -> bool {
    memchr::memchr(0, data).is_none()
        && lines(data).all(|line| {
            line.content.len() <= MAX_LINE
                && memchr::memchr(b'\r', line.content).is_none()
                && matches!(line.terminator, b"" | b"\r\n")
        })
}

/// 8-bit octets and NUL in a preamble or epilogue are nobody's content: RFC 2046 §5.1.1 has readers
/// ignore both. They only need to be 7-bit, so each becomes `?`.
fn mask_unsafe_octets(text: &[u8], boundaries: &Boundaries<'_>) -> Option<Vec<u8>> {
    if !has_unsafe_octets(text) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    for line in lines(text) {
        let start = out.len();
        out.extend(
            line.content
                .iter()
                .map(|&b| if is_unsafe_octet(b) { b'?' } else { b }),
        );
        // `?` may be part of a boundary: a masked line must not become a delimiter.
        let masked = out.get(start..).unwrap_or_default();
        if has_unsafe_octets(line.content)
            && reads_as_delimiter(masked, Some(boundaries))
            && let Some(first) = out.get_mut(start)
        {
            *first = b'?';
        }
        out.extend_from_slice(line.terminator);
    }
    Some(out)
}

/// RFC 2045 §6.7. CRLF pairs are hard line breaks; any other CR or LF is data and encoded.
fn encode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 4 + 8);
    let mut rest = data;
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        encode_quoted_printable_line(rest.get(..i).unwrap_or_default(), &mut out);
        out.extend_from_slice(b"\r\n");
        rest = rest.get(i + 2..).unwrap_or_default();
    }
    encode_quoted_printable_line(rest, &mut out);
    out
}

fn encode_quoted_printable_line(line: &[u8], out: &mut Vec<u8>) {
    let mut column = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal = match b {
            b'=' => false,
            // Rule 3: white space at the end of a line may be lost in transit.
            b' ' | b'\t' => !last,
            33..=126 => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        // Rule 5: a soft line break's `=` needs a column, unless nothing follows on the line.
        // Breaking before a whole token keeps an `=XX` triple on one line.
        let room = if last { ENCODED_LINE } else { ENCODED_LINE - 1 };
        if column + width > room {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        if literal {
            out.push(b);
        } else {
            // Rule 1: upper-case hexadecimal.
            out.extend_from_slice(&[b'=', hex_digit(b >> 4), hex_digit(b & 0x0f)]);
        }
        column += width;
    }
}

fn hex_digit(nibble: u8) -> u8 {
    let digits = b"0123456789ABCDEF";
    digits
        .get(usize::from(nibble & 0x0f))
        .copied()
        .unwrap_or(b'0')
}

/// Lenient decoding, as readers do it: raw octets pass through, a stray `=` is itself.
fn decode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in lines(data) {
        // Rule 3: trailing white space was added in transit.
        let text = trim_white_space_end(line.content);
        let (text, soft_break) = match text.strip_suffix(b"=") {
            Some(text) => (text, true),
            None => (text, false),
        };
        decode_quoted_printable_text(text, &mut out);
        if !soft_break && !line.terminator.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn trim_white_space_end(mut text: &[u8]) -> &[u8] {
    while let Some(rest) = text.strip_suffix(b" ").or_else(|| text.strip_suffix(b"\t")) {
        text = rest;
    }
    text
}

fn decode_quoted_printable_text(text: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        let escaped = match (b, text.get(i + 1), text.get(i + 2)) {
            (b'=', Some(&high), Some(&low)) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// RFC 2045 §6.8, leniently as readers do it: characters outside the alphabet are ignored,
/// and `=` pads out the quantum so far.
fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 3);
    let mut quantum = 0u32;
    let mut sextets = 0;
    for &b in data {
        if let Some(value) = base64_value(b) {
            quantum = quantum << 6 | u32::from(value);
            sextets += 1;
            if sextets == 4 {
                let [_, first, second, third] = quantum.to_be_bytes();
                out.extend_from_slice(&[first, second, third]);
                (quantum, sextets) = (0, 0);
            }
        } else if b == b'=' {
            flush_base64_quantum(quantum, sextets, &mut out);
            (quantum, sextets) = (0, 0);
        }
    }
    flush_base64_quantum(quantum, sextets, &mut out);
    out
}

/// The whole octets in a quantum cut short: 12 bits make one, 18 bits two.
fn flush_base64_quantum(quantum: u32, sextets: u32, out: &mut Vec<u8>) {
    match sextets {
        2 => {
            let [.., a] = (quantum >> 4).to_be_bytes();
            out.push(a);
        }
        3 => {
            let [.., a, b] = (quantum >> 2).to_be_bytes();
            out.extend_from_slice(&[a, b]);
        }
        _ => {}
    }
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// RFC 2045 §6.8, in lines of 76 characters; a line break at the end if the data had one, so
/// that the entity ends as it did.
fn encode_base64(data: &[u8]) -> Vec<u8> {
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / ENCODED_LINE * 2 + 2);
    for (i, line) in text.as_bytes().chunks(ENCODED_LINE).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    if data.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};
    use proptest::prelude::*;

    /// Splits at CRLF; the piece after a final CRLF is the empty last element.
    fn split_crlf(data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
            out.push(&rest[..i]);
            rest = &rest[i + 2..];
        }
        out.push(rest);
        out
    }

    /// Decodes quoted-printable, failing on anything RFC 2045 §6.7 does not allow us to write.
    fn decode_qp_strict(encoded: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let lines = split_crlf(encoded);
        for (n, line) in lines.iter().enumerate() {
            assert!(
                line.len() <= 76,
                "QP line over 76: {:?}",
                line.escape_ascii().to_string()
            );
            assert!(
                !line.ends_with(b" ") && !line.ends_with(b"\t"),
                "trailing white space"
            );
            let mut soft = false;
            let mut i = 0;
            while i < line.len() {
                let b = line[i];
                if b == b'=' {
                    if i + 1 == line.len() {
                        soft = true;
                        break;
                    }
                    let hex = &line[i + 1..i + 3];
                    assert!(
                        hex.iter()
                            .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                        "bad escape in {:?}",
                        line.escape_ascii().to_string()
                    );
                    out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
                    i += 3;
                } else {
                    assert!(b == b' ' || b == b'\t' || (33..=126).contains(&b));
                    out.push(b);
                    i += 1;
                }
            }
            if n + 1 < lines.len() && !soft {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    fn decode_base64_strict(encoded: &[u8]) -> Vec<u8> {
        let mut text = Vec::new();
        for line in split_crlf(encoded) {
            assert!(line.len() <= 76, "base64 line over 76");
            text.extend_from_slice(line);
        }
        base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap()
    }

    /// Splits an entity at its empty line; (header, body).
    fn header_and_body(entity: &[u8]) -> (&[u8], &[u8]) {
        let i = memchr::memmem::find(entity, b"\r\n\r\n").expect("an empty line");
        (&entity[..i + 2], &entity[i + 4..])
    }

    /// The value of the only Content-Transfer-Encoding field; there must not be two.
    fn cte_of(header: &[u8]) -> Option<String> {
        let header = String::from_utf8_lossy(header);
        let values: Vec<String> = header
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-transfer-encoding"))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .collect();
        assert!(values.len() <= 1, "two Content-Transfer-Encoding fields");
        values.into_iter().next()
    }

    /// The decoded body of an entity written by us (header fields unfolded on one line).
    fn decoded_body(entity: &[u8]) -> Vec<u8> {
        let (header, body) = header_and_body(entity);
        match cte_of(header).as_deref() {
            Some("quoted-printable") => decode_qp_strict(body),
            Some("base64") => decode_base64_strict(body),
            _ => body.to_vec(),
        }
    }

    /// RFC 2045 §2.7 7bit data throughout: no octet above 127, no NUL, CR and LF only as
    /// CRLF, lines of at most 998 octets.
    fn assert_seven_bit(out: &[u8]) {
        assert!(
            out.iter().all(|&b| b != 0 && b < 128),
            "8-bit or NUL in output"
        );
        for line in split_crlf(out) {
            assert!(
                !line.contains(&b'\r') && !line.contains(&b'\n'),
                "a lone CR or LF"
            );
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
    }

    fn parse(message: &[u8]) -> Message<'_> {
        MessageParser::default().parse(message).expect("parses")
    }

    fn text_of(part: &MessagePart<'_>) -> String {
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => t.to_string(),
            other => panic!("not text: {other:?}"),
        }
    }

    const SIMPLE: &[u8] = b"From: Alice <alice@example.net>\r\n\
To: Bob <bob@example.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n";

    const SIMPLE_TEXT: &str = "Grüße aus Köln: 100 % = ganz\r\n\
trailing space \r\n\
trailing tab\t\r\n\
\r\n\
.a line with a dot\r\n\
Eine sehr lange Zeile mit Umlauten äöüäöüäöüäöüäöüäöüäöüäöüäöüäöüäöüäöüäöüäöüäöüäöü \
und weiter bis zum Ende.\r\n";

    #[test]
    fn eight_bit_text_becomes_quoted_printable() {
        let message = [SIMPLE, SIMPLE_TEXT.as_bytes()].concat();
        let out = to_seven_bit(&message).expect("converted");
        assert_seven_bit(&out);
        let (header, body) = header_and_body(&out);
        let expected_header = String::from_utf8(SIMPLE[..SIMPLE.len() - 2].to_vec())
            .unwrap()
            .replace("Content-Transfer-Encoding: 8bit\r\n", "")
            + "Content-Transfer-Encoding: quoted-printable\r\n";
        assert_eq!(String::from_utf8_lossy(header), expected_header);
        assert_eq!(decode_qp_strict(body), SIMPLE_TEXT.as_bytes());
        assert!(body.starts_with(b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln: 100 % =3D ganz\r\n"));
        assert!(memchr::memmem::find(body, b"trailing space=20\r\ntrailing tab=09\r\n").is_some());
        let parsed = parse(&out);
        assert_eq!(parsed.body_text(0).unwrap(), SIMPLE_TEXT);
    }

    #[test]
    fn quoted_printable_lines() {
        assert_eq!(
            encode_quoted_printable(b"a=b \r\n \r\nc\t"),
            b"a=3Db=20\r\n=20\r\nc=09"
        );
        // Soft breaks leave room for the `=` and never split an escape.
        let line = "é".repeat(60);
        let encoded = encode_quoted_printable(line.as_bytes());
        for l in split_crlf(&encoded) {
            assert!(l.len() <= 76);
        }
        let lines = split_crlf(&encoded);
        assert!(lines[..lines.len() - 1].iter().all(|l| l.ends_with(b"=")));
        assert_eq!(decode_qp_strict(&encoded), line.as_bytes());
        // 76 characters fit on one line only when nothing follows.
        assert_eq!(encode_quoted_printable(&[b'x'; 76]), [b'x'; 76]);
        let mut seventy_seven = encode_quoted_printable(&[b'x'; 77]);
        assert_eq!(
            seventy_seven.drain(..78).collect::<Vec<u8>>(),
            [&[b'x'; 75][..], b"=\r\n"].concat()
        );
        assert_eq!(seventy_seven, b"xx");
    }

    #[test]
    fn lenient_base64_decoding() {
        assert_eq!(decode_base64(b"w6k=\r\nw6k="), "éé".as_bytes());
        assert_eq!(decode_base64(b"w6\xff k\r\n"), "é".as_bytes());
        assert_eq!(decode_base64(b"YQ"), b"a");
        assert_eq!(decode_base64(b"YWI=YQ==Y"), b"aba");
    }

    const ALTERNATIVE_HEAD: &[u8] = b"From: alice@example.net\r\n\
Subject: Angebot\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n";

    const ATTACHMENT: &[u8] = b"Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURl\r\n\
Y29kZT4+CnN0cmVhbQp4nDPQM1Qo5ypUMFAw0DMwslAwtTTVMzIxV0hJ5QrkAgB/1AXnCmVuZHN0\r\n";

    fn alternative_message() -> Vec<u8> {
        [
            ALTERNATIVE_HEAD,
            b"--outer\r\n\
Content-Type: multipart/alternative;\r\n\
\x20boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Preis: 10 \xe2\x82\xac\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Preis: 10 \xe2\x82\xac</p>\r\n\
--inner--\r\n\
\r\n\
--outer\r\n",
            ATTACHMENT,
            b"--outer--\r\nthe epilogue\r\n",
        ]
        .concat()
    }

    #[test]
    fn multipart_alternative_with_attachment() {
        let message = alternative_message();
        let out = to_seven_bit(&message).expect("converted");
        assert_seven_bit(&out);
        // The top-level header, preamble, attachment and epilogue are untouched.
        assert!(out.starts_with(ALTERNATIVE_HEAD));
        let attachment = [
            b"\r\n--outer\r\n",
            ATTACHMENT,
            b"--outer--\r\nthe epilogue\r\n",
        ]
        .concat();
        assert!(out.ends_with(&attachment));
        for delimiter in [
            "--outer\r\n",
            "--inner\r\n",
            "--inner--\r\n",
            "--outer--\r\n",
        ] {
            let count = |m: &[u8]| memchr::memmem::find_iter(m, delimiter.as_bytes()).count();
            assert_eq!(count(&out), count(&message), "{delimiter}");
        }

        let parsed = parse(&out);
        let texts: Vec<(String, String)> = parsed
            .parts
            .iter()
            .filter(|p| matches!(p.body, PartType::Text(_) | PartType::Html(_)))
            .map(|p| {
                (
                    p.content_transfer_encoding().unwrap().to_string(),
                    text_of(p),
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("quoted-printable".to_string(), "Preis: 10 €".to_string()),
                (
                    "quoted-printable".to_string(),
                    "<p>Preis: 10 €</p>".to_string()
                ),
            ]
        );
        let pdf = parsed.attachment(0).unwrap();
        assert!(pdf.contents().starts_with(b"%PDF-1.4"));
    }

    #[test]
    fn embedded_message_is_converted_inside_and_relabelled() {
        let inner = b"From: carol@example.com\r\n\
Subject: Weitergeleitet\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Sch\xc3\xb6ne Gr\xc3\xbc\xc3\x9fe\r\n";
        let message = [
            &b"From: alice@example.net\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
See below.\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n"[..],
            inner,
            b"--b1--\r\n",
        ]
        .concat();
        let out = to_seven_bit(&message).expect("converted");
        assert_seven_bit(&out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text.matches("Content-Transfer-Encoding: 7bit\r\n").count(),
            2
        );
        assert!(!text.contains("8bit"));
        assert!(text.contains(
            "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
From: carol@example.com\r\nSubject: Weitergeleitet\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe\r\n--b1--\r\n"
        ));

        let parsed = parse(&out);
        let embedded = parsed
            .parts
            .iter()
            .find_map(|p| match &p.body {
                PartType::Message(m) => Some(m),
                _ => None,
            })
            .expect("an embedded message");
        // The last line break belongs to the delimiter that follows (RFC 2046 §5.1.1).
        assert_eq!(embedded.body_text(0).unwrap(), "Schöne Grüße");
    }

    #[test]
    fn plain_rfc5322_message_gets_mime_headers() {
        let message =
            b"From: alice@example.net\r\nSubject: Caf\xc3\xa9\r\n\r\nCaf\xc3\xa9 = bon\r\n";
        let out = to_seven_bit(message).expect("converted");
        // The header keeps its raw UTF-8: that is SMTPUTF8's business, not ours.
        assert_eq!(
            out,
            b"From: alice@example.net\r\nSubject: Caf\xc3\xa9\r\n\
MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Caf=C3=A9 =3D bon\r\n"
        );
    }

    #[test]
    fn long_lines_and_nul_become_base64() {
        let long = [
            b"x".repeat(600),
            "ü".repeat(300).into_bytes(),
            b"\r\n".to_vec(),
        ]
        .concat();
        let with_nul = b"a\0b \xff\r\n".to_vec();
        let bare_cr = b"caf\xc3\xa9\rcr\r\n".to_vec();
        for body in [long, with_nul, bare_cr] {
            let message = [
                b"Subject: x\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec(),
                body.clone(),
            ]
            .concat();
            let out = to_seven_bit(&message).expect("converted");
            assert_seven_bit(&out);
            let (header, _) = header_and_body(&out);
            assert_eq!(cte_of(header).as_deref(), Some("base64"));
            assert_eq!(decoded_body(&out), body);
            assert_eq!(parse(&out).root_part().contents(), body);
        }
    }

    #[test]
    fn seven_bit_input_is_left_alone() {
        assert_eq!(to_seven_bit(b"Subject: hi\r\n\r\nhello\r\n"), None);
        assert_eq!(to_seven_bit(b""), None);
        assert_eq!(to_seven_bit(b"Subject: no body"), None);
        // 8-bit header fields are not ours to convert.
        assert_eq!(
            to_seven_bit(b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nhello\r\n"),
            None
        );
        let message = alternative_message();
        let ascii: Vec<u8> = message.iter().map(|&b| b & 0x7f).collect();
        assert_eq!(to_seven_bit(&ascii), None);
    }

    #[test]
    fn folded_transfer_encoding_fields_are_replaced() {
        let message = b"Subject: x\r\n\
Content-Transfer-Encoding:\r\n\
\x208bit (folded)\r\n\
X-Other: kept\r\n\
content-transfer-encoding : binary\r\n\
\r\n\
\xe9t\xe9\r\n";
        let out = to_seven_bit(message).expect("converted");
        assert_eq!(
            out,
            b"Subject: x\r\nX-Other: kept\r\nMIME-Version: 1.0\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n=E9t=E9\r\n"
        );
    }

    #[test]
    fn encoded_parts_are_left_alone_unless_they_carry_raw_octets() {
        let message = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
pre\xe9amble\r\n\
--b\r\nContent-Transfer-Encoding: base64\r\n\r\nw6k=\r\n\
--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n\
--b\r\nContent-Transfer-Encoding: base64\r\n\r\nw6\xffk=\r\n\
--b\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n=C3\xa9 =\r\nsoft\r\n\
--b--\r\nepi\xe9logue\r\n";
        let out = to_seven_bit(message).expect("converted");
        assert_seven_bit(&out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\nMIME-Version: 1.0\r\n\r\n\
pre?amble\r\n\
--b\r\nContent-Transfer-Encoding: base64\r\n\r\nw6k=\r\n\
--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n\
--b\r\nContent-Transfer-Encoding: base64\r\n\r\nw6k=\r\n\
--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9 soft\r\n\
--b--\r\nepi?logue\r\n"
        );
    }

    #[test]
    fn broken_structures_still_come_out_seven_bit() {
        let no_boundary = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\n\xe9\r\n--x--\r\n";
        let unterminated = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain\r\n\r\n\xe9";
        let mut deep = Vec::new();
        for level in 0..40 {
            deep.extend_from_slice(
                format!(
                    "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
                )
                .as_bytes(),
            );
        }
        deep.extend_from_slice(b"\r\n\xe9\r\n");
        let no_header = b"\xe9t\xe9\r\n";
        let bare_lf = b"Subject: x\nContent-Type: text/plain\n\n\xe9t\xe9\n".to_vec();
        for message in [&no_boundary[..], unterminated, &deep, no_header, &bare_lf] {
            let out = to_seven_bit(message).expect("converted");
            assert!(out.iter().all(|&b| b != 0 && b < 128));
            assert_eq!(to_seven_bit(&out), None, "converting twice changes nothing");
        }
        let out = to_seven_bit(unterminated).unwrap();
        assert!(out.ends_with(
            b"--x\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n=E9"
        ));
        // Lone LFs are data that quoted-printable would turn into CRLF; base64 keeps them.
        let out = to_seven_bit(&bare_lf).unwrap();
        assert_eq!(
            out,
            b"Subject: x\nContent-Type: text/plain\nMIME-Version: 1.0\r\n\
Content-Transfer-Encoding: base64\r\n\n6XTpCg==\r\n"
        );
    }

    #[test]
    fn global_message_with_utf8_header_is_base64() {
        let inner = b"From: \xc3\xa9@example.com\r\nSubject: \xc3\xa9\r\n\r\n\xc3\xa9\r\n";
        let message = [
            &b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: message/global\r\n\r\n"[..],
            inner,
            b"--b--\r\n",
        ]
        .concat();
        let out = to_seven_bit(&message).expect("converted");
        assert_seven_bit(&out);
        let parsed = parse(&out);
        let part = &parsed.parts[1];
        assert_eq!(part.content_transfer_encoding(), Some("base64"));
        let raw = &out[part.offset_body as usize..part.offset_end as usize];
        assert_eq!(
            decode_base64_strict(raw),
            inner.strip_suffix(b"\r\n").unwrap()
        );
    }

    #[test]
    fn digest_parts_default_to_messages() {
        let message = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n\
Subject: one\r\n\r\n\xc3\xa9\r\n--d--\r\n";
        let out = to_seven_bit(message).expect("converted");
        // The part's own (empty) header is left alone; the message inside is converted.
        assert!(out.ends_with(
            b"--d\r\n\r\nSubject: one\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
=C3=A9\r\n--d--\r\n"
        ));
    }

    #[test]
    fn encoded_lines_never_read_as_delimiters() {
        // A soft line break right before a final `--b` would end the part early.
        let body = ["é".as_bytes().to_vec(), b"x".repeat(69), b"--b".to_vec()].concat();
        assert!(split_crlf(&encode_quoted_printable(&body)).contains(&&b"--b"[..]));
        let message = [
            &b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"[..],
            &body,
            b"\r\n--b--\r\n",
        ]
        .concat();
        let out = to_seven_bit(&message).expect("converted");
        assert!(memchr::memmem::find(&out, b"Content-Transfer-Encoding: base64\r\n").is_some());
        let parsed = parse(&out);
        assert_eq!(parsed.parts[1].contents(), body);
        // A masked preamble line neither.
        let message = b"Content-Type: multipart/mixed; boundary=\"b?\"\r\n\r\n\
--b\xff\r\n--b?\r\n\r\n\xe9\r\n--b?--\r\n";
        let out = to_seven_bit(message).expect("converted");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Content-Type: multipart/mixed; boundary=\"b?\"\r\nMIME-Version: 1.0\r\n\r\n\
?-b?\r\n--b?\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E9\r\n--b?--\r\n"
        );
    }

    #[test]
    fn cleaning_base64_never_makes_a_delimiter() {
        // Dropping the stray octet alone would leave `--c` at the start of a line.
        let message = b"Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\
Content-Transfer-Encoding: base64\r\n\r\n\xe9--c\r\nYWJj\r\n--c--\r\n";
        let out = to_seven_bit(message).expect("converted");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Content-Type: multipart/mixed; boundary=c\r\nMIME-Version: 1.0\r\n\r\n--c\r\n\
Content-Transfer-Encoding: base64\r\n\r\ncYWJ\r\n--c--\r\n"
        );
    }

    /// Bodies with the troublesome things close together: CRLF and lone CR/LF, `=`, white
    /// space, UTF-8, NUL, dots and dashes, and runs long enough to break lines.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let text: Vec<&'static [u8]> = vec![
            b"\r\n",
            b"\r\n",
            b"a",
            b"Zz",
            b" ",
            b"\t",
            b"=",
            b"=3D",
            b".",
            b"-",
            b"--",
            b"\xc3\xa9",
            b"\xe2\x82\xac",
            b"\xff",
            &[b'w'; 70],
            &[b'\xe9'; 40],
        ];
        let binary: Vec<&'static [u8]> = vec![b"\n", b"\r", b"\0", &[b'y'; 400]];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(proptest::sample::select(text.clone()), 0..150)
                .prop_map(|p| p.concat()),
            proptest::collection::vec(proptest::sample::select([text, binary].concat()), 0..150)
                .prop_map(|p| p.concat()),
        ]
    }

    const BOUNDARY: &str = "=_XyZ.9";

    fn two_part(first: &[u8], second: &[u8]) -> Vec<u8> {
        [
            format!(
                "From: a@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\npreamble\r\n\
--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n"
            )
            .as_bytes(),
            first,
            format!("\r\n--{BOUNDARY}\r\nContent-Type: application/x-test\r\n\r\n").as_bytes(),
            second,
            format!("\r\n--{BOUNDARY}--\r\nepilogue\r\n").as_bytes(),
        ]
        .concat()
    }

    /// Lines of the output that carry 8-bit octets or NUL must be lines of the input: the
    /// header fields we keep as they are.
    fn assert_unsafe_lines_are_kept_ones(input: &[u8], out: &[u8]) {
        for line in out.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if has_unsafe_octets(line) {
                assert!(
                    memchr::memmem::find(input, line).is_some(),
                    "new unsafe line {:?}",
                    line.escape_ascii().to_string()
                );
            }
        }
    }

    /// Messages made of MIME fields, delimiters and troublesome bytes in any order.
    fn mime_shaped() -> impl Strategy<Value = Vec<u8>> {
        let pieces: Vec<&'static [u8]> = vec![
            b"Content-Type: multipart/mixed; boundary=b\r\n",
            b"Content-Type: multipart/digest; boundary=\"c\"\r\n",
            b"Content-Type: message/rfc822\r\n",
            b"Content-Type: message/global\r\n",
            b"Content-Transfer-Encoding: 8bit\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"Content-Transfer-Encoding: quoted-printable\r\n",
            b"MIME-Version: 1.0\r\n",
            b"Subject: \xc3\xa9\r\n",
            b" folded\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"--b\r\n",
            b"--b--\r\n",
            b"--c\r\n",
            b"--c--\r\n",
            b"\xc3\xa9",
            b"=C3",
            b"=",
            b"text",
            b" ",
            b"\0",
            &[b'x'; 500],
        ];
        proptest::collection::vec(proptest::sample::select(pieces), 0..60).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn simple_message_round_trips(body in body()) {
            let message = [
                &b"From: a@example.org\r\nContent-Type: application/octet-stream\r\n\
    Content-Transfer-Encoding: 8bit\r\n\r\n"[..],
                &body,
            ]
            .concat();
            let Some(out) = to_seven_bit(&message) else {
                prop_assert!(body.is_ascii());
                return Ok(());
            };
            prop_assert!(!body.is_ascii());
            assert_seven_bit(&out);
            prop_assert_eq!(decoded_body(&out), body.clone());
            let parsed = parse(&out);
            prop_assert_eq!(parsed.root_part().contents(), &body[..]);
            prop_assert_eq!(to_seven_bit(&out), None);
        }

        #[test]
        fn two_part_message_round_trips(first in body(), second in body()) {
            let delimiter = format!("--{BOUNDARY}");
            prop_assume!(memchr::memmem::find(&first, delimiter.as_bytes()).is_none());
            prop_assume!(memchr::memmem::find(&second, delimiter.as_bytes()).is_none());
            let message = two_part(&first, &second);
            let Some(out) = to_seven_bit(&message) else {
                prop_assert!(first.is_ascii() && second.is_ascii());
                return Ok(());
            };
            prop_assert!(!(first.is_ascii() && second.is_ascii()));
            assert_seven_bit(&out);
            let (_, body) = header_and_body(&out);
            // Find the parts by their delimiter lines, independently of the code under test.
            let mut parts = Vec::new();
            let mut rest = body;
            let needle = format!("\r\n--{BOUNDARY}");
            while let Some(i) = memchr::memmem::find(rest, needle.as_bytes()) {
                parts.push(&rest[..i]);
                rest = &rest[i + needle.len()..];
            }
            prop_assert_eq!(parts.len(), 3, "preamble and two parts");
            prop_assert_eq!(parts[0], &b"preamble"[..]);
            prop_assert_eq!(rest, &b"--\r\nepilogue\r\n"[..]);
            let entity = |p: &'_ [u8]| p.strip_prefix(b"\r\n").unwrap().to_vec();
            prop_assert_eq!(decoded_body(&entity(parts[1])), first.clone());
            prop_assert_eq!(decoded_body(&entity(parts[2])), second.clone());

            let parsed = parse(&out);
            prop_assert_eq!(parsed.parts.len(), 3);
            prop_assert_eq!(parsed.parts[1].contents(), &first[..]);
            prop_assert_eq!(parsed.parts[2].contents(), &second[..]);
            prop_assert_eq!(to_seven_bit(&out), None);
        }

        #[test]
        fn any_bytes_are_survived(message in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Some(out) = to_seven_bit(&message) {
                assert_unsafe_lines_are_kept_ones(&message, &out);
                prop_assert_eq!(to_seven_bit(&out), None);
            }
        }

        #[test]
        fn mime_shaped_bytes_are_survived(message in mime_shaped()) {
            if let Some(out) = to_seven_bit(&message) {
                assert_unsafe_lines_are_kept_ones(&message, &out);
                prop_assert_eq!(to_seven_bit(&out), None);
            }
        }
    }
}
