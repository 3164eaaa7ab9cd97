//! Where a message goes while it arrives and after: a sink that keeps small messages (and every
//! submitted one, which may need signing) in memory and streams large ones into a blob file,
//! then makes the final blob: Return-Path, DKIM-Signature when signing, Received, the message.

use mailstead_store::{BlobRef, BlobStore, BlobWriter, DkimKey, StoreError};
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
    return_path_len: usize,
    prefix_len: usize,
    keep_in_memory: bool,
    hops: HopCounter,
}

/// Counts the Received fields of a message's header as its bytes stream past, for loop
/// detection (RFC 5321 §6.3).
#[derive(Default)]
struct HopCounter {
    /// The header has ended (an empty line was seen).
    body: bool,
    /// Bytes of the current line so far, up to the length of "received:".
    line: Vec<u8>,
    /// The current line is longer than the prefix and was already judged.
    judged: bool,
    count: u32,
}

impl HopCounter {
    const NAME: &'static [u8] = b"received:";

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.body {
                return;
            }
            if b == b'\n' {
                if self.line.is_empty() || self.line == b"\r" {
                    self.body = true;
                }
                self.line.clear();
                self.judged = false;
                continue;
            }
            if self.judged {
                continue;
            }
            self.line.push(b);
            if self.line.len() == Self::NAME.len() {
                self.judged = true;
                if self.line.eq_ignore_ascii_case(Self::NAME) {
                    self.count += 1;
                }
                // Keep one byte so that the line does not look empty at its end.
                self.line.truncate(1);
            }
        }
    }
}

/// A finished message.
pub struct Finished {
    pub blob: BlobRef,
    pub summary: String,
    /// Bytes at the start that only local copies carry (Return-Path).
    pub skip: u64,
}

impl MessageSink {
    pub fn new(
        blobs: BlobStore,
        return_path: &str,
        received: &str,
        limit: u64,
        keep_in_memory: bool,
    ) -> MessageSink {
        let mut mem = Vec::with_capacity(return_path.len() + received.len() + 8192);
        mem.extend_from_slice(return_path.as_bytes());
        mem.extend_from_slice(received.as_bytes());
        MessageSink {
            blobs,
            prefix_len: mem.len(),
            return_path_len: return_path.len(),
            mem,
            writer: None,
            body: 0,
            limit,
            over: false,
            error: None,
            keep_in_memory,
            hops: HopCounter::default(),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.hops.push(bytes);
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
                if self.mem.len() > SPILL_AT && !self.keep_in_memory {
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

    /// Received fields in the client's message header.
    pub fn hops(&self) -> u32 {
        self.hops.count
    }

    /// Size of the client's message.
    pub fn body_size(&self) -> u64 {
        self.body
    }

    /// The client's message, while it is in memory.
    pub fn message(&self) -> Option<&[u8]> {
        (self.writer.is_none() && !self.over)
            .then(|| self.mem.get(self.prefix_len..).unwrap_or_default())
    }

    /// Makes the message a durable blob and summarises it. With a DKIM signature, it is
    /// written after the Return-Path, before our Received header.
    pub async fn finish(self, signature: Option<String>) -> Result<Finished, StoreError> {
        if let Some(e) = self.error {
            return Err(e.into());
        }
        let blobs = self.blobs.clone();
        let skip = self.return_path_len as u64;
        tokio::task::spawn_blocking(move || {
            let (blob, raw) = match self.writer {
                Some(w) => {
                    let blob = w.finish()?;
                    (blob, blobs.read_sync(&blob.id)?)
                }
                None => {
                    let raw = match signature {
                        Some(sig) => {
                            let mut v = Vec::with_capacity(self.mem.len() + sig.len());
                            v.extend_from_slice(&self.mem[..self.return_path_len]);
                            v.extend_from_slice(sig.as_bytes());
                            v.extend_from_slice(&self.mem[self.return_path_len..]);
                            v
                        }
                        None => self.mem,
                    };
                    (blobs.put_sync(&raw)?, raw)
                }
            };
            let summary =
                mailstead_store::summary::to_json(&mailstead_store::summary::summarize(&raw))?;
            Ok(Finished {
                blob,
                summary,
                skip,
            })
        })
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// The domain of the message's From header, whose DKIM key signs it.
    pub fn sender_domain(&self) -> Option<String> {
        let head = self.message()?;
        let parsed = mail_parser::MessageParser::new().parse_headers(head)?;
        let addr = parsed.from()?.first()?.address.as_deref()?.to_string();
        addr.rsplit_once('@').map(|(_, d)| d.to_lowercase())
    }
}

/// Signs with `key`, or says why not (the message is then sent unsigned).
pub fn signature(key: &DkimKey, message: &[u8]) -> Option<String> {
    match crate::dkim::sign(key, message) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(domain = %key.domain, error = %e, "sending unsigned");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HopCounter;
    use proptest::prelude::*;

    fn count(chunks: &[&[u8]]) -> u32 {
        let mut h = HopCounter::default();
        for c in chunks {
            h.push(c);
        }
        h.count
    }

    #[test]
    fn received_fields_of_the_header_only() {
        let msg = b"Received: a\r\nRECEIVED: b\r\n c\r\nX-Received: d\r\nSubject: x\r\n\r\nReceived: e\r\n";
        assert_eq!(count(&[msg]), 2);
        assert_eq!(
            count(&[b"Rece", b"ived: a\r", b"\nReceived:", b" b\r\n\r\n"]),
            2
        );
        assert_eq!(count(&[b"\r\nReceived: a\r\n"]), 0);
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_count(n in 0usize..20, cut in 1usize..40) {
            let msg = format!("{}Subject: s\r\n\r\nReceived: no\r\n", "Received: x\r\n".repeat(n));
            let chunks: Vec<&[u8]> = msg.as_bytes().chunks(cut).collect();
            prop_assert_eq!(count(&chunks) as usize, n);
        }
    }
}
