//! Directory records and mailcow's limits, with the messages an administrator sees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use mailstead_store::*;

fn alias(address: &str, targets: &[&str]) -> NewAlias {
    NewAlias {
        address: address.into(),
        domain: "example.test".into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        active: true,
        comment: String::new(),
    }
}

#[tokio::test]
async fn domain_defaults_are_mailcows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let d = store
        .domain_create(NewDomain::with_defaults("example.test"))
        .await
        .unwrap();
    assert_eq!((d.max_mailboxes, d.max_aliases), (10, 400));
    assert_eq!(
        (d.default_quota, d.max_quota, d.total_quota),
        (3 << 30, 10 << 30, 10 << 30)
    );
    let e = store
        .domain_create(NewDomain::with_defaults("example.test"))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "domain example.test already exists");
    assert_eq!(store.domain_list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn mailbox_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut d = NewDomain::with_defaults("example.test");
    d.max_mailboxes = 2;
    d.max_quota = 2 << 30;
    d.total_quota = 3 << 30;
    d.default_quota = 1 << 30;
    store.domain_create(d).await.unwrap();
    let e = store
        .mailbox_create(new_mailbox("big", Some(5 << 30)))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "quota 5G exceeds the maximum mailbox quota of domain example.test (2G)"
    );
    let e = store
        .mailbox_create(new_mailbox("unl", Some(0)))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domain example.test does not allow unlimited mailbox quota; its maximum is 2G"
    );
    store
        .mailbox_create(new_mailbox("a", Some(2 << 30)))
        .await
        .unwrap();
    let e = store
        .mailbox_create(new_mailbox("b", Some(2 << 30)))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "quota 2G is more than is left of domain example.test's total quota: 2G of 3G are assigned"
    );
    let b = store.mailbox_create(new_mailbox("b", None)).await.unwrap();
    assert_eq!(b.quota, 1 << 30, "default quota applies");
    let e = store
        .mailbox_create(new_mailbox("c", None))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domain example.test allows at most 2 mailboxes and has 2"
    );
    let e = store
        .mailbox_create(new_mailbox("a", None))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Exists(_)) || matches!(e, StoreError::Limit(_)));

    // Editing a quota is checked the same way, counting the mailbox's own quota out.
    let e = store
        .mailbox_update(
            "b@example.test",
            MailboxPatch {
                quota: Some(2 << 30),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("more than is left"), "{e}");
    let a = store
        .mailbox_update(
            "a@example.test",
            MailboxPatch {
                quota: Some(1 << 30),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(a.quota, 1 << 30);

    // A domain limit cannot be set below what is in use.
    let e = store
        .domain_update(
            "example.test",
            DomainPatch {
                max_mailboxes: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domain example.test has 2 mailboxes; the limit cannot be lower"
    );
    let e = store
        .domain_update(
            "example.test",
            DomainPatch {
                total_quota: Some(1 << 30),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the mailboxes of domain example.test hold 2G of quota; the total cannot be lower"
    );
    let d = store
        .domain_update(
            "example.test",
            DomainPatch {
                max_mailboxes: Some(5),
                description: Some("Club".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((d.max_mailboxes, d.description.as_str()), (5, "Club"));
    let usage = store.domain_usage("example.test").await.unwrap();
    assert_eq!((usage.mailboxes, usage.quota_assigned), (2, 2 << 30));

    let e = store.domain_delete("example.test").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "domain example.test still has 2 mailboxes; remove them first"
    );
}

#[tokio::test]
async fn mailbox_edit_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = with_alice(dir.path()).await;
    let m = store
        .mailbox_update(
            "alice@example.test",
            MailboxPatch {
                active: Some(false),
                pop3: Some(false),
                name: Some("Alice A".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!m.active && !m.access.pop3 && m.access.imap);
    assert_eq!(m.name, "Alice A");
    assert!(
        store
            .mailbox_set_password("alice@example.test", "{PLAIN}new", Some("{PLAIN}x"))
            .await
            .unwrap()
    );
    // A re-hash racing a password change does not overwrite the newer password.
    assert!(
        !store
            .mailbox_set_password("alice@example.test", "{PLAIN}re", Some("{PLAIN}x"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .mailbox_get("alice@example.test")
            .await
            .unwrap()
            .unwrap()
            .password,
        "{PLAIN}new"
    );
    let e = store
        .mailbox_set_password("nobody@example.test", "x", None)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "mailbox nobody@example.test does not exist");
}

#[tokio::test]
async fn aliases_and_catch_all() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = with_alice(dir.path()).await;
    store
        .mailbox_create(new_mailbox("bob", None))
        .await
        .unwrap();
    let a = store
        .alias_create(alias(
            "team@example.test",
            &["alice@example.test", "bob@example.test"],
        ))
        .await
        .unwrap();
    assert_eq!(a.targets, vec!["alice@example.test", "bob@example.test"]);
    store
        .alias_create(alias("@example.test", &["alice@example.test"]))
        .await
        .unwrap();
    let e = store
        .alias_create(alias("alice@example.test", &["bob@example.test"]))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "mailbox alice@example.test already exists");
    let e = store
        .mailbox_create(new_mailbox("team", None))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "alias team@example.test already exists");
    let e = store
        .alias_create(alias("x@example.test", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "an alias needs at least one target");
    assert_eq!(
        store.alias_list(Some("example.test")).await.unwrap().len(),
        2
    );

    // Removing a mailbox takes it out of alias targets; an alias left empty goes too.
    store.mailbox_delete("alice@example.test").await.unwrap();
    let team = store.alias_get("team@example.test").await.unwrap().unwrap();
    assert_eq!(team.targets, vec!["bob@example.test"]);
    assert!(store.alias_get("@example.test").await.unwrap().is_none());
    store.alias_delete("team@example.test").await.unwrap();
    let e = store.alias_delete("team@example.test").await.unwrap_err();
    assert_eq!(e.to_string(), "alias team@example.test does not exist");
}

#[tokio::test]
async fn alias_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut d = NewDomain::with_defaults("example.test");
    d.max_aliases = 1;
    store.domain_create(d).await.unwrap();
    store
        .alias_create(alias("a@example.test", &["x@elsewhere.test"]))
        .await
        .unwrap();
    let e = store
        .alias_create(alias("b@example.test", &["x@elsewhere.test"]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "domain example.test allows at most 1 alias and has 1"
    );
}

#[tokio::test]
async fn alias_domains() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = with_alice(dir.path()).await;
    let ad = store
        .alias_domain_create("example.org", "example.test")
        .await
        .unwrap();
    assert_eq!(
        (ad.name.as_str(), ad.target.as_str()),
        ("example.org", "example.test")
    );
    let e = store
        .alias_domain_create("example.org", "example.test")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "alias domain example.org already exists");
    let e = store
        .alias_domain_create("example.net", "missing.test")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "domain missing.test does not exist");
    let e = store
        .domain_create(NewDomain::with_defaults("example.org"))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "alias domain example.org already exists");
    let e = store
        .alias_domain_create("example.test", "example.test")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "example.test cannot be an alias of itself");
    assert_eq!(store.alias_domain_list().await.unwrap().len(), 1);
    store.alias_domain_delete("example.org").await.unwrap();
    assert!(
        store
            .alias_domain_get("example.org")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn admins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.admin_create("admin", "{PLAIN}a").await.unwrap();
    let e = store.admin_create("admin", "{PLAIN}b").await.unwrap_err();
    assert_eq!(e.to_string(), "administrator admin already exists");
    store.admin_set_password("admin", "{PLAIN}c").await.unwrap();
    assert_eq!(
        store.admin_get("admin").await.unwrap().unwrap().password,
        "{PLAIN}c"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).await.close().await;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join("mailstead.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO schema_version (version) VALUES (99)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let e = Store::open(&StoreConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "the database has schema version 99, newer than this mailstead supports ({SCHEMA_VERSION}); \
             run a newer mailstead or restore a backup"
        )
    );
}
