//! A session's view of its selected mailbox: which messages it has been told about, in
//! sequence order, with their flags as last announced. Changes in the store reach the view only
//! when the session may announce them, so sequence numbers stay stable while a command runs
//! (RFC 9051 §7.5: no EXPUNGE while responding to FETCH, STORE or SEARCH, nor outside a command).

use crate::proto::types::{SeqNum, SequenceSet};
use mailstead_store::{BlobId, ChangesSince, Flags, MessageMeta};
use std::collections::HashSet;

/// One message as the session knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub modseq: u64,
    pub blob: BlobId,
    pub size: u64,
    pub internal_date: i64,
    pub recent: bool,
    /// Expunged in the store, not yet announced: still has its sequence number.
    pub expunged: bool,
}

impl Message {
    pub fn from_meta(m: &MessageMeta, recent: bool) -> Message {
        Message {
            uid: m.uid,
            flags: m.flags,
            keywords: m.keywords.clone(),
            modseq: m.modseq,
            blob: m.blob,
            size: m.size,
            internal_date: m.internal_date,
            recent,
            expunged: false,
        }
    }
}

/// What changed when the view caught up with the store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Caught {
    /// New messages were added: announce EXISTS.
    pub new_messages: bool,
    /// UIDs whose flags changed: announce FETCH (FLAGS ...).
    pub flags_changed: Vec<u32>,
}

#[derive(Debug)]
pub struct View {
    msgs: Vec<Message>,
    /// The highest MODSEQ the view has absorbed.
    pub modseq: u64,
    /// UIDs the store no longer has, still in `msgs` until announced.
    pending_expunges: HashSet<u32>,
}

impl View {
    /// A view of `messages` (any order), at `modseq`. Messages with UID >= `recent_from` are
    /// \Recent for this session.
    pub fn new(mut messages: Vec<MessageMeta>, modseq: u64, recent_from: u32) -> View {
        messages.sort_by_key(|m| m.uid);
        let msgs = messages
            .iter()
            .map(|m| Message::from_meta(m, m.uid >= recent_from))
            .collect();
        View {
            msgs,
            modseq,
            pending_expunges: HashSet::new(),
        }
    }

    /// Messages the client knows, in sequence order (index + 1 = sequence number).
    pub fn messages(&self) -> &[Message] {
        &self.msgs
    }

