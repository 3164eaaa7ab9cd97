//! What makes logins cheap and bounded: a memory of recently verified passwords (as Dovecot's
//! auth_cache), and a small pool of threads that alone run the password hashes.
//!
//! Mail clients log in again and again (a phone checks every few minutes, a desktop client
//! opens several connections), and each argon2id check costs tens of milliseconds of CPU and
//! 7 MiB of memory. A password verified against a stored hash is remembered, as a keyed
//! digest, until the TTL passes or the stored hash changes (a password change). Failures are
//! never remembered: every wrong guess pays the full price.
//!
//! The hashes run on a fixed number of threads, one per core: a burst of logins waits in line
//! instead of running hundreds of 7 MiB hashes at once on blocking threads whose freed memory
//! the allocator keeps.

use crate::DirectoryError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

/// How long a verified password is remembered (Dovecot's auth_cache_ttl default).
pub const TTL: Duration = Duration::from_secs(3600);
/// Accounts remembered at most; the cache starts over when full.
const CAPACITY: usize = 100_000;

struct Entry {
    /// The stored hash the password was checked against.
    stored: String,
    digest: [u8; 32],
    at: Instant,
}

/// Recently verified logins.
pub struct LoginCache {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl LoginCache {
    pub fn new(ttl: Duration) -> LoginCache {
        LoginCache {
            key: rand::random(),
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A digest of the password under a key that lives only in this process.
    fn digest(&self, address: &str, password: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(address.as_bytes());
        h.update(&[0]);
        h.update(password.as_bytes());
        *h.finalize().as_bytes()
    }

    /// Whether `password` was verified for `address` against `stored` within the TTL.
    pub fn hit(&self, address: &str, stored: &str, password: &str) -> bool {
        let digest = self.digest(address, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(address).is_some_and(|e| {
            e.at.elapsed() < self.ttl && e.stored == stored && bool::from(e.digest.ct_eq(&digest))
        })
    }

    pub fn remember(&self, address: &str, stored: &str, password: &str) {
        let digest = self.digest(address, password);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.at.elapsed() < self.ttl);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            address.to_string(),
            Entry {
                stored: stored.to_string(),
                digest,
                at: Instant::now(),
            },
        );
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads for password hashing.
pub struct HashPool {
    tx: mpsc::Sender<Job>,
}

impl HashPool {
    /// One thread per core (at most 4), started now.
    pub fn new() -> HashPool {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    loop {
                        // One thread waits for the next job at a time; the others wait here.
                        let job = {
                            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.blocking_recv()
                        };
                        match job {
                            Some(job) => job(),
                            None => break,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password thread");
            }
        }
        HashPool { tx }
    }

    /// Runs `f` on a pool thread and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DirectoryError> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| DirectoryError::Internal("the password threads are gone".into()))?;
        result
            .await
            .map_err(|_| DirectoryError::Internal("a password check failed to finish".into()))
    }
}

impl Default for HashPool {
    fn default() -> Self {
        HashPool::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn remembers_only_the_same_password_against_the_same_hash_within_the_ttl() {
        let c = LoginCache::new(TTL);
        assert!(!c.hit("a@x", "H1", "pw"));
        c.remember("a@x", "H1", "pw");
        assert!(c.hit("a@x", "H1", "pw"));
        assert!(!c.hit("a@x", "H1", "pW"));
        assert!(!c.hit("a@x", "H2", "pw"), "a changed stored hash");
        assert!(!c.hit("b@x", "H1", "pw"));
        // A password change stores a new hash; the old entry is replaced.
        c.remember("a@x", "H2", "new");
        assert!(!c.hit("a@x", "H1", "pw"));
        let short = LoginCache::new(Duration::ZERO);
        short.remember("a@x", "H1", "pw");
        assert!(!short.hit("a@x", "H1", "pw"), "expired");
    }

    #[tokio::test]
    async fn the_pool_runs_jobs_and_returns_their_results() {
        let pool = HashPool::new();
        let mut results = Vec::new();
        for i in 0..20u32 {
            results.push(pool.run(move || i * 2));
        }
        let mut sum = 0;
        for r in results {
            sum += r.await.unwrap();
        }
        assert_eq!(sum, (0..20).map(|i| i * 2).sum::<u32>());
    }
}
