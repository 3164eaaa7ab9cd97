//! Folders and messages: the UID, MODSEQ, quota and blob rules of `mail_ops`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use mailstead_store::*;
use std::sync::Arc;

#[tokio::test]
async fn new_mailbox_has_the_special_use_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let folders = store.folder_list(m.id).await.unwrap();
    let names: Vec<(&str, Option<&str>)> = folders
        .iter()
        .map(|f| (f.name.as_str(), f.special_use.as_deref()))
        .collect();
    for expected in [
        ("INBOX", None),
        ("Drafts", Some("\\Drafts")),
        ("Sent", Some("\\Sent")),
        ("Junk", Some("\\Junk")),
        ("Trash", Some("\\Trash")),
        ("Archive", Some("\\Archive")),
    ] {
        assert!(
            names.contains(&expected),
            "{expected:?} missing from {names:?}"
        );
    }
    let mut validities: Vec<u32> = folders.iter().map(|f| f.uidvalidity).collect();
    validities.sort_unstable();
    validities.dedup();
    assert_eq!(
        validities.len(),
        folders.len(),
        "UIDVALIDITY values must differ"
    );
    // INBOX is case-insensitive.
    assert_eq!(
        store.folder_get(m.id, "inbox").await.unwrap().unwrap().name,
        "INBOX"
    );
}

#[tokio::test]
async fn append_assigns_growing_uids_and_modseqs_and_counts_quota() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let inbox = inbox(&store, &m).await;
    let mut events = store.events().subscribe();
    let a1 = append(&store, inbox.id, message("one"), Flags::default()).await;
    let a2 = append(&store, inbox.id, message("two"), Flags::SEEN).await;
    assert_eq!((a1.uid, a2.uid), (1, 2));
    assert!(a2.modseq > a1.modseq && a1.modseq > inbox.highestmodseq);
    assert_eq!(a1.uidvalidity, inbox.uidvalidity);
    let f = store.folder_by_id(inbox.id).await.unwrap().unwrap();
    assert_eq!((f.uidnext, f.highestmodseq), (3, a2.modseq));
    let e = events.recv().await.unwrap();
    assert_eq!(
        (e.folder, e.modseq, e.change),
        (inbox.id, a1.modseq, Change::Added { uids: vec![1] })
    );
    let mb = store
        .mailbox_get("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let size = (message("one").len() + message("two").len()) as i64;
    assert_eq!((mb.used_bytes, mb.used_messages), (size, 2));
    let msgs = store.messages(inbox.id).await.unwrap();
    assert_eq!(msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(msgs[1].flags, Flags::SEEN);
    assert_eq!(
        store.blobs().read(msgs[0].blob).await.unwrap(),
        message("one")
    );
    let summary = store.summary(msgs[0].blob).await.unwrap();
    assert_eq!(summary.envelope.subject.as_deref(), Some("one"));
}

async fn inbox_targets(store: &Store, boxes: &[&Mailbox]) -> Vec<DeliveryTarget> {
    let mut t = Vec::new();
    for mb in boxes {
        t.push(DeliveryTarget {
            folder: inbox(store, mb).await.id,
            flags: Flags::default(),
            keywords: vec![],
            message: None,
        });
    }
    t
}

fn blob_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "tmp")
        .map(|e| std::fs::read_dir(e.path()).unwrap().count())
        .sum()
}

#[tokio::test]
async fn deliver_stores_one_blob_for_many_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = with_alice(dir.path()).await;
    let bob = store
        .mailbox_create(new_mailbox("bob", None))
        .await
        .unwrap();
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(message("shared")))
        .await
        .unwrap();
    let targets = inbox_targets(&store, &[&alice, &bob]).await;
    let done = store
        .deliver(blob, summary, 1_700_000_000, targets)
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(blob_files(dir.path()), 1, "one file serves both copies");
    for mb in [&alice, &bob] {
        let msgs = store.messages(inbox(&store, mb).await.id).await.unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].blob, blob.id);
    }
}

