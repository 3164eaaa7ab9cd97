//! The session driven through the framer with accounts in memory: every command, the login
//! rules, the limits, and any input answered without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::accounts::MemoryAccounts;
use crate::framing::Framer;
use base64::Engine as _;
use mailstead_sieve::script::{MAX_SCRIPT_SIZE, MAX_SCRIPTS};
use proptest::prelude::*;

const ALICE: &str = "alice@example.test";
const ALICE_PW: &str = "alice-pw";

struct Client {
    session: Session<MemoryAccounts>,
    framer: Framer,
    closed: bool,
    starttls: bool,
    /// Status lines (OK, NO, BYE) the frames so far must have produced: one a frame, none
    /// for AUTHENTICATE's challenge, one more after the TLS handshake.
    statuses: usize,
}

fn settings() -> Arc<Settings> {
    Arc::new(Settings {
        hostname: "mail.example.test".into(),
        auth_failure_delay: Duration::ZERO,
    })
}

fn accounts() -> Arc<MemoryAccounts> {
    Arc::new(MemoryAccounts::new(&[
        (ALICE, ALICE_PW, true),
        ("nosieve@example.test", "pw", false),
    ]))
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

impl Client {
    /// A client on the server's own address (passwords allowed without TLS).
    fn local() -> Client {
        Client::with(accounts(), false, true)
    }

    fn with(accounts: Arc<MemoryAccounts>, tls: bool, local: bool) -> Client {
        let peer = "192.0.2.7".parse().unwrap();
        let session = Session::new(accounts, settings(), tls, true, peer, local);
        let framer = Framer::new(session.limits());
        Client {
            session,
            framer,
            closed: false,
            starttls: false,
            statuses: 0,
        }
    }

    fn greeting(&mut self) -> String {
        self.session.greeting();
        self.take()
    }

    fn take(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.session.out)).unwrap()
    }

    /// Sends bytes; returns everything the server answered.
    async fn send(&mut self, bytes: &[u8]) -> String {
        assert!(!self.closed, "the session is closed");
        self.framer.push(bytes);
        while let Some(frame) = self.framer.next() {
            let next = self.session.frame(frame).await;
            if !self.session.sasl_pending {
                self.statuses += 1;
            }
            match next {
                Next::Continue => {}
                Next::Close => {
                    self.closed = true;
                    break;
                }
                Next::StartTls => {
                    self.framer.clear();
                    self.starttls = true;
                    self.session.tls_started();
                    self.statuses += 1;
                }
            }
            self.framer.set_limits(self.session.limits());
        }
        self.take()
    }

    async fn login(&mut self) {
        let r = self
            .send(format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, ALICE_PW)).as_bytes())
            .await;
        assert_eq!(r, "OK \"Logged in.\"\r\n");
    }

    async fn put(&mut self, name: &str, script: &str) -> String {
        self.send(format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}\r\n", script.len()).as_bytes())
            .await
    }
}

fn last_line(r: &str) -> &str {
    r.trim_end().rsplit("\r\n").next().unwrap()
}

#[tokio::test]
async fn greeting_offers_plain_locally_and_starttls() {
    let mut c = Client::local();
    let g = c.greeting();
    assert!(g.contains("\"SASL\" \"PLAIN\"\r\n"), "{g}");
    assert!(g.contains("\"STARTTLS\"\r\n"), "{g}");
    assert!(
        g.ends_with("OK \"mail.example.test ManageSieve ready\"\r\n"),
        "{g}"
    );
    let r = c.send(b"CAPABILITY\r\n").await;
    assert_eq!(
        r.replace("OK \"Capability completed.\"", ""),
        g.replace("OK \"mail.example.test ManageSieve ready\"", "")
    );
}

#[tokio::test]
async fn a_remote_client_needs_tls_before_authenticating() {
    let mut c = Client::with(accounts(), false, false);
    let g = c.greeting();
    assert!(g.contains("\"SASL\" \"\"\r\n"), "{g}");
    let r = c
        .send(format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, ALICE_PW)).as_bytes())
        .await;
    assert!(r.starts_with("NO (ENCRYPT-NEEDED) "), "{r}");
    // Pipelined after STARTTLS: dropped, never executed.
    let r = c
        .send(
            format!(
                "STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain(ALICE, ALICE_PW)
            )
            .as_bytes(),
        )
        .await;
    assert!(c.starttls);
    assert!(
        r.starts_with("OK \"Begin TLS negotiation now.\"\r\n"),
        "{r}"
    );
    // §2.2: the capabilities again, then OK.
    assert!(
        r.contains("\"SASL\" \"PLAIN\"\r\n") && !r.contains("\"STARTTLS\""),
        "{r}"
    );
    assert!(r.ends_with("OK \"TLS negotiation successful.\"\r\n"), "{r}");
    assert!(!c.session.authenticated());
    let r = c.send(b"STARTTLS\r\n").await;
    assert!(r.starts_with("NO "), "{r}");
    c.login().await;
}

