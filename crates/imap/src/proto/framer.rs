//! Splitting the client's byte stream into complete commands, sans-I/O.
//!
//! A command is one line, unless a line ends with a literal header: `{n}` (synchronizing,
//! RFC 9051 §4.3: the client waits for a continuation request before sending the bytes),
//! `{n+}` (non-synchronizing, RFC 7888: the bytes follow at once), or the literal8 forms
//! `~{n}` / `~{n+}` (RFC 3516 §4.2). After the n bytes the command goes on with more line
//! text, possibly with more literals. The framer hands out whole commands, literals inline, for
//! [`parse_command`](super::parse::parse_command).
//!
//! Memory stays bounded whatever the client announces: a line is at most `max_line` bytes, a
//! literal at most `max_literal`, the command at most `max_command`. Refused input is read and
//! dropped, not stored, and always up to the point where the client's next command starts, so
//! the stream stays in step: a refused synchronizing literal is never sent by the client; a
//! refused non-synchronizing literal is on its way and is skipped byte for byte.
//!
//! Use: [`push`](Framer::push) what a read returned, then call [`next`](Framer::next) until it
//! gives `None`. After that the framer holds less than `max_command + max_line` bytes.

use super::parse::is_tag;
use thiserror::Error;

/// Size limits for client input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, counting its CRLF (literal bytes are not part of a line).
    pub max_line: usize,
    /// Largest literal.
    pub max_literal: u64,
    /// Largest command: all its lines and literals together.
    pub max_command: usize,
    /// Largest non-synchronizing literal: 4096 with LITERAL- (RFC 7888 §5), `max_literal`
    /// with LITERAL+.
    pub max_nonsync_literal: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024 * 1024,
            max_command: 65 * 1024 * 1024,
            max_nonsync_literal: 4096,
        }
    }
}

/// What the framer found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete command, literals inline, ending with its line end: feed it to
    /// `parse_command`.
    Command(Vec<u8>),
    /// A synchronizing literal was announced and is acceptable: send a continuation request
    /// ("+ Ready") and keep reading (RFC 9051 §7.5).
    Continue,
    /// A literal over the limits. Synchronizing: the client has not sent it and waits; answer
    /// `tag NO [TOOBIG]` (or BAD) and it abandons the command. Non-synchronizing: its bytes and
    /// the rest of the command have already been skipped; answer `tag BAD [TOOBIG]`
    /// (RFC 7888 §5). Either way the next bytes start a new command.
    LiteralTooLarge {
        tag: Option<String>,
        size: u64,
        synchronizing: bool,
    },
    /// A line over `max_line` (or one that would take the command over `max_command`): it has
    /// been skipped up to its LF, together with the rest of its command; answer BAD.
    LineTooLong { tag: Option<String> },
}

/// A raw line read by [`Framer::take_line`] was longer than `max_line`; it has been skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("line longer than {max} bytes")]
pub struct LineTooLong {
    pub max: usize,
}

/// Bytes kept from the end of a line that is being skipped: enough for a literal header
/// (`~{` 20 digits `+}` CR). A header padded with more leading zeros is not recognised there.
const TAIL: usize = 32;

#[derive(Debug)]
enum Report {
    Event(FrameEvent),
    /// The skipped line was read by `take_line`.
    RawLine,
}

#[derive(Debug)]
enum State {
    /// Reading line text.
    Line,
    /// Reading literal bytes into the command.
    Literal { remaining: u64 },
    /// Dropping the rest of a refused command's line; `tail` is its last bytes so far.
    SkipLine { tail: Vec<u8>, report: Report },
    /// Dropping a refused non-synchronizing literal, then the rest of its command.
    SkipLiteral { remaining: u64, report: Report },
}

/// Buffer capacity a framer keeps between commands.
const KEPT_CAPACITY: usize = 4 * 1024;

/// The splitter, one per connection.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    /// Received bytes; those before `start` are consumed.
    buf: Vec<u8>,
    start: usize,
    /// How much of the current line (from `start`) has been searched for LF already, so a
    /// line arriving byte by byte is not rescanned from its start each time.
    scanned: usize,
    /// The command being assembled.
    cmd: Vec<u8>,
    state: State,
}

/// A literal header at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    size: u64,
    synchronizing: bool,
}

