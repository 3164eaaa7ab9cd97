//! The outbound queue's bookkeeping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use mailstead_store::*;
use std::collections::HashSet;
use std::sync::Arc;

fn queued(qid: &str, blob: BlobRef, summary: String, rcpts: &[&str], now: i64) -> NewQueued {
    NewQueued {
        qid: qid.into(),
        blob,
        summary,
        skip: 0,
        sender: "alice@example.test".into(),
        envid: Some("ENV1".into()),
        ret_full: Some(false),
        smtputf8: false,
        eight_bit: true,
        auth_user: Some("alice@example.test".into()),
        is_dsn: false,
        rcpts: rcpts
            .iter()
            .map(|a| NewQueuedRcpt {
                address: a.to_string(),
                orcpt: None,
                notify: 0,
            })
            .collect(),
        first_attempt: now,
    }
}

#[tokio::test]
async fn local_copy_and_queue_entry_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let (store, alice) = with_alice(dir.path()).await;
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(message("mixed")))
        .await
        .unwrap();
    let alice_inbox = inbox(&store, &alice).await;
    let target = DeliveryTarget {
        folder: alice_inbox.id,
        flags: Flags::default(),
        keywords: vec![],
        message: None,
    };
    let signal = store.queue_signal();
    let (appended, qid) = store
        .deliver_and_enqueue(
            blob,
            summary.clone(),
            0,
            vec![target],
            vec![queued(
                "Q1",
                blob,
                summary,
                &["x@remote.test", "Y@Other.Test"],
                0,
            )],
        )
        .await
        .unwrap();
    assert_eq!(appended.len(), 1);
    assert_eq!(qid.len(), 1);
    tokio::time::timeout(std::time::Duration::from_secs(1), signal.notified())
        .await
        .unwrap();
    let q = store.queue_get("Q1").await.unwrap().unwrap();
    assert_eq!(q.rcpts.len(), 2);
    assert_eq!(q.rcpts[1].domain, "other.test");
    assert_eq!(
        (q.envid.as_deref(), q.ret_full, q.eight_bit),
        (Some("ENV1"), Some(false), true)
    );
    assert_eq!(q.rcpts[0].state, RcptState::Waiting);

    // A failing local target leaves no queue entry behind.
    let full = store
        .mailbox_create(new_mailbox("full", Some(10)))
        .await
        .unwrap();
    let (blob2, summary2) = prepare_message(store.blobs(), Arc::from(message("second")))
        .await
        .unwrap();
    let t = DeliveryTarget {
        folder: inbox(&store, &full).await.id,
        flags: Flags::default(),
        keywords: vec![],
        message: None,
    };
    let e = store
        .deliver_and_enqueue(
            blob2,
            summary2.clone(),
            0,
            vec![t],
            vec![queued("Q2", blob2, summary2, &["x@remote.test"], 0)],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::OverQuota(_)));
    assert!(store.queue_get("Q2").await.unwrap().is_none());
}

#[tokio::test]
async fn attempts_are_recorded_and_finished_messages_leave() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = with_alice(dir.path()).await;
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(message("remote only")))
        .await
        .unwrap();
    let id = store
        .enqueue(queued(
            "Q3",
            blob,
            summary,
            &["a@remote.test", "b@remote.test"],
            100,
        ))
        .await
        .unwrap();
    assert!(
        store
            .queue_due(99, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.queue_due(100, 10, &HashSet::new()).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(store.queue_next_due().await.unwrap(), Some(100));
    let (a, b) = (due[0].rcpts[0].id, due[0].rcpts[1].id);
    // A recipient in a delivery is left out; a message with none left is not returned.
    let busy_a = store.queue_due(100, 10, &HashSet::from([a])).await.unwrap();
    assert_eq!(busy_a[0].rcpts.len(), 1);
    assert_eq!(busy_a[0].rcpts[0].id, b);
    assert!(
        store
            .queue_due(100, 10, &HashSet::from([a, b]))
            .await
            .unwrap()
            .is_empty()
    );
    let left = store
        .queue_record(
            id,
            vec![
                (
                    a,
                    Attempt::Delivered {
                        remote_mta: Some("mx.remote.test".into()),
                        reply: "250 ok".into(),
                    },
                ),
                (
                    b,
                    Attempt::Deferred {
                        error: "451 try later".into(),
                        remote_mta: Some("mx.remote.test".into()),
                        retry_at: 400,
                    },
                ),
            ],
        )
        .await
        .unwrap();
    assert!(!left);
    let q = store.queue_get("Q3").await.unwrap().unwrap();
    assert_eq!(
        (q.rcpts[0].state, q.rcpts[1].state),
        (RcptState::Delivered, RcptState::Waiting)
    );
    assert_eq!((q.rcpts[1].attempts, q.rcpts[1].next_attempt), (1, 400));
    assert_eq!(
        store
            .queue_due(399, 10, &HashSet::new())
            .await
            .unwrap()
            .len(),
        0
    );
    let due = store.queue_due(400, 10, &HashSet::new()).await.unwrap();
    assert_eq!(due[0].rcpts.len(), 1, "only the waiting recipient is due");

    // A failed recipient keeps the message until the failure is reported.
    let gone = store
        .queue_record(
            id,
            vec![(
                b,
                Attempt::Failed {
                    diagnostic: "550 no such user".into(),
                    remote_mta: None,
                },
            )],
        )
        .await
        .unwrap();
    assert!(!gone);
    assert!(store.blobs().exists(&blob.id));
    assert!(store.queue_mark(id, vec![b], vec![]).await.unwrap());
    assert!(store.queue_get("Q3").await.unwrap().is_none());
    assert!(
        !store.blobs().exists(&blob.id),
        "the blob goes with its last reference"
    );
}

#[tokio::test]
async fn hold_release_retry_delete_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = with_alice(dir.path()).await;
    let (blob, summary) = prepare_message(store.blobs(), Arc::from(message("held")))
        .await
        .unwrap();
    store
        .enqueue(queued(
            "Q4",
            blob,
            summary.clone(),
            &["a@remote.test"],
            1_000,
        ))
        .await
        .unwrap();
    store.queue_hold("Q4", true).await.unwrap();
    assert!(
        store
            .queue_due(5_000, 10, &HashSet::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.queue_next_due().await.unwrap(), None);
    store.queue_hold("Q4", false).await.unwrap();
    assert_eq!(
        store
            .queue_due(5_000, 10, &HashSet::new())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.queue_retry_now(Some("Q4")).await.unwrap(), 1);
    assert!(store.queue_next_due().await.unwrap().unwrap() > 1_000_000);
    assert!(matches!(
        store.queue_hold("nope", true).await,
        Err(StoreError::NotFound(_))
    ));
    store.close().await;

    let store = open(dir.path()).await;
    assert_eq!(
        store.queue_list().await.unwrap().len(),
        1,
        "the queue survives a restart"
    );
    store.queue_delete("Q4").await.unwrap();
    assert!(store.queue_list().await.unwrap().is_empty());
    assert!(!store.blobs().exists(&blob.id));
}
