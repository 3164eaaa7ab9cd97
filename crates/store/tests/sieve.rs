//! Sieve scripts, global filters and the memory of replies: the rules of `sieve_ops`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use mailstead_store::*;

#[tokio::test]
async fn scripts_put_activate_rename_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    assert!(store.sieve_active(m.id).await.unwrap().is_none());
    store.sieve_put(m.id, "one", "keep;").await.unwrap();
    store.sieve_put(m.id, "two", "discard;").await.unwrap();
    store.sieve_activate(m.id, Some("one")).await.unwrap();
    // Replacing the active script keeps it active.
    store.sieve_put(m.id, "one", "stop;").await.unwrap();
    let active = store.sieve_active(m.id).await.unwrap().unwrap();
    assert_eq!(
        (active.name.as_str(), active.content.as_str()),
        ("one", "stop;")
    );
    // One active at a time.
    store.sieve_activate(m.id, Some("two")).await.unwrap();
    let list = store.sieve_list(m.id).await.unwrap();
    let flags: Vec<(&str, bool)> = list.iter().map(|s| (s.name.as_str(), s.active)).collect();
    assert_eq!(flags, [("one", false), ("two", true)]);
    store
        .sieve_put(m.id, "two", "# \u{e9}t\u{e9}\nkeep;")
        .await
        .unwrap();
    let infos = store.sieve_infos(m.id).await.unwrap();
    assert_eq!(
        infos,
        [
            SieveScriptInfo {
                name: "one".into(),
                size: 5,
                active: false
            },
            SieveScriptInfo {
                name: "two".into(),
                size: 13,
                active: true
            }
        ]
    );
    assert!(matches!(
        store.sieve_activate(m.id, Some("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    // The active one cannot be deleted; renamed it stays active.
    assert!(matches!(
        store.sieve_delete(m.id, "two").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.sieve_rename(m.id, "two", "one").await,
        Err(StoreError::Exists(_))
    ));
    store.sieve_rename(m.id, "two", "three").await.unwrap();
    assert_eq!(
        store.sieve_active(m.id).await.unwrap().unwrap().name,
        "three"
    );
    store.sieve_activate(m.id, None).await.unwrap();
    assert!(store.sieve_active(m.id).await.unwrap().is_none());
    store.sieve_delete(m.id, "three").await.unwrap();
    assert!(matches!(
        store.sieve_delete(m.id, "three").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.sieve_get(m.id, "one").await.unwrap().unwrap().content,
        "stop;"
    );
}

#[tokio::test]
async fn memory_answers_once_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    let far = i64::MAX / 2;
    assert!(
        !store
            .sieve_remember(m.id, "vacation", "bob@x.test", far)
            .await
            .unwrap()
    );
    assert!(
        store
            .sieve_remember(m.id, "vacation", "bob@x.test", far)
            .await
            .unwrap()
    );
    assert!(
        !store
            .sieve_remember(m.id, "duplicate", "bob@x.test", far)
            .await
            .unwrap()
    );
    // An expired memory is gone.
    assert!(
        !store
            .sieve_remember(m.id, "vacation", "carol@x.test", 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .sieve_remember(m.id, "vacation", "carol@x.test", far)
            .await
            .unwrap()
    );
    store.sieve_forget(m.id, "vacation").await.unwrap();
    assert!(
        !store
            .sieve_remember(m.id, "vacation", "bob@x.test", far)
            .await
            .unwrap()
    );
    assert!(
        store
            .sieve_remember(m.id, "duplicate", "bob@x.test", far)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn globals_by_scope_and_phase() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _m) = with_alice(dir.path()).await;
    store
        .sieve_global_set("", SievePhase::Pre, Some("keep;"))
        .await
        .unwrap();
    store
        .sieve_global_set("Example.TEST", SievePhase::Post, Some("stop;"))
        .await
        .unwrap();
    store
        .sieve_global_set("example.test", SievePhase::Post, Some("keep;"))
        .await
        .unwrap();
    let all = store.sieve_globals().await.unwrap();
    let got: Vec<(&str, SievePhase, &str)> = all
        .iter()
        .map(|g| (g.scope.as_str(), g.phase, g.content.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("", SievePhase::Pre, "keep;"),
            ("example.test", SievePhase::Post, "keep;")
        ]
    );
    store
        .sieve_global_set("", SievePhase::Pre, None)
        .await
        .unwrap();
    assert_eq!(store.sieve_globals().await.unwrap().len(), 1);
}

#[tokio::test]
async fn removing_a_mailbox_removes_its_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    store.sieve_put(m.id, "one", "keep;").await.unwrap();
    store.sieve_activate(m.id, Some("one")).await.unwrap();
    store
        .sieve_remember(m.id, "vacation", "bob@x.test", i64::MAX / 2)
        .await
        .unwrap();
    store.mailbox_delete(&m.address).await.unwrap();
}

#[tokio::test]
async fn delivery_reads_only_the_scripts_and_filters_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = with_alice(dir.path()).await;
    for name in ["_vacation", "mine", "other", "_forward"] {
        store.sieve_put(m.id, name, "keep;").await.unwrap();
    }
    store.sieve_activate(m.id, Some("mine")).await.unwrap();
    let names: Vec<String> = store
        .sieve_for_delivery(m.id, ["_vacation", "_forward"])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["_forward", "_vacation", "mine"]);
    store
        .sieve_global_set("", SievePhase::Pre, Some("keep;"))
        .await
        .unwrap();
    store
        .sieve_global_set("example.test", SievePhase::Post, Some("keep;"))
        .await
        .unwrap();
    store
        .sieve_global_set("other.test", SievePhase::Pre, Some("keep;"))
        .await
        .unwrap();
    let scopes: Vec<String> = store
        .sieve_globals_for("Example.Test")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.scope)
        .collect();
    assert_eq!(scopes, ["", "example.test"]);
}
