use super::*;
use crate::maildrop::MaildropMessage;
use proptest::prelude::*;

const RIGHT: &str = "right password";

/// The stored messages of the test maildrop, by UID.
fn raw(uid: u32) -> Vec<u8> {
    match uid {
        1 => b"Subject: one\r\n\r\nHello.\r\n".to_vec(),
        2 => b"Subject: two\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n".to_vec(),
        // Stored with bare LFs and no final line end.
        5 => "Subject: f\u{fc}nf\n\nGr\u{fc}\u{df}e\nline 2\nline 3"
            .as_bytes()
            .to_vec(),
        _ => Vec::new(),
    }
}

fn blob(uid: u32) -> BlobId {
    BlobId([u8::try_from(uid).unwrap(); 32])
}

fn maildrop() -> Maildrop {
    let msgs = [1u32, 2, 5]
        .into_iter()
        .map(|uid| MaildropMessage {
            uid,
            size: message_text::size(&raw(uid)),
            seen: uid == 2,
            blob: blob(uid),
        })
        .collect();
    Maildrop::new(0x1234_abcd, msgs)
}

fn settings(tls: bool, local: bool) -> Settings {
    Settings {
        hostname: "mail.example.test".into(),
        tls,
        stls: !tls,
        local,
        allow_plaintext: false,
    }
}

/// A session and a world that answers its actions: RIGHT is the password, the store has
/// `raw`, QUIT's plans are recorded.
struct Driver {
    s: Session,
    plans: Vec<UpdatePlan>,
    logins: Vec<Credentials>,
    in_use: bool,
    closed: bool,
}

impl Driver {
    fn new(settings: Settings) -> Driver {
        let mut s = Session::new(settings);
        s.greeting();
        s.out.clear();
        Driver {
            s,
            plans: Vec::new(),
            logins: Vec::new(),
            in_use: false,
            closed: false,
        }
    }

    fn local() -> Driver {
        Driver::new(settings(false, true))
    }

    /// Sends a line; returns what the server answered.
    fn send(&mut self, line: &str) -> String {
        self.send_bytes(line.as_bytes())
    }

    fn send_bytes(&mut self, line: &[u8]) -> String {
        assert!(!self.closed, "line sent after Close");
        let action = self.s.line(line);
        self.finish(action)
    }

    fn finish(&mut self, mut action: Action) -> String {
        loop {
            action = match action {
                Action::Continue => break,
                Action::Close => {
                    self.closed = true;
                    break;
                }
                Action::StartTls => {
                    self.s.tls_started();
                    break;
                }
                Action::Login(c) => {
                    let outcome = if c.password != RIGHT {
                        LoginOutcome::Failed
                    } else if self.in_use {
                        LoginOutcome::InUse
                    } else if c.user == "denied@example.test" {
                        LoginOutcome::Denied
                    } else {
                        LoginOutcome::LoggedIn(maildrop())
                    };
                    self.logins.push(c);
                    self.s.login_result(outcome)
                }
                Action::ReadMessage(b) => {
                    let data = raw(u32::from(b.0[0]));
                    self.s.message_read(Some(&data))
                }
                Action::Update(plan) => {
                    let n = plan.deleted.len();
                    self.plans.push(plan);
                    self.s.update_done(Some(n))
                }
            };
        }
        String::from_utf8(std::mem::take(&mut self.s.out)).unwrap()
    }

    fn login(&mut self) {
        assert_eq!(self.send("USER alice@example.test"), "+OK send PASS\r\n");
        let r = self.send(&format!("PASS {RIGHT}"));
        assert!(r.starts_with("+OK maildrop has 3 messages"), "{r}");
    }
}

fn capa(d: &mut Driver) -> Vec<String> {
    let r = d.send("CAPA");
    let mut lines: Vec<String> = r.split("\r\n").map(str::to_string).collect();
    assert_eq!(lines.remove(0), "+OK capability list follows");
    assert_eq!(lines.pop().as_deref(), Some(""));
    assert_eq!(lines.pop().as_deref(), Some("."));
    lines
}

