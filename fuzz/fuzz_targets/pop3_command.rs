//! Arbitrary client bytes, in arbitrary pieces, into the POP3 line reader and session; every
//! action the session asks for is answered (logins succeed or fail by the password's length,
//! messages are arbitrary bytes from the input), so the TRANSACTION and UPDATE states are
//! reached too. Never a panic; every reply starts with +OK, -ERR or the AUTH challenge and
//! ends with CRLF; the reader holds no more than its bound; nothing follows Close; QUIT's
//! update only lists messages of the maildrop.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_pop3::line_reader::{LineEvent, LineReader};
use mailstead_pop3::maildrop::{Maildrop, MaildropMessage};
use mailstead_pop3::session::{Action, LoginOutcome, Session, Settings};
use mailstead_pop3::{command, message_text};
use mailstead_store::BlobId;

const MAX_LINE: usize = 8 * 1024;

fn maildrop(bodies: &[&[u8]]) -> Maildrop {
    let msgs = bodies
        .iter()
        .enumerate()
        .map(|(i, raw)| MaildropMessage {
            uid: i as u32 * 3 + 1,
            size: message_text::size(raw),
            seen: i % 2 == 1,
            blob: BlobId([i as u8; 32]),
        })
        .collect();
    Maildrop::new(0x1234_5678, msgs)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    // Up to three stored messages taken from the input itself, so dots, bare LFs and 8-bit
    // bytes reach RETR and TOP.
    let bodies: Vec<&[u8]> = input
        .chunks(input.len() / 3 + 1)
        .take(usize::from(seed % 4))
        .collect();
    let mut session = Session::new(Settings {
        hostname: "mail.example.test".into(),
        tls: seed & 4 != 0,
        stls: seed & 8 != 0,
        local: seed & 16 != 0,
        allow_plaintext: seed & 32 != 0,
    });
    session.greeting();
    session.out.clear();
    let mut reader = LineReader::new(MAX_LINE);
    let mut closed = false;
    let (mut rest, mut state) = (input, u32::from(seed) | 1);
    while !rest.is_empty() && !closed {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + state as usize % 97).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        reader.push(piece);
        assert!(reader.buffered() <= MAX_LINE + n);
        while let Some(event) = reader.next_event() {
            if closed {
                break;
            }
            let mut action = match &event {
                LineEvent::Line(line) => {
                    assert!(line.len() < MAX_LINE && !line.contains(&b'\n'));
                    if let Ok(cmd) = command::parse(line) {
                        let _ = format!("{cmd:?}");
                    }
                    session.line(line)
                }
                LineEvent::TooLong => session.line_too_long(),
            };
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 10, "an action loop");
                action = match action {
                    Action::Continue => break,
                    Action::Close => {
                        closed = true;
                        break;
                    }
                    Action::StartTls => {
                        reader.clear();
                        session.tls_started();
                        break;
                    }
                    Action::Login(c) => session.login_result(match c.password.len() % 5 {
                        0 => LoginOutcome::Failed,
                        1 => LoginOutcome::Denied,
                        2 => LoginOutcome::InUse,
                        3 => LoginOutcome::Unavailable,
                        _ => LoginOutcome::LoggedIn(maildrop(&bodies)),
                    }),
                    Action::ReadMessage(blob) => {
                        let raw = bodies.get(usize::from(blob.0[0])).copied();
                        session.message_read(if seed & 64 != 0 {
                            raw
                        } else {
                            raw.or(Some(b""))
                        })
                    }
                    Action::Update(plan) => {
                        let uids: Vec<u32> = (0..bodies.len() as u32).map(|i| i * 3 + 1).collect();
                        assert!(
                            plan.deleted
                                .iter()
                                .chain(&plan.seen)
                                .all(|u| uids.contains(u))
                        );
                        assert!(plan.seen.iter().all(|u| !plan.deleted.contains(u)));
                        session.update_done(if seed & 128 != 0 {
                            None
                        } else {
                            Some(plan.deleted.len())
                        })
                    }
                };
            }
            let out = std::mem::take(&mut session.out);
            if !out.is_empty() {
                assert!(
                    out.starts_with(b"+OK") || out.starts_with(b"-ERR ") || out == b"+ \r\n",
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
                assert!(out.ends_with(b"\r\n"));
            }
        }
    }
});
