#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mailstead_store::*;
use std::sync::Arc;

pub async fn open(dir: &std::path::Path) -> Store {
    Store::open(&StoreConfig::new(dir))
        .await
        .expect("open store")
}

/// A store with domain example.test and mailbox alice@example.test.
pub async fn with_alice(dir: &std::path::Path) -> (Store, Mailbox) {
    let store = open(dir).await;
    store
        .domain_create(NewDomain::with_defaults("example.test"))
        .await
        .unwrap();
    let m = store
        .mailbox_create(new_mailbox("alice", None))
        .await
        .unwrap();
    (store, m)
}

pub fn new_mailbox(local: &str, quota: Option<i64>) -> NewMailbox {
    NewMailbox {
        local_part: local.into(),
        domain: "example.test".into(),
        name: local.into(),
        password: "{PLAIN}x".into(),
        quota,
        active: true,
        access: Access::default(),
    }
}

pub fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: a@example.test\r\nTo: alice@example.test\r\nSubject: {tag}\r\nMessage-ID: <{tag}@example.test>\r\n\r\nbody {tag}\r\n"
    )
    .into_bytes()
}

pub async fn append(store: &Store, folder: FolderId, raw: Vec<u8>, flags: Flags) -> Appended {
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(raw))
        .await
        .unwrap();
    store
        .append(
            folder,
            NewMessage {
                blob,
                summary,
                flags,
                keywords: vec![],
                internal_date: 1_700_000_000,
            },
        )
        .await
        .unwrap()
}

pub async fn inbox(store: &Store, m: &Mailbox) -> Folder {
    store.folder_get(m.id, "INBOX").await.unwrap().unwrap()
}