#[test]
fn greeting_names_the_server_and_has_no_apop_timestamp() {
    let mut s = Session::new(settings(false, false));
    s.greeting();
    let g = String::from_utf8(s.out.clone()).unwrap();
    assert_eq!(g, "+OK mail.example.test POP3 server ready\r\n");
    assert!(!g.contains('<'));
}

#[test]
fn capa_before_and_after_login() {
    let mut d = Driver::local();
    assert_eq!(
        capa(&mut d),
        [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "USER",
            "SASL PLAIN",
            "STLS",
            "EXPIRE NEVER",
            "IMPLEMENTATION mailstead"
        ]
    );
    d.login();
    let after = capa(&mut d);
    assert!(after.contains(&"USER".to_string()) && !after.contains(&"STLS".to_string()));
}

#[test]
fn without_tls_a_remote_client_may_not_send_passwords() {
    let mut d = Driver::new(settings(false, false));
    let caps = capa(&mut d);
    assert!(caps.contains(&"STLS".to_string()));
    assert!(!caps.contains(&"USER".to_string()) && !caps.iter().any(|c| c.starts_with("SASL")));
    for cmd in [
        "USER alice@example.test",
        "PASS x",
        "AUTH PLAIN AGEAYg==",
        "AUTH PLAIN",
        "AUTH",
    ] {
        let r = d.send(cmd);
        assert!(
            r.starts_with("-ERR [AUTH] ") && r.contains("STLS"),
            "{cmd}: {r}"
        );
    }
    assert!(d.logins.is_empty());
    // STLS, then passwords are fine.
    assert_eq!(d.send("STLS"), "+OK begin TLS negotiation\r\n");
    assert!(d.s.tls());
    let caps = capa(&mut d);
    assert!(caps.contains(&"USER".to_string()) && !caps.contains(&"STLS".to_string()));
    assert!(d.send("STLS").starts_with("-ERR "));
    d.login();
    assert_eq!(d.logins.len(), 1);
}

#[test]
fn allow_plaintext_lets_remote_clients_log_in_without_tls() {
    let mut d = Driver::new(Settings {
        allow_plaintext: true,
        ..settings(false, false)
    });
    assert!(capa(&mut d).contains(&"USER".to_string()));
    d.login();
}

#[test]
fn implicit_tls_offers_no_stls() {
    let mut d = Driver::new(settings(true, false));
    let caps = capa(&mut d);
    assert!(!caps.contains(&"STLS".to_string()) && caps.contains(&"USER".to_string()));
    assert!(d.send("STLS").starts_with("-ERR "));
}

#[test]
fn stls_without_a_certificate() {
    let mut d = Driver::new(Settings {
        stls: false,
        ..settings(false, false)
    });
    assert!(!capa(&mut d).contains(&"STLS".to_string()));
    assert_eq!(d.send("STLS"), "-ERR TLS is not available\r\n");
}

#[test]
fn pass_needs_user_and_a_failed_pass_needs_user_again() {
    let mut d = Driver::local();
    assert_eq!(d.send("PASS x"), "-ERR send USER first\r\n");
    d.send("USER alice@example.test");
    assert_eq!(
        d.send("PASS wrong"),
        "-ERR [AUTH] authentication failed\r\n"
    );
    assert_eq!(d.send(&format!("PASS {RIGHT}")), "-ERR send USER first\r\n");
    d.login();
    assert_eq!(d.logins[0].mechanism, "USER");
    assert!(!format!("{:?}", d.logins[0]).contains(RIGHT));
}