    pub fn len(&self) -> u32 {
        self.msgs.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub fn recent_count(&self) -> u32 {
        self.msgs.iter().filter(|m| m.recent).count() as u32
    }

    pub fn max_uid(&self) -> u32 {
        self.msgs.last().map(|m| m.uid).unwrap_or(0)
    }

    /// Index of a UID.
    pub fn index_of_uid(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut Message> {
        self.msgs.get_mut(index)
    }

    /// Resolves a sequence set to message indices, in ascending order. For sequence numbers,
    /// a number beyond the last message is an error (RFC 9051 §9: the server responds BAD);
    /// for UIDs, numbers that name no message are ignored.
    pub fn resolve(
        &self,
        set: &SequenceSet,
        uid: bool,
        saved: Option<&[u32]>,
    ) -> Result<Vec<usize>, String> {
        if set.saved {
            let uids = saved.unwrap_or(&[]);
            return Ok(uids.iter().filter_map(|u| self.index_of_uid(*u)).collect());
        }
        let mut out: Vec<usize> = Vec::new();
        if uid {
            // `*` is the highest UID in use, or UIDNEXT-1 if empty (RFC 9051 §9).
            let max = self.max_uid();
            for r in &set.ranges {
                let a = match r.start {
                    SeqNum::Value(v) => v,
                    SeqNum::Star => max,
                };
                let b = match r.end {
                    SeqNum::Value(v) => v,
                    SeqNum::Star => max,
                };
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let start = self.msgs.partition_point(|m| m.uid < lo);
                for (i, m) in self.msgs.iter().enumerate().skip(start) {
                    if m.uid > hi {
                        break;
                    }
                    out.push(i);
                }
            }
        } else {
            let max = self.len();
            for r in &set.ranges {
                let value = |n: SeqNum| -> Result<u32, String> {
                    match n {
                        SeqNum::Value(v) if v >= 1 && v <= max => Ok(v),
                        SeqNum::Value(v) => Err(format!(
                            "invalid message sequence number {v} (the mailbox has {max})"
                        )),
                        SeqNum::Star if max > 0 => Ok(max),
                        SeqNum::Star => Err("the mailbox is empty".into()),
                    }
                };
                let (a, b) = (value(r.start)?, value(r.end)?);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                out.extend((lo as usize - 1)..(hi as usize));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Takes in changes from the store: new messages are appended (their UIDs are higher than
    /// any known), flag changes applied, expunges remembered until they may be announced.
    pub fn absorb(&mut self, changes: ChangesSince, new_modseq: u64, recent_from: u32) -> Caught {
        let mut caught = Caught::default();
        let max_uid = self.max_uid();
        let mut fresh: Vec<&MessageMeta> = Vec::new();
        for m in &changes.changed {
            match self.index_of_uid(m.uid) {
                Some(i) => {
                    let known = &mut self.msgs[i];
                    if known.flags != m.flags || known.keywords != m.keywords {
                        known.flags = m.flags;
                        known.keywords = m.keywords.clone();
                        caught.flags_changed.push(m.uid);
                    }
                    known.modseq = m.modseq;
                }
                None if m.uid > max_uid => fresh.push(m),
                // A UID below the highest known that the view never had: it was added and
                // expunged between two looks; nothing to announce.
                None => {}
            }
        }
        fresh.sort_by_key(|m| m.uid);
        for m in fresh {
            self.msgs.push(Message::from_meta(m, m.uid >= recent_from));
            caught.new_messages = true;
        }
        for uid in changes.expunged {
            if let Some(i) = self.index_of_uid(uid) {
                self.msgs[i].expunged = true;
                self.pending_expunges.insert(uid);
            }
        }
        self.modseq = self.modseq.max(new_modseq);
        caught
    }

    /// Marks messages this session expunged (EXPUNGE, MOVE): they are announced next.
    pub fn mark_expunged(&mut self, uids: &[u32]) {
        for &uid in uids {
            if let Some(i) = self.index_of_uid(uid) {
                self.msgs[i].expunged = true;
                self.pending_expunges.insert(uid);
            }
        }
    }

    pub fn has_pending_expunges(&self) -> bool {
        !self.pending_expunges.is_empty()
    }

    /// Removes expunged messages and returns what to announce: their sequence numbers in
    /// descending order (each `* n EXPUNGE` then leaves the lower numbers valid) and their UIDs.
    pub fn take_expunges(&mut self) -> (Vec<u32>, Vec<u32>) {
        if self.pending_expunges.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut seqs = Vec::new();
        let mut uids = Vec::new();
        for (i, m) in self.msgs.iter().enumerate().rev() {
            if m.expunged {
                seqs.push(i as u32 + 1);
                uids.push(m.uid);
            }
        }
        self.msgs.retain(|m| !m.expunged);
        self.pending_expunges.clear();
        uids.reverse();
        (seqs, uids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::types::SeqRange;

    fn meta(uid: u32, modseq: u64) -> MessageMeta {
        MessageMeta {
            uid,
            modseq,
            flags: Flags::default(),
            keywords: vec![],
            internal_date: 0,
            size: 10,
            blob: BlobId([0; 32]),
        }
    }

    fn set(ranges: &[(SeqNum, SeqNum)]) -> SequenceSet {
        SequenceSet {
            ranges: ranges
                .iter()
                .map(|&(start, end)| SeqRange { start, end })
                .collect(),
            saved: false,
        }
    }

    #[test]
    fn resolving_sets() {
        let v = View::new(vec![meta(3, 1), meta(1, 1), meta(7, 1)], 1, 100);
        use SeqNum::*;
        assert_eq!(
            v.resolve(&set(&[(Value(1), Star)]), false, None),
            Ok(vec![0, 1, 2])
        );
        assert_eq!(
            v.resolve(&set(&[(Value(3), Value(2))]), false, None),
            Ok(vec![1, 2])
        );
        assert!(
            v.resolve(&set(&[(Value(4), Value(4))]), false, None)
                .is_err()
        );
        assert_eq!(
            v.resolve(&set(&[(Value(2), Value(5))]), true, None),
            Ok(vec![1])
        );
        assert_eq!(
            v.resolve(&set(&[(Value(8), Star)]), true, None),
            Ok(vec![2]),
            "8:* with max 7 is 7:8"
        );
        assert_eq!(
            v.resolve(&set(&[(Value(100), Value(200))]), true, None),
            Ok(vec![])
        );
        assert_eq!(
            v.resolve(
                &SequenceSet {
                    ranges: vec![],
                    saved: true
                },
                true,
                Some(&[7, 1])
            ),
            Ok(vec![2, 0])
        );
    }

    #[test]
    fn absorbing_changes_and_expunges() {
        let mut v = View::new(vec![meta(1, 1), meta(2, 1), meta(3, 1)], 1, 100);
        let mut changed = meta(2, 5);
        changed.flags = Flags::SEEN;
        let caught = v.absorb(
            ChangesSince {
                changed: vec![changed, meta(4, 6)],
                expunged: vec![1, 3],
            },
            6,
            4,
        );
        assert!(caught.new_messages);
        assert_eq!(caught.flags_changed, vec![2]);
        assert_eq!(
            v.len(),
            4,
            "expunged messages keep their numbers until announced"
        );
        assert!(v.messages()[3].recent);
        let (seqs, uids) = v.take_expunges();
        assert_eq!(seqs, vec![3, 1]);
        assert_eq!(uids, vec![1, 3]);
        assert_eq!(
            v.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert_eq!(v.modseq, 6);
    }
}