#[tokio::test]
async fn authenticate_with_a_continuation_and_cancel() {
    let mut c = Client::local();
    assert_eq!(c.send(b"AUTHENTICATE \"PLAIN\"\r\n").await, "\"\"\r\n");
    assert_eq!(
        c.send(b"\"*\"\r\n").await,
        "NO \"authentication cancelled\"\r\n"
    );
    assert_eq!(c.send(b"AUTHENTICATE \"PLAIN\"\r\n").await, "\"\"\r\n");
    let response = plain(ALICE, ALICE_PW);
    let r = c
        .send(format!("{{{}+}}\r\n{response}\r\n", response.len()).as_bytes())
        .await;
    assert_eq!(r, "OK \"Logged in.\"\r\n");
    assert_eq!(c.session.user_name(), Some(ALICE));
    let r = c.send(b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert!(r.starts_with("NO "), "{r}");
}

#[tokio::test]
async fn failed_logins_are_refused_then_the_connection_closes() {
    let mut c = Client::local();
    let r = c
        .send(format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain(ALICE, "wrong")).as_bytes())
        .await;
    assert_eq!(r, "NO \"authentication failed\"\r\n");
    let r = c.send(b"AUTHENTICATE \"DIGEST-MD5\"\r\n").await;
    assert!(r.starts_with("NO "), "{r}");
    let authz = base64::engine::general_purpose::STANDARD
        .encode(format!("bob@example.test\0{ALICE}\0{ALICE_PW}"));
    let r = c
        .send(format!("AUTHENTICATE \"PLAIN\" \"{authz}\"\r\n").as_bytes())
        .await;
    assert!(r.starts_with("NO "), "{r}");
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("nosieve@example.test", "pw")
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(r, "NO \"this account may not use ManageSieve\"\r\n");
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("nobody@example.test", "x")
            )
            .as_bytes(),
        )
        .await;
    assert!(r.starts_with("BYE "), "{r}");
    assert!(c.closed);
}

#[tokio::test]
async fn script_commands_need_a_login() {
    let mut c = Client::local();
    for cmd in [
        &b"LISTSCRIPTS\r\n"[..],
        b"GETSCRIPT \"a\"\r\n",
        b"PUTSCRIPT \"a\" {5+}\r\nkeep;\r\n",
        b"HAVESPACE \"a\" 1\r\n",
        b"UNAUTHENTICATE\r\n",
    ] {
        let r = c.send(cmd).await;
        assert!(r.starts_with("NO "), "{r}");
    }
    assert_eq!(c.send(b"NOOP\r\n").await, "OK \"Done\"\r\n");
}

#[tokio::test]
async fn put_list_get_activate_rename_delete() {
    let mut c = Client::local();
    c.login().await;
    assert_eq!(
        c.put("main", "require \"fileinto\";\r\nfileinto \"Spam\";\r\n")
            .await,
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"PUTSCRIPT {5}\r\nother {5+}\r\nkeep;\r\n").await,
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"LISTSCRIPTS\r\n").await,
        "\"main\"\r\n\"other\"\r\nOK \"Listscripts completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"SETACTIVE \"main\"\r\n").await,
        "OK \"Setactive completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"LISTSCRIPTS\r\n").await,
        "\"main\" ACTIVE\r\n\"other\"\r\nOK \"Listscripts completed.\"\r\n"
    );
    let script = "require \"fileinto\";\r\nfileinto \"Spam\";\r\n";
    assert_eq!(
        c.send(b"GETSCRIPT \"main\"\r\n").await,
        format!(
            "{{{}}}\r\n{script}\r\nOK \"Getscript completed.\"\r\n",
            script.len()
        )
    );
    let r = c.send(b"DELETESCRIPT \"main\"\r\n").await;
    assert!(r.starts_with("NO (ACTIVE) "), "{r}");
    let r = c.send(b"RENAMESCRIPT \"main\" \"other\"\r\n").await;
    assert!(r.starts_with("NO (ALREADYEXISTS) "), "{r}");
    let r = c.send(b"RENAMESCRIPT \"nope\" \"x\"\r\n").await;
    assert!(r.starts_with("NO (NONEXISTENT) "), "{r}");
    assert_eq!(
        c.send(b"RENAMESCRIPT \"main\" \"renamed\"\r\n").await,
        "OK \"Renamescript completed.\"\r\n"
    );
    // Replacing the active script keeps it active.
    assert_eq!(
        c.put("renamed", "stop;").await,
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"LISTSCRIPTS\r\n").await,
        "\"other\"\r\n\"renamed\" ACTIVE\r\nOK \"Listscripts completed.\"\r\n"
    );
    let r = c.send(b"SETACTIVE \"nope\"\r\n").await;
    assert!(r.starts_with("NO (NONEXISTENT) "), "{r}");
    let r = c.send(b"GETSCRIPT \"nope\"\r\n").await;
    assert!(r.starts_with("NO (NONEXISTENT) "), "{r}");
    let r = c.send(b"DELETESCRIPT \"nope\"\r\n").await;
    assert!(r.starts_with("NO (NONEXISTENT) "), "{r}");
    assert_eq!(
        c.send(b"SETACTIVE \"\"\r\n").await,
        "OK \"Setactive completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"DELETESCRIPT \"renamed\"\r\n").await,
        "OK \"Deletescript completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"LISTSCRIPTS\r\n").await,
        "\"other\"\r\nOK \"Listscripts completed.\"\r\n"
    );
}

