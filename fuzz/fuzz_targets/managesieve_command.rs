//! ManageSieve client input in arbitrary pieces: the framer never panics, frames the same
//! events however the bytes arrive and holds no more than its limits allow; every framed
//! command parses or fails with printable text; and a session (accounts in memory) answers
//! any of it with well-formed responses, logged in or not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_managesieve::accounts::MemoryAccounts;
use mailstead_managesieve::command::{parse_command, parse_sasl_response};
use mailstead_managesieve::framing::{Frame, Framer, Limits};
use mailstead_managesieve::session::{Next, Session, Settings};
use std::sync::Arc;
use std::time::Duration;

/// Text that goes into a response: printable ASCII, so never a CR or LF.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| (0x20..0x7f).contains(&c))
}

fn frame<'a>(limits: Limits, chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut framer = Framer::new(limits);
    let mut events = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(e) = framer.next() {
            events.push(e);
        }
        assert!(framer.buffered() <= limits.max_command + limits.max_line + chunk.len());
    }
    events
}

/// Response lines: OK/NO/BYE, strings (capabilities, names, the SASL challenge), literals.
fn well_formed(mut out: &[u8]) -> bool {
    while !out.is_empty() {
        let Some(end) = out.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = &out[..end];
        out = &out[end + 2..];
        let literal = line
            .strip_prefix(b"{")
            .and_then(|l| l.strip_suffix(b"}"))
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
        if let Some(n) = literal {
            if out.len() < n + 2 || &out[n..n + 2] != b"\r\n" {
                return false;
            }
            out = &out[n + 2..];
        } else if ![&b"OK"[..], b"NO", b"BYE", b"\""].iter().any(|p| line.starts_with(p)) {
            return false;
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    // Small limits, varied by the first byte, so that every refusal path is reached.
    let limits = Limits {
        max_line: 16 + usize::from(seed & 0x3f),
        max_literal: u64::from(seed) * 2,
        max_command: 400,
        max_skip: 300 + u64::from(seed),
    };
    let whole = frame(limits, std::iter::once(input));
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
        if let Frame::Command(bytes) = event {
            assert!(bytes.len() <= limits.max_command && bytes.ends_with(b"\n"));
            if let Err(e) = parse_command(bytes) {
                assert!(printable(&e.message), "{:?}", e.message);
            }
            if let Err(e) = parse_sasl_response(bytes) {
                assert!(printable(&e.message), "{:?}", e.message);
            }
        }
    }

    // The whole session, with the server's own limits.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let accounts = Arc::new(MemoryAccounts::new(&[("a@example.test", "pw", true)]));
        let settings = Arc::new(Settings {
            hostname: "mail.example.test".into(),
            auth_failure_delay: Duration::ZERO,
        });
        let peer = "127.0.0.1".parse().expect("address");
        let mut session = Session::new(accounts, settings, false, true, peer, seed & 1 == 0);
        let mut framer = Framer::new(session.limits());
        session.greeting();
        if seed & 2 == 0 {
            framer.push(b"AUTHENTICATE \"PLAIN\" \"AGFAZXhhbXBsZS50ZXN0AHB3\"\r\n");
        }
        framer.push(input);
        let mut out = std::mem::take(&mut session.out);
        'frames: while let Some(f) = framer.next() {
            let next = session.frame(f).await;
            out.append(&mut session.out);
            match next {
                Next::Continue => {}
                Next::Close => break 'frames,
                Next::StartTls => {
                    framer.clear();
                    session.tls_started();
                    out.append(&mut session.out);
                }
            }
            framer.set_limits(session.limits());
        }
        assert!(well_formed(&out), "{:?}", String::from_utf8_lossy(&out));
    });
});
