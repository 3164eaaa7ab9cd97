//! IMAP client input in arbitrary pieces: the framer never panics, frames the same events
//! however the bytes arrive and holds no more than its limits allow; every framed command
//! parses or fails cleanly, and a parsed command's tag is a valid tag.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_imap::proto::framer::{FrameEvent, Framer, Limits};
use mailstead_imap::proto::parse::{ParseOptions, parse_command};

/// tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9), checked here independently of the
/// parser's own character classes.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag
            .bytes()
            .all(|c| (0x21..0x7f).contains(&c) && !b"(){%*\"\\+".contains(&c))
}

/// Text that goes on a response line: printable ASCII only, so never a CR or LF.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| (0x20..0x7f).contains(&c))
}

/// Pushes the chunks one by one, draining events after each; checks the memory bound.
fn frame<'a>(limits: Limits, chunks: impl Iterator<Item = &'a [u8]>) -> Vec<FrameEvent> {
    let mut framer = Framer::new(limits);
    let mut events = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(e) = framer.next() {
            events.push(e);
        }
        assert!(framer.buffered() < limits.max_command + limits.max_line);
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    // Small limits, varied by the first byte, so that every refusal path is reached.
    let limits = Limits {
        max_line: 16 + usize::from(seed & 0x3f),
        max_literal: u64::from(seed) * 4,
        max_command: 600,
        max_nonsync_literal: u64::from(seed >> 3),
    };
    let whole = frame(limits, std::iter::once(input));
    // The same input in pieces of 1 to 13 bytes, sizes drawn from the seed.
    let mut pieces = Vec::new();
    let (mut rest, mut state) = (input, u32::from(seed) | 1);
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + state as usize % 13).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        pieces.push(piece);
        rest = tail;
    }
    assert_eq!(frame(limits, pieces.into_iter()), whole);

    for event in &whole {
        match event {
            FrameEvent::Command(bytes) => {
                assert!(bytes.len() <= limits.max_command && bytes.ends_with(b"\n"));
                for utf8 in [false, true] {
                    match parse_command(bytes, &ParseOptions { utf8 }) {
                        Ok(cmd) => assert!(valid_tag(&cmd.tag), "{:?}", cmd.tag),
                        Err(e) => {
                            assert!(e.tag.as_deref().is_none_or(valid_tag), "{:?}", e.tag);
                            assert!(printable(&e.message), "{:?}", e.message);
                        }
                    }
                }
            }
            FrameEvent::LiteralTooLarge { tag, .. } | FrameEvent::LineTooLong { tag } => {
                assert!(tag.as_deref().is_none_or(valid_tag), "{tag:?}");
            }
            FrameEvent::Continue => {}
        }
    }
});