#[tokio::test]
async fn a_broken_script_is_refused_with_its_line() {
    let mut c = Client::local();
    c.login().await;
    let broken = "require \"fileinto\";\r\n\r\nif true {\r\n  fileinto \"x\"\r\n}\r\n";
    let r = c.put("broken", broken).await;
    assert!(r.starts_with("NO \"line 5: "), "{r}");
    assert!(!r.contains("at line"), "the line is said once: {r}");
    let r = c
        .send(format!("CHECKSCRIPT {{{}+}}\r\n{broken}\r\n", broken.len()).as_bytes())
        .await;
    assert!(r.starts_with("NO \"line 5: "), "{r}");
    let r = c.put("regex", "keep;\r\nrequire \"regex\";\r\n").await;
    assert!(r.starts_with("NO \"line 2: "), "{r}");
    let r = c.send(b"CHECKSCRIPT {15+}\r\nkeep;\r\nstop;\r\n\r\n").await;
    assert_eq!(r, "OK \"Script is valid.\"\r\n");
    // Nothing was stored.
    assert_eq!(
        c.send(b"LISTSCRIPTS\r\n").await,
        "OK \"Listscripts completed.\"\r\n"
    );
    let deep = format!("{}keep;{}", "if true {".repeat(100), "}".repeat(100));
    let r = c.put("deep", &deep).await;
    assert!(r.starts_with("NO "), "{r}");
}

#[tokio::test]
async fn quotas_and_havespace() {
    let mut c = Client::local();
    c.login().await;
    assert_eq!(
        c.send(b"HAVESPACE \"a\" 100\r\n").await,
        "OK \"Putscript would succeed.\"\r\n"
    );
    let r = c
        .send(format!("HAVESPACE \"a\" {}\r\n", MAX_SCRIPT_SIZE + 1).as_bytes())
        .await;
    assert!(r.starts_with("NO (QUOTA/MAXSIZE) "), "{r}");
    for i in 0..MAX_SCRIPTS {
        assert_eq!(
            c.put(&format!("s{i}"), "keep;").await,
            "OK \"Putscript completed.\"\r\n"
        );
    }
    let r = c.send(b"HAVESPACE \"one-more\" 5\r\n").await;
    assert!(r.starts_with("NO (QUOTA/MAXSCRIPTS) "), "{r}");
    let r = c.put("one-more", "keep;").await;
    assert!(r.starts_with("NO (QUOTA/MAXSCRIPTS) "), "{r}");
    // Replacing one is fine.
    assert_eq!(
        c.put("s1", "stop;").await,
        "OK \"Putscript completed.\"\r\n"
    );
    assert_eq!(
        c.send(b"HAVESPACE \"s1\" 5\r\n").await,
        "OK \"Putscript would succeed.\"\r\n"
    );
}

#[tokio::test]
async fn an_oversized_literal_is_skipped_and_refused() {
    let mut c = Client::local();
    c.login().await;
    let size = MAX_SCRIPT_SIZE + 1;
    let mut input = format!("PUTSCRIPT \"big\" {{{size}+}}\r\n").into_bytes();
    input.extend(std::iter::repeat_n(b'#', size));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let r = c.send(&input).await;
    assert!(r.starts_with("NO (QUOTA/MAXSIZE) "), "{r}");
    assert!(r.ends_with("\r\nOK \"Done\"\r\n"), "{r}");
    // Far beyond: BYE without reading it.
    let r = c.send(b"PUTSCRIPT \"big\" {999999999999+}\r\n").await;
    assert!(r.starts_with("BYE "), "{r}");
    assert!(c.closed);
}

