//! Crash test: a child process appends in a loop from many tasks and reports each append that
//! returned Ok; it is killed with SIGKILL at an arbitrary moment, several times over. After each
//! kill the store must open without repair, pass its integrity check, and hold every
//! acknowledged message exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use mailstead_store::*;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "MAILSTEAD_CRASH_CHILD_DIR";

/// The child: runs only when the parent starts this binary with the environment variable set.
#[tokio::test]
#[ignore = "run by crash_after_sigkill_loses_no_acknowledged_append"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: usize = std::env::var("MAILSTEAD_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let dir = std::path::PathBuf::from(dir);
    let store = open(&dir).await;
    if store.domain_get("example.test").await.unwrap().is_none() {
        store
            .domain_create(NewDomain::with_defaults("example.test"))
            .await
            .unwrap();
        store
            .mailbox_create(new_mailbox("alice", Some(0)))
            .await
            .ok();
    }
    let m = match store.mailbox_get("alice@example.test").await.unwrap() {
        Some(m) => m,
        None => store
            .mailbox_create(new_mailbox("alice", None))
            .await
            .unwrap(),
    };
    let folder = inbox(&store, &m).await.id;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for task in 0..16 {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let tag = format!("r{round}t{task}n{n}");
                // Vary the size so some batches carry large blobs.
                let mut raw = message(&tag);
                raw.extend(std::iter::repeat_n(b'z', (n % 7) * 3000));
                let a = append(&store, folder, raw, Flags::default()).await;
                if tx.send(format!("ACK {tag} {}", a.uid)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_after_sigkill_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<String, u32> = HashMap::new();
    for (round, kill_after) in [37usize, 211, 5, 400].into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("MAILSTEAD_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (tag, uid) = rest.split_once(' ').unwrap();
                acked.insert(tag.to_string(), uid.parse().unwrap());
                seen += 1;
                if seen >= kill_after {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        child.wait().unwrap();
        assert!(
            seen >= kill_after,
            "child stopped early in round {round} after {seen} acks"
        );
        verify(dir.path(), &acked);
    }
}

fn verify(dir: &std::path::Path, acked: &HashMap<String, u32>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open(dir).await;
        store.check().await.unwrap();
        let m = store
            .mailbox_get("alice@example.test")
            .await
            .unwrap()
            .unwrap();
        let folder = inbox(&store, &m).await;
        let msgs = store.messages(folder.id).await.unwrap();
        let mut tags: HashMap<String, u32> = HashMap::new();
        let mut bytes = 0i64;
        for meta in &msgs {
            let raw = store.blobs().read(meta.blob).await.unwrap();
            assert_eq!(raw.len() as u64, meta.size);
            let s = store.summary(meta.blob).await.unwrap();
            let tag = s.envelope.subject.unwrap();
            assert!(
                tags.insert(tag.clone(), meta.uid).is_none(),
                "{tag} stored twice"
            );
            bytes += meta.size as i64;
        }
        for (tag, uid) in acked {
            assert_eq!(
                tags.get(tag),
                Some(uid),
                "acknowledged {tag} (uid {uid}) missing after crash"
            );
        }
        // Quota usage was counted in the same transactions as the messages.
        let m = store
            .mailbox_get("alice@example.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m.used_messages, m.used_bytes), (msgs.len() as i64, bytes));
        assert!(folder.uidnext > msgs.last().map(|m| m.uid).unwrap_or(0));
        let uids: HashSet<u32> = msgs.iter().map(|m| m.uid).collect();
        assert_eq!(uids.len(), msgs.len());
        store.close().await;
    });
}
