//! Running scripts at delivery against a real store: the chain order, stop, the fallback to
//! INBOX on errors, vacation's memory, and what each action becomes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mailstead_sieve::filter::{Action, Filter, Outcome, Request};
use mailstead_sieve::generate;
use mailstead_store::*;

async fn setup(dir: &std::path::Path) -> (Store, Mailbox, Filter) {
    let store = Store::open(&StoreConfig::new(dir)).await.unwrap();
    store
        .domain_create(NewDomain::with_defaults("example.test"))
        .await
        .unwrap();
    let m = store
        .mailbox_create(NewMailbox {
            local_part: "alice".into(),
            domain: "example.test".into(),
            name: "Alice".into(),
            password: "{PLAIN}x".into(),
            quota: None,
            active: true,
            access: Access::default(),
        })
        .await
        .unwrap();
    let filter = Filter::new(store.clone(), "mail.example.test");
    (store, m, filter)
}

fn message(from: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "Return-Path: <{from}>\r\nFrom: <{from}>\r\nTo: <alice@example.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@x.test>\r\n{extra}\r\nHello, this is the body.\r\n"
    )
    .into_bytes()
}

async fn run(filter: &Filter, m: &Mailbox, raw: &[u8], sender: &str) -> Outcome {
    let Some(plan) = filter.plan(m.id, "example.test").await.unwrap() else {
        return Outcome {
            actions: vec![inbox(&[])],
            error: None,
        };
    };
    filter
        .run(
            &plan,
            Request {
                message: raw,
                mailbox: m.id,
                user: &m.address,
                user_name: &m.name,
                rcpt: &m.address,
                sender,
            },
        )
        .await
}

fn inbox(flags: &[&str]) -> Action {
    store_in("INBOX", flags)
}

fn store_in(folder: &str, flags: &[&str]) -> Action {
    Action::Store {
        folder: folder.into(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        create: false,
        message: None,
    }
}

async fn put_active(store: &Store, m: &Mailbox, text: &str) {
    mailstead_sieve::compile(text.as_bytes()).unwrap();
    store.sieve_put(m.id, "main", text).await.unwrap();
    store.sieve_activate(m.id, Some("main")).await.unwrap();
}

#[tokio::test]
async fn no_scripts_means_no_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, m, filter) = setup(dir.path()).await;
    assert!(filter.plan(m.id, "example.test").await.unwrap().is_none());
}

#[tokio::test]
async fn fileinto_flags_and_implicit_keep() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    put_active(
        &store,
        &m,
        "require [\"fileinto\", \"imap4flags\", \"body\", \"variables\", \"mailbox\"];\n\
         if body :contains \"body\" { addflag \"$Body\"; }\n\
         if header :matches \"subject\" \"[*] *\" { fileinto :create \"${1}\"; stop; }\n\
         if header :is \"subject\" \"copy\" { fileinto :flags \"\\\\Seen\" \"Archive\"; keep; }\n",
    )
    .await;
    let out = run(
        &filter,
        &m,
        &message("bob@x.test", "[lists] hi", ""),
        "bob@x.test",
    )
    .await;
    assert_eq!(
        out.actions,
        [Action::Store {
            folder: "lists".into(),
            flags: vec!["$Body".into()],
            create: true,
            message: None,
        }]
    );
    let out = run(
        &filter,
        &m,
        &message("bob@x.test", "copy", ""),
        "bob@x.test",
    )
    .await;
    assert_eq!(
        out.actions,
        [store_in("Archive", &["\\Seen"]), inbox(&["$Body"])]
    );
    let out = run(
        &filter,
        &m,
        &message("bob@x.test", "plain", ""),
        "bob@x.test",
    )
    .await;
    assert_eq!(out.actions, [inbox(&["$Body"])]);
}