/// `{n}`, `{n+}`, `~{n}` or `~{n+}` at the end of `line` (which is without its line end).
/// RFC 9051 §9 literal = "{" number64 "}" CRLF: the header is always last on its line. A size
/// past 2^64-1 saturates, which is over any limit.
fn literal_header(line: &[u8]) -> Option<Header> {
    let body = line.strip_suffix(b"}")?;
    let (body, synchronizing) = match body.strip_suffix(b"+") {
        Some(b) => (b, false),
        None => (body, true),
    };
    let first_digit = body
        .iter()
        .rposition(|c| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let (before, digits) = body.split_at(first_digit);
    if digits.is_empty() || before.last() != Some(&b'{') {
        return None;
    }
    let size = digits
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .unwrap_or(u64::MAX);
    Some(Header {
        size,
        synchronizing,
    })
}

/// A line without its LF and the CR before it.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The tag at the start of `bytes`, if it is one and a space follows it.
fn tag_of(bytes: &[u8]) -> Option<String> {
    let sp = bytes.iter().position(|&c| c == b' ')?;
    let tag = std::str::from_utf8(&bytes[..sp]).ok()?;
    is_tag(tag).then(|| tag.to_owned())
}

enum Scan {
    /// No LF yet.
    Incomplete,
    /// A line of this many bytes, LF included, within `max_line`.
    Line(usize),
    /// The current line is longer than `max_line` (whether or not its LF is here).
    TooLong,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            cmd: Vec::new(),
            state: State::Line,
        }
    }

    /// Changes the limits for what is read from now on (larger literals once the client has
    /// logged in, say). Checks a partly read command already passed stay passed.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds received bytes. Nothing is interpreted until [`next`](Self::next).
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held: received but not handed out, including a partly read command.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start + self.cmd.len()
    }

    /// Drops everything held and starts afresh; returns how many bytes were dropped. After
    /// STARTTLS, data that arrived in clear text must not be used (RFC 9051 §6.2.1): it
    /// could be commands injected by whoever sits on the unprotected connection.
    pub fn clear(&mut self) -> usize {
        let n = self.buffered();
        self.buf = Vec::new();
        self.start = 0;
        self.scanned = 0;
        self.cmd = Vec::new();
        self.state = State::Line;
        n
    }

    fn avail(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            // The room a literal needed is not kept by a connection that then sits idle.
            if self.buf.capacity() > KEPT_CAPACITY {
                self.buf = Vec::new();
            }
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    fn scan_line(&mut self) -> Scan {
        let avail = self.buf.get(self.start..).unwrap_or_default();
        let from = self.scanned.min(avail.len());
        match avail[from..].iter().position(|&c| c == b'\n') {
            Some(i) => {
                let len = from + i + 1;
                self.scanned = 0;
                if len > self.limits.max_line {
                    Scan::TooLong
                } else {
                    Scan::Line(len)
                }
            }
            None => {
                self.scanned = avail.len();
                // The LF is still to come, so the line will be longer than what is here.
                if avail.len() >= self.limits.max_line {
                    Scan::TooLong
                } else {
                    Scan::Incomplete
                }
            }
        }
    }

    /// The tag of the command being read, for reports. From at most the first `max_line`
    /// bytes, so it is the same however the input was split.
    fn current_tag(&self, line_len: Option<usize>) -> Option<String> {
        if !self.cmd.is_empty() {
            return tag_of(&self.cmd[..self.cmd.len().min(self.limits.max_line)]);
        }
        let avail = self.avail();
        let n = line_len
            .unwrap_or(avail.len())
            .min(avail.len())
            .min(self.limits.max_line);
        tag_of(&avail[..n])
    }

    /// Starts dropping the current command from the current line on.
    fn skip_command(&mut self, report: FrameEvent) {
        self.cmd = Vec::new();
        self.scanned = 0;
        self.state = State::SkipLine {
            tail: Vec::new(),
            report: Report::Event(report),
        };
    }

    /// The next event, or `None` when more input is needed.
    #[expect(clippy::should_implement_trait)] // resumable after `push`, unlike an Iterator
    pub fn next(&mut self) -> Option<FrameEvent> {
        loop {
            match std::mem::replace(&mut self.state, State::Line) {
                State::Line => match self.scan_line() {
                    Scan::Incomplete => return None,
                    Scan::TooLong => {
                        let tag = self.current_tag(None);
                        self.skip_command(FrameEvent::LineTooLong { tag });
                    }
                    Scan::Line(len) => {
                        if self.cmd.len().saturating_add(len) > self.limits.max_command {
                            let tag = self.current_tag(Some(len));
                            self.skip_command(FrameEvent::LineTooLong { tag });
                            continue;
                        }
                        let end = self.start + len;
                        let line = &self.buf[self.start..end];
                        let header = literal_header(strip_eol(line));
                        self.cmd.extend_from_slice(line);
                        self.start = end;
                        let Some(h) = header else {
                            return Some(FrameEvent::Command(std::mem::take(&mut self.cmd)));
                        };
                        let room = self.limits.max_command.saturating_sub(self.cmd.len()) as u64;
                        let limit = if h.synchronizing {
                            self.limits.max_literal
                        } else {
                            self.limits.max_literal.min(self.limits.max_nonsync_literal)
                        };
                        if h.size > limit || h.size > room {
                            let tag = self.current_tag(None);
                            self.cmd = Vec::new();
                            let event = FrameEvent::LiteralTooLarge {
                                tag,
                                size: h.size,
                                synchronizing: h.synchronizing,
                            };
                            if h.synchronizing {
                                // The client waits for "+" and will not send the bytes.
                                return Some(event);
                            }
                            self.state = State::SkipLiteral {
                                remaining: h.size,
                                report: Report::Event(event),
                            };
                            continue;
                        }
                        self.state = State::Literal { remaining: h.size };
                        if h.synchronizing {
                            return Some(FrameEvent::Continue);
                        }
                    }
                },
                State::Literal { remaining } => {
                    let avail = self.buf.get(self.start..).unwrap_or_default();
                    let n = avail
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.cmd.extend_from_slice(&avail[..n]);
                    self.start += n;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::Literal { remaining };
                        return None;
                    }
                }
                State::SkipLiteral { remaining, report } => {
                    let n = self
                        .avail()
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.start += n;
                    let remaining = remaining - n as u64;
                    if remaining > 0 {
                        self.state = State::SkipLiteral { remaining, report };
                        return None;
                    }
                    // The command goes on after the literal: drop that too.
                    self.state = State::SkipLine {
                        tail: Vec::new(),
                        report,
                    };
                }
                State::SkipLine { tail, report } => {
                    let (tail, report) = self.skip_line(tail, report)?;
                    if let Report::Event(_) = report {
                        // A non-synchronizing literal at the end of a dropped line is sent
                        // anyway (RFC 7888): drop it as well, or its bytes would be read
                        // as commands. A synchronizing one is never sent: the client waits
                        // for "+" and gets the tagged answer instead.
                        if let Some(h) = literal_header(strip_eol(&tail))
                            && !h.synchronizing
                        {
                            self.state = State::SkipLiteral {
                                remaining: h.size,
                                report,
                            };
                            continue;
                        }
                    }
                    return Some(match report {
                        Report::Event(e) => e,
                        Report::RawLine => FrameEvent::LineTooLong { tag: None },
                    });
                }
            }
        }
    }

    /// Drops bytes up to and including the next LF. Returns the line's last bytes and the
    /// report once the LF was found; otherwise keeps skipping (state restored) and returns
    /// `None`.
    fn skip_line(&mut self, mut tail: Vec<u8>, report: Report) -> Option<(Vec<u8>, Report)> {
        let avail = self.avail();
        let lf = avail.iter().position(|&c| c == b'\n');
        let upto = lf.unwrap_or(avail.len());
        let piece = &avail[..upto];
        tail.extend_from_slice(&piece[piece.len().saturating_sub(TAIL)..]);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
        match lf {
            Some(i) => {
                self.start += i + 1;
                Some((tail, report))
            }
            None => {
                self.start = self.buf.len();
                self.state = State::SkipLine { tail, report };
                None
            }
        }
    }

    /// Reads one raw line, outside command parsing: the `DONE` that ends IDLE (RFC 2177 §3,
    /// RFC 9051 §6.3.13), a SASL response during AUTHENTICATE (RFC 9051 §6.2.2). Returns it
    /// without its CRLF (or LF). A line over `max_line` is skipped up to its LF and then
    /// reported as an error. `None`: more input is needed; also while a command is partly
    /// read, as raw lines only come between commands.
    pub fn take_line(&mut self) -> Option<Result<Vec<u8>, LineTooLong>> {
        match std::mem::replace(&mut self.state, State::Line) {
            State::Line if self.cmd.is_empty() => match self.scan_line() {
                Scan::Incomplete => None,
                Scan::TooLong => {
                    self.scanned = 0;
                    self.state = State::SkipLine {
                        tail: Vec::new(),
                        report: Report::RawLine,
                    };
                    self.take_line()
                }
                Scan::Line(len) => {
                    let line = strip_eol(&self.buf[self.start..self.start + len]).to_vec();
                    self.start += len;
                    Some(Ok(line))
                }
            },
            State::SkipLine {
                tail,
                report: Report::RawLine,
            } => {
                self.skip_line(tail, Report::RawLine)?;
                Some(Err(LineTooLong {
                    max: self.limits.max_line,
                }))
            }
            other => {
                self.state = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{ParseOptions, parse_command};
    use super::super::types::{CommandBody, MailboxArg};
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits {
            max_line: 64,
            max_literal: 100,
            max_command: 200,
            max_nonsync_literal: 10,
        }
    }

    /// Pushes `chunks` one after the other, collecting every event after each push.
    fn run(limits: Limits, chunks: &[&[u8]]) -> (Vec<FrameEvent>, Framer) {
        let mut f = Framer::new(limits);
        let mut events = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(e) = f.next() {
                events.push(e);
            }
        }
        (events, f)
    }

    fn whole(limits: Limits, input: &[u8]) -> Vec<FrameEvent> {
        run(limits, &[input]).0
    }

    fn bytewise(limits: Limits, input: &[u8]) -> Vec<FrameEvent> {
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        run(limits, &chunks).0
    }

    fn cmd(s: &[u8]) -> FrameEvent {
        FrameEvent::Command(s.to_vec())
    }

    fn tag(t: &str) -> Option<String> {
        Some(t.to_owned())
    }

    #[test]
    fn lines() {
        let (events, f) = run(limits(), &[b"a NOOP\r\nb CAPABILITY\nc LOG"]);
        assert_eq!(events, vec![cmd(b"a NOOP\r\n"), cmd(b"b CAPABILITY\n")]);
        // The partial command stays buffered.
        assert_eq!(f.buffered(), 5);
        let (events, f) = run(limits(), &[b"c LOG", b"OUT\r", b"\n"]);
        assert_eq!(events, vec![cmd(b"c LOGOUT\r\n")]);
        assert_eq!(f.buffered(), 0);
        // An empty line is a (bad) command of its own.
        assert_eq!(whole(limits(), b"\r\n"), vec![cmd(b"\r\n")]);
    }

    #[test]
    fn bytes_after_a_command_stay_buffered() {
        let mut f = Framer::new(limits());
        f.push(b"a STARTTLS\r\nb LOGIN {3}\r\n");
        assert_eq!(f.next(), Some(cmd(b"a STARTTLS\r\n")));
        // Nothing after STARTTLS is looked at until asked for: it can still be dropped.
        assert_eq!(f.buffered(), 13);
        assert_eq!(f.clear(), 13);
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.next(), None);
        f.push(b"c NOOP\r\n");
        assert_eq!(f.next(), Some(cmd(b"c NOOP\r\n")));
    }

    #[test]
    fn clear_mid_literal() {
        let mut f = Framer::new(limits());
        f.push(b"a LOGIN {5}\r\nab");
        assert_eq!(f.next(), Some(FrameEvent::Continue));
        assert_eq!(f.next(), None);
        assert_eq!(f.clear(), 15);
        f.push(b"b NOOP\r\n");
        assert_eq!(f.next(), Some(cmd(b"b NOOP\r\n")));
    }

    #[test]
    fn literals() {
        let input: &[u8] = b"a LOGIN {5}\r\nfr\r\nd {3+}\r\nx y\r\nb APPEND x ~{4}\r\n\0\x01\r\n ~{2+}\r\nok\r\nc NOOP\r\n";
        let expected = vec![
            FrameEvent::Continue,
            cmd(b"a LOGIN {5}\r\nfr\r\nd {3+}\r\nx y\r\n"),
            FrameEvent::Continue,
            cmd(b"b APPEND x ~{4}\r\n\0\x01\r\n ~{2+}\r\nok\r\n"),
            cmd(b"c NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), input), expected);
        assert_eq!(bytewise(limits(), input), expected);
        // Split at every boundary, in two and three pieces.
        for i in 0..=input.len() {
            assert_eq!(
                run(limits(), &[&input[..i], &input[i..]]).0,
                expected,
                "split at {i}"
            );
            for j in i..=input.len() {
                assert_eq!(
                    run(limits(), &[&input[..i], &input[i..j], &input[j..]]).0,
                    expected,
                    "split at {i}, {j}"
                );
            }
        }
        // The commands parse.
        let login = parse_command(
            b"a LOGIN {5}\r\nfr\r\nd {3+}\r\nx y\r\n",
            &ParseOptions::default(),
        )
        .unwrap();
        assert_eq!(
            login.body,
            CommandBody::Login {
                user: b"fr\r\nd".to_vec(),
                password: b"x y".to_vec()
            }
        );
        // A header not at the end of a line is not a literal.
        assert_eq!(
            whole(limits(), b"a LOGIN {5} x\r\n"),
            vec![cmd(b"a LOGIN {5} x\r\n")]
        );
        // Zero-length literals, and a bare LF after the header.
        assert_eq!(
            whole(limits(), b"a LOGIN {0}\r\n {0+}\n\r\n"),
            vec![FrameEvent::Continue, cmd(b"a LOGIN {0}\r\n {0+}\n\r\n")]
        );
    }

    #[test]
    fn literal_header_forms() {
        let h = |size, synchronizing| {
            Some(Header {
                size,
                synchronizing,
            })
        };
        assert_eq!(literal_header(b"a {5}"), h(5, true));
        assert_eq!(literal_header(b"a {5+}"), h(5, false));
        assert_eq!(literal_header(b"a ~{5}"), h(5, true));
        assert_eq!(literal_header(b"{0}"), h(0, true));
        assert_eq!(literal_header(b"{007+}"), h(7, false));
        assert_eq!(
            literal_header(b"{99999999999999999999999}"),
            h(u64::MAX, true)
        );
        for no in [
            &b"a {}"[..],
            b"a {+}",
            b"a {5",
            b"a 5}",
            b"a {5-}",
            b"a {5+ }",
            b"a {-5}",
            b"a {5}}",
            b"",
            b"}",
        ] {
            assert_eq!(literal_header(no), None, "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn sync_literal_too_large() {
        let input = b"a APPEND x {101}\r\nb NOOP\r\n";
        let expected = vec![
            FrameEvent::LiteralTooLarge {
                tag: tag("a"),
                size: 101,
                synchronizing: true,
            },
            cmd(b"b NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), input), expected);
        assert_eq!(bytewise(limits(), input), expected);
        // In the second literal of a command: the whole command is dropped.
        let input = b"a LOGIN {2}\r\nab {999999999999}\r\nb NOOP\r\n";
        let expected = vec![
            FrameEvent::Continue,
            FrameEvent::LiteralTooLarge {
                tag: tag("a"),
                size: 999_999_999_999,
                synchronizing: true,
            },
            cmd(b"b NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), input), expected);
        assert_eq!(bytewise(limits(), input), expected);
        // Over what is left of max_command.
        let mut input = b"a APPEND x {90}\r\n".to_vec();
        input.extend_from_slice(&[b'm'; 90]);
        input.extend_from_slice(b" {90}\r\nb NOOP\r\n");
        let (events, _) = run(limits(), &[&input]);
        assert_eq!(
            events,
            vec![
                FrameEvent::Continue,
                FrameEvent::LiteralTooLarge {
                    tag: tag("a"),
                    size: 90,
                    synchronizing: true
                },
                cmd(b"b NOOP\r\n")
            ]
        );
    }

    #[test]
    fn nonsync_literal_too_large_is_skipped() {
        // 11 > max_nonsync_literal (LITERAL-): the bytes come anyway and are skipped exactly,
        // with the rest of the command, including a further non-sync literal.
        let mut input = b"a APPEND x {11+}\r\n".to_vec();
        input.extend_from_slice(b"b NOOP\r\nxyz");
        input.extend_from_slice(b" (\\Seen) {4+}\r\nc NO\r\n");
        input.extend_from_slice(b"d NOOP\r\n");
        let expected = vec![
            FrameEvent::LiteralTooLarge {
                tag: tag("a"),
                size: 11,
                synchronizing: false,
            },
            cmd(b"d NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), &input), expected);
        assert_eq!(bytewise(limits(), &input), expected);
        // The next command parses.
        let (events, _) = run(limits(), &[&input]);
        let FrameEvent::Command(next) = &events[1] else {
            panic!()
        };
        assert_eq!(
            parse_command(next, &ParseOptions::default()).unwrap().body,
            CommandBody::Noop
        );
        // A synchronizing literal later in the dropped command is not waited for: the
        // client waits for "+", gets the tagged answer instead and gives up.
        let input = b"a APPEND x {11+}\r\n0123456789A {5}\r\nb NOOP\r\n";
        assert_eq!(
            whole(limits(), input),
            vec![
                FrameEvent::LiteralTooLarge {
                    tag: tag("a"),
                    size: 11,
                    synchronizing: false
                },
                cmd(b"b NOOP\r\n")
            ]
        );
        // The same size synchronizing is fine: LITERAL- limits only the non-sync form.
        let mut input = b"a APPEND x {11}\r\n".to_vec();
        input.extend_from_slice(b"0123456789A\r\n");
        assert_eq!(
            whole(limits(), &input),
            vec![FrameEvent::Continue, cmd(&input)]
        );
    }

    #[test]
    fn huge_nonsync_literal_is_not_buffered() {
        let limits = Limits {
            max_nonsync_literal: 1 << 30,
            ..limits()
        };
        let mut f = Framer::new(limits);
        f.push(b"a APPEND x {50000000+}\r\n");
        assert_eq!(f.next(), None);
        let chunk = vec![b'x'; 1 << 16];
        let mut sent = 0;
        while sent < 50_000_000 {
            let n = chunk.len().min(50_000_000 - sent);
            f.push(&chunk[..n]);
            sent += n;
            assert_eq!(f.next(), None);
            assert_eq!(f.buffered(), 0);
        }
        f.push(b" more\r\nb NOOP\r\n");
        assert_eq!(
            f.next(),
            Some(FrameEvent::LiteralTooLarge {
                tag: tag("a"),
                size: 50_000_000,
                synchronizing: false
            })
        );
        assert_eq!(f.next(), Some(cmd(b"b NOOP\r\n")));
        assert_eq!(f.next(), None);
    }

    #[test]
    fn line_too_long() {
        let long = format!("a SEARCH {}\r\nb NOOP\r\n", "X".repeat(100));
        let expected = vec![
            FrameEvent::LineTooLong { tag: tag("a") },
            cmd(b"b NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), long.as_bytes()), expected);
        assert_eq!(bytewise(limits(), long.as_bytes()), expected);
        // Memory stays bounded while the line goes on.
        let mut f = Framer::new(limits());
        for _ in 0..1000 {
            f.push(&[b'Y'; 1000]);
            assert_eq!(f.next(), None);
            assert!(f.buffered() < 64);
        }
        f.push(b"\r\nb NOOP\r\n");
        assert_eq!(f.next(), Some(FrameEvent::LineTooLong { tag: None }));
        assert_eq!(f.next(), Some(cmd(b"b NOOP\r\n")));
        // Exactly max_line with CRLF is fine; one more is not.
        let ok = format!("a {}\r\n", "Z".repeat(60));
        assert_eq!(ok.len(), 64);
        assert_eq!(whole(limits(), ok.as_bytes()), vec![cmd(ok.as_bytes())]);
        let over = format!("a {}\r\n", "Z".repeat(61));
        assert_eq!(
            bytewise(limits(), over.as_bytes()),
            vec![FrameEvent::LineTooLong { tag: tag("a") }]
        );
        // A continuation line too long: the tag comes from the command's first line.
        let input = format!("t1 LOGIN {{1}}\r\nx {}\r\nb NOOP\r\n", "Z".repeat(70));
        let expected = vec![
            FrameEvent::Continue,
            FrameEvent::LineTooLong { tag: tag("t1") },
            cmd(b"b NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), input.as_bytes()), expected);
        assert_eq!(bytewise(limits(), input.as_bytes()), expected);
    }

    #[test]
    fn line_too_long_ending_in_nonsync_literal() {
        // The literal after the overlong line is on its way; it must not be read as commands.
        let input = format!(
            "a APPEND {} {{8+}}\r\nc LOGOUT\r\nb NOOP\r\n",
            "Q".repeat(80)
        );
        let expected = vec![
            FrameEvent::LineTooLong { tag: tag("a") },
            cmd(b"b NOOP\r\n"),
        ];
        assert_eq!(whole(limits(), input.as_bytes()), expected);
        assert_eq!(bytewise(limits(), input.as_bytes()), expected);
    }

    #[test]
    fn command_too_long() {
        // Lines and literals within their limits, the command over max_command.
        let lim = Limits {
            max_line: 64,
            max_literal: 100,
            max_command: 120,
            max_nonsync_literal: 100,
        };
        let mut input = b"a LOGIN {90+}\r\n".to_vec();
        input.extend_from_slice(&[b'u'; 90]);
        input.extend_from_slice(format!(" {}\r\nb NOOP\r\n", "p".repeat(40)).as_bytes());
        let expected = vec![
            FrameEvent::LineTooLong { tag: tag("a") },
            cmd(b"b NOOP\r\n"),
        ];
        assert_eq!(whole(lim, &input), expected);
        assert_eq!(bytewise(lim, &input), expected);
    }

    #[test]
    fn set_limits() {
        let mut f = Framer::new(limits());
        f.push(b"a LOGIN {200}\r\n");
        assert_eq!(
            f.next(),
            Some(FrameEvent::LiteralTooLarge {
                tag: tag("a"),
                size: 200,
                synchronizing: true
            })
        );
        f.set_limits(Limits {
            max_literal: 1000,
            max_command: 2000,
            ..limits()
        });
        assert_eq!(f.limits().max_literal, 1000);
        f.push(b"b APPEND x {200}\r\n");
        assert_eq!(f.next(), Some(FrameEvent::Continue));
    }

    #[test]
    fn take_line() {
        let mut f = Framer::new(limits());
        f.push(b"a IDLE\r\nDO");
        assert_eq!(f.next(), Some(cmd(b"a IDLE\r\n")));
        assert_eq!(f.take_line(), None);
        f.push(b"NE\r\nb NOOP\r\n");
        assert_eq!(f.take_line(), Some(Ok(b"DONE".to_vec())));
        assert_eq!(f.next(), Some(cmd(b"b NOOP\r\n")));
        // A SASL response, with a bare LF; an empty line.
        f.push(b"dGVzdA==\n\r\n");
        assert_eq!(f.take_line(), Some(Ok(b"dGVzdA==".to_vec())));
        assert_eq!(f.take_line(), Some(Ok(Vec::new())));
        // A raw line is not a command: no literal handling.
        f.push(b"x {5}\r\n");
        assert_eq!(f.take_line(), Some(Ok(b"x {5}".to_vec())));
        // Too long: skipped to its LF, then reported.
        f.push(&[b'L'; 100]);
        assert_eq!(f.take_line(), None);
        assert!(f.buffered() < 64);
        f.push(b"LL\r\nDONE\r\n");
        assert_eq!(f.take_line(), Some(Err(LineTooLong { max: 64 })));
        assert_eq!(f.take_line(), Some(Ok(b"DONE".to_vec())));
        // Not in the middle of a command.
        f.push(b"c LOGIN {3}\r\nab");
        assert_eq!(f.next(), Some(FrameEvent::Continue));
        assert_eq!(f.take_line(), None);
        f.push(b"c y\r\n");
        assert_eq!(f.next(), Some(cmd(b"c LOGIN {3}\r\nabc y\r\n")));
    }

    #[test]
    fn framed_commands_parse() {
        let mut f = Framer::new(Limits::default());
        f.push(b"A003 APPEND saved-messages (\\Seen) {5}\r\nhello\r\nA004 SELECT \"INBOX\"\r\n");
        assert_eq!(f.next(), Some(FrameEvent::Continue));
        let Some(FrameEvent::Command(c)) = f.next() else {
            panic!()
        };
        assert!(matches!(
            parse_command(&c, &ParseOptions::default()).unwrap().body,
            CommandBody::Append { .. }
        ));
        let Some(FrameEvent::Command(c)) = f.next() else {
            panic!()
        };
        assert!(matches!(
            parse_command(&c, &ParseOptions::default()).unwrap().body,
            CommandBody::Select { mailbox: MailboxArg(m), .. } if m == b"INBOX"
        ));
    }

    /// A command: line text and literals (sync, non-sync, literal8), and the events expected
    /// for it within generous limits.
    fn arb_valid_command() -> impl Strategy<Value = (Vec<u8>, usize)> {
        let text = "[ -~]{0,12}".prop_filter("no header at the end", |t| {
            literal_header(t.as_bytes()).is_none()
        });
        let lit = (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..12),
        );
        (
            "[A-Za-z0-9]{1,4}",
            prop::collection::vec((text.clone(), lit), 0..3),
            text,
            any::<bool>(),
        )
            .prop_map(|(tag, parts, end, lf)| {
                let mut out = format!("{tag} ").into_bytes();
                let mut sync = 0;
                for (t, (binary, nonsync, data)) in parts {
                    out.extend_from_slice(t.as_bytes());
                    let header = format!(
                        "{}{{{}{}}}",
                        if binary { "~" } else { "" },
                        data.len(),
                        if nonsync { "+" } else { "" }
                    );
                    out.extend_from_slice(header.as_bytes());
                    out.extend_from_slice(if lf { b"\n" } else { b"\r\n" });
                    out.extend_from_slice(&data);
                    sync += usize::from(!nonsync);
                }
                out.extend_from_slice(end.as_bytes());
                out.extend_from_slice(b"\r\n");
                (out, sync)
            })
    }

    /// Splits `input` at the given cut points.
    fn split<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for p in points {
            chunks.push(&input[prev..p]);
            prev = p;
        }
        chunks.push(&input[prev..]);
        chunks
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Any split of a valid stream gives the same commands (and continuation requests).
        #[test]
        fn any_split_of_valid_commands(cmds in prop::collection::vec(arb_valid_command(), 1..6), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for (c, sync) in &cmds {
                stream.extend_from_slice(c);
                expected.extend(std::iter::repeat_n(FrameEvent::Continue, *sync));
                expected.push(FrameEvent::Command(c.clone()));
            }
            let lim = Limits { max_line: 1000, max_literal: 1000, max_command: 10_000, max_nonsync_literal: 1000 };
            let (events, f) = run(lim, &split(&stream, &cuts));
            prop_assert_eq!(&events, &expected);
            prop_assert_eq!(f.buffered(), 0);
            prop_assert_eq!(bytewise(lim, &stream), expected);
        }

        /// Any input, valid or not, gives the same events however it is split, and what is
        /// held between reads stays within the limits.
        #[test]
        fn any_split_of_any_input(
            input in prop::collection::vec(
                prop_oneof![
                    4 => prop::sample::select(&b"{}+~\r\n 0123456789aA"[..]),
                    1 => any::<u8>(),
                ],
                0..400,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            max_line in 4usize..40,
            max_literal in 0u64..40,
            max_command in 1usize..120,
            max_nonsync_literal in 0u64..40,
        ) {
            let lim = Limits { max_line, max_literal, max_command, max_nonsync_literal };
            let expected = whole(lim, &input);
            let chunks = split(&input, &cuts);
            let mut f = Framer::new(lim);
            let mut events = Vec::new();
            for c in chunks {
                f.push(c);
                while let Some(e) = f.next() {
                    events.push(e);
                }
                prop_assert!(f.buffered() < max_command + max_line, "{} held", f.buffered());
            }
            prop_assert_eq!(&events, &expected);
            for e in &events {
                match e {
                    FrameEvent::Command(c) => {
                        prop_assert!(c.len() <= max_command);
                        prop_assert!(c.ends_with(b"\n"));
                        let _ = parse_command(c, &ParseOptions::default());
                    }
                    FrameEvent::LiteralTooLarge { tag, .. } | FrameEvent::LineTooLong { tag } => {
                        prop_assert!(tag.as_deref().is_none_or(is_tag));
                    }
                    FrameEvent::Continue => {}
                }
            }
        }

        /// take_line and next interleaved at random never panic and stay bounded.
        #[test]
        fn take_line_and_next_mixed(
            input in prop::collection::vec(prop::sample::select(&b"{}+~\r\n 05aD"[..]), 0..300),
            ops in prop::collection::vec(any::<bool>(), 0..60),
        ) {
            let lim = Limits { max_line: 16, max_literal: 20, max_command: 40, max_nonsync_literal: 8 };
            let mut f = Framer::new(lim);
            for (chunk, raw) in input.chunks(7).zip(ops.iter().cycle()) {
                f.push(chunk);
                if *raw {
                    while let Some(l) = f.take_line() {
                        if let Ok(l) = l {
                            prop_assert!(l.len() < 16);
                        }
                    }
                } else {
                    while f.next().is_some() {}
                    prop_assert!(f.buffered() < 40 + 16);
                }
            }
        }
    }
}
