//! Splitting the client's byte stream into whole commands, sans-I/O.
//!
//! A command is one line, unless the line ends with a literal header, `{n+}` or `{n}` (RFC
//! 5804 §4 literal-c2s). ManageSieve has no continuation requests: the client sends the n
//! octets right after the header whichever form it uses, so both are read the same way. After
//! the octets the command goes on with more line text, possibly with more literals. The framer
//! hands out whole commands with their literals inline; [`crate::command`] parses them.
//!
//! Memory stays bounded whatever the client announces: a line is at most `max_line` bytes, a
//! literal at most `max_literal`, a command at most `max_command`. Refused input is read and
//! dropped, never stored, up to where the client's next command starts, so the stream stays in
//! step. A refusal whose input would take more than `max_skip` bytes to drop is not worth
//! reading: the framer reports [`Frame::Lost`] and the connection is closed.
//!
//! Use: [`push`](Framer::push) what a read returned, then call [`next`](Framer::next) until it
//! gives `None`.

use mailstead_sieve::script::MAX_SCRIPT_SIZE;
use memchr::memchr;

/// Longest line outside literals. Quoted strings have at most 1024 octets (RFC 5804 §4), so
/// no command of the protocol needs more; scripts and long names go as literals.
pub const MAX_LINE: usize = 8 * 1024;
/// Largest literal before login: enough for any AUTHENTICATE PLAIN response, and no room for
/// a stranger to make the server hold more.
const PRE_AUTH_LITERAL: u64 = 8 * 1024;
/// Refused input read to stay in step before login; beyond it the connection is closed.
const PRE_AUTH_SKIP: u64 = 64 * 1024;
/// Refused input read to stay in step after login: a client that uploads a script a few times
/// too large hears why; one that announces far more is cut off.
const SKIP_FACTOR: u64 = 16;

/// Size limits for client input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, counting its line end (literal octets are not part of a line).
    pub max_line: usize,
    /// Largest literal taken.
    pub max_literal: u64,
    /// Largest command: its lines and literals together.
    pub max_command: usize,
    /// Most bytes of one refused command that are read and dropped to stay in step.
    pub max_skip: u64,
}

impl Limits {
    /// Before login: short lines and small literals.
    pub const fn before_login() -> Limits {
        Limits {
            max_line: MAX_LINE,
            max_literal: PRE_AUTH_LITERAL,
            max_command: 2 * MAX_LINE + PRE_AUTH_LITERAL as usize,
            max_skip: PRE_AUTH_SKIP,
        }
    }

    /// After login: a literal may hold the largest script, and a command a script, its name
    /// and the line text around them.
    pub const fn after_login() -> Limits {
        Limits {
            max_line: MAX_LINE,
            max_literal: MAX_SCRIPT_SIZE as u64,
            max_command: MAX_SCRIPT_SIZE + 2 * MAX_LINE,
            max_skip: SKIP_FACTOR * MAX_SCRIPT_SIZE as u64,
        }
    }
}

/// What the framer found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole command, literals inline, ending with its line end.
    Command(Vec<u8>),
    /// A line over `max_line`: skipped with the rest of its command.
    LineTooLong,
    /// A literal over `max_literal`: skipped with the rest of its command.
    LiteralTooLarge { size: u64 },
    /// A command over `max_command`: skipped with the rest of it.
    CommandTooLarge,
    /// Refused input larger than `max_skip`: reading it all would cost more than the client
    /// deserves, and without reading it the stream is out of step. Nothing more comes from the
    /// framer; the connection must be closed.
    Lost { size: u64 },
}

/// Bytes kept from the end of a line that is being skipped: enough for a literal header
/// (`{` 20 digits `+}` CR).
const TAIL: usize = 32;

#[derive(Debug)]
enum State {
    /// Reading line text.
    Line,
    /// Reading literal octets into the command.
    Literal { remaining: u64 },
    /// Dropping the rest of a refused command's line: `tail` is its last bytes so far,
    /// `skipped` what the refused command has cost so far.
    SkipLine {
        tail: Vec<u8>,
        skipped: u64,
        report: Frame,
    },
    /// Dropping a literal of a refused command, then the rest of the command.
    SkipLiteral {
        remaining: u64,
        skipped: u64,
        report: Frame,
    },
    /// Out of step after [`Frame::Lost`]: nothing is read any more.
    Lost,
}

/// The splitter, one per connection.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    /// Received bytes; those before `start` are consumed.
    buf: Vec<u8>,
    start: usize,
    /// How much of the current line (from `start`) was searched for LF already, so that a
    /// line arriving byte by byte is not searched from its start each time.
    scanned: usize,
    /// The command being assembled.
    cmd: Vec<u8>,
    state: State,
}

