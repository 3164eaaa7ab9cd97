//! The session driven directly: commands in, actions out, no sockets.

use super::*;

fn session(mode: Mode, tls: bool) -> Session {
    let limits = Limits {
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 50,
        line_limit: 512,
    };
    Session::new(
        Arc::from("mx.example.test"),
        mode,
        limits,
        tls,
        true,
        || "ID1".to_string(),
    )
}

fn send(s: &mut Session, line: &str) -> Vec<Action> {
    s.line(format!("{line}\r\n").as_bytes())
}

fn text(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(r) => Some(r.to_wire()),
            _ => None,
        })
        .collect()
}

fn one(actions: &[Action]) -> String {
    let t = text(actions);
    assert_eq!(t.len(), 1, "expected one reply, got {t:?} from {actions:?}");
    t[0].clone()
}

fn ready_mx() -> Session {
    let mut s = session(Mode::Mx, false);
    send(&mut s, "EHLO client.example");
    s
}

fn with_recipient(s: &mut Session) {
    assert_eq!(
        one(&send(s, "MAIL FROM:<a@remote.test>")),
        "250 2.1.0 sender OK\r\n"
    );
    assert_eq!(
        send(s, "RCPT TO:<alice@example.test>"),
        vec![Action::CheckRecipient("alice@example.test".into())]
    );
    let local = RcptVerdict::Local {
        targets: vec![Target {
            mailbox: 1,
            address: "alice@example.test".into(),
            rcpt: "alice@example.test".into(),
        }],
        forward: vec![],
    };
    assert_eq!(
        one(&s.recipient_checked(local)),
        "250 2.1.5 recipient OK\r\n"
    );
}

#[test]
fn greeting_and_capabilities() {
    let mut s = session(Mode::Mx, false);
    assert_eq!(
        s.greeting().to_wire(),
        "220 mx.example.test ESMTP ready\r\n"
    );
    let ehlo = one(&send(&mut s, "EHLO client.example"));
    assert_eq!(
        ehlo,
        "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n250 STARTTLS\r\n"
    );
    // Submission offers AUTH only once TLS is on; port 25 never.
    let mut sub = session(Mode::Submission, false);
    assert!(!one(&send(&mut sub, "EHLO c")).contains("AUTH"));
    sub.tls_started();
    assert!(one(&send(&mut sub, "EHLO c")).contains("250 AUTH PLAIN LOGIN\r\n"));
    let mut mx_tls = session(Mode::Mx, true);
    let caps = one(&send(&mut mx_tls, "EHLO c"));
    assert!(!caps.contains("AUTH") && !caps.contains("STARTTLS"));
    assert_eq!(one(&send(&mut mx_tls, "HELO c")), "250 mx.example.test\r\n");
}

#[test]
fn sequence_rules() {
    let mut s = session(Mode::Mx, false);
    assert_eq!(
        one(&send(&mut s, "MAIL FROM:<a@b.test>")),
        "503 5.5.1 send EHLO first\r\n"
    );
    let mut s = ready_mx();
    assert_eq!(
        one(&send(&mut s, "RCPT TO:<a@b.test>")),
        "503 5.5.1 need MAIL before RCPT\r\n"
    );
    assert_eq!(
        one(&send(&mut s, "DATA")),
        "503 5.5.1 need MAIL and RCPT before DATA\r\n"
    );
    send(&mut s, "MAIL FROM:<a@b.test>");
    assert_eq!(
        one(&send(&mut s, "MAIL FROM:<a@b.test>")),
        "503 5.5.1 nested MAIL command\r\n"
    );
    assert_eq!(
        one(&send(&mut s, "DATA")),
        "554 5.5.1 no valid recipients\r\n"
    );
    assert!(
        matches!(&send(&mut s, "RSET")[..], [Action::Ended(_, why), Action::Reply(_)] if why == "reset by RSET")
    );
    assert_eq!(one(&send(&mut s, "NOOP")), "250 2.0.0 OK\r\n");
    assert!(one(&send(&mut s, "VRFY alice")).starts_with("252 2.5.2 "));
    assert_eq!(
        one(&send(&mut s, "EXPN staff")),
        "502 5.5.1 EXPN is not available\r\n"
    );
    assert_eq!(
        one(&send(&mut s, "FOO bar")),
        "500 5.5.1 command not recognised\r\n"
    );
    assert!(one(&send(&mut s, "MAIL\0 FROM:<a@b>")).starts_with("501 5.5.4 NUL"));
    let quit = send(&mut s, "QUIT");
    assert_eq!(
        text(&quit),
        vec!["221 2.0.0 mx.example.test closing connection\r\n"]
    );
    assert_eq!(quit.last(), Some(&Action::Close));
    assert!(s.is_closed());
}