#[test]
fn three_failed_logins_close_the_connection() {
    let mut d = Driver::local();
    for i in 1..=MAX_AUTH_FAILURES {
        d.send("USER alice@example.test");
        let r = d.send("PASS wrong");
        assert!(r.starts_with("-ERR [AUTH] authentication failed"), "{r}");
        assert_eq!(d.closed, i == MAX_AUTH_FAILURES);
    }
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let mut d = Driver::local();
    // "\0alice@example.test\0right password"
    let resp = "AGFsaWNlQGV4YW1wbGUudGVzdAByaWdodCBwYXNzd29yZA==";
    let r = d.send(&format!("AUTH PLAIN {resp}"));
    assert!(r.starts_with("+OK maildrop has 3 messages"), "{r}");
    assert_eq!(d.logins[0].user, "alice@example.test");
    assert_eq!(d.logins[0].mechanism, "PLAIN");

    let mut d = Driver::local();
    assert_eq!(d.send("AUTH PLAIN"), "+ \r\n");
    assert!(d.send(resp).starts_with("+OK maildrop"));

    let mut d = Driver::local();
    assert_eq!(d.send("AUTH PLAIN"), "+ \r\n");
    assert_eq!(d.send("*"), "-ERR authentication cancelled\r\n");
    assert_eq!(d.send("AUTH PLAIN"), "+ \r\n");
    assert_eq!(d.send("not base64!"), "-ERR the response is not base64\r\n");
    assert_eq!(d.send("AUTH PLAIN"), "+ \r\n");
    assert!(d.s.line_too_long() == Action::Continue);
    assert_eq!(
        d.finish(Action::Continue),
        "-ERR the authentication response is too long\r\n"
    );
    assert!(d.send("AUTH CRAM-MD5").starts_with("-ERR unsupported"));
    assert_eq!(d.send("AUTH"), "+OK mechanisms follow\r\nPLAIN\r\n.\r\n");
    assert!(
        d.send("APOP alice 0123456789abcdef")
            .starts_with("-ERR APOP")
    );
    assert!(d.logins.is_empty());
}

#[test]
fn in_use_and_denied_are_told_apart() {
    let mut d = Driver::local();
    d.in_use = true;
    d.send("USER alice@example.test");
    let r = d.send(&format!("PASS {RIGHT}"));
    assert!(r.starts_with("-ERR [IN-USE] "), "{r}");
    d.send("USER denied@example.test");
    d.in_use = false;
    let r = d.send(&format!("PASS {RIGHT}"));
    assert!(r.starts_with("-ERR [SYS/PERM] "), "{r}");
    assert!(!d.s.logged_in());
}

#[test]
fn transaction_commands_need_a_login() {
    let mut d = Driver::local();
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
    ] {
        assert_eq!(d.send(cmd), "-ERR log in first\r\n", "{cmd}");
    }
}

#[test]
fn stat_list_uidl() {
    let mut d = Driver::local();
    d.login();
    let sizes: Vec<u64> = [1, 2, 5]
        .iter()
        .map(|&u| message_text::size(&raw(u)))
        .collect();
    let total: u64 = sizes.iter().sum();
    assert_eq!(d.send("STAT"), format!("+OK 3 {total}\r\n"));
    assert_eq!(
        d.send("LIST"),
        format!(
            "+OK 3 messages ({total} octets)\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
            sizes[0], sizes[1], sizes[2]
        )
    );
    assert_eq!(d.send("LIST 2"), format!("+OK 2 {}\r\n", sizes[1]));
    assert_eq!(d.send("LIST 4"), "-ERR no such message\r\n");
    assert_eq!(d.send("LIST 0"), "-ERR no such message\r\n");
    assert_eq!(
        d.send("UIDL"),
        "+OK unique-id listing follows\r\n1 000000011234ABCD\r\n2 000000021234ABCD\r\n\
         3 000000051234ABCD\r\n.\r\n"
    );
    assert_eq!(d.send("UIDL 3"), "+OK 3 000000051234ABCD\r\n");
    assert_eq!(d.send("NOOP"), "+OK\r\n");
    assert!(d.send("USER x").starts_with("-ERR already logged in"));
}

#[test]
fn retr_sends_exact_crlf_bytes_stuffed() {
    let mut d = Driver::local();
    d.login();
    let r = d.send("RETR 2");
    assert_eq!(
        r,
        "+OK 50 octets\r\nSubject: two\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n"
    );
    assert_eq!(raw(2).len(), 50);
    // Bare LFs become CRLF and the last line gets its line end; the size says so.
    let r = d.send("RETR 3");
    let text = "Subject: f\u{fc}nf\r\n\r\nGr\u{fc}\u{df}e\r\nline 2\r\nline 3\r\n";
    assert_eq!(r, format!("+OK {} octets\r\n{text}.\r\n", text.len()));
    assert_eq!(d.send("LIST 3"), format!("+OK 3 {}\r\n", text.len()));
}

