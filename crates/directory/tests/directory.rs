//! Recipient resolution and logins against a real store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mailstead_core::address::Address;
use mailstead_directory::*;
use mailstead_store::*;
use std::net::IpAddr;

const IP: &str = "192.0.2.10";

async fn setup(dir: &std::path::Path) -> Directory {
    let store = Store::open(&StoreConfig::new(dir)).await.unwrap();
    let d = Directory::new(store);
    d.add_domain(NewDomain::with_defaults("Example.TEST"))
        .await
        .unwrap();
    for user in ["alice", "bob", "carol"] {
        d.add_mailbox(
            &format!("{user}@example.test"),
            "correct horse",
            MailboxSpec {
                active: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    d
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn locals(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Deliver { local, .. } => local.iter().map(|t| t.address.clone()).collect(),
        other => panic!("expected delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn mailboxes_case_and_sub_addressing() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    assert_eq!(
        locals(&d.resolve(&addr("Alice@EXAMPLE.test")).await.unwrap()),
        vec!["alice@example.test"]
    );
    let r = d.resolve(&addr("alice+lists@example.test")).await.unwrap();
    match r {
        Resolution::Deliver { local, remote } => {
            assert_eq!(local[0].address, "alice@example.test");
            assert_eq!(local[0].detail.as_deref(), Some("lists"));
            assert!(remote.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.resolve(&addr("nobody@example.test")).await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        d.resolve(&addr("x@elsewhere.test")).await.unwrap(),
        Resolution::NotLocal
    );
}

#[tokio::test]
async fn aliases_nested_remote_and_loops() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    d.add_alias(
        "team@example.test",
        &["alice@example.test".into(), "staff@example.test".into()],
        "",
    )
    .await
    .unwrap();
    d.add_alias(
        "staff@example.test",
        &["bob@example.test".into(), "friend@remote.test".into()],
        "",
    )
    .await
    .unwrap();
    let r = d.resolve(&addr("team@example.test")).await.unwrap();
    let Resolution::Deliver { local, remote } = &r else {
        panic!("{r:?}")
    };
    assert_eq!(
        local.iter().map(|t| t.address.as_str()).collect::<Vec<_>>(),
        vec!["alice@example.test", "bob@example.test"]
    );
    assert_eq!(remote, &vec!["friend@remote.test".to_string()]);

    // A loop between two aliases ends, and delivers to what it reaches.
    d.add_alias(
        "loop1@example.test",
        &["loop2@example.test".into(), "carol@example.test".into()],
        "",
    )
    .await
    .unwrap();
    d.add_alias("loop2@example.test", &["loop1@example.test".into()], "")
        .await
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("loop2@example.test")).await.unwrap()),
        vec!["carol@example.test"]
    );

    // A chain deeper than the limit stops there.
    for i in 0..15 {
        d.add_alias(
            &format!("chain{i}@example.test"),
            &[format!("chain{}@example.test", i + 1)],
            "",
        )
        .await
        .unwrap();
    }
    d.add_alias("chain15@example.test", &["alice@example.test".into()], "")
        .await
        .unwrap();
    assert_eq!(
        d.resolve(&addr("chain0@example.test")).await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        locals(&d.resolve(&addr("chain10@example.test")).await.unwrap()),
        vec!["alice@example.test"]
    );
}

#[tokio::test]
async fn alias_domains_and_catch_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    d.add_alias_domain("Example.ORG", "example.test")
        .await
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("bob@example.org")).await.unwrap()),
        vec!["bob@example.test"]
    );
    assert_eq!(
        d.resolve(&addr("nobody@example.org")).await.unwrap(),
        Resolution::Unknown
    );
    d.add_alias("@example.test", &["carol@example.test".into()], "")
        .await
        .unwrap();
    // The catch-all takes what no mailbox or alias takes, also through the alias domain.
    assert_eq!(
        locals(&d.resolve(&addr("nobody@example.org")).await.unwrap()),
        vec!["carol@example.test"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("alice@example.test")).await.unwrap()),
        vec!["alice@example.test"]
    );
    let e = d
        .add_mailbox("dave@example.org", "correct horse", MailboxSpec::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "example.org is an alias domain of example.test; create the mailbox in example.test"
    );
}

