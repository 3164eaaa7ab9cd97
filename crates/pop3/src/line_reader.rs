//! Splits the client's bytes into lines, with a bound on how long a line may be. A line over
//! the bound is reported once and the rest of it is dropped as it arrives, so a client that
//! never sends a line end costs at most the bound in memory, however much it sends.
//!
//! RFC 1939 §3: commands end with CRLF. A bare LF is taken as a line end too (some clients send
//! one); a CR before the LF is removed, any other CR stays in the line for the parser to refuse.

use std::collections::VecDeque;

/// What the reader found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, without its line end.
    Line(Vec<u8>),
    /// A line longer than the bound; its bytes are dropped up to and including its line end.
    TooLong,
}

/// Lines from a byte stream; push bytes in, take events out.
#[derive(Debug)]
pub struct LineReader {
    /// The longest line accepted, line end included.
    max: usize,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
    /// Inside a line that was too long: drop bytes until the next LF.
    discarding: bool,
    events: VecDeque<LineEvent>,
}

impl LineReader {
    /// A reader of lines of at most `max` bytes, CRLF included.
    pub fn new(max: usize) -> LineReader {
        LineReader {
            max: max.max(2),
            partial: Vec::new(),
            discarding: false,
            events: VecDeque::new(),
        }
    }

    /// Adds bytes received from the client.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let newline = memchr::memchr(b'\n', data);
            let (piece, rest) = match newline {
                Some(i) => (data.get(..i).unwrap_or_default(), data.get(i + 1..)),
                None => (data, None),
            };
            data = rest.unwrap_or_default();
            if self.discarding {
                // The rest of an over-long line: dropped, never stored.
                if newline.is_some() {
                    self.discarding = false;
                }
                continue;
            }
            // What is buffered, plus `piece`, plus the LF that ends the line (now or later)
            // must fit: a partial line that cannot fit is given up at once.
            if self.partial.len() + piece.len() + 1 > self.max {
                self.partial.clear();
                self.events.push_back(LineEvent::TooLong);
                self.discarding = newline.is_none();
                continue;
            }
            self.partial.extend_from_slice(piece);
            if newline.is_some() {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.events.push_back(LineEvent::Line(line));
            }
        }
    }

    /// The next complete line (or over-long line), in the order they arrived.
    pub fn next_event(&mut self) -> Option<LineEvent> {
        self.events.pop_front()
    }

    /// Whether part of a line (or of an over-long line) is waiting for its end.
    pub fn in_line(&self) -> bool {
        !self.partial.is_empty() || self.discarding
    }

    /// Forgets everything received and not yet taken; returns how many bytes that was. Used
    /// after STLS, where bytes sent in clear text must not count as commands of the TLS session
    /// (the 2011 STARTTLS command injection).
    pub fn clear(&mut self) -> usize {
        let lines: usize = self
            .events
            .iter()
            .map(|e| match e {
                LineEvent::Line(l) => l.len() + 1,
                LineEvent::TooLong => self.max,
            })
            .sum();
        let n = lines + self.partial.len();
        self.events.clear();
        self.partial.clear();
        self.discarding = false;
        n
    }

    /// Bytes held, for the memory bound's tests.
    pub fn buffered(&self) -> usize {
        self.partial.len()
            + self
                .events
                .iter()
                .map(|e| match e {
                    LineEvent::Line(l) => l.len(),
                    LineEvent::TooLong => 0,
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(r: &mut LineReader) -> Vec<LineEvent> {
        std::iter::from_fn(|| r.next_event()).collect()
    }

    fn line(s: &str) -> LineEvent {
        LineEvent::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_end_with_crlf_or_lf() {
        let mut r = LineReader::new(255);
        r.push(b"USER a\r\nPASS b\nNOOP\r");
        assert_eq!(all(&mut r), vec![line("USER a"), line("PASS b")]);
        assert!(r.in_line());
        r.push(b"\n");
        assert_eq!(all(&mut r), vec![line("NOOP")]);
        assert!(!r.in_line());
    }

    #[test]
    fn a_cr_inside_a_line_stays() {
        let mut r = LineReader::new(255);
        r.push(b"NO\rOP\r\r\n");
        assert_eq!(all(&mut r), vec![line("NO\rOP\r")]);
    }

    #[test]
    fn the_bound_counts_the_line_end() {
        let mut r = LineReader::new(6);
        r.push(b"NOOP\r\n");
        assert_eq!(all(&mut r), vec![line("NOOP")]);
        r.push(b"NOOPS\r\n");
        assert_eq!(all(&mut r), vec![LineEvent::TooLong]);
        r.push(b"12345\n");
        assert_eq!(all(&mut r), vec![line("12345")]);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_dropped_as_it_arrives() {
        let mut r = LineReader::new(10);
        r.push(b"0123456789abc");
        assert_eq!(all(&mut r), vec![LineEvent::TooLong]);
        for _ in 0..1000 {
            r.push(&[b'x'; 1000]);
            assert_eq!(r.buffered(), 0);
        }
        assert!(all(&mut r).is_empty());
        r.push(b"yyy\r\nNOOP\r\n");
        assert_eq!(all(&mut r), vec![line("NOOP")]);
    }

    #[test]
    fn clear_forgets_lines_and_partial_input() {
        let mut r = LineReader::new(255);
        r.push(b"STLS\r\nUSER x\r\nPAS");
        assert_eq!(r.next_event(), Some(line("STLS")));
        assert_eq!(r.clear(), 7 + 3);
        assert_eq!(r.next_event(), None);
        assert!(!r.in_line());
        r.push(b"S y\r\n");
        assert_eq!(all(&mut r), vec![line("S y")]);
    }

    proptest! {
        /// However the input is cut into pieces, the same events come out, and the reader
        /// never holds a partial line longer than its bound.
        #[test]
        fn pieces_do_not_matter(data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(1usize..20, 0..50),
            max in 2usize..40) {
            let mut whole = LineReader::new(max);
            whole.push(&data);
            let expected = all(&mut whole);
            let mut pieces = LineReader::new(max);
            let mut got = Vec::new();
            let mut rest = &data[..];
            for c in cuts.iter().cycle().take(data.len() + 1) {
                if rest.is_empty() { break; }
                let n = (*c).min(rest.len());
                pieces.push(&rest[..n]);
                rest = &rest[n..];
                prop_assert!(pieces.partial.len() < max);
                got.extend(all(&mut pieces));
            }
            pieces.push(rest);
            got.extend(all(&mut pieces));
            prop_assert_eq!(&got, &expected);
            for e in &expected {
                if let LineEvent::Line(l) = e {
                    prop_assert!(l.len() < max);
                    prop_assert!(!l.contains(&b'\n'));
                }
            }
        }
    }
}
