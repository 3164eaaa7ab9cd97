//! Reading a message body: DATA with dot-unstuffing (RFC 5321 §4.5.2) and BDAT chunks
//! (RFC 3030), both without I/O.
//!
//! End of DATA is only `<CRLF>.<CRLF>` where the first CRLF is a real CRLF (or the start of
//! the data). The 2023 SMTP smuggling attacks relied on receivers that also took `<LF>.<LF>`,
//! `<LF>.<CRLF>`, `<CR>.<CR>` and similar as the end; here those are message content.
//!
//! A bare CR or bare LF in the content is stored as CRLF: RFC 5321 §2.3.8 allows CR and LF only
//! together, IMAP serves messages with CRLF line ends, and a normalised message cannot carry a
//! smuggled end-of-data sequence to the next hop when we relay it (the next hop sees `..`).

/// Where the decoder is within a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pos {
    /// At the start of a line that followed a real CRLF (or the start of the data).
    BolStrict,
    /// At the start of a line that followed a bare CR or LF.
    BolLoose,
    /// After a dot at the start of a strict line: `\r\n` next would end the data.
    StrictDot,
    /// After `<CRLF>.<CR>`: `\n` next ends the data.
    StrictDotCr,
    /// Inside a line.
    Mid,
    /// After a CR inside content: a LF next makes it a CRLF.
    Cr,
    /// The end was seen.
    Done,
}

/// Decodes DATA content. Feed it bytes as they arrive; it writes the message to `out`.
#[derive(Debug)]
pub struct DataDecoder {
    pos: Pos,
    /// Bytes of the message so far (after unstuffing and normalisation).
    size: u64,
}

impl Default for DataDecoder {
    fn default() -> Self {
        DataDecoder {
            pos: Pos::BolStrict,
            size: 0,
        }
    }
}

impl DataDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.pos == Pos::Done
    }

    /// Decoded bytes so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }

    /// Consumes input; returns how many bytes of `input` were used. It stops right after the
    /// end-of-data sequence, leaving the rest (pipelined commands) to the caller.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() && self.pos != Pos::Done {
            let b = input[i];
            match self.pos {
                Pos::Mid => {
                    // Fast path: copy everything up to the next CR or LF.
                    match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                        None => {
                            self.emit(out, &input[i..]);
                            return input.len();
                        }
                        Some(off) => {
                            self.emit(out, &input[i..i + off]);
                            i += off;
                            if input[i] == b'\r' {
                                self.pos = Pos::Cr;
                            } else {
                                // A bare LF ends the line, loosely.
                                self.emit(out, b"\r\n");
                                self.pos = Pos::BolLoose;
                            }
                            i += 1;
                        }
                    }
                }
                Pos::Cr => {
                    self.emit(out, b"\r\n");
                    if b == b'\n' {
                        self.pos = Pos::BolStrict;
                        i += 1;
                    } else {
                        // A bare CR ended the line; look at this byte again at a loose start.
                        self.pos = Pos::BolLoose;
                    }
                }
                Pos::BolStrict | Pos::BolLoose => {
                    if b == b'.' {
                        i += 1;
                        // RFC 5321 §4.5.2: the first dot of a line is removed.
                        self.pos = if self.pos == Pos::BolStrict {
                            Pos::StrictDot
                        } else {
                            Pos::Mid
                        };
                    } else {
                        self.pos = Pos::Mid;
                    }
                }
                Pos::StrictDot => {
                    if b == b'\r' {
                        self.pos = Pos::StrictDotCr;
                        i += 1;
                    } else {
                        // An ordinary line that began with a (removed) dot.
                        self.pos = Pos::Mid;
                    }
                }
                Pos::StrictDotCr => {
                    if b == b'\n' {
                        self.pos = Pos::Done;
                        i += 1;
                    } else {
                        // `<CRLF>.<CR>x`: not the end; the CR was a bare CR after an empty line.
                        self.emit(out, b"\r\n");
                        self.pos = Pos::BolLoose;
                    }
                }
                Pos::Done => break,
            }
        }
        i
    }
}

/// Normalises BDAT content (no dot-stuffing there) to CRLF line ends, across chunk borders.
#[derive(Debug, Default)]
pub struct ChunkNormalizer {
    pending_cr: bool,
    size: u64,
}