#[tokio::test]
async fn disabled_mailboxes_and_domains() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    d.edit_mailbox(
        "bob@example.test",
        MailboxPatch {
            active: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        d.resolve(&addr("bob@example.test")).await.unwrap(),
        Resolution::Disabled
    );
    d.add_alias(
        "both@example.test",
        &["alice@example.test".into(), "bob@example.test".into()],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("both@example.test")).await.unwrap()),
        vec!["alice@example.test"]
    );
    d.edit_domain(
        "example.test",
        DomainPatch {
            active: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        d.resolve(&addr("alice@example.test")).await.unwrap(),
        Resolution::Disabled
    );
}

#[tokio::test]
async fn logins() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    let ip: IpAddr = IP.parse().unwrap();
    let m = d
        .login("ALICE@example.test", "correct horse", Protocol::Imap, ip)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.address, "alice@example.test");
    assert_eq!(
        d.login("alice@example.test", "wrong", Protocol::Imap, ip)
            .await
            .unwrap()
            .unwrap_err(),
        LoginError::BadCredentials
    );
    assert_eq!(
        d.login("ghost@example.test", "whatever", Protocol::Imap, ip)
            .await
            .unwrap()
            .unwrap_err(),
        LoginError::BadCredentials
    );
    assert_eq!(d.failed_logins(ip, "alice@example.test"), (2, 1));
    d.edit_mailbox(
        "bob@example.test",
        MailboxPatch {
            pop3: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        d.login("bob@example.test", "correct horse", Protocol::Pop3, ip)
            .await
            .unwrap()
            .unwrap_err(),
        LoginError::ProtocolDenied(Protocol::Pop3)
    );
    d.edit_mailbox(
        "bob@example.test",
        MailboxPatch {
            active: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        d.login("bob@example.test", "correct horse", Protocol::Imap, ip)
            .await
            .unwrap()
            .unwrap_err(),
        LoginError::Disabled
    );
}

#[tokio::test]
async fn imported_hash_is_upgraded_at_first_login() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    // `doveadm pw -s SHA512-CRYPT -p 'correct horse battery staple'`, as a mailcow database holds it.
    let imported = "{SHA512-CRYPT}$6$VFf44jpWbrWQKN5/$ppb9VNB4CRmaOvN6GP36SJWwaWsTxffY2GwuBIAIIgfgmtVOAYw1MVtyk5ccZDJDxMkyBgoVRQ7X/hRQos2hU/";
    d.store()
        .mailbox_set_password("carol@example.test", imported, None)
        .await
        .unwrap();
    let ip: IpAddr = IP.parse().unwrap();
    let m = d
        .login(
            "carol@example.test",
            "correct horse battery staple",
            Protocol::Imap,
            ip,
        )
        .await
        .unwrap();
    assert!(m.is_ok(), "{m:?}");
    let stored = d
        .store()
        .mailbox_get("carol@example.test")
        .await
        .unwrap()
        .unwrap()
        .password;
    assert!(stored.starts_with("{ARGON2ID}$argon2id$"), "{stored}");
    assert!(
        d.login(
            "carol@example.test",
            "correct horse battery staple",
            Protocol::Imap,
            ip
        )
        .await
        .unwrap()
        .is_ok()
    );
}

#[tokio::test]
async fn sender_addresses_include_aliases_and_alias_domains() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    d.add_alias("info@example.test", &["alice@example.test".into()], "")
        .await
        .unwrap();
    d.add_alias("@example.test", &["alice@example.test".into()], "")
        .await
        .unwrap();
    d.add_alias_domain("example.org", "example.test")
        .await
        .unwrap();
    let mut own = d.sender_addresses("alice@example.test").await.unwrap();
    own.sort();
    assert_eq!(
        own,
        vec![
            "alice@example.org",
            "alice@example.test",
            "info@example.org",
            "info@example.test"
        ]
    );
}

#[tokio::test]
async fn admin_input_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = setup(dir.path()).await;
    let e = d
        .add_mailbox("not an address", "correct horse", MailboxSpec::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"not an address\" is not an address of the form user@domain"
    );
    let e = d
        .add_mailbox("x@nowhere.test", "correct horse", MailboxSpec::default())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "domain nowhere.test does not exist");
    let e = d
        .add_alias("a@example.test", &["a@example.test".into()], "")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "alias a@example.test cannot point at itself");
    let e = d
        .add_domain(NewDomain::with_defaults("no_tld"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the domain \"no_tld\" is not a valid domain name"
    );
    let e = d.add_admin("bad name!", "correct horse").await.unwrap_err();
    assert!(e.to_string().contains("not a valid administrator name"));
}