#[tokio::test]
async fn deliver_is_all_or_nothing_and_allows_the_quota_grace() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = with_alice(dir.path()).await;
    let bob = store
        .mailbox_create(new_mailbox("bob", Some(1000)))
        .await
        .unwrap();
    // 1050 bytes into an empty 1000-byte mailbox: within the 10 % grace.
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(vec![b'x'; 1050]))
        .await
        .unwrap();
    let targets = inbox_targets(&store, &[&alice, &bob]).await;
    store.deliver(blob, summary, 0, targets).await.unwrap();
    // Bob is now over quota: the next delivery to both fails for both.
    let (blob2, summary2) = prepare_message(store.blobs(), Arc::from(message("next")))
        .await
        .unwrap();
    let targets = inbox_targets(&store, &[&alice, &bob]).await;
    let e = store
        .deliver(blob2, summary2, 0, targets)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::OverQuota(m) if m.contains("bob@example.test")),
        "{e}"
    );
    assert_eq!(
        store
            .messages(inbox(&store, &alice).await.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let bob_now = store
        .mailbox_get("bob@example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((bob_now.used_bytes, bob_now.used_messages), (1050, 1));
    // A message past the grace does not go into a mailbox that is under quota either.
    let carol = store
        .mailbox_create(new_mailbox("carol", Some(1000)))
        .await
        .unwrap();
    let (blob3, summary3) = prepare_message(store.blobs(), Arc::from(vec![b'y'; 1200]))
        .await
        .unwrap();
    let targets = inbox_targets(&store, &[&carol]).await;
    assert!(matches!(
        store.deliver(blob3, summary3, 0, targets).await,
        Err(StoreError::OverQuota(_))
    ));
}

#[tokio::test]
async fn flags_add_remove_replace_and_unchanged_since() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let inbox = inbox(&store, &m).await;
    for i in 0..3 {
        append(
            &store,
            inbox.id,
            message(&format!("m{i}")),
            Flags::default(),
        )
        .await;
    }
    let r = store
        .set_flags(
            inbox.id,
            vec![1, 2],
            FlagOp::Add,
            Flags::SEEN,
            vec!["$Label1".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.changed.len(), 2);
    let ms = r.changed[0].modseq;
    assert!(
        r.changed
            .iter()
            .all(|c| c.modseq == ms && c.flags == Flags::SEEN)
    );
    assert_eq!(r.changed[0].keywords, vec!["$Label1".to_string()]);
    // A STORE that changes nothing keeps MODSEQ.
    let again = store
        .set_flags(inbox.id, vec![1], FlagOp::Add, Flags::SEEN, vec![], None)
        .await
        .unwrap();
    assert!(again.changed.is_empty());
    assert_eq!(
        store
            .folder_by_id(inbox.id)
            .await
            .unwrap()
            .unwrap()
            .highestmodseq,
        ms
    );
    // UNCHANGEDSINCE: message 1 changed after `ms - 1`, so it is refused; 3 is changed.
    let r = store
        .set_flags(
            inbox.id,
            vec![1, 3],
            FlagOp::Replace,
            Flags::FLAGGED,
            vec![],
            Some(ms - 1),
        )
        .await
        .unwrap();
    assert_eq!(r.modified, vec![1]);
    assert_eq!(r.changed.iter().map(|c| c.uid).collect::<Vec<_>>(), vec![3]);
    let r = store
        .set_flags(
            inbox.id,
            vec![1],
            FlagOp::Remove,
            Flags::SEEN,
            vec!["$label1".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.changed[0].flags, Flags::default());
    assert!(
        r.changed[0].keywords.is_empty(),
        "keywords compare case-insensitively"
    );
    let changes = store.changes_since(inbox.id, ms).await.unwrap();
    assert_eq!(
        changes.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![1, 3]
    );
}

#[tokio::test]
async fn copy_move_expunge_keep_tombstones_and_free_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let inbox = inbox(&store, &m).await;
    let archive = store.folder_get(m.id, "Archive").await.unwrap().unwrap();
    for i in 0..4 {
        append(
            &store,
            inbox.id,
            message(&format!("m{i}")),
            Flags::default(),
        )
        .await;
    }
    let (validity, pairs) = store
        .copy(inbox.id, vec![1, 2, 99], archive.id)
        .await
        .unwrap();
    assert_eq!(validity, archive.uidvalidity);
    assert_eq!(pairs, vec![(1, 1), (2, 2)]);
    let usage = store
        .mailbox_get("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(usage.used_messages, 6);
    let before = store
        .folder_by_id(inbox.id)
        .await
        .unwrap()
        .unwrap()
        .highestmodseq;
    let (_, moved) = store
        .move_messages(inbox.id, vec![3], archive.id)
        .await
        .unwrap();
    assert_eq!(moved, vec![(3, 3)]);
    let changes = store.changes_since(inbox.id, before).await.unwrap();
    assert_eq!(changes.expunged, vec![3]);
    assert_eq!(
        store
            .mailbox_get("alice@example.test")
            .await
            .unwrap()
            .unwrap()
            .used_messages,
        6
    );

    // EXPUNGE removes only \Deleted messages, and with a UID set only those among them.
    store
        .set_flags(
            inbox.id,
            vec![1, 2],
            FlagOp::Add,
            Flags::DELETED,
            vec![],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store.expunge(inbox.id, Some(vec![2, 4])).await.unwrap(),
        vec![2]
    );
    assert_eq!(store.expunge(inbox.id, None).await.unwrap(), vec![1]);
    let left: Vec<u32> = store
        .messages(inbox.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![4]);
    // The blob of message 4 is referenced once; expunging it removes the file.
    let m4 = store.message(inbox.id, 4).await.unwrap().unwrap();
    assert!(store.blobs().exists(&m4.blob));
    store
        .set_flags(inbox.id, vec![4], FlagOp::Add, Flags::DELETED, vec![], None)
        .await
        .unwrap();
    store.expunge(inbox.id, None).await.unwrap();
    assert!(!store.blobs().exists(&m4.blob));
    // Blobs still referenced from Archive stay.
    let a1 = store.message(archive.id, 1).await.unwrap().unwrap();
    assert!(store.blobs().exists(&a1.blob));
    // A new message never reuses an expunged UID.
    let next = append(&store, inbox.id, message("new"), Flags::default()).await;
    assert_eq!(next.uid, 5);
}

#[tokio::test]
async fn folders_create_rename_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let deep = store
        .folder_create(m.id, "Projects/2026/Q4", None)
        .await
        .unwrap();
    assert_eq!(deep.name, "Projects/2026/Q4");
    assert!(
        store
            .folder_get(m.id, "Projects/2026")
            .await
            .unwrap()
            .is_some(),
        "parents created"
    );
    assert!(matches!(
        store.folder_create(m.id, "Projects", None).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.folder_create(m.id, "a//b", None).await,
        Err(StoreError::Invalid(_))
    ));
    store.folder_rename(m.id, "Projects", "Work").await.unwrap();
    assert!(
        store
            .folder_get(m.id, "Work/2026/Q4")
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.folder_get(m.id, "Projects").await.unwrap().is_none());
    let e = store.folder_delete(m.id, "Work").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "folder Work has subfolders; delete them first"
    );
    assert!(matches!(
        store.folder_delete(m.id, "inbox").await,
        Err(StoreError::Invalid(_))
    ));
    let q4 = store
        .folder_get(m.id, "Work/2026/Q4")
        .await
        .unwrap()
        .unwrap();
    append(&store, q4.id, message("x"), Flags::default()).await;
    store.folder_delete(m.id, "Work/2026/Q4").await.unwrap();
    let recreated = store
        .folder_create(m.id, "Work/2026/Q4", None)
        .await
        .unwrap();
    assert!(
        recreated.uidvalidity > q4.uidvalidity,
        "a recreated folder gets a new UIDVALIDITY"
    );
    assert_eq!(
        store
            .mailbox_get("alice@example.test")
            .await
            .unwrap()
            .unwrap()
            .used_messages,
        0
    );
}

#[tokio::test]
async fn quota_is_enforced_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = with_alice(dir.path()).await;
    let small = store
        .mailbox_create(new_mailbox("small", Some(200)))
        .await
        .unwrap();
    let inbox = inbox(&store, &small).await;
    append(&store, inbox.id, message("fits"), Flags::default()).await;
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(vec![b'y'; 500]))
        .await
        .unwrap();
    let err = store
        .append(
            inbox.id,
            NewMessage {
                blob,
                summary,
                flags: Flags::default(),
                keywords: vec![],
                internal_date: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::OverQuota(_)), "{err}");
}