#[test]
fn relay_is_decided_by_authentication_only() {
    let mut s = ready_mx();
    send(&mut s, "MAIL FROM:<a@remote.test>");
    send(&mut s, "RCPT TO:<x@elsewhere.test>");
    assert_eq!(
        one(&s.recipient_checked(RcptVerdict::Remote)),
        "554 5.7.1 <x@elsewhere.test>: relay access denied\r\n"
    );

    let mut sub = session(Mode::Submission, true);
    send(&mut sub, "EHLO c");
    assert_eq!(
        one(&send(&mut sub, "MAIL FROM:<alice@example.test>")),
        "530 5.7.0 authentication required\r\n"
    );
    assert!(
        matches!(&send(&mut sub, "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=")[..],
        [Action::Authenticate { user, password }] if user == "alice@example.test" && password == "secret")
    );
    assert_eq!(
        one(&sub.auth_checked(AuthVerdict::Ok("alice@example.test".into()))),
        "235 2.7.0 authentication successful\r\n"
    );
    assert_eq!(
        send(&mut sub, "MAIL FROM:<alice@example.test>"),
        vec![Action::CheckSender("alice@example.test".into())]
    );
    assert_eq!(one(&sub.sender_checked(true)), "250 2.1.0 sender OK\r\n");
    send(&mut sub, "RCPT TO:<x@elsewhere.test>");
    assert_eq!(
        one(&sub.recipient_checked(RcptVerdict::Remote)),
        "250 2.1.5 recipient OK\r\n"
    );
    assert_eq!(
        sub.transaction().unwrap().remote[0].address,
        "x@elsewhere.test"
    );
}

#[test]
fn recipient_verdicts_and_codes() {
    let mut s = ready_mx();
    send(&mut s, "MAIL FROM:<>");
    for (verdict, expected) in [
        (
            RcptVerdict::Unknown,
            "550 5.1.1 <r@example.test>: recipient address rejected: user unknown\r\n",
        ),
        (
            RcptVerdict::Disabled,
            "550 5.2.1 <r@example.test>: mailbox disabled, not accepting messages\r\n",
        ),
        (
            RcptVerdict::Full("r@example.test".into()),
            "452 4.2.2 <r@example.test>: mailbox r@example.test is full, try again later\r\n",
        ),
    ] {
        send(&mut s, "RCPT TO:<r@example.test>");
        assert_eq!(one(&s.recipient_checked(verdict)), expected);
    }
    assert_eq!(s.transaction().unwrap().refused.len(), 3);
    assert_eq!(
        s.transaction().unwrap().from,
        "",
        "null sender accepted on port 25"
    );
}

#[test]
fn postmaster_without_domain_is_accepted() {
    let mut s = ready_mx();
    send(&mut s, "MAIL FROM:<a@remote.test>");
    assert_eq!(
        send(&mut s, "RCPT TO:<Postmaster>"),
        vec![Action::CheckRecipient("postmaster@mx.example.test".into())]
    );
    s.recipient_checked(RcptVerdict::Unknown);
    assert_eq!(
        one(&send(&mut s, "RCPT TO:<>")),
        "501 5.1.3 a recipient address is required\r\n"
    );
}

#[test]
fn too_many_recipients() {
    let mut s = ready_mx();
    send(&mut s, "MAIL FROM:<a@remote.test>");
    for i in 0..3 {
        send(&mut s, &format!("RCPT TO:<u{i}@example.test>"));
        s.recipient_checked(RcptVerdict::Local {
            targets: vec![Target {
                mailbox: i,
                address: format!("u{i}@example.test"),
                rcpt: format!("u{i}@example.test"),
            }],
            forward: vec![],
        });
    }
    assert_eq!(
        one(&send(&mut s, "RCPT TO:<u9@example.test>")),
        "452 4.5.3 too many recipients (at most 3)\r\n"
    );
    assert_eq!(s.transaction().unwrap().targets.len(), 3);
}

