//! Durable appends per second of 4 KiB messages into the store, by one writer and by 20
//! concurrent tasks, printed beside the raw fsync rate of the same disk measured in the same
//! run. Group commit should put the concurrent figure well above the raw fsync rate: that is
//! the point of it. Usage: `store_append [DIR] [SECONDS]` (DIR on the disk to measure; default
//! a temporary directory under the current one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use mailstead_store::*;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SIZE: usize = 4096;

fn message(n: u64) -> Vec<u8> {
    let mut m = format!("From: bench@example.test\r\nSubject: bench {n}\r\n\r\n").into_bytes();
    m.resize(SIZE, b'x');
    m
}

/// What the disk gives without any database: write 4 KiB to a new file and fsync it, in a loop.
fn raw_fsync_rate(dir: &std::path::Path, secs: f64) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let buf = vec![b'x'; SIZE];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all(&buf).unwrap();
        f.sync_all().unwrap();
        n += 1;
    }
    std::fs::remove_file(&path).unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

async fn setup(dir: &std::path::Path) -> (Store, FolderId) {
    let store = Store::open(&StoreConfig::new(dir)).await.unwrap();
    store
        .domain_create(NewDomain::with_defaults("example.test"))
        .await
        .unwrap();
    let m = store
        .mailbox_create(NewMailbox {
            local_part: "bench".into(),
            domain: "example.test".into(),
            name: String::new(),
            password: "{PLAIN}x".into(),
            quota: None,
            active: true,
            access: Access::default(),
        })
        .await
        .unwrap();
    let inbox = store.folder_get(m.id, "INBOX").await.unwrap().unwrap();
    (store, inbox.id)
}

async fn appends(store: &Store, folder: FolderId, tasks: usize, secs: f64) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, counter) = (store.clone(), counter.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let raw: Arc<[u8]> = Arc::from(message((t as u64) << 32 | i));
                let (blob, summary) = prepare_message(store.blobs(), raw).await.unwrap();
                store
                    .append(
                        folder,
                        NewMessage {
                            blob,
                            summary,
                            flags: Flags::default(),
                            keywords: vec![],
                            internal_date: 0,
                        },
                    )
                    .await
                    .unwrap();
                counter.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    counter.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap());
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let raw = raw_fsync_rate(tmp.path(), secs);
    let (store, folder) = setup(&tmp.path().join("one")).await;
    let one = appends(&store, folder, 1, secs).await;
    store.close().await;
    let (store, folder) = setup(&tmp.path().join("many")).await;
    let many = appends(&store, folder, 20, secs).await;
    store.close().await;
    println!(
        "store_append: 4 KiB messages, each durable (blob fsync + directory fsync + WAL commit) before Ok"
    );
    println!("| measure | per second | ratio to raw fsync |");
    println!("|---|---|---|");
    println!("| raw fsync of a 4 KiB write (the disk's limit for one writer) | {raw:.0} | 1.00 |");
    println!("| store appends, 1 task | {one:.0} | {:.2} |", one / raw);
    println!(
        "| store appends, 20 concurrent tasks (group commit) | {many:.0} | {:.2} |",
        many / raw
    );
}
