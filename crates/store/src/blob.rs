//! Content-addressed message blobs: raw RFC 5322 bytes under `DATA_DIR/blobs`, named by their
//! BLAKE3 hash, written once and never changed.
//!
//! A blob is durable before anything refers to it: it is written to `blobs/tmp`, fsynced, renamed
//! into its shard directory and the shard directory is fsynced. Only then may an index row name
//! it (see `group_commit`). Reference counts live in the metadata store; this module only knows
//! files.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A BLAKE3 digest naming a blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<BlobId> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(BlobId(out))
    }

    pub fn from_slice(s: &[u8]) -> Option<BlobId> {
        <[u8; 32]>::try_from(s).ok().map(BlobId)
    }

    /// The hash of some bytes.
    pub fn of(data: &[u8]) -> BlobId {
        BlobId(*blake3::hash(data).as_bytes())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Blobs up to this size are read without a blocking thread (see [`BlobStore::read`]).
const INLINE_READ_MAX: u64 = 256 * 1024;

/// Reads an open blob file of `len` bytes (the length sizes the buffer; the file decides).
fn read_all(f: &mut File, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A durable blob: its name and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub id: BlobId,
    pub size: u64,
}

/// The blob directory.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: Arc<PathBuf>,
}

impl BlobStore {
    /// Opens (creating if needed) a blob directory with its 256 shard directories, so that no
    /// write ever has to create and fsync a directory on the hot path.
    pub fn open(root: &Path) -> io::Result<BlobStore> {
        fs::create_dir_all(root.join("tmp"))?;
        let mut created = false;
        for i in 0..=255u8 {
            let shard = root.join(format!("{i:02x}"));
            if !shard.is_dir() {
                fs::create_dir(&shard)?;
                created = true;
            }
        }
        if created {
            fsync_dir(root)?;
        }
        Ok(BlobStore {
            root: Arc::new(root.to_path_buf()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob's file is.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(&hex)
    }

    /// Writes a whole blob durably (blocking; call from a blocking thread).
    pub fn put_sync(&self, data: &[u8]) -> io::Result<BlobRef> {
        let mut w = self.writer()?;
        w.write_all(data)?;
        w.finish()
    }

    /// Writes a whole blob durably on a blocking thread.
    pub async fn put(&self, data: Arc<[u8]>) -> io::Result<BlobRef> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.put_sync(&data))
            .await
            .map_err(|e| io::Error::other(format!("blob writer task failed: {e}")))?
    }

    /// Starts a streamed blob (for messages too large to hold in memory).
    pub fn writer(&self) -> io::Result<BlobWriter> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{:032x}", rand::random::<u128>()));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp: Some(tmp),
            file: io::BufWriter::with_capacity(64 * 1024, file),
            hasher: blake3::Hasher::new(),
            size: 0,
        })
    }

    /// Reads a whole blob.
    pub fn read_sync(&self, id: &BlobId) -> io::Result<Vec<u8>> {
        let mut f = File::open(self.path(id))?;
        let len = f.metadata()?.len();
        read_all(&mut f, len)
    }

    /// Reads a whole blob. A small one is read on the calling thread: from the page cache that
    /// takes microseconds, less than handing it to a blocking thread and back (a tenth of the
    /// server's CPU under bench/imap_load.sh). A large one is read on a blocking thread, so one
    /// big read does not hold up the other sessions of a runtime thread.
    pub async fn read(&self, id: BlobId) -> io::Result<Vec<u8>> {
        let mut f = File::open(self.path(&id))?;
        let len = f.metadata()?.len();
        if len <= INLINE_READ_MAX {
            return read_all(&mut f, len);
        }
        tokio::task::spawn_blocking(move || read_all(&mut f, len))
            .await
            .map_err(|e| io::Error::other(format!("blob reader task failed: {e}")))?
    }

    pub fn exists(&self, id: &BlobId) -> bool {
        self.path(id).is_file()
    }

    /// Removes a blob file; a missing file is not an error.
    pub(crate) fn remove(&self, id: &BlobId) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every blob file older than `min_age`, and removes temporary files older than it (left by
    /// a crash between write and rename). Used by the orphan sweep.
    pub(crate) fn list_older_than(&self, min_age: Duration) -> io::Result<Vec<BlobId>> {
        let cutoff = SystemTime::now()
            .checked_sub(min_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let old = |p: &Path| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .map(|t| t < cutoff)
                .unwrap_or(false)
        };
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let path = entry?.path();
            if old(&path) {
                let _ = fs::remove_file(&path);
            }
        }
        let mut out = Vec::new();
        for i in 0..=255u8 {
            let shard = self.root.join(format!("{i:02x}"));
            let Ok(rd) = fs::read_dir(&shard) else {
                continue;
            };
            for entry in rd {
                let path = entry?.path();
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(BlobId::from_hex)
                else {
                    continue;
                };
                if old(&path) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
}

/// A blob being written: bytes go to a temporary file and into the hash at once.
pub struct BlobWriter {
    store: BlobStore,
    tmp: Option<PathBuf>,
    file: io::BufWriter<File>,
    hasher: blake3::Hasher,
    size: u64,
}

impl BlobWriter {
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.file.write_all(data)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the blob durable under its hash name: fsync file, rename, fsync directory.
    pub fn finish(mut self) -> io::Result<BlobRef> {
        let id = BlobId(*self.hasher.finalize().as_bytes());
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let dest = self.store.path(&id);
        let tmp = self
            .tmp
            .take()
            .ok_or_else(|| io::Error::other("blob already finished"))?;
        fs::rename(&tmp, &dest)?;
        if let Some(dir) = dest.parent() {
            fsync_dir(dir)?;
        }
        Ok(BlobRef {
            id,
            size: self.size,
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // An abandoned write (client gone mid-DATA) leaves nothing behind.
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// fsyncs a directory so that a rename or create inside it survives a crash.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let r = store.put_sync(b"hello").unwrap();
        assert_eq!(r.size, 5);
        assert_eq!(r.id, BlobId::of(b"hello"));
        assert_eq!(store.read_sync(&r.id).unwrap(), b"hello");
        assert_eq!(BlobId::from_hex(&r.id.to_hex()), Some(r.id));
        assert!(
            store
                .path(&r.id)
                .starts_with(dir.path().join(&r.id.to_hex()[..2]))
        );
        // Same content again: same name, still one file.
        assert_eq!(store.put_sync(b"hello").unwrap(), r);
        assert!(
            fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn abandoned_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(
            fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn hex_rejects_garbage() {
        assert_eq!(BlobId::from_hex("zz"), None);
        assert_eq!(BlobId::from_hex(&"g".repeat(64)), None);
    }
}