#[tokio::test]
async fn global_pre_filter_runs_first_and_stop_ends_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    put_active(&store, &m, "require \"fileinto\";\nfileinto \"User\";\n").await;
    store
        .sieve_global_set(
            "example.test",
            SievePhase::Pre,
            Some("require \"fileinto\";\nif header :contains \"subject\" \"spam\" { fileinto \"Junk\"; stop; }\n"),
        )
        .await
        .unwrap();
    store
        .sieve_global_set(
            "",
            SievePhase::Post,
            Some("require \"fileinto\";\nfileinto \"Post\";\n"),
        )
        .await
        .unwrap();
    let out = run(
        &filter,
        &m,
        &message("bob@x.test", "spam offer", ""),
        "bob@x.test",
    )
    .await;
    assert_eq!(out.actions, [store_in("Junk", &[])]);
    let out = run(
        &filter,
        &m,
        &message("bob@x.test", "hello", ""),
        "bob@x.test",
    )
    .await;
    assert_eq!(out.actions, [store_in("User", &[]), store_in("Post", &[])]);
    // Another domain's filter does not apply.
    let plan = filter.plan(m.id, "other.test").await.unwrap().unwrap();
    let raw = message("bob@x.test", "spam offer", "");
    let out = filter
        .run(
            &plan,
            Request {
                message: &raw,
                mailbox: m.id,
                user: &m.address,
                user_name: "",
                rcpt: &m.address,
                sender: "bob@x.test",
            },
        )
        .await;
    assert_eq!(out.actions, [store_in("User", &[]), store_in("Post", &[])]);
}

#[tokio::test]
async fn a_broken_global_filter_or_runtime_error_keeps_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    // Stored without the checks the admin commands make.
    store
        .sieve_global_set("", SievePhase::Pre, Some("fileinto \"x\";"))
        .await
        .unwrap();
    let out = run(&filter, &m, &message("bob@x.test", "a", ""), "bob@x.test").await;
    assert_eq!(out.actions, [inbox(&[])]);
    assert!(out.error.unwrap().contains("line 1"));
    store
        .sieve_global_set("", SievePhase::Pre, None)
        .await
        .unwrap();
    // include of a script that does not exist fails at run time, after a fileinto.
    put_active(
        &store,
        &m,
        "require [\"fileinto\", \"include\"];\nfileinto \"Before\";\ninclude :personal \"missing\";\n",
    )
    .await;
    let out = run(&filter, &m, &message("bob@x.test", "b", ""), "bob@x.test").await;
    assert_eq!(out.actions, [inbox(&[])]);
    assert!(out.error.is_some());
}

#[tokio::test]
async fn vacation_replies_once_per_sender_and_never_to_lists_or_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    let script = generate::vacation(&generate::Vacation {
        subject: "Away".into(),
        message: "Back on Monday; costs $5 \\ more.".into(),
        days: 7,
        from: None,
        until: None,
    });
    store.sieve_put(m.id, "_vacation", &script).await.unwrap();
    let sends = |o: &Outcome| -> Vec<(String, String)> {
        o.actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, message } => {
                    Some((to.clone(), String::from_utf8_lossy(message).into_owned()))
                }
                _ => None,
            })
            .collect()
    };
    let out = run(&filter, &m, &message("bob@x.test", "q1", ""), "bob@x.test").await;
    let sent = sends(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0, "bob@x.test");
    let reply = &sent[0].1;
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(reply.contains("Subject: Away"), "{reply}");
    assert!(reply.contains("In-Reply-To: <q1@x.test>"), "{reply}");
    assert!(
        reply.contains("Back on Monday; costs $5 \\ more."),
        "{reply}"
    );
    assert!(out.actions.contains(&inbox(&[])));
    // Once per sender and period.
    let out = run(&filter, &m, &message("bob@x.test", "q2", ""), "bob@x.test").await;
    assert!(sends(&out).is_empty());
    let out = run(
        &filter,
        &m,
        &message("carol@x.test", "q3", ""),
        "carol@x.test",
    )
    .await;
    assert_eq!(sends(&out).len(), 1);
    // Never to <>, mailing lists, automatic mail, or when not addressed to the user.
    for (raw, sender) in [
        (message("dave@x.test", "q4", ""), ""),
        (
            message("erin@x.test", "q5", "List-Id: <l.x.test>\r\n"),
            "erin@x.test",
        ),
        (
            message("fay@x.test", "q6", "Auto-Submitted: auto-generated\r\n"),
            "fay@x.test",
        ),
        (
            message("gus@x.test", "q7", "Precedence: bulk\r\n"),
            "gus@x.test",
        ),
        (message("hal@x.test", "q8", "").replace_to(), "hal@x.test"),
    ] {
        let out = run(&filter, &m, &raw, sender).await;
        assert_eq!(
            out.actions,
            [inbox(&[])],
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }
}

