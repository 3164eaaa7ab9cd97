//! Where a message goes while it arrives and after: a sink that keeps small messages in memory
//! and streams large ones into a blob file, and the delivery of the finished message into the
//! recipients' INBOX in one durable store transaction.

use mailstead_store::{BlobRef, BlobStore, BlobWriter, StoreError};
use std::io;

/// Messages up to this size stay in memory until they are written in one piece.
const SPILL_AT: usize = 1 << 20;

/// Collects a message: our trace headers first, then the client's bytes.
pub struct MessageSink {
    blobs: BlobStore,
    mem: Vec<u8>,
    writer: Option<BlobWriter>,
    /// Bytes of the client's message (without our headers).
    body: u64,
    limit: u64,
    /// The message went over the size limit; nothing more is kept.
    over: bool,
    error: Option<io::Error>,
}

impl MessageSink {
    pub fn new(blobs: BlobStore, prefix: &[u8], limit: u64) -> MessageSink {
        let mut mem = Vec::with_capacity(prefix.len() + 8192);
        mem.extend_from_slice(prefix);
        MessageSink {
            blobs,
            mem,
            writer: None,
            body: 0,
            limit,
            over: false,
            error: None,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.body += bytes.len() as u64;
        if self.over || self.error.is_some() {
            return;
        }
        if self.body > self.limit {
            // Keep reading to the end of the message, but stop storing it.
            self.over = true;
            self.mem = Vec::new();
            self.writer = None;
            return;
        }
        match &mut self.writer {
            Some(w) => {
                if let Err(e) = tokio::task::block_in_place(|| w.write_all(bytes)) {
                    self.error = Some(e);
                }
            }
            None => {
                self.mem.extend_from_slice(bytes);
                if self.mem.len() > SPILL_AT {
                    let result = tokio::task::block_in_place(|| {
                        let mut w = self.blobs.writer()?;
                        w.write_all(&self.mem)?;
                        Ok::<_, io::Error>(w)
                    });
                    match result {
                        Ok(w) => {
                            self.writer = Some(w);
                            self.mem = Vec::new();
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
            }
        }
    }

    /// Size of the client's message.
    pub fn body_size(&self) -> u64 {
        self.body
    }

    /// Makes the message a durable blob and summarises it; also returns the message's first
    /// 256 KiB for header checks.
    pub async fn finish(self) -> Result<(BlobRef, String, Vec<u8>), StoreError> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let (blob, raw) = match self.writer {
                Some(w) => {
                    let blob = w.finish()?;
                    (blob, blobs.read_sync(&blob.id)?)
                }
                None => (blobs.put_sync(&self.mem)?, self.mem),
            };
            let json =
                mailstead_store::summary::to_json(&mailstead_store::summary::summarize(&raw))?;
            // Only the head is kept for header checks, not the whole message.
            let head_end = raw.len().min(256 * 1024);
            let mut head = raw;
            head.truncate(head_end);
            Ok((blob, json, head))
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?
    }
}