#[test]
fn data_flow_and_size_limit() {
    let mut s = ready_mx();
    with_recipient(&mut s);
    let a = send(&mut s, "DATA");
    assert_eq!(text(&a), vec!["354 end data with <CR><LF>.<CR><LF>\r\n"]);
    assert_eq!(a.last(), Some(&Action::ReadData));
    assert_eq!(s.data_read(100), vec![Action::Deliver]);
    let (acts, tx) = s.delivered(Reply::new(250, "2.0.0", "OK: queued as ID1"));
    assert_eq!(one(&acts), "250 2.0.0 OK: queued as ID1\r\n");
    assert_eq!(tx.unwrap().targets.len(), 1);
    assert!(s.transaction().is_none());

    with_recipient(&mut s);
    send(&mut s, "DATA");
    let acts = s.data_read(1001);
    assert!(matches!(&acts[0], Action::Ended(..)));
    assert_eq!(
        text(&acts),
        vec!["552 5.3.4 message size exceeds the limit of 1000 bytes\r\n"]
    );
    assert_eq!(
        one(&send(&mut s, "MAIL FROM:<a@b.test> SIZE=5000")),
        "552 5.3.4 message size exceeds the limit of 1000 bytes\r\n"
    );
}

#[test]
fn bdat_chunks() {
    let mut s = ready_mx();
    // A chunk without a transaction is read and thrown away, then refused.
    assert_eq!(
        send(&mut s, "BDAT 5"),
        vec![Action::ReadChunk {
            size: 5,
            discard: true
        }]
    );
    assert_eq!(
        one(&s.chunk_read(0)),
        "503 5.5.1 need MAIL and RCPT before BDAT\r\n"
    );
    with_recipient(&mut s);
    assert_eq!(
        send(&mut s, "BDAT 10"),
        vec![Action::ReadChunk {
            size: 10,
            discard: false
        }]
    );
    assert_eq!(one(&s.chunk_read(10)), "250 2.0.0 10 octets received\r\n");
    assert_eq!(one(&send(&mut s, "DATA")), "503 5.5.1 DATA after BDAT\r\n");
    assert_eq!(
        send(&mut s, "BDAT 4 LAST"),
        vec![Action::ReadChunk {
            size: 4,
            discard: false
        }]
    );
    assert_eq!(s.chunk_read(14), vec![Action::Deliver]);
}