trait ReplaceTo {
    fn replace_to(self) -> Vec<u8>;
}

impl ReplaceTo for Vec<u8> {
    /// The same message addressed to someone else (a Bcc to the user).
    fn replace_to(self) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replace("To: <alice@example.test>", "To: <list@x.test>")
            .into_bytes()
    }
}

#[tokio::test]
async fn forward_redirects_and_reject_and_discard() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    store
        .sieve_put(
            m.id,
            "_forward",
            &generate::forward(&["a@far.test".into()], false),
        )
        .await
        .unwrap();
    put_active(&store, &m, "require \"fileinto\";\nfileinto \"Never\";\n").await;
    let out = run(&filter, &m, &message("bob@x.test", "f", ""), "bob@x.test").await;
    assert_eq!(
        out.actions,
        [Action::Redirect {
            to: "a@far.test".into(),
            message: None
        }]
    );
    store
        .sieve_put(
            m.id,
            "_forward",
            &generate::forward(&["a@far.test".into()], true),
        )
        .await
        .unwrap();
    let out = run(&filter, &m, &message("bob@x.test", "g", ""), "bob@x.test").await;
    assert_eq!(
        out.actions,
        [
            Action::Redirect {
                to: "a@far.test".into(),
                message: None
            },
            store_in("Never", &[])
        ]
    );
    store.sieve_delete(m.id, "_forward").await.unwrap();
    put_active(
        &store,
        &m,
        "require [\"reject\"];\nif size :over 10 { reject \"too big for me\"; } else { discard; }\n",
    )
    .await;
    let out = run(&filter, &m, &message("bob@x.test", "r", ""), "bob@x.test").await;
    assert_eq!(
        out.actions,
        [Action::Reject {
            reason: "too big for me".into()
        }]
    );
    put_active(&store, &m, "discard;\n").await;
    let out = run(&filter, &m, &message("bob@x.test", "d", ""), "bob@x.test").await;
    assert!(out.actions.is_empty(), "{out:?}");
}

#[tokio::test]
async fn editheader_gives_a_changed_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    put_active(
        &store,
        &m,
        "require \"editheader\";\naddheader \"X-Filtered\" \"yes\";\n",
    )
    .await;
    let out = run(&filter, &m, &message("bob@x.test", "e", ""), "bob@x.test").await;
    match out.actions.as_slice() {
        [
            Action::Store {
                folder,
                message: Some(copy),
                ..
            },
        ] => {
            assert_eq!(folder, "INBOX");
            let text = String::from_utf8_lossy(copy);
            assert!(text.contains("X-Filtered: yes\r\n"), "{text}");
            assert!(text.contains("Hello, this is the body."), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn duplicate_detects_the_second_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m, filter) = setup(dir.path()).await;
    put_active(
        &store,
        &m,
        "require \"duplicate\";\nif duplicate { discard; }\n",
    )
    .await;
    let raw = message("bob@x.test", "dup", "");
    let out = run(&filter, &m, &raw, "bob@x.test").await;
    assert_eq!(out.actions, [inbox(&[])]);
    let out = run(&filter, &m, &raw, "bob@x.test").await;
    assert!(out.actions.is_empty(), "{out:?}");
}