#[tokio::test]
async fn long_lines_garbage_and_too_many_errors() {
    let mut c = Client::local();
    let long = format!("NOOP \"{}\"\r\n", "x".repeat(20_000));
    let r = c.send(long.as_bytes()).await;
    assert!(
        r.starts_with("NO \"a line may have at most 8192 bytes"),
        "{r}"
    );
    let r = c.send(b"FOO\r\n").await;
    assert_eq!(r, "NO \"unknown command FOO\"\r\n");
    let mut all = String::new();
    for _ in 0..20 {
        if c.closed {
            break;
        }
        all.push_str(&c.send(b"\x00\xff garbage\r\n").await);
    }
    assert!(c.closed);
    assert!(last_line(&all).starts_with("BYE "), "{all}");
}

#[tokio::test]
async fn noop_tag_unauthenticate_logout() {
    let mut c = Client::local();
    c.login().await;
    let caps = c.send(b"CAPABILITY\r\n").await;
    assert!(
        caps.contains("\"OWNER\" \"alice@example.test\"\r\n"),
        "{caps}"
    );
    assert!(!caps.contains("\"STARTTLS\""), "{caps}");
    assert_eq!(
        c.send(b"NOOP \"STARTTLS-SYNC-42\"\r\n").await,
        "OK (TAG \"STARTTLS-SYNC-42\") \"Done\"\r\n"
    );
    assert_eq!(
        c.send(b"UNAUTHENTICATE\r\n").await,
        "OK \"Unauthenticated.\"\r\n"
    );
    assert!(!c.session.authenticated());
    assert_eq!(c.session.limits(), Limits::before_login());
    let r = c.send(b"LISTSCRIPTS\r\n").await;
    assert!(r.starts_with("NO "), "{r}");
    c.login().await;
    assert_eq!(c.send(b"LOGOUT\r\n").await, "OK \"Logout completed.\"\r\n");
    assert!(c.closed);
}

#[tokio::test]
async fn names_with_quotes_and_utf8_round_trip() {
    let mut c = Client::local();
    c.login().await;
    let name = "my \"best\" \\ script ü";
    let mut cmd = b"PUTSCRIPT ".to_vec();
    response::string(&mut cmd, name.as_bytes());
    cmd.extend_from_slice(b" {5+}\r\nkeep;\r\n");
    assert_eq!(c.send(&cmd).await, "OK \"Putscript completed.\"\r\n");
    let mut listed = Vec::new();
    response::string(&mut listed, name.as_bytes());
    let listed = String::from_utf8(listed).unwrap();
    assert_eq!(
        c.send(b"LISTSCRIPTS\r\n").await,
        format!("{listed}\r\nOK \"Listscripts completed.\"\r\n")
    );
    let r = c.send(b"PUTSCRIPT \"a\x01b\" {5+}\r\nkeep;\r\n").await;
    assert!(r.starts_with("NO "), "{r}");
}

/// Every response line is OK, NO, BYE, a capability or list line (a string), or a literal:
/// the number of status lines, or `None` when a line is none of those.
fn status_lines(out: &str) -> Option<usize> {
    let mut statuses = 0;
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest.find("\r\n")?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        if let Some(n) = line
            .strip_prefix('{')
            .and_then(|l| l.strip_suffix('}'))
            .and_then(|n| n.parse::<usize>().ok())
        {
            if rest.len() < n + 2 || !rest.is_char_boundary(n) || &rest[n..n + 2] != "\r\n" {
                return None;
            }
            rest = &rest[n + 2..];
            continue;
        }
        if ["OK", "NO", "BYE"].iter().any(|p| line.starts_with(p)) {
            statuses += 1;
        } else if !line.starts_with('"') {
            return None;
        }
    }
    Some(statuses)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any input, before or after login: one well-formed answer a command, never a panic.
    #[test]
    fn any_input_gets_well_formed_answers(
        logged_in in any::<bool>(),
        parts in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "PUTSCRIPT \"a\" ", "GETSCRIPT \"a\"", "SETACTIVE \"a\"", "LISTSCRIPTS",
                    "DELETESCRIPT \"a\"", "RENAMESCRIPT \"a\" \"b\"", "CHECKSCRIPT ",
                    "HAVESPACE \"a\" 7", "NOOP ", "AUTHENTICATE \"PLAIN\"", "UNAUTHENTICATE",
                    "STARTTLS", "CAPABILITY", "{5+}\r\nkeep;", "{3}\r\nif ", "\"*\"",
                    "\"keep;\"", "\r\n", " ", "\"", "{", "}", "LOGOUT",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..30),
            ],
            0..25,
        ),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = Client::local();
            c.greeting();
            if logged_in {
                c.login().await;
                c.put("a", "keep;").await;
            }
            c.statuses = 0;
            let mut out = String::new();
            for p in &parts {
                if c.closed {
                    break;
                }
                out.push_str(&c.send(p).await);
            }
            if !c.closed {
                out.push_str(&c.send(b"\r\nNOOP\r\n").await);
            }
            // Every command answered, once.
            prop_assert_eq!(status_lines(&out), Some(c.statuses), "{:?}", out);
            Ok(())
        })?;
    }
}
