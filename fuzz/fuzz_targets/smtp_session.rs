//! Arbitrary command lines into an SMTP session of each kind; every request the session makes
//! is answered, so deep states (AUTH dialogues, DATA, BDAT) are reached too. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mailstead_smtp::session::{Action, AuthVerdict, Limits, Mode, RcptVerdict, Session, Target};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    let mode = match selector % 3 {
        0 => Mode::Mx,
        1 => Mode::Submission,
        _ => Mode::Submissions,
    };
    let limits = Limits { max_message_size: 4096, max_recipients: 5, max_errors: 30, line_limit: 512 };
    let mut s = Session::new(Arc::from("mx.example.test"), mode, limits, selector & 4 != 0, true, || "ID".into());
    for line in input.split_inclusive(|&b| b == b'\n') {
        let mut queue: Vec<Action> = s.line(line);
        let mut steps = 0;
        while let Some(a) = queue.pop() {
            steps += 1;
            assert!(steps < 1000, "a request loop");
            let next = match a {
                Action::CheckSender(_) => s.sender_checked(selector & 8 != 0),
                Action::CheckRecipient(addr) => s.recipient_checked(match addr.len() % 4 {
                    0 => RcptVerdict::Remote,
                    1 => RcptVerdict::Unknown,
                    2 => RcptVerdict::Full(addr),
                    _ => RcptVerdict::Local { targets: vec![Target { mailbox: 1, address: addr }], forward: vec![] },
                }),
                Action::Authenticate { user, .. } => s.auth_checked(if user.len() % 2 == 0 { AuthVerdict::Ok(user) } else { AuthVerdict::Failed }),
                Action::ReadData => s.data_read(line.len() as u64 * 10),
                Action::ReadChunk { size, .. } => s.chunk_read(size as u64),
                Action::Deliver => s.delivered(mailstead_smtp::reply::ok("done")).0,
                Action::StartTls => {
                    s.tls_started();
                    Vec::new()
                }
                Action::Reply(r) => {
                    // Nothing the client sends may break a reply into extra lines.
                    let wire = r.to_wire();
                    assert_eq!(wire.matches('\n').count(), r.lines.len().max(1));
                    assert_eq!(wire.matches("\r\n").count(), r.lines.len().max(1));
                    Vec::new()
                }
                Action::Close | Action::Ended(..) => Vec::new(),
            };
            queue.extend(next);
        }
        if s.is_closed() {
            break;
        }
    }
});