/// The size of the literal announced at the end of `line` (without its line end): `{n}` or
/// `{n+}`. A size past 2^64-1 saturates, which is over any limit.
pub(crate) fn literal_header(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let first_digit = body
        .iter()
        .rposition(|c| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let (before, digits) = body.split_at(first_digit);
    if digits.is_empty() || before.last() != Some(&b'{') {
        return None;
    }
    Some(
        digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .unwrap_or(u64::MAX),
    )
}

/// A line without its LF and the CR before it.
pub(crate) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(more);
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            cmd: Vec::new(),
            state: State::Line,
        }
    }

    /// Changes the limits for what is read from now on (after a login or UNAUTHENTICATE).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Feeds received bytes. Nothing is interpreted until [`next`](Self::next).
    pub fn push(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Lost) {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held: received and not yet handed out, plus the command being assembled.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start + self.cmd.len()
    }

    /// Whether a command is partly received (a PUTSCRIPT on its way).
    pub fn mid_command(&self) -> bool {
        self.buffered() > 0 || !matches!(self.state, State::Line)
    }

    /// Drops everything received and not yet handed out; returns how many bytes that was.
    /// After STARTTLS, what came in clear text must not count as commands of the TLS session
    /// (RFC 5804 §2.2).
    pub fn clear(&mut self) -> usize {
        let n = self.buffered();
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.cmd.clear();
        if !matches!(self.state, State::Lost) {
            self.state = State::Line;
        }
        n
    }

    fn available(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Takes up to `n` available bytes off the front; returns how many.
    fn consume(&mut self, n: u64) -> usize {
        let n = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.available().len());
        self.start += n;
        self.scanned = 0;
        n
    }

    /// The next event, or `None` when more input is needed.
    #[expect(clippy::should_implement_trait)] // resumable after `push`, unlike an Iterator
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            match std::mem::replace(&mut self.state, State::Line) {
                State::Lost => {
                    self.state = State::Lost;
                    return None;
                }
                State::Line => {
                    if let Some(frame) = self.line()? {
                        return Some(frame);
                    }
                }
                State::Literal { remaining } => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.available().len());
                    let (from, to) = (self.start, self.start + n);
                    self.cmd
                        .extend_from_slice(self.buf.get(from..to).unwrap_or_default());
                    self.consume(as_u64(n));
                    let remaining = remaining - as_u64(n);
                    if remaining > 0 {
                        self.state = State::Literal { remaining };
                        return None;
                    }
                }
                State::SkipLiteral {
                    remaining,
                    skipped,
                    report,
                } => {
                    let n = as_u64(self.consume(remaining));
                    if n < remaining {
                        self.state = State::SkipLiteral {
                            remaining: remaining - n,
                            skipped,
                            report,
                        };
                        return None;
                    }
                    self.state = State::SkipLine {
                        tail: Vec::new(),
                        skipped,
                        report,
                    };
                }
                State::SkipLine {
                    mut tail,
                    skipped,
                    report,
                } => {
                    let data = self.available();
                    match memchr(b'\n', data) {
                        None => {
                            let n = data.len();
                            keep_tail(&mut tail, data);
                            self.consume(as_u64(n));
                            let skipped = skipped.saturating_add(as_u64(n));
                            if skipped > self.limits.max_skip {
                                return Some(self.lose(skipped));
                            }
                            self.state = State::SkipLine {
                                tail,
                                skipped,
                                report,
                            };
                            return None;
                        }
                        Some(lf) => {
                            keep_tail(&mut tail, data.get(..=lf).unwrap_or_default());
                            self.consume(as_u64(lf + 1));
                            let skipped = skipped.saturating_add(as_u64(lf + 1));
                            if let Some(size) = literal_header(strip_eol(&tail)) {
                                // The refused command goes on with a literal: drop it too.
                                let skipped = skipped.saturating_add(size);
                                if skipped > self.limits.max_skip {
                                    return Some(self.lose(skipped));
                                }
                                self.state = State::SkipLiteral {
                                    remaining: size,
                                    skipped,
                                    report,
                                };
                            } else {
                                return Some(report);
                            }
                        }
                    }
                }
            }
        }
    }

    fn lose(&mut self, size: u64) -> Frame {
        self.state = State::Lost;
        self.buf.clear();
        self.start = 0;
        self.cmd.clear();
        Frame::Lost { size }
    }

    /// Starts skipping the rest of a refused command whose line ended with `line_end` (the
    /// whole line, or its last bytes), `already` bytes into it.
    fn refuse(&mut self, line_end: &[u8], already: u64, report: Frame) -> Option<Frame> {
        self.cmd.clear();
        let mut tail = Vec::new();
        keep_tail(&mut tail, line_end);
        if !line_end.ends_with(b"\n") {
            self.state = State::SkipLine {
                tail,
                skipped: already,
                report,
            };
            return None;
        }
        // The line is complete: the command ends here unless a literal follows.
        match literal_header(strip_eol(&tail)) {
            None => Some(report),
            Some(size) => {
                let skipped = already.saturating_add(size);
                if skipped > self.limits.max_skip {
                    return Some(self.lose(skipped));
                }
                self.state = State::SkipLiteral {
                    remaining: size,
                    skipped,
                    report,
                };
                None
            }
        }
    }

    /// In `State::Line`: `None` when more input is needed, `Some(None)` when the state moved
    /// on, `Some(Some(frame))` for an event.
    fn line(&mut self) -> Option<Option<Frame>> {
        let data = self.buf.get(self.start..).unwrap_or_default();
        let from = self.scanned.min(data.len());
        let Some(lf) = memchr(b'\n', data.get(from..).unwrap_or_default()).map(|i| from + i) else {
            let n = data.len();
            if n > self.limits.max_line {
                let tail = data
                    .get(n.saturating_sub(TAIL)..)
                    .unwrap_or_default()
                    .to_vec();
                self.consume(as_u64(n));
                return Some(self.refuse(&tail, as_u64(n), Frame::LineTooLong));
            }
            self.scanned = n;
            return None;
        };
        let n = lf + 1;
        let line = data.get(..n).unwrap_or_default();
        if n > self.limits.max_line {
            let tail = line
                .get(n.saturating_sub(TAIL)..)
                .unwrap_or_default()
                .to_vec();
            self.consume(as_u64(n));
            return Some(self.refuse(&tail, as_u64(n), Frame::LineTooLong));
        }
        if self.cmd.len() + n > self.limits.max_command {
            let line = line.to_vec();
            self.consume(as_u64(n));
            return Some(self.refuse(&line, as_u64(n), Frame::CommandTooLarge));
        }
        let header = literal_header(strip_eol(line));
        self.cmd.extend_from_slice(line);
        self.consume(as_u64(n));
        let Some(size) = header else {
            return Some(Some(Frame::Command(std::mem::take(&mut self.cmd))));
        };
        let report = if size > self.limits.max_literal {
            Frame::LiteralTooLarge { size }
        } else if as_u64(self.cmd.len()).saturating_add(size) > as_u64(self.limits.max_command) {
            Frame::CommandTooLarge
        } else {
            self.state = State::Literal { remaining: size };
            return Some(None);
        };
        self.cmd.clear();
        if size > self.limits.max_skip {
            return Some(Some(self.lose(size)));
        }
        self.state = State::SkipLiteral {
            remaining: size,
            skipped: size,
            report,
        };
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    const SMALL: Limits = Limits {
        max_line: 64,
        max_literal: 100,
        max_command: 300,
        max_skip: 1000,
    };

    fn frames(limits: Limits, input: &[u8]) -> Vec<Frame> {
        let mut f = Framer::new(limits);
        f.push(input);
        std::iter::from_fn(|| f.next()).collect()
    }

    fn cmd(s: &[u8]) -> Frame {
        Frame::Command(s.to_vec())
    }

    #[test]
    fn lines_and_literals() {
        assert_eq!(
            frames(SMALL, b"NOOP\r\nLISTSCRIPTS\n"),
            [cmd(b"NOOP\r\n"), cmd(b"LISTSCRIPTS\n")]
        );
        // Both literal forms are read at once: ManageSieve sends no continuation.
        let input = b"PUTSCRIPT {3}\r\nabc {5+}\r\nkeep;\r\nNOOP\r\n";
        assert_eq!(
            frames(SMALL, input),
            [
                cmd(b"PUTSCRIPT {3}\r\nabc {5+}\r\nkeep;\r\n"),
                cmd(b"NOOP\r\n")
            ]
        );
        // A literal may hold anything, line ends and headers included.
        let input = b"CHECKSCRIPT {8+}\r\n{2}\r\nx\r\n\r\nNOOP\r\n";
        assert_eq!(
            frames(SMALL, input),
            [
                cmd(b"CHECKSCRIPT {8+}\r\n{2}\r\nx\r\n\r\n"),
                cmd(b"NOOP\r\n")
            ]
        );
    }

    #[test]
    fn headers() {
        assert_eq!(literal_header(b"X {12+}"), Some(12));
        assert_eq!(literal_header(b"{0}"), Some(0));
        assert_eq!(literal_header(b"X {}"), None);
        assert_eq!(literal_header(b"X {+}"), None);
        assert_eq!(literal_header(b"X 12}"), None);
        assert_eq!(
            literal_header(b"X {99999999999999999999999+}"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_long_line_is_skipped_to_its_end() {
        let mut input = b"NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200));
        input.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            frames(SMALL, &input),
            [Frame::LineTooLong, cmd(b"NOOP\r\n")]
        );
        // Arriving in pieces, the line is refused before its end arrives.
        let mut f = Framer::new(SMALL);
        for piece in input.chunks(7) {
            f.push(piece);
            while let Some(e) = f.next() {
                assert!(e == Frame::LineTooLong || e == cmd(b"NOOP\r\n"), "{e:?}");
            }
            assert!(f.buffered() < SMALL.max_line + 7);
        }
    }

    #[test]
    fn a_long_line_announcing_a_literal_skips_the_literal_too() {
        let mut input = b"PUTSCRIPT \"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200));
        input.extend_from_slice(b"\" {10+}\r\nDELETESCRI\r\nNOOP\r\n");
        assert_eq!(
            frames(SMALL, &input),
            [Frame::LineTooLong, cmd(b"NOOP\r\n")]
        );
    }

    #[test]
    fn a_large_literal_is_skipped_with_the_rest_of_its_command() {
        let mut input = b"PUTSCRIPT \"a\" {150+}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'k', 150));
        input.extend_from_slice(b" {3+}\r\nabc\r\nNOOP\r\n");
        assert_eq!(
            frames(SMALL, &input),
            [Frame::LiteralTooLarge { size: 150 }, cmd(b"NOOP\r\n")]
        );
    }

    #[test]
    fn a_command_too_large_in_all_is_skipped() {
        let mut input = Vec::new();
        for _ in 0..4 {
            input.extend_from_slice(b"X {90+}\r\n");
            input.extend(std::iter::repeat_n(b'k', 90));
        }
        input.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            frames(SMALL, &input),
            [Frame::CommandTooLarge, cmd(b"NOOP\r\n")]
        );
    }

    #[test]
    fn absurd_sizes_lose_the_stream() {
        assert_eq!(
            frames(SMALL, b"PUTSCRIPT \"a\" {5000+}\r\nkeep;\r\nNOOP\r\n"),
            [Frame::Lost { size: 5000 }]
        );
        let mut f = Framer::new(SMALL);
        f.push(b"NOOP ");
        for _ in 0..100 {
            f.push(&[b'x'; 50]);
            if let Some(e) = f.next() {
                assert_eq!(e, Frame::Lost { size: 1005 });
                break;
            }
        }
        f.push(b"\r\nNOOP\r\n");
        assert_eq!(f.next(), None);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn clear_drops_what_came_before_tls() {
        let mut f = Framer::new(SMALL);
        f.push(b"STARTTLS\r\nAUTHENTICATE \"PLAIN\" {4+}\r\nab");
        assert_eq!(f.next(), Some(cmd(b"STARTTLS\r\n")));
        assert_eq!(f.clear(), 29);
        f.push(b"NOOP\r\n");
        assert_eq!(f.next(), Some(cmd(b"NOOP\r\n")));
    }

    proptest! {
        /// Any bytes in any pieces: the same events as all at once, and memory within the
        /// limits.
        #[test]
        fn pieces_frame_like_the_whole(
            input in prop::collection::vec(
                prop_oneof![
                    Just(b"{5+}\r\n".to_vec()),
                    Just(b"{120}\r\n".to_vec()),
                    Just(b"{2000+}\r\n".to_vec()),
                    Just(b"\r\n".to_vec()),
                    prop::collection::vec(any::<u8>(), 0..80),
                ],
                0..20,
            ),
            cuts in prop::collection::vec(1usize..40, 1..20),
        ) {
            let input: Vec<u8> = input.concat();
            let whole = frames(SMALL, &input);
            let mut f = Framer::new(SMALL);
            let mut got = Vec::new();
            let mut rest = &input[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                i += 1;
                f.push(&rest[..n]);
                rest = &rest[n..];
                while let Some(e) = f.next() {
                    got.push(e);
                }
                prop_assert!(f.buffered() <= SMALL.max_command + SMALL.max_line + 40);
            }
            prop_assert_eq!(got, whole.clone());
            for e in whole {
                if let Frame::Command(c) = e {
                    prop_assert!(c.len() <= SMALL.max_command && c.ends_with(b"\n"));
                }
            }
        }
    }
}
