//! The in-process event bus: every change to a mail folder is announced here after it is
//! durable, so that IMAP IDLE sessions and other readers learn of it. Events are hints: a
//! receiver that lags behind (the channel is bounded) resynchronises from the store by MODSEQ.

use tokio::sync::broadcast;

/// Identifies a mailbox (an account) in the store.
pub type MailboxId = i64;
/// Identifies a folder (an IMAP mailbox) in the store.
pub type FolderId = i64;

/// What changed. Every variant carries the folder's HIGHESTMODSEQ after the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// New messages, with their UIDs.
    Added { uids: Vec<u32> },
    /// Flags or keywords of these messages changed.
    Flags { uids: Vec<u32> },
    /// These messages were expunged.
    Expunged { uids: Vec<u32> },
    /// The folder was created, renamed or deleted, or its subscription changed.
    Folder,
}

/// One durable change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub mailbox: MailboxId,
    pub folder: FolderId,
    pub modseq: u64,
    pub change: Change,
}

/// The sending half of the bus; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus that keeps up to `capacity` events for slow receivers.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        EventBus { tx }
    }

    /// Publishes an event; having no receivers is not an error.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(4096)
    }
}
