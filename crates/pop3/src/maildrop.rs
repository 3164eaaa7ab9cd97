//! The maildrop of one session (RFC 1939 §4): the INBOX as it was at login, numbered from 1,
//! with the session's marks (deleted, retrieved). Messages that arrive later are not part of
//! it; marks change nothing in the store until QUIT enters the UPDATE state.

use mailstead_store::BlobId;

/// A message as the session knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaildropMessage {
    pub uid: u32,
    /// Octets RETR sends before byte-stuffing (see `message_text::size`).
    pub size: u64,
    /// Already \Seen in the store.
    pub seen: bool,
    pub blob: BlobId,
}

#[derive(Clone, Debug)]
struct Entry {
    msg: MaildropMessage,
    deleted: bool,
    retrieved: bool,
}

/// What QUIT applies in the UPDATE state (RFC 1939 §6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdatePlan {
    /// UIDs to mark \Seen: retrieved with RETR, not deleted, not seen before. Dovecot does the
    /// same (pop3_no_flag_updates=no), so a user who also reads by IMAP sees what was fetched.
    pub seen: Vec<u32>,
    /// UIDs to expunge.
    pub deleted: Vec<u32>,
}

/// Why a message number cannot be used; the text goes after `-ERR `.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("no such message")]
    NoSuchMessage,
    /// RFC 1939 §5: a message marked as deleted may not be referred to.
    #[error("message {0} is deleted")]
    Deleted(u32),
}

#[derive(Clone, Debug)]
pub struct Maildrop {
    uidvalidity: u32,
    entries: Vec<Entry>,
}

impl Maildrop {
    /// The maildrop of a folder with this UIDVALIDITY; `messages` in UID order.
    pub fn new(uidvalidity: u32, messages: Vec<MaildropMessage>) -> Maildrop {
        Maildrop {
            uidvalidity,
            entries: messages
                .into_iter()
                .map(|msg| Entry {
                    msg,
                    deleted: false,
                    retrieved: false,
                })
                .collect(),
        }
    }

    /// Messages at login, deleted ones included (the highest message number).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry(&self, n: u32) -> Result<&Entry, NumberError> {
        let i = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or(NumberError::NoSuchMessage)?;
        let e = self.entries.get(i).ok_or(NumberError::NoSuchMessage)?;
        if e.deleted {
            return Err(NumberError::Deleted(n));
        }
        Ok(e)
    }

    /// The message numbered `n` (from 1), unless there is none or it is marked deleted.
    pub fn get(&self, n: u32) -> Result<&MaildropMessage, NumberError> {
        self.entry(n).map(|e| &e.msg)
    }

    /// RFC 1939 §5 STAT: messages not marked deleted, and their octets.
    pub fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, o), (_, m)| (n + 1, o + m.size))
    }

    /// Numbers and messages not marked deleted, in order.
    pub fn live(&self) -> impl Iterator<Item = (u32, &MaildropMessage)> {
        self.entries
            .iter()
            .zip(1u32..)
            .filter(|(e, _)| !e.deleted)
            .map(|(e, n)| (n, &e.msg))
    }

    /// RFC 1939 §7 UIDL: the unique-id of a message, as mailcow's Dovecot makes it
    /// (pop3_uidl_format = %08Xu%08Xv): the UID and then UIDVALIDITY, each 8 upper-case hex
    /// digits. The same message keeps it across sessions, and users moving from mailcow keep
    /// theirs when UIDs and UIDVALIDITY are imported.
    pub fn uidl(&self, msg: &MaildropMessage) -> String {
        format!("{:08X}{:08X}", msg.uid, self.uidvalidity)
    }

    /// RFC 1939 §5 DELE: marks a message deleted.
    pub fn delete(&mut self, n: u32) -> Result<(), NumberError> {
        self.entry(n)?;
        if let Some(e) = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.entries.get_mut(i))
        {
            e.deleted = true;
        }
        Ok(())
    }

    /// Remembers that RETR sent a message, for \Seen at QUIT.
    pub fn mark_retrieved(&mut self, n: u32) {
        if let Some(e) = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.entries.get_mut(i))
        {
            e.retrieved = true;
        }
    }

    /// RFC 1939 §5 RSET: unmarks every deleted message. What RETR already sent stays
    /// retrieved: the client has it, whatever it decides about deleting.
    pub fn reset(&mut self) {
        for e in &mut self.entries {
            e.deleted = false;
        }
    }

    /// What QUIT has to do.
    pub fn plan(&self) -> UpdatePlan {
        let mut plan = UpdatePlan::default();
        for e in &self.entries {
            if e.deleted {
                plan.deleted.push(e.msg.uid);
            } else if e.retrieved && !e.msg.seen {
                plan.seen.push(e.msg.uid);
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn msg(uid: u32, size: u64, seen: bool) -> MaildropMessage {
        MaildropMessage {
            uid,
            size,
            seen,
            blob: BlobId([u8::try_from(uid % 256).unwrap(); 32]),
        }
    }

    fn drop3() -> Maildrop {
        Maildrop::new(
            0x5f3a_0001,
            vec![msg(3, 100, false), msg(7, 200, true), msg(12, 300, false)],
        )
    }

    #[test]
    fn numbers_start_at_one() {
        let d = drop3();
        assert_eq!(d.get(1).unwrap().uid, 3);
        assert_eq!(d.get(3).unwrap().uid, 12);
        assert_eq!(d.get(0), Err(NumberError::NoSuchMessage));
        assert_eq!(d.get(4), Err(NumberError::NoSuchMessage));
        assert_eq!(d.get(u32::MAX), Err(NumberError::NoSuchMessage));
    }

    #[test]
    fn uidl_is_uid_then_uidvalidity_in_upper_hex() {
        let d = drop3();
        assert_eq!(d.uidl(d.get(3).unwrap()), "0000000C5F3A0001");
        let big = Maildrop::new(u32::MAX, vec![msg(u32::MAX, 1, false)]);
        assert_eq!(big.uidl(big.get(1).unwrap()), "FFFFFFFFFFFFFFFF");
    }

    #[test]
    fn deleted_messages_leave_stat_and_cannot_be_named() {
        let mut d = drop3();
        d.delete(2).unwrap();
        assert_eq!(d.stat(), (2, 400));
        assert_eq!(d.get(2), Err(NumberError::Deleted(2)));
        assert_eq!(d.delete(2), Err(NumberError::Deleted(2)));
        // Numbers do not shift (RFC 1939 §5).
        assert_eq!(d.get(3).unwrap().uid, 12);
        assert_eq!(d.live().map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 3]);
        d.reset();
        assert_eq!(d.stat(), (3, 600));
    }

    #[test]
    fn the_plan_marks_retrieved_unseen_messages_and_expunges_deleted_ones() {
        let mut d = drop3();
        d.mark_retrieved(1);
        d.mark_retrieved(2);
        d.mark_retrieved(3);
        d.delete(3).unwrap();
        assert_eq!(
            d.plan(),
            UpdatePlan {
                seen: vec![3],
                deleted: vec![12]
            }
        );
        d.reset();
        assert_eq!(
            d.plan(),
            UpdatePlan {
                seen: vec![3, 12],
                deleted: vec![]
            }
        );
    }
}