#[test]
fn top_sends_header_and_lines() {
    let mut d = Driver::local();
    d.login();
    assert_eq!(
        d.send("TOP 3 1"),
        "+OK top of message follows\r\nSubject: f\u{fc}nf\r\n\r\nGr\u{fc}\u{df}e\r\n.\r\n"
    );
    assert_eq!(
        d.send("TOP 2 0"),
        "+OK top of message follows\r\nSubject: two\r\n\r\n.\r\n"
    );
    assert_eq!(d.send("TOP 9 1"), "-ERR no such message\r\n");
    // TOP does not count as retrieving.
    assert_eq!(
        d.send("QUIT"),
        "+OK mail.example.test POP3 server signing off (0 messages deleted)\r\n"
    );
    assert_eq!(d.plans, vec![UpdatePlan::default()]);
}

#[test]
fn dele_rset_and_quit() {
    let mut d = Driver::local();
    d.login();
    assert_eq!(d.send("DELE 1"), "+OK message 1 deleted\r\n");
    assert_eq!(d.send("DELE 1"), "-ERR message 1 is deleted\r\n");
    assert_eq!(d.send("RETR 1"), "-ERR message 1 is deleted\r\n");
    assert_eq!(d.send("LIST 1"), "-ERR message 1 is deleted\r\n");
    assert!(d.send("STAT").starts_with("+OK 2 "));
    assert!(d.send("RSET").starts_with("+OK maildrop has 3 messages"));
    assert!(d.send("RETR 1").starts_with("+OK "));
    assert!(d.send("RETR 2").starts_with("+OK "));
    d.send("DELE 3");
    assert_eq!(
        d.send("QUIT"),
        "+OK mail.example.test POP3 server signing off (1 messages deleted)\r\n"
    );
    assert!(d.closed);
    // Message 2 was \Seen already; message 1 becomes \Seen; message 3 (UID 5) goes.
    assert_eq!(
        d.plans,
        vec![UpdatePlan {
            seen: vec![1],
            deleted: vec![5]
        }]
    );
}

#[test]
fn quit_before_login_updates_nothing() {
    let mut d = Driver::local();
    assert_eq!(
        d.send("QUIT"),
        "+OK mail.example.test POP3 server signing off\r\n"
    );
    assert!(d.closed && d.plans.is_empty());
}

#[test]
fn a_failed_update_says_so() {
    let mut s = Session::new(settings(false, true));
    s.line(b"USER a");
    let Action::Login(_) = s.line(b"PASS b") else {
        panic!()
    };
    s.login_result(LoginOutcome::LoggedIn(maildrop()));
    s.line(b"DELE 1");
    assert!(matches!(s.line(b"QUIT"), Action::Update(_)));
    s.out.clear();
    assert_eq!(s.update_done(None), Action::Close);
    assert_eq!(
        s.out,
        b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
    );
}

#[test]
fn an_unreadable_message_is_a_temporary_error() {
    let mut s = Session::new(settings(false, true));
    s.line(b"USER a");
    s.line(b"PASS b");
    s.login_result(LoginOutcome::LoggedIn(maildrop()));
    s.out.clear();
    assert!(matches!(s.line(b"RETR 1"), Action::ReadMessage(_)));
    s.message_read(None);
    assert!(
        s.out
            .starts_with(b"-ERR [SYS/TEMP] message 1 cannot be read")
    );
    assert!(matches!(s.line(b"QUIT"), Action::Update(p) if p == UpdatePlan::default()));
}

#[test]
fn too_many_bad_commands_close_the_connection() {
    let mut d = Driver::local();
    for i in 1..MAX_BAD_COMMANDS {
        assert_eq!(d.send("XYZZY"), "-ERR unknown command\r\n", "{i}");
    }
    assert_eq!(
        d.send_bytes(b"\0\xff"),
        "-ERR too many invalid commands, closing the connection\r\n"
    );
    assert!(d.closed);
}