#[tokio::test]
async fn concurrent_appends_share_commits_and_get_distinct_uids() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let inbox = inbox(&store, &m).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            append(
                &store,
                inbox.id,
                message(&format!("c{i}")),
                Flags::default(),
            )
            .await
            .uid
        }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap());
    }
    uids.sort_unstable();
    assert_eq!(uids, (1..=200).collect::<Vec<u32>>());
}

#[tokio::test]
async fn deleting_a_mailbox_frees_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let a = append(
        &store,
        inbox(&store, &m).await.id,
        message("gone"),
        Flags::default(),
    )
    .await;
    let blob = store.message(a.folder, a.uid).await.unwrap().unwrap().blob;
    store.mailbox_delete("alice@example.test").await.unwrap();
    assert!(!store.blobs().exists(&blob));
    assert!(store.folder_list(m.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn orphan_blobs_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let kept = append(
        &store,
        inbox(&store, &m).await.id,
        message("kept"),
        Flags::default(),
    )
    .await;
    let orphan = store.blobs().put_sync(b"written, never committed").unwrap();
    assert_eq!(
        store
            .sweep_orphan_blobs(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert!(!store.blobs().exists(&orphan.id));
    let kept_blob = store
        .message(kept.folder, kept.uid)
        .await
        .unwrap()
        .unwrap()
        .blob;
    assert!(store.blobs().exists(&kept_blob));
}

#[tokio::test]
async fn reopen_keeps_everything_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    append(
        &store,
        inbox(&store, &m).await.id,
        message("persist"),
        Flags::SEEN,
    )
    .await;
    store.close().await;
    let store = open(dir.path()).await;
    store.check().await.unwrap();
    let m = store
        .mailbox_get("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let msgs = store.messages(inbox(&store, &m).await.id).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].flags, Flags::SEEN);
}