impl ChunkNormalizer {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut i = 0;
        while i < input.len() {
            if self.pending_cr {
                out.extend_from_slice(b"\r\n");
                self.pending_cr = false;
                if input[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                None => {
                    out.extend_from_slice(&input[i..]);
                    break;
                }
                Some(off) => {
                    out.extend_from_slice(&input[i..i + off]);
                    i += off;
                    if input[i] == b'\r' {
                        self.pending_cr = true;
                    } else {
                        out.extend_from_slice(b"\r\n");
                    }
                    i += 1;
                }
            }
        }
        self.size += (out.len() - start) as u64;
    }

    /// Ends the message: a CR left at the very end becomes a CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.extend_from_slice(b"\r\n");
            self.size += 2;
            self.pending_cr = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        let used = d.feed(input, &mut out);
        (out, used, d.is_done())
    }

    #[test]
    fn plain_message_and_terminator() {
        let (out, used, done) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert!(done);
        assert_eq!(out, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(used, b"Subject: x\r\n\r\nhello\r\n.\r\n".len());
    }

    #[test]
    fn empty_message() {
        assert_eq!(decode(b".\r\n"), (vec![], 3, true));
    }

    #[test]
    fn dots_are_unstuffed() {
        let (out, _, done) = decode(b"..hidden\r\n...\r\n.x\r\n.\r\n");
        assert!(done);
        assert_eq!(out, b".hidden\r\n..\r\nx\r\n");
    }

    /// The smuggling variants of 2023: none of these end the data.
    #[test]
    fn smuggling_sequences_are_content() {
        for (input, stored) in [
            (
                &b"a\n.\nMAIL FROM:<x>\r\n"[..],
                &b"a\r\n\r\nMAIL FROM:<x>\r\n"[..],
            ),
            (b"a\n.\r\nMAIL FROM:<x>\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n"),
            (b"a\r.\rMAIL FROM:<x>\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n"),
            (b"a\r\n.\nMAIL FROM:<x>\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n"),
            (b"a\r\n.\rMAIL FROM:<x>\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n"),
            (b"a\r.\r\nMAIL FROM:<x>\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n"),
        ] {
            let (out, used, done) = decode(input);
            assert!(!done, "{:?} ended the data", String::from_utf8_lossy(input));
            assert_eq!(used, input.len());
            assert_eq!(out, stored, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn split_anywhere_gives_the_same_result() {
        let input = b"line one\r\n..two\r\nbare\nlf\rcr\r\n.\r\nNEXT";
        let (whole, used_whole, _) = decode(input);
        for split in 0..input.len() {
            let mut d = DataDecoder::new();
            let mut out = Vec::new();
            let a = d.feed(&input[..split], &mut out);
            let b = if d.is_done() {
                0
            } else {
                d.feed(&input[split..], &mut out)
            };
            assert_eq!(out, whole, "split at {split}");
            assert_eq!(a + b, used_whole);
        }
    }

    #[test]
    fn chunks_normalise_across_borders() {
        let mut n = ChunkNormalizer::default();
        let mut out = Vec::new();
        n.feed(b"a\r", &mut out);
        n.feed(b"\nb\n", &mut out);
        n.feed(b"c\r", &mut out);
        n.finish(&mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
        assert_eq!(n.size(), out.len() as u64);
    }

    proptest! {
        /// Stuffing any CRLF message and decoding it gives the message back.
        #[test]
        fn stuff_then_decode_round_trips(lines in proptest::collection::vec("[ -~]{0,40}", 0..20)) {
            let msg: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\r\n").into_bytes()).collect();
            let mut wire = Vec::new();
            for l in &lines {
                if l.starts_with('.') { wire.push(b'.'); }
                wire.extend_from_slice(l.as_bytes());
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b".\r\n");
            let (out, used, done) = decode(&wire);
            prop_assert!(done);
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(out, msg);
        }

        /// Any input: no panic, output has only CRLF line ends, and the decoder never ends on
        /// anything but `<CRLF>.<CRLF>` (or a leading `.<CRLF>`).
        #[test]
        fn arbitrary_input_is_safe(input in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = DataDecoder::new();
            let mut out = Vec::new();
            let used = d.feed(&input, &mut out);
            if d.is_done() {
                let consumed = &input[..used];
                prop_assert!(consumed == b".\r\n" || consumed.ends_with(b"\r\n.\r\n"));
            } else {
                prop_assert_eq!(used, input.len());
            }
            for (i, &b) in out.iter().enumerate() {
                if b == b'\n' { prop_assert!(i > 0 && out[i - 1] == b'\r'); }
                if b == b'\r' && i + 1 < out.len() { prop_assert_eq!(out[i + 1], b'\n'); }
            }
        }
    }
}