#[test]
fn auth_rules_and_dialogues() {
    let mut mx = ready_mx();
    assert_eq!(
        one(&send(&mut mx, "AUTH PLAIN AGEAYg==")),
        "502 5.5.1 AUTH is not available on this port; use port 587 or 465\r\n"
    );
    let mut plain = session(Mode::Submission, false);
    send(&mut plain, "EHLO c");
    assert_eq!(
        one(&send(&mut plain, "AUTH PLAIN AGEAYg==")),
        "538 5.7.11 encryption required: use STARTTLS first\r\n"
    );

    let mut s = session(Mode::Submissions, true);
    send(&mut s, "EHLO c");
    assert_eq!(
        one(&send(&mut s, "AUTH CRAM-MD5")),
        "504 5.5.4 unsupported authentication mechanism; use PLAIN or LOGIN\r\n"
    );
    // LOGIN, step by step.
    assert_eq!(one(&send(&mut s, "AUTH LOGIN")), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(one(&send(&mut s, "Ym9i")), "334 UGFzc3dvcmQ6\r\n");
    assert!(
        matches!(&send(&mut s, "cHc=")[..], [Action::Authenticate { user, password }] if user == "bob" && password == "pw")
    );
    assert_eq!(
        one(&s.auth_checked(AuthVerdict::Failed)),
        "535 5.7.8 authentication credentials invalid\r\n"
    );
    // PLAIN with an empty challenge, then cancelled.
    assert_eq!(one(&send(&mut s, "AUTH PLAIN")), "334 \r\n");
    assert_eq!(
        one(&send(&mut s, "*")),
        "501 5.0.0 authentication cancelled\r\n"
    );
    // Acting for another user is refused.
    let other = BASE64.encode(b"boss\0bob\0pw");
    assert_eq!(
        one(&send(&mut s, &format!("AUTH PLAIN {other}"))),
        "535 5.7.8 authentication credentials invalid\r\n"
    );
    assert_eq!(
        one(&send(&mut s, "AUTH PLAIN !!!")),
        "501 5.5.2 cannot decode the response\r\n"
    );
}

#[test]
fn starttls_forgets_the_clear_text_state() {
    let mut s = session(Mode::Submission, false);
    send(&mut s, "EHLO c");
    let a = send(&mut s, "STARTTLS");
    assert_eq!(text(&a), vec!["220 2.0.0 ready to start TLS\r\n"]);
    assert_eq!(a.last(), Some(&Action::StartTls));
    s.tls_started();
    assert_eq!(
        one(&send(&mut s, "MAIL FROM:<a@b.test>")),
        "503 5.5.1 send EHLO first\r\n"
    );
    send(&mut s, "EHLO c");
    assert_eq!(
        one(&send(&mut s, "STARTTLS")),
        "503 5.5.1 TLS is already active\r\n"
    );
}

#[test]
fn smtputf8_addresses() {
    let mut s = ready_mx();
    assert_eq!(
        one(&send(&mut s, "MAIL FROM:<jörg@remote.test>")),
        "553 5.6.7 <jörg@remote.test>: non-ASCII address without SMTPUTF8\r\n"
    );
    assert_eq!(
        one(&send(&mut s, "MAIL FROM:<jörg@remote.test> SMTPUTF8")),
        "250 2.1.0 sender OK\r\n"
    );
    assert!(s.transaction().unwrap().params.smtputf8);
    assert_eq!(
        send(&mut s, "RCPT TO:<jörg@bücher.example>"),
        vec![Action::CheckRecipient("jörg@bücher.example".into())]
    );
}

#[test]
fn dsn_parameters_are_kept() {
    let mut s = ready_mx();
    send(&mut s, "MAIL FROM:<a@remote.test> RET=HDRS ENVID=QQ314159");
    send(
        &mut s,
        "RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice@example.test",
    );
    let local = RcptVerdict::Local {
        targets: vec![Target {
            mailbox: 1,
            address: "alice@example.test".into(),
            rcpt: "alice@example.test".into(),
        }],
        forward: vec![],
    };
    s.recipient_checked(local);
    let tx = s.transaction().unwrap();
    assert_eq!(
        (tx.params.ret_full, tx.params.envid.as_deref()),
        (Some(false), Some("QQ314159"))
    );
    let r = &tx.rcpts[0];
    assert_eq!(
        r.notify,
        smtp_proto::RCPT_NOTIFY_SUCCESS | smtp_proto::RCPT_NOTIFY_FAILURE
    );
    assert_eq!(r.orcpt.as_deref(), Some("rfc822;Alice@example.test"));
}

#[test]
fn too_many_errors_close_the_session() {
    let limits = Limits {
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 5,
        line_limit: 512,
    };
    let mut s = Session::new(
        Arc::from("mx.example.test"),
        Mode::Mx,
        limits,
        false,
        true,
        || "ID1".to_string(),
    );
    for _ in 0..4 {
        assert!(!s.is_closed());
        send(&mut s, "BOGUS");
    }
    let last = send(&mut s, "BOGUS");
    assert_eq!(
        text(&last),
        vec![
            "500 5.5.1 command not recognised\r\n",
            "421 4.7.0 mx.example.test too many errors, closing connection\r\n"
        ]
    );
    assert_eq!(last.last(), Some(&Action::Close));
}

#[test]
fn every_reply_carries_an_enhanced_status_code() {
    let mut s = ready_mx();
    let mut replies = Vec::new();
    for line in [
        "NOOP",
        "MAIL FROM:<a@remote.test>",
        "RCPT TO:<b@example.test>",
        "RSET",
        "VRFY x",
        "HELP",
        "BOGUS",
        "MAIL FROM:<bad",
        "DATA",
    ] {
        let acts = send(&mut s, line);
        replies.extend(text(&acts));
        if let [Action::CheckRecipient(_)] = &acts[..] {
            replies.extend(text(&s.recipient_checked(RcptVerdict::Unknown)));
        }
    }
    for r in replies {
        let (code, rest) = r.split_at(4);
        let status = rest.split(' ').next().unwrap();
        let parts: Vec<&str> = status.split('.').collect();
        assert_eq!(parts.len(), 3, "{r}");
        assert_eq!(parts[0], &code[..1], "class of {r}");
        assert!(parts.iter().all(|p| p.parse::<u16>().is_ok()), "{r}");
    }
}

#[test]
fn address_literals_reach_the_relay_rules() {
    let mut s = ready_mx();
    send(&mut s, "MAIL FROM:<a@remote.test>");
    assert_eq!(
        send(&mut s, "RCPT TO:<user@[127.0.0.1]>"),
        vec![Action::CheckRecipient("user@[127.0.0.1]".into())]
    );
    assert_eq!(
        one(&s.recipient_checked(RcptVerdict::Remote)),
        "554 5.7.1 <user@[127.0.0.1]>: relay access denied\r\n"
    );
    assert_eq!(
        send(&mut s, "RCPT TO:<u@[IPv6:::1]>"),
        vec![Action::CheckRecipient("u@[IPv6:::1]".into())]
    );
    s.recipient_checked(RcptVerdict::Remote);
    assert!(one(&send(&mut s, "RCPT TO:<u@[not-an-ip]>")).starts_with("501 5.1.3"));
}
