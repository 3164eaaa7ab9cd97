//! Mailbox commands (RFC 9051 §6.3): SELECT/EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, LIST
//! (with LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154, LIST-STATUS RFC 5819), LSUB, STATUS,
//! APPEND (MULTIAPPEND RFC 3502), and the QUOTA commands (RFC 9208).

use super::updates::{flag_list, uid_set};
use super::{Next, Selected, Session, State};
use crate::proto::types::{AppendMessage, Flag, MailboxArg, Qresync, StatusItem};
use crate::proto::utf7;
use crate::view::View;
use mailstead_store::{Flags, Folder, NewMessage, StoreError};
use std::io::Write as _;
use std::sync::Arc;

/// Special-use attributes a folder may be created with (RFC 6154 §2; \All and \Flagged are
/// virtual folders this server does not have).
const CREATABLE_SPECIAL_USE: &[&str] = &["\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"];

impl Session {
    /// A mailbox name from the wire: UTF-8 once enabled, else modified UTF-7 (RFC 3501 §5.1.3).
    pub(crate) fn folder_name(&self, arg: &MailboxArg) -> Result<String, String> {
        let name = if self.utf8() {
            String::from_utf8(arg.0.clone())
                .map_err(|_| "the mailbox name is not UTF-8".to_string())?
        } else {
            utf7::decode(&arg.0)
                .map_err(|e| format!("the mailbox name is not modified UTF-7: {e}"))?
        };
        Ok(mailstead_store::canonical_folder_name(&name))
    }

    /// A mailbox name for the wire.
    pub(crate) fn wire_name(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if self.utf8() {
            self.string(&mut out, name.as_bytes());
        } else {
            let encoded = utf7::encode(name);
            crate::proto::encode::astring(&mut out, &encoded, false);
        }
        out
    }

    pub(crate) fn mailbox_id(&self) -> i64 {
        self.user.as_ref().map(|u| u.id).unwrap_or(0)
    }

    pub(crate) async fn find_folder(&mut self, tag: &str, arg: &MailboxArg) -> Option<Folder> {
        let name = match self.folder_name(arg) {
            Ok(n) => n,
            Err(e) => {
                self.bad(tag, &e);
                return None;
            }
        };
        match self.shared.store.folder_get(self.mailbox_id(), &name).await {
            Ok(Some(f)) => Some(f),
            Ok(None) => {
                self.no(tag, "[NONEXISTENT] no such mailbox");
                None
            }
            Err(e) => {
                self.server_error(tag, &e);
                None
            }
        }
    }

    pub(crate) fn server_error(&mut self, tag: &str, e: &StoreError) {
        match e {
            StoreError::OverQuota(_) => self.no(tag, "[OVERQUOTA] the mailbox is over its quota"),
            StoreError::NotFound(_) => self.no(tag, "[NONEXISTENT] no such mailbox or message"),
            StoreError::Exists(_) => self.no(tag, "[ALREADYEXISTS] it exists already"),
            StoreError::Invalid(why) | StoreError::Limit(why) => {
                self.no(tag, &format!("[CANNOT] {why}"))
            }
            other => {
                tracing::error!(error = %other, "store error in IMAP");
                self.no(tag, "[SERVERBUG] internal error; try again later");
            }
        }
    }

