//! The exclusive-access lock on a maildrop (RFC 1939 §4): one POP3 session per mailbox at a
//! time in this process, so two clients never split one mailbox's deletions between them. A
//! second login is refused with `[IN-USE]` (RFC 2449 §8.1). The lock is a guard: it is released
//! when the session ends, however it ends. IMAP sessions do not take it.

use mailstead_store::MailboxId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The mailboxes that have a POP3 session.
#[derive(Clone, Default)]
pub struct MailboxLocks(Arc<Mutex<HashSet<MailboxId>>>);

/// A held lock; dropping it releases the mailbox.
#[derive(Debug)]
pub struct MailboxLock {
    locks: MailboxLocks,
    id: MailboxId,
}

impl std::fmt::Debug for MailboxLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailboxLocks")
    }
}

impl MailboxLocks {
    /// Takes the mailbox's lock, or None when another session holds it.
    pub fn try_lock(&self, id: MailboxId) -> Option<MailboxLock> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(id).then(|| MailboxLock {
            locks: self.clone(),
            id,
        })
    }

    pub fn is_locked(&self, id: MailboxId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }
}

impl Drop for MailboxLock {
    fn drop(&mut self) {
        self.locks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_mailbox_until_dropped() {
        let locks = MailboxLocks::default();
        let a = locks.try_lock(1).unwrap();
        assert!(locks.try_lock(1).is_none());
        let b = locks.try_lock(2).unwrap();
        drop(a);
        assert!(!locks.is_locked(1));
        assert!(locks.try_lock(1).is_some());
        assert!(locks.is_locked(2));
        drop(b);
        assert!(!locks.is_locked(2));
    }

    #[test]
    fn a_panicking_session_releases_its_lock() {
        let locks = MailboxLocks::default();
        let l2 = locks.clone();
        let r = std::thread::spawn(move || {
            let _held = l2.try_lock(7);
            panic!("session failed");
        })
        .join();
        assert!(r.is_err());
        assert!(locks.try_lock(7).is_some());
    }
}
