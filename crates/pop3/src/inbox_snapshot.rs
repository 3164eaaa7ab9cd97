//! Reads a mailbox's INBOX into a [`Maildrop`] at login: the messages there now, in UID order,
//! with their POP3 sizes.
//!
//! A POP3 size is what RETR sends (CRLF lines), which can differ from the stored size when a
//! message was stored with bare LFs, so it is counted from the message's bytes. Blobs never
//! change, so each count is kept in memory by blob id and a message is read for its size once
//! per process, not at every login of a client that keeps its mail on the server.

use crate::maildrop::{Maildrop, MaildropMessage};
use crate::message_text;
use mailstead_store::{BlobId, Flags, FolderId, MailboxId, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Sizes kept before the cache starts over: about 5 MiB of memory.
const SIZE_CACHE_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the mailbox has no INBOX")]
    NoInbox,
}

/// POP3 sizes by blob.
#[derive(Clone, Default)]
pub struct SizeCache(Arc<Mutex<HashMap<BlobId, u64>>>);

impl SizeCache {
    fn get(&self, id: &BlobId) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    fn insert_all(&self, sizes: impl IntoIterator<Item = (BlobId, u64)>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (id, size) in sizes {
            if map.len() >= SIZE_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(id, size);
        }
    }
}

/// The INBOX of `mailbox` as a maildrop, and the folder it came from.
pub async fn load(
    store: &Store,
    sizes: &SizeCache,
    mailbox: MailboxId,
) -> Result<(FolderId, Maildrop), SnapshotError> {
    let folder = store
        .folder_get(mailbox, "INBOX")
        .await?
        .ok_or(SnapshotError::NoInbox)?;
    let metas = store.messages(folder.id).await?;
    let missing: Vec<(BlobId, u64)> = metas
        .iter()
        .filter(|m| sizes.get(&m.blob).is_none())
        .map(|m| (m.blob, m.size))
        .collect();
    let mut counted = HashMap::new();
    if !missing.is_empty() {
        // One blocking task reads them all: one file after another, each dropped after it is
        // counted, so memory stays at one message.
        let blobs = store.blobs().clone();
        counted = tokio::task::spawn_blocking(move || {
            missing
                .into_iter()
                .map(|(id, stored)| match blobs.read_sync(&id) {
                    Ok(raw) => (id, Some(message_text::size(&raw))),
                    Err(e) => {
                        tracing::warn!(blob = %id.to_hex(), error = %e, stored, "message cannot be read to count its POP3 size");
                        (id, None)
                    }
                })
                .collect::<HashMap<_, _>>()
        })
        .await
        .map_err(|e| StoreError::Io(format!("size counting task failed: {e}")))?;
        sizes.insert_all(counted.iter().filter_map(|(id, s)| s.map(|s| (*id, s))));
    }
    let messages = metas
        .iter()
        .map(|m| MaildropMessage {
            uid: m.uid,
            // An unreadable message keeps its stored size; RETR of it will fail anyway.
            size: sizes
                .get(&m.blob)
                .or_else(|| counted.get(&m.blob).copied().flatten())
                .unwrap_or(m.size),
            seen: m.flags.contains(Flags::SEEN),
            blob: m.blob,
        })
        .collect();
    Ok((folder.id, Maildrop::new(folder.uidvalidity, messages)))
}