    pub(super) async fn select(
        &mut self,
        tag: &str,
        arg: &MailboxArg,
        examine: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    ) -> Next {
        let was_selected = matches!(self.state, State::Selected(_));
        // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
        self.state = State::Authenticated;
        if was_selected && (self.rev2() || self.enabled.qresync) {
            // RFC 7162 §3.2.11 and RFC 9051 §6.3.2: the old mailbox is closed first.
            self.untagged("OK [CLOSED] previous mailbox closed");
        }
        // Listen before reading, so a change in between is not missed.
        let news = self.shared.store.events().subscribe();
        let Some(folder) = self.find_folder(tag, arg).await else {
            return Next::Continue;
        };
        if condstore {
            self.enabled.condstore = true;
        }
        if qresync.is_some() && !self.enabled.qresync {
            self.bad(tag, "QRESYNC must be enabled first (ENABLE QRESYNC)");
            return Next::Continue;
        }
        let store = self.shared.store.clone();
        let messages = match store.messages(folder.id).await {
            Ok(m) => m,
            Err(e) => {
                self.server_error(tag, &e);
                return Next::Continue;
            }
        };
        // EXAMINE shows what is recent but leaves it recent (RFC 3501 §6.3.2).
        let recent_from = if examine {
            self.shared.recent.peek(folder.id)
        } else {
            self.shared.recent.claim(folder.id, folder.uidnext)
        };
        let view = View::new(messages, folder.highestmodseq, recent_from);
        let rev2 = self.rev2();
        let mut keywords: Vec<&str> = view
            .messages()
            .iter()
            .flat_map(|m| m.keywords.iter().map(String::as_str))
            .collect();
        keywords.sort_unstable();
        keywords.dedup();
        let kw: String = keywords.iter().map(|k| format!(" {k}")).collect();
        self.untagged(&format!(
            "FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})"
        ));
        if examine {
            self.untagged("OK [PERMANENTFLAGS ()] read-only mailbox");
        } else {
            self.untagged(&format!("OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] flags permitted"));
        }
        self.untagged(&format!("{} EXISTS", view.len()));
        if !rev2 {
            self.untagged(&format!("{} RECENT", view.recent_count()));
            if let Some(i) = view
                .messages()
                .iter()
                .position(|m| !m.flags.contains(Flags::SEEN))
            {
                self.untagged(&format!("OK [UNSEEN {}] first unseen message", i + 1));
            }
        }
        self.untagged(&format!(
            "OK [UIDVALIDITY {}] UIDs valid",
            folder.uidvalidity
        ));
        self.untagged(&format!(
            "OK [UIDNEXT {}] predicted next UID",
            folder.uidnext
        ));
        self.untagged(&format!(
            "OK [HIGHESTMODSEQ {}] highest",
            folder.highestmodseq
        ));
        if rev2 {
            // RFC 9051 §6.3.2: SELECT returns the mailbox's LIST response.
            let mut line = b"* LIST () \"/\" ".to_vec();
            line.extend_from_slice(&self.wire_name(&folder.name));
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        if let Some(q) = qresync
            && q.uidvalidity == folder.uidvalidity
        {
            self.qresync_responses(&folder, &view, &q).await;
        }
        let mode = if examine {
            "[READ-ONLY]"
        } else {
            "[READ-WRITE]"
        };
        let verb = if examine { "EXAMINE" } else { "SELECT" };
        self.state = State::Selected(Box::new(Selected::new(folder, examine, view, news)));
        self.ok(tag, &format!("{mode} {verb} completed"));
        Next::Continue
    }

    /// RFC 7162 §3.2.5: what changed since the client's MODSEQ: VANISHED (EARLIER), then
    /// FETCH (UID FLAGS MODSEQ) of changed messages.
    async fn qresync_responses(&mut self, folder: &Folder, view: &View, q: &Qresync) {
        let changes = match self.shared.store.changes_since(folder.id, q.modseq).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "QRESYNC changes");
                return;
            }
        };
        let known = |uid: u32| match &q.known_uids {
            Some(set) => crate::search::in_set(set, uid, u32::MAX),
            None => true,
        };
        let vanished: Vec<u32> = changes
            .expunged
            .iter()
            .copied()
            .filter(|u| known(*u))
            .collect();
        if !vanished.is_empty() {
            self.untagged(&format!("VANISHED (EARLIER) {}", uid_set(&vanished)));
        }
        let rev2 = self.rev2();
        for m in changes.changed {
            if let Some(i) = view.index_of_uid(m.uid) {
                let msg = &view.messages()[i];
                self.untagged(&format!(
                    "{} FETCH (UID {} FLAGS {} MODSEQ ({}))",
                    i + 1,
                    msg.uid,
                    flag_list(msg, rev2),
                    msg.modseq
                ));
            }
        }
    }

    pub(super) async fn create(
        &mut self,
        tag: &str,
        arg: &MailboxArg,
        special_use: &[String],
    ) -> Next {
        let name = match self.folder_name(arg) {
            Ok(n) => n,
            Err(e) => {
                self.bad(tag, &e);
                return Next::Continue;
            }
        };
        let special = match special_use {
            [] => None,
            [one] => match CREATABLE_SPECIAL_USE
                .iter()
                .find(|s| s.eq_ignore_ascii_case(one))
            {
                Some(s) => Some(*s),
                None => {
                    // RFC 6154 §3: an attribute the server does not support.
                    self.no(tag, "[USEATTR] that special-use attribute is not supported");
                    return Next::Continue;
                }
            },
            _ => {
                self.no(tag, "[USEATTR] one special-use attribute per mailbox");
                return Next::Continue;
            }
        };
        match self
            .shared
            .store
            .folder_create(self.mailbox_id(), &name, special)
            .await
        {
            Ok(_) => self.ok(tag, "CREATE completed"),
            Err(e) => self.server_error(tag, &e),
        }
        Next::Continue
    }

    pub(super) async fn delete(&mut self, tag: &str, arg: &MailboxArg) -> Next {
        let name = match self.folder_name(arg) {
            Ok(n) => n,
            Err(e) => {
                self.bad(tag, &e);
                return Next::Continue;
            }
        };
        if let State::Selected(sel) = &self.state
            && sel.folder.name == name
        {
            self.state = State::Authenticated;
        }
        match self
            .shared
            .store
            .folder_delete(self.mailbox_id(), &name)
            .await
        {
            Ok(()) => self.ok(tag, "DELETE completed"),
            Err(StoreError::NotFound(_)) => self.no(tag, "[NONEXISTENT] no such mailbox"),
            Err(StoreError::Invalid(why)) => self.no(tag, &format!("[CANNOT] {why}")),
            Err(e) => self.server_error(tag, &e),
        }
        Next::Continue
    }

    pub(super) async fn rename(&mut self, tag: &str, from: &MailboxArg, to: &MailboxArg) -> Next {
        let (from, to) = match (self.folder_name(from), self.folder_name(to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => {
                self.bad(tag, &e);
                return Next::Continue;
            }
        };
        let store = self.shared.store.clone();
        let mailbox = self.mailbox_id();
        if from == "INBOX" {
            // RFC 9051 §6.3.6: renaming INBOX moves its messages to the new name; INBOX stays.
            let result = async {
                let inbox = store
                    .folder_get(mailbox, "INBOX")
                    .await?
                    .ok_or_else(|| StoreError::NotFound("INBOX".into()))?;
                let target = store.folder_create(mailbox, &to, None).await?;
                let uids: Vec<u32> = store
                    .messages(inbox.id)
                    .await?
                    .iter()
                    .map(|m| m.uid)
                    .collect();
                if !uids.is_empty() {
                    store.move_messages(inbox.id, uids, target.id).await?;
                }
                Ok::<_, StoreError>(())
            }
            .await;
            match result {
                Ok(()) => self.ok(tag, "RENAME completed"),
                Err(e) => self.server_error(tag, &e),
            }
            return Next::Continue;
        }
        match store.folder_rename(mailbox, &from, &to).await {
            Ok(()) => {
                if let State::Selected(sel) = &mut self.state
                    && let Ok(Some(f)) = store.folder_by_id(sel.folder.id).await
                {
                    sel.folder.name = f.name;
                }
                self.ok(tag, "RENAME completed")
            }
            Err(e) => self.server_error(tag, &e),
        }
        Next::Continue
    }

    /// SUBSCRIBE needs an existing mailbox; UNSUBSCRIBE takes any subscribed name, since a
    /// subscription outlives its mailbox (RFC 9051 §6.3.7, §6.3.8).
    pub(super) async fn subscribe(&mut self, tag: &str, arg: &MailboxArg, on: bool) -> Next {
        let name = if on {
            match self.find_folder(tag, arg).await {
                Some(f) => f.name,
                None => return Next::Continue,
            }
        } else {
            match self.folder_name(arg) {
                Ok(n) => n,
                Err(e) => {
                    self.bad(tag, &e);
                    return Next::Continue;
                }
            }
        };
        match self
            .shared
            .store
            .subscribe(self.mailbox_id(), &name, on)
            .await
        {
            Ok(()) => self.ok(
                tag,
                if on {
                    "SUBSCRIBE completed"
                } else {
                    "UNSUBSCRIBE completed"
                },
            ),
            Err(e) => self.server_error(tag, &e),
        }
        Next::Continue
    }

    pub(super) async fn status_response(&mut self, folder: &Folder, items: &[StatusItem]) {
        let recent_from =
            Some(self.shared.recent.peek(folder.id)).filter(|&from| from < folder.uidnext);
        let status = match self
            .shared
            .store
            .folder_status(folder.id, recent_from)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "STATUS counts");
                return;
            }
        };
        let mut parts = Vec::new();
        for item in items {
            let part = match item {
                StatusItem::Messages => format!("MESSAGES {}", status.messages),
                StatusItem::Recent => format!("RECENT {}", status.recent),
                StatusItem::UidNext => format!("UIDNEXT {}", folder.uidnext),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", folder.uidvalidity),
                StatusItem::Unseen => format!("UNSEEN {}", status.unseen),
                StatusItem::Deleted => format!("DELETED {}", status.deleted),
                StatusItem::Size => format!("SIZE {}", status.size),
                StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", folder.highestmodseq),
                StatusItem::AppendLimit => format!("APPENDLIMIT {}", self.shared.cfg.append_limit),
            };
            parts.push(part);
        }
        let mut line = b"* STATUS ".to_vec();
        line.extend_from_slice(&self.wire_name(&folder.name));
        let _ = write!(line, " ({})\r\n", parts.join(" "));
        self.out.extend_from_slice(&line);
    }

    pub(super) async fn status(
        &mut self,
        tag: &str,
        arg: &MailboxArg,
        items: &[StatusItem],
    ) -> Next {
        let Some(folder) = self.find_folder(tag, arg).await else {
            return Next::Continue;
        };
        self.status_response(&folder, items).await;
        self.ok(tag, "STATUS completed");
        Next::Continue
    }

    pub(super) async fn append(
        &mut self,
        tag: &str,
        arg: &MailboxArg,
        messages: Vec<AppendMessage>,
    ) -> Next {
        let name = match self.folder_name(arg) {
            Ok(n) => n,
            Err(e) => {
                self.bad(tag, &e);
                return Next::Continue;
            }
        };
        let store = self.shared.store.clone();
        let folder = match store.folder_get(self.mailbox_id(), &name).await {
            Ok(Some(f)) => f,
            // RFC 9051 §6.3.12: the client may create it and try again.
            Ok(None) => {
                self.no(tag, "[TRYCREATE] no such mailbox");
                return Next::Continue;
            }
            Err(e) => {
                self.server_error(tag, &e);
                return Next::Continue;
            }
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            if m.data.len() as u64 > self.shared.cfg.append_limit {
                self.no(tag, "[TOOBIG] the message is larger than APPENDLIMIT");
                return Next::Continue;
            }
            let (flags, keywords) = split_flags(&m.flags);
            match mailstead_store::prepare_message(store.blobs(), Arc::from(m.data)).await {
                Ok((blob, summary)) => prepared.push(NewMessage {
                    blob,
                    summary,
                    flags,
                    keywords,
                    internal_date: m.date.unwrap_or(now),
                }),
                Err(e) => {
                    self.server_error(tag, &e);
                    return Next::Continue;
                }
            }
        }
        match store.append_many(folder.id, prepared).await {
            Ok(done) => {
                let uids: Vec<u32> = done.iter().map(|a| a.uid).collect();
                let selected_here =
                    matches!(&self.state, State::Selected(sel) if sel.folder.id == folder.id);
                if selected_here {
                    self.announce(true).await;
                }
                self.ok(
                    tag,
                    &format!(
                        "[APPENDUID {} {}] APPEND completed",
                        folder.uidvalidity,
                        uid_set(&uids)
                    ),
                );
            }
            Err(e) => self.server_error(tag, &e),
        }
        Next::Continue
    }

    /// QUOTAROOT and QUOTA (RFC 9208 §4.2, §4.3): one root, "", for the whole account; STORAGE
    /// in units of 1024 octets.
    pub(super) async fn get_quota(
        &mut self,
        tag: &str,
        root: &str,
        mailbox: Option<Vec<u8>>,
    ) -> Next {
        if let Some(name) = mailbox {
            let arg = MailboxArg(name);
            let Some(folder) = self.find_folder(tag, &arg).await else {
                return Next::Continue;
            };
            let mut line = b"* QUOTAROOT ".to_vec();
            line.extend_from_slice(&self.wire_name(&folder.name));
            line.extend_from_slice(b" \"\"\r\n");
            self.out.extend_from_slice(&line);
        } else if !root.is_empty() {
            self.no(tag, "[NONEXISTENT] no such quota root; the root is \"\"");
            return Next::Continue;
        }
        let address = self
            .user
            .as_ref()
            .map(|u| u.address.clone())
            .unwrap_or_default();
        match self.shared.store.mailbox_get(&address).await {
            Ok(Some(m)) => {
                if m.quota > 0 {
                    let used = (m.used_bytes.max(0) as u64).div_ceil(1024);
                    let limit = (m.quota as u64) / 1024;
                    self.untagged(&format!("QUOTA \"\" (STORAGE {used} {limit})"));
                } else {
                    self.untagged("QUOTA \"\" ()");
                }
                self.ok(tag, "GETQUOTA completed");
            }
            Ok(None) => self.no(tag, "[NONEXISTENT] the account is gone"),
            Err(e) => self.server_error(tag, &e),
        }
        Next::Continue
    }
}

/// Flags of APPEND and STORE as the store keeps them: system flags as bits, keywords as names.
/// \Recent cannot be set (RFC 9051 §2.3.2) and unknown \flags are dropped.
pub(crate) fn split_flags(flags: &[Flag]) -> (Flags, Vec<String>) {
    let mut bits = Flags::default();
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => bits = bits.union(Flags::SEEN),
            Flag::Answered => bits = bits.union(Flags::ANSWERED),
            Flag::Flagged => bits = bits.union(Flags::FLAGGED),
            Flag::Deleted => bits = bits.union(Flags::DELETED),
            Flag::Draft => bits = bits.union(Flags::DRAFT),
            Flag::Keyword(k) => keywords.push(k.clone()),
            Flag::Recent | Flag::Extension(_) => {}
        }
    }
    (bits, keywords)
}
