//! Telling the client what changed in its selected mailbox: new messages (EXISTS, RECENT),
//! flag changes (FETCH) and expunges (EXPUNGE, or VANISHED under QRESYNC, RFC 7162 §3.2.10).

use super::{Session, State};
use crate::proto::types::CommandBody;
use crate::view::Message;
use std::io::Write as _;

/// RFC 9051 §7.5.1: EXPUNGE must not be sent while responding to FETCH, STORE or SEARCH (their
/// sequence numbers would shift under the client); the UID forms are fine.
pub(super) fn may_announce_expunges(body: &CommandBody) -> bool {
    !matches!(
        body,
        CommandBody::Fetch { uid: false, .. }
            | CommandBody::Store { uid: false, .. }
            | CommandBody::Search { uid: false, .. }
            | CommandBody::Sort { uid: false, .. }
            | CommandBody::Thread { uid: false, .. }
    )
}

/// Commands after which the selected mailbox is another (or none).
pub(super) fn changes_selection(body: &CommandBody) -> bool {
    matches!(
        body,
        CommandBody::Select { .. }
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Logout
    )
}

/// `(\Seen \Flagged $Label)` for a message; `\Recent` for rev1 clients.
pub(crate) fn flag_list(m: &Message, rev2: bool) -> String {
    let mut parts: Vec<&str> = m.flags.names().collect();
    if m.recent && !rev2 {
        parts.push("\\Recent");
    }
    parts.extend(m.keywords.iter().map(String::as_str));
    format!("({})", parts.join(" "))
}

impl Session {
    /// Waits until the store reports a change to the selected mailbox; never, when none is
    /// selected (IDLE in the authenticated state only waits for DONE).
    pub(crate) async fn selected_changed(&mut self) {
        match &mut self.state {
            State::Selected(sel) => sel.changed().await,
            _ => std::future::pending().await,
        }
    }

    /// During IDLE: announces whatever changed, expunges included (RFC 9051 §6.3.13).
    pub(crate) async fn idle_check(&mut self) {
        self.announce(true).await;
    }

    /// Ends IDLE: OK after DONE, BAD after anything else (RFC 2177 §3).
    pub(crate) fn idle_end(&mut self, done: bool) {
        let Some(tag) = self.idle_tag.take() else {
            return;
        };
        if done {
            self.ok(&tag, "IDLE terminated");
        } else {
            self.bad(&tag, "expected DONE");
        }
    }

    /// Brings the view up to date and announces what changed.
    pub(crate) async fn announce(&mut self, may_expunge: bool) {
        let store = self.shared.store.clone();
        let rev2 = self.rev2();
        let (condstore, qresync) = (self.enabled.condstore, self.enabled.qresync);
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        let mut caught = Default::default();
        if sel.has_news() {
            let folder = match store.folder_by_id(sel.folder.id).await {
                Ok(Some(f)) => f,
                Ok(None) => {
                    // The mailbox was deleted under us (RFC 9051 §7.1: BYE is one option; an
                    // untagged NO and deselecting is kinder).
                    self.state = State::Authenticated;
                    self.untagged("NO the selected mailbox was deleted");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the selected folder");
                    return;
                }
            };
            if folder.highestmodseq > sel.view.modseq {
                match store.changes_since(folder.id, sel.view.modseq).await {
                    Ok(changes) => {
                        let recent_from = if sel.read_only {
                            self.shared.recent.peek(folder.id)
                        } else {
                            self.shared.recent.claim(folder.id, folder.uidnext)
                        };
                        caught = sel.view.absorb(changes, folder.highestmodseq, recent_from);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read folder changes"),
                }
            }
            sel.folder = folder;
            sel.looked();
        }
        let mut lines: Vec<u8> = Vec::new();
        if may_expunge && sel.view.has_pending_expunges() {
            let (seqs, uids) = sel.view.take_expunges();
            if qresync {
                let _ = write!(lines, "* VANISHED {}\r\n", uid_set(&uids));
            } else {
                for s in seqs {
                    let _ = write!(lines, "* {s} EXPUNGE\r\n");
                }
            }
        }
        if caught.new_messages {
            let _ = write!(lines, "* {} EXISTS\r\n", sel.view.len());
            if !rev2 {
                let _ = write!(lines, "* {} RECENT\r\n", sel.view.recent_count());
            }
        }
        for uid in caught.flags_changed {
            let Some(i) = sel.view.index_of_uid(uid) else {
                continue;
            };
            let m = &sel.view.messages()[i];
            let mut item = format!("* {} FETCH (FLAGS {}", i + 1, flag_list(m, rev2));
            // RFC 7162 §3.2.4: with QRESYNC every FETCH carries the UID.
            if qresync {
                let _ = std::fmt::Write::write_fmt(&mut item, format_args!(" UID {}", m.uid));
            }
            if condstore {
                let _ =
                    std::fmt::Write::write_fmt(&mut item, format_args!(" MODSEQ ({})", m.modseq));
            }
            item.push_str(")\r\n");
            lines.extend_from_slice(item.as_bytes());
        }
        self.out.extend_from_slice(&lines);
    }
}

/// A compact UID set: `1:3,5,8:9` (ascending input).
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_sets() {
        assert_eq!(super::uid_set(&[5, 1, 2, 3, 9, 8]), "1:3,5,8:9");
        assert_eq!(super::uid_set(&[4]), "4");
        assert_eq!(super::uid_set(&[]), "");
    }
}