#[test]
fn garbage_and_over_long_lines_get_err() {
    let mut d = Driver::local();
    assert_eq!(
        d.send_bytes(b"\x16\x03\x01\x02\x00"),
        "-ERR the command contains control characters\r\n"
    );
    assert_eq!(
        d.send_bytes(b"RETR \xc3\x28"),
        "-ERR the command is not valid UTF-8\r\n"
    );
    assert_eq!(
        d.send(&format!("USER {}", "a".repeat(300))),
        "-ERR the command is longer than 255 octets\r\n"
    );
    let a = d.s.line_too_long();
    assert_eq!(
        d.finish(a),
        "-ERR the command is longer than 255 octets\r\n"
    );
    d.login();
}

#[test]
fn shutdown_ends_without_update() {
    let mut d = Driver::local();
    d.login();
    d.send("DELE 1");
    d.s.shutting_down();
    assert!(d.finish(Action::Continue).starts_with("-ERR [SYS/TEMP] "));
    assert_eq!(d.s.line(b"QUIT"), Action::Close);
    assert!(d.plans.is_empty());
}

/// Lines a client might send, and some it should not.
fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
    let words = prop_oneof![
        Just("USER alice@example.test".to_string()),
        Just(format!("PASS {RIGHT}")),
        Just("PASS wrong".to_string()),
        Just("AUTH PLAIN".to_string()),
        Just("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAByaWdodCBwYXNzd29yZA==".to_string()),
        Just("AGFsaWNlQGV4YW1wbGUudGVzdAByaWdodCBwYXNzd29yZA==".to_string()),
        Just("*".to_string()),
        Just("AUTH".to_string()),
        Just("CAPA".to_string()),
        Just("STLS".to_string()),
        Just("STAT".to_string()),
        Just("LIST".to_string()),
        Just("UIDL".to_string()),
        Just("NOOP".to_string()),
        Just("RSET".to_string()),
        Just("QUIT".to_string()),
        (0u32..6).prop_map(|n| format!("RETR {n}")),
        (0u32..6).prop_map(|n| format!("DELE {n}")),
        (0u32..6).prop_map(|n| format!("LIST {n}")),
        (0u32..6).prop_map(|n| format!("UIDL {n}")),
        (0u32..6, 0u64..4).prop_map(|(n, l)| format!("TOP {n} {l}")),
    ];
    prop_oneof![
        4 => words.prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    /// Any sequence of lines: every reply is +OK, -ERR or the AUTH challenge, nothing
    /// happens after Close, and QUIT expunges exactly what DELE marked.
    #[test]
    fn any_input_gets_an_answer(lines in proptest::collection::vec(line_strategy(), 0..60),
                                local in any::<bool>(), tls in any::<bool>()) {
        let mut d = Driver::new(settings(tls, local));
        let mut deleted = std::collections::BTreeSet::new();
        for line in &lines {
            if d.closed {
                break;
            }
            let was_logged_in = d.s.logged_in();
            let reply = d.send_bytes(line);
            prop_assert!(
                reply.starts_with("+OK") || reply.starts_with("-ERR ") || reply == "+ \r\n",
                "{:?} -> {:?}", String::from_utf8_lossy(line), reply
            );
            prop_assert!(reply.ends_with("\r\n"));
            let dele = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.strip_prefix("DELE "))
                .and_then(|n| n.parse::<usize>().ok());
            if let (true, Some(n)) = (was_logged_in && reply.starts_with("+OK message "), dele) {
                deleted.insert([1u32, 2, 5][n - 1]);
            }
            if was_logged_in && line == b"RSET" {
                deleted.clear();
            }
        }
        prop_assert!(d.plans.len() <= 1);
        if let Some(plan) = d.plans.first() {
            prop_assert_eq!(plan.deleted.iter().copied().collect::<std::collections::BTreeSet<_>>(),
                            deleted);
        }
    }
}
