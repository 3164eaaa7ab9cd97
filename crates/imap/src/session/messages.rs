//! Message commands of the selected state (RFC 9051 §6.4): FETCH (with BINARY RFC 3516 and
//! CONDSTORE/QRESYNC RFC 7162), STORE, COPY, MOVE (RFC 6851), EXPUNGE and UID EXPUNGE (RFC
//! 4315), SEARCH with ESEARCH (RFC 4731) and SEARCHRES (RFC 5182), SORT and THREAD (RFC 5256).

use super::mailboxes::split_flags;
use super::updates::{flag_list, uid_set};
use super::{Next, Session, State};
use crate::fetch_render::{self, RenderOptions};
use crate::proto::encode;
use crate::proto::types::{
    FetchAttr, FetchItems, Flag, MailboxArg, SearchKey, SearchReturn, Section, SectionText,
    SequenceSet, SortCriterion, StoreOp, ThreadAlgorithm,
};
use crate::search::{Candidate, SearchContext, matches, needs_content};
use crate::view::Message;
use mailstead_store::summary::Summary;
use mailstead_store::{BlobId, FlagOp, Flags};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;

/// `21-Nov-2026 10:00:00 +0000` (RFC 9051 §9 date-time; the day is space-padded).
pub(crate) fn internal_date(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:>2}-{}-{} {:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn section_name(s: &Section) -> String {
    let mut out: Vec<String> = s.part.iter().map(u32::to_string).collect();
    match &s.text {
        None => {}
        Some(SectionText::Header) => out.push("HEADER".into()),
        Some(SectionText::Text) => out.push("TEXT".into()),
        Some(SectionText::Mime) => out.push("MIME".into()),
        Some(SectionText::HeaderFields(names)) => {
            out.push(format!("HEADER.FIELDS ({})", names.join(" ")))
        }
        Some(SectionText::HeaderFieldsNot(names)) => {
            out.push(format!("HEADER.FIELDS.NOT ({})", names.join(" ")))
        }
    }
    out.join(".")
}

fn part_name(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether fetching `attr` sets \Seen (RFC 9051 §6.4.5: BODY[...] without .PEEK, RFC822,
/// RFC822.TEXT, BINARY without .PEEK).
fn sets_seen(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::BodySection { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
            | FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
    )
}

/// Whether rendering `attr` needs the message's summary: everything but the index fields and
/// the whole message (BODY[], RFC822), which is the blob as it is.
fn needs_summary(attr: &FetchAttr) -> bool {
    match attr {
        FetchAttr::Flags
        | FetchAttr::InternalDate
        | FetchAttr::Rfc822Size
        | FetchAttr::Uid
        | FetchAttr::ModSeq
        | FetchAttr::Rfc822 => false,
        FetchAttr::BodySection { section, .. } => {
            !(section.part.is_empty() && section.text.is_none())
        }
        _ => true,
    }
}

fn needs_raw(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::BodySection { .. }
            | FetchAttr::Binary { .. }
            | FetchAttr::BinarySize { .. }
            | FetchAttr::Rfc822
            | FetchAttr::Rfc822Header
            | FetchAttr::Rfc822Text
    )
}

/// Whether a search key looks at headers or the envelope (so summaries must be loaded).
fn key_needs_summary(key: &SearchKey) -> bool {
    use SearchKey as K;
    match key {
        K::Bcc(_)
        | K::Cc(_)
        | K::From(_)
        | K::To(_)
        | K::Subject(_)
        | K::Header(..)
        | K::SentBefore(_)
        | K::SentOn(_)
        | K::SentSince(_)
        | K::Body(_)
        | K::Text(_) => true,
        K::Not(k) => key_needs_summary(k),
        K::Or(a, b) => key_needs_summary(a) || key_needs_summary(b),
        K::And(list) => list.iter().any(key_needs_summary),
        _ => false,
    }
}

fn has_modseq_key(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(k) => has_modseq_key(k),
        SearchKey::Or(a, b) => has_modseq_key(a) || has_modseq_key(b),
        SearchKey::And(list) => list.iter().any(has_modseq_key),
        _ => false,
    }
}

/// Output size after which a FETCH pauses so the shell can send what it has.
const FETCH_BATCH: usize = 256 * 1024;

/// Messages whose summaries are read from the store in one query.
const SUMMARY_CHUNK: usize = 256;

/// A FETCH whose responses are not all rendered yet.
#[derive(Debug)]
pub(crate) struct PendingFetch {
    tag: String,
    uid: bool,
    attrs: Vec<FetchAttr>,
    messages: VecDeque<(usize, Message)>,
    changed_since: Option<u64>,
    opts: RenderOptions,
    rev2: bool,
}

impl Session {
    fn selected_parts(&self) -> Option<(i64, bool)> {
        match &self.state {
            State::Selected(sel) => Some((sel.folder.id, sel.read_only)),
            _ => None,
        }
    }

    /// Resolves a set against the view; a bad set is answered with BAD and gives `None`.
    fn resolve(&mut self, tag: &str, set: &SequenceSet, uid: bool) -> Option<Vec<usize>> {
        let State::Selected(sel) = &self.state else {
            return None;
        };
        match sel.view.resolve(set, uid, sel.saved.as_deref()) {
            Ok(i) => Some(i),
            Err(e) => {
                self.bad(tag, &e);
                None
            }
        }
    }

    fn view_messages(&self) -> &[Message] {
        match &self.state {
            State::Selected(sel) => sel.view.messages(),
            _ => &[],
        }
    }

    /// The summaries of these messages, in one store query per [`SUMMARY_CHUNK`]. A message
    /// whose summary cannot be read is treated as having an empty one, and logged.
    async fn summaries<'a>(
        &self,
        messages: impl Iterator<Item = &'a Message>,
    ) -> HashMap<BlobId, Summary> {
        let blobs: Vec<BlobId> = messages.map(|m| m.blob).collect();
        match self.shared.store.summaries(&blobs).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading message summaries");
                HashMap::new()
            }
        }
    }

    /// Before the `n`th of `messages`: at the start of each [`SUMMARY_CHUNK`], replaces `cache`
    /// with the summaries of that chunk.
    async fn refill(&self, cache: &mut HashMap<BlobId, Summary>, messages: &[Message], n: usize) {
        if n.is_multiple_of(SUMMARY_CHUNK) {
            let end = (n + SUMMARY_CHUNK).min(messages.len());
            *cache = self
                .summaries(messages[n..end].iter().filter(|m| !m.expunged))
                .await;
        }
    }

    pub(super) async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        items: &FetchItems,
        changed_since: Option<u64>,
        vanished: bool,
    ) -> Next {
        let Some((folder, read_only)) = self.selected_parts() else {
            return Next::Continue;
        };
        let Some(indices) = self.resolve(tag, set, uid) else {
            return Next::Continue;
        };
        let mut attrs = items.attrs();
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        if changed_since.is_some() && !attrs.contains(&FetchAttr::ModSeq) {
            // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ.
            attrs.push(FetchAttr::ModSeq);
            self.enabled.condstore = true;
        }
        if vanished {
            if !uid || !self.enabled.qresync || changed_since.is_none() {
                self.bad(
                    tag,
                    "VANISHED needs UID FETCH, CHANGEDSINCE and an enabled QRESYNC",
                );
                return Next::Continue;
            }
            // RFC 7162 §3.2.6: UIDs in the set expunged since the given MODSEQ.
            if let Ok(changes) = self
                .shared
                .store
                .changes_since(folder, changed_since.unwrap_or(0))
                .await
            {
                let gone: Vec<u32> = changes
                    .expunged
                    .into_iter()
                    .filter(|u| crate::search::in_set(set, *u, u32::MAX))
                    .collect();
                if !gone.is_empty() {
                    self.untagged(&format!("VANISHED (EARLIER) {}", uid_set(&gone)));
                }
            }
        }
        let store = self.shared.store.clone();
        // Fetching a body marks it \Seen, before the responses so FLAGS show it.
        if !read_only && attrs.iter().any(sets_seen) {
            let unseen: Vec<u32> = indices
                .iter()
                .map(|&i| &self.view_messages()[i])
                .filter(|m| !m.expunged && !m.flags.contains(Flags::SEEN))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                match store
                    .set_flags(folder, unseen, FlagOp::Add, Flags::SEEN, Vec::new(), None)
                    .await
                {
                    Ok(result) => self.apply_flag_changes(&result.changed),
                    Err(e) => tracing::warn!(error = %e, "setting \\Seen on FETCH"),
                }
                if !attrs.contains(&FetchAttr::Flags) {
                    attrs.push(FetchAttr::Flags);
                }
            }
        }
        let pending = PendingFetch {
            tag: tag.to_string(),
            uid,
            attrs,
            messages: indices
                .iter()
                .map(|&i| (i, self.view_messages()[i].clone()))
                .collect(),
            changed_since,
            opts: RenderOptions { utf8: self.utf8() },
            rev2: self.rev2(),
        };
        self.pending_fetch = Some(Box::new(pending));
        self.fetch_more().await
    }

    /// Renders the responses of the running FETCH until the output holds [`FETCH_BATCH`]
    /// bytes, so a FETCH of a whole mailbox is sent in pieces instead of built in memory.
    pub(super) async fn fetch_more(&mut self) -> Next {
        let Some(mut p) = self.pending_fetch.take() else {
            return Next::Continue;
        };
        let store = self.shared.store.clone();
        let want_summary = p.attrs.iter().any(needs_summary);
        let want_raw = p.attrs.iter().any(needs_raw);
        let mut summaries: HashMap<BlobId, Summary> = HashMap::new();
        while let Some((i, m)) = p.messages.pop_front() {
            if m.expunged || p.changed_since.is_some_and(|c| m.modseq <= c) {
                continue;
            }
            if want_summary && !summaries.contains_key(&m.blob) {
                // This message and the next ones, in one query.
                let ahead = p.messages.iter().take(SUMMARY_CHUNK - 1).map(|(_, m)| m);
                summaries = self.summaries(std::iter::once(&m).chain(ahead)).await;
            }
            // A message without a summary renders from an empty one (render_attr's default).
            let summary = summaries.get(&m.blob);
            let raw = if want_raw {
                match store.blobs().read(m.blob).await {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(uid = m.uid, error = %e, "message file unreadable");
                        self.no(
                            &p.tag,
                            "[SERVERBUG] a message could not be read; try again later",
                        );
                        return Next::Continue;
                    }
                }
            } else {
                None
            };
            let mut line: Vec<u8> = format!("* {} FETCH (", i + 1).into_bytes();
            for (n, attr) in p.attrs.iter().enumerate() {
                if n > 0 {
                    line.push(b' ');
                }
                if let Err(e) = self.render_attr(
                    &mut line,
                    attr,
                    &m,
                    summary,
                    raw.as_deref(),
                    &p.opts,
                    p.rev2,
                ) {
                    // Only BINARY can fail: an encoding we cannot undo (RFC 3516 §4.3).
                    self.no(&p.tag, &e);
                    return Next::Continue;
                }
            }
            line.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&line);
            if self.out.len() >= FETCH_BATCH && !p.messages.is_empty() {
                self.pending_fetch = Some(p);
                return Next::Resume;
            }
        }
        self.ok(
            &p.tag,
            if p.uid {
                "UID FETCH completed"
            } else {
                "FETCH completed"
            },
        );
        Next::Continue
    }

    #[allow(clippy::too_many_arguments)]
    fn render_attr(
        &self,
        out: &mut Vec<u8>,
        attr: &FetchAttr,
        m: &Message,
        summary: Option<&Summary>,
        raw: Option<&[u8]>,
        opts: &RenderOptions,
        rev2: bool,
    ) -> Result<(), String> {
        let empty = Summary::default();
        let summary = summary.unwrap_or(&empty);
        let raw = raw.unwrap_or_default();
        match attr {
            FetchAttr::Uid => {
                let _ = write!(out, "UID {}", m.uid);
            }
            FetchAttr::Flags => {
                let _ = write!(out, "FLAGS {}", flag_list(m, rev2));
            }
            FetchAttr::InternalDate => {
                let _ = write!(out, "INTERNALDATE \"{}\"", internal_date(m.internal_date));
            }
            FetchAttr::Rfc822Size => {
                let _ = write!(out, "RFC822.SIZE {}", m.size);
            }
            FetchAttr::ModSeq => {
                let _ = write!(out, "MODSEQ ({})", m.modseq);
            }
            FetchAttr::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                fetch_render::envelope(out, &summary.envelope, opts);
            }
            FetchAttr::BodyStructure => {
                out.extend_from_slice(b"BODYSTRUCTURE ");
                fetch_render::bodystructure(out, &summary.body, true, opts);
            }
            FetchAttr::Body => {
                out.extend_from_slice(b"BODY ");
                fetch_render::bodystructure(out, &summary.body, false, opts);
            }
            FetchAttr::BodySection {
                section, partial, ..
            } => {
                let data = fetch_render::section(raw, summary, section);
                let slice = fetch_render::partial(&data, *partial);
                let origin = partial.map(|(o, _)| format!("<{o}>")).unwrap_or_default();
                let _ = write!(out, "BODY[{}]{origin} ", section_name(section));
                encode::literal(out, slice);
            }
            FetchAttr::Binary { part, partial, .. } => {
                let data = fetch_render::binary(raw, summary, part).map_err(|_| {
                    "[UNKNOWN-CTE] a part's transfer encoding cannot be decoded".to_string()
                })?;
                let slice = fetch_render::partial(&data, *partial);
                let origin = partial.map(|(o, _)| format!("<{o}>")).unwrap_or_default();
                let _ = write!(out, "BINARY[{}]{origin} ", part_name(part));
                if fetch_render::needs_literal8(slice) {
                    encode::literal8(out, slice);
                } else {
                    encode::literal(out, slice);
                }
            }
            FetchAttr::BinarySize { part } => {
                let data = fetch_render::binary(raw, summary, part).map_err(|_| {
                    "[UNKNOWN-CTE] a part's transfer encoding cannot be decoded".to_string()
                })?;
                let _ = write!(out, "BINARY.SIZE[{}] {}", part_name(part), data.len());
            }
            FetchAttr::Rfc822 => {
                out.extend_from_slice(b"RFC822 ");
                encode::literal(out, raw);
            }
            FetchAttr::Rfc822Header => {
                let data = fetch_render::section(
                    raw,
                    summary,
                    &Section {
                        part: vec![],
                        text: Some(SectionText::Header),
                    },
                );
                out.extend_from_slice(b"RFC822.HEADER ");
                encode::literal(out, &data);
            }
            FetchAttr::Rfc822Text => {
                let data = fetch_render::section(
                    raw,
                    summary,
                    &Section {
                        part: vec![],
                        text: Some(SectionText::Text),
                    },
                );
                out.extend_from_slice(b"RFC822.TEXT ");
                encode::literal(out, &data);
            }
        }
        Ok(())
    }

    /// Copies the store's new flags into the view.
    fn apply_flag_changes(&mut self, changed: &[mailstead_store::FlagChange]) {
        let State::Selected(sel) = &mut self.state else {
            return;
        };
        for c in changed {
            if let Some(i) = sel.view.index_of_uid(c.uid)
                && let Some(m) = sel.view.get_mut(i)
            {
                m.flags = c.flags;
                m.keywords = c.keywords.clone();
                m.modseq = c.modseq;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        unchanged_since: Option<u64>,
        op: StoreOp,
        silent: bool,
        flags: &[Flag],
    ) {
        let Some((folder, read_only)) = self.selected_parts() else {
            return;
        };
        if read_only {
            self.no(tag, "[READ-ONLY] the mailbox is read-only");
            return;
        }
        let Some(indices) = self.resolve(tag, set, uid) else {
            return;
        };
        if unchanged_since.is_some() {
            self.enabled.condstore = true;
        }
        let uids: Vec<u32> = indices
            .iter()
            .map(|&i| &self.view_messages()[i])
            .filter(|m| !m.expunged)
            .map(|m| m.uid)
            .collect();
        let (bits, keywords) = split_flags(flags);
        let op = match op {
            StoreOp::Replace => FlagOp::Replace,
            StoreOp::Add => FlagOp::Add,
            StoreOp::Remove => FlagOp::Remove,
        };
        let result = match self
            .shared
            .store
            .set_flags(folder, uids.clone(), op, bits, keywords, unchanged_since)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.server_error(tag, &e);
                return;
            }
        };
        self.apply_flag_changes(&result.changed);
        let rev2 = self.rev2();
        let condstore = self.enabled.condstore;
        if !silent {
            let msgs: Vec<(usize, Message)> = indices
                .iter()
                .map(|&i| (i, self.view_messages()[i].clone()))
                .collect();
            for (i, m) in msgs {
                if m.expunged || result.modified.contains(&m.uid) {
                    continue;
                }
                let mut line = format!("{} FETCH (FLAGS {}", i + 1, flag_list(&m, rev2));
                if uid {
                    let _ = std::fmt::Write::write_fmt(&mut line, format_args!(" UID {}", m.uid));
                }
                if condstore {
                    let _ = std::fmt::Write::write_fmt(
                        &mut line,
                        format_args!(" MODSEQ ({})", m.modseq),
                    );
                }
                line.push(')');
                self.untagged(&line);
            }
        }
        if result.modified.is_empty() {
            self.ok(
                tag,
                if uid {
                    "UID STORE completed"
                } else {
                    "STORE completed"
                },
            );
        } else {
            // RFC 7162 §3.1.3: the messages that were not changed because of UNCHANGEDSINCE.
            let set = if uid {
                uid_set(&result.modified)
            } else {
                let State::Selected(sel) = &self.state else {
                    return;
                };
                let seqs: Vec<u32> = result
                    .modified
                    .iter()
                    .filter_map(|u| sel.view.index_of_uid(*u).map(|i| i as u32 + 1))
                    .collect();
                uid_set(&seqs)
            };
            self.ok(
                tag,
                &format!("[MODIFIED {set}] conditional STORE failed for some messages"),
            );
        }
    }

    pub(super) async fn copy_or_move(
        &mut self,
        tag: &str,
        uid: bool,
        set: &SequenceSet,
        mailbox: &MailboxArg,
        is_move: bool,
    ) {
        let Some((folder, read_only)) = self.selected_parts() else {
            return;
        };
        let Some(indices) = self.resolve(tag, set, uid) else {
            return;
        };
        let name = match self.folder_name(mailbox) {
            Ok(n) => n,
            Err(e) => {
                self.bad(tag, &e);
                return;
            }
        };
        let store = self.shared.store.clone();
        let dest = match store.folder_get(self.mailbox_id(), &name).await {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.no(tag, "[TRYCREATE] no such mailbox");
                return;
            }
            Err(e) => {
                self.server_error(tag, &e);
                return;
            }
        };
        if is_move && read_only {
            self.no(tag, "[READ-ONLY] the mailbox is read-only");
            return;
        }
        let uids: Vec<u32> = indices
            .iter()
            .map(|&i| &self.view_messages()[i])
            .filter(|m| !m.expunged)
            .map(|m| m.uid)
            .collect();
        let verb = match (is_move, uid) {
            (true, true) => "UID MOVE",
            (true, false) => "MOVE",
            (false, true) => "UID COPY",
            (false, false) => "COPY",
        };
        if uids.is_empty() {
            self.ok(tag, &format!("{verb} completed (no messages)"));
            return;
        }
        if is_move && dest.id == folder {
            self.no(tag, "[CANNOT] the messages are already in that mailbox");
            return;
        }
        let result = if is_move {
            store.move_messages(folder, uids, dest.id).await
        } else {
            store.copy(folder, uids, dest.id).await
        };
        let (validity, pairs) = match result {
            Ok(r) => r,
            Err(e) => {
                self.server_error(tag, &e);
                return;
            }
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let code = format!("COPYUID {validity} {} {}", uid_set(&src), uid_set(&dst));
        if is_move {
            // RFC 6851 §4.3: COPYUID comes untagged, then the expunges, then the tagged OK.
            self.untagged(&format!("OK [{code}] moved"));
            if let State::Selected(sel) = &mut self.state {
                sel.view.mark_expunged(&src);
            }
            self.announce(true).await;
            self.ok(tag, &format!("{verb} completed"));
        } else {
            if dest.id == folder {
                self.announce(false).await;
            }
            self.ok(tag, &format!("[{code}] {verb} completed"));
        }
    }

    pub(super) async fn expunge(&mut self, tag: &str, uids: Option<&SequenceSet>) {
        let Some((folder, read_only)) = self.selected_parts() else {
            return;
        };
        if read_only {
            self.no(tag, "[READ-ONLY] the mailbox is read-only");
            return;
        }
        let restrict = match uids {
            Some(set) => {
                let Some(indices) = self.resolve(tag, set, true) else {
                    return;
                };
                Some(
                    indices
                        .iter()
                        .map(|&i| self.view_messages()[i].uid)
                        .collect::<Vec<u32>>(),
                )
            }
            None => None,
        };
        match self.shared.store.expunge(folder, restrict).await {
            Ok(removed) => {
                if let State::Selected(sel) = &mut self.state {
                    sel.view.mark_expunged(&removed);
                }
                self.announce(true).await;
                self.ok(
                    tag,
                    if uids.is_some() {
                        "UID EXPUNGE completed"
                    } else {
                        "EXPUNGE completed"
                    },
                );
            }
            Err(e) => self.server_error(tag, &e),
        }
    }

    /// Indices of the messages matching `key`.
    async fn evaluate(&self, key: &SearchKey) -> Vec<usize> {
        let store = self.shared.store.clone();
        let want_summary = key_needs_summary(key);
        let want_raw = needs_content(key);
        let (max_seq, max_uid, saved) = match &self.state {
            State::Selected(sel) => (sel.view.len(), sel.view.max_uid(), sel.saved.clone()),
            _ => return Vec::new(),
        };
        let ctx = SearchContext {
            now: time::OffsetDateTime::now_utc().unix_timestamp(),
            max_seq,
            max_uid,
            saved,
            tz_offset_secs: 0,
        };
        let messages = self.view_messages();
        let mut cache: HashMap<BlobId, Summary> = HashMap::new();
        let empty = Summary::default();
        let mut out = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if want_summary {
                self.refill(&mut cache, messages, i).await;
            }
            if m.expunged {
                continue;
            }
            let summary = want_summary.then(|| cache.get(&m.blob));
            let raw = if want_raw {
                store.blobs().read(m.blob).await.ok()
            } else {
                None
            };
            let cand = Candidate {
                seq: i as u32 + 1,
                uid: m.uid,
                flags: m.flags,
                keywords: &m.keywords,
                recent: m.recent,
                internal_date: m.internal_date,
                size: m.size,
                modseq: m.modseq,
                summary: summary.flatten().unwrap_or(&empty),
                raw: raw.as_deref(),
            };
            if matches(key, &cand, &ctx) {
                out.push(i);
            }
        }
        out
    }

    fn charset_ok(&mut self, tag: &str, charset: Option<&str>) -> bool {
        match charset {
            None => true,
            Some(c) if c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("US-ASCII") => {
                true
            }
            Some(_) => {
                self.no(tag, "[BADCHARSET (UTF-8 US-ASCII)] charset not supported");
                false
            }
        }
    }

    /// The ESEARCH response (RFC 4731 §3.1; RFC 9051 §7.3.4).
    fn esearch(
        &mut self,
        tag: &str,
        uid: bool,
        ids: &[u32],
        returns: &[SearchReturn],
        modseq: Option<u64>,
    ) {
        let mut line = format!("ESEARCH (TAG \"{tag}\")");
        if uid {
            line.push_str(" UID");
        }
        let all = returns.is_empty();
        for r in if all {
            &[SearchReturn::All][..]
        } else {
            returns
        } {
            match r {
                SearchReturn::Min if !ids.is_empty() => {
                    line.push_str(&format!(" MIN {}", ids.iter().min().unwrap_or(&0)))
                }
                SearchReturn::Max if !ids.is_empty() => {
                    line.push_str(&format!(" MAX {}", ids.iter().max().unwrap_or(&0)))
                }
                SearchReturn::Count => line.push_str(&format!(" COUNT {}", ids.len())),
                SearchReturn::All if !ids.is_empty() => {
                    line.push_str(&format!(" ALL {}", uid_set(ids)))
                }
                _ => {}
            }
        }
        if let Some(m) = modseq {
            line.push_str(&format!(" MODSEQ {m}"));
        }
        self.untagged(&line);
    }

    pub(super) async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        charset: Option<String>,
        key: &SearchKey,
        returns: Option<Vec<SearchReturn>>,
    ) {
        if !self.charset_ok(tag, charset.as_deref()) {
            return;
        }
        let found = self.evaluate(key).await;
        let msgs = self.view_messages();
        let ids: Vec<u32> = found
            .iter()
            .map(|&i| if uid { msgs[i].uid } else { i as u32 + 1 })
            .collect();
        let modseq = has_modseq_key(key)
            .then(|| found.iter().map(|&i| msgs[i].modseq).max().unwrap_or(0))
            .filter(|m| *m > 0);
        let uids: Vec<u32> = found.iter().map(|&i| msgs[i].uid).collect();
        let returns = match returns {
            Some(r) => Some(r),
            None if self.rev2() => Some(Vec::new()),
            None => None,
        };
        match returns {
            Some(r) => {
                if r.contains(&SearchReturn::Save)
                    && let State::Selected(sel) = &mut self.state
                {
                    // RFC 5182 §2.1: SAVE with only MIN and/or MAX saves just those.
                    let only_extremes = !r
                        .iter()
                        .any(|x| matches!(x, SearchReturn::All | SearchReturn::Count))
                        && r.iter()
                            .any(|x| matches!(x, SearchReturn::Min | SearchReturn::Max));
                    sel.saved = Some(if only_extremes {
                        let mut kept = Vec::new();
                        if r.contains(&SearchReturn::Min) {
                            kept.extend(uids.iter().min());
                        }
                        if r.contains(&SearchReturn::Max) {
                            kept.extend(uids.iter().max());
                        }
                        kept.sort_unstable();
                        kept.dedup();
                        kept
                    } else {
                        uids
                    });
                }
                // RFC 5182 §2.4: with only SAVE, no ESEARCH response.
                if r != [SearchReturn::Save] {
                    let shown: Vec<SearchReturn> =
                        r.into_iter().filter(|x| *x != SearchReturn::Save).collect();
                    self.esearch(tag, uid, &ids, &shown, modseq);
                }
            }
            None => {
                let mut line = String::from("SEARCH");
                for id in &ids {
                    line.push_str(&format!(" {id}"));
                }
                if let Some(m) = modseq {
                    line.push_str(&format!(" (MODSEQ {m})"));
                }
                self.untagged(&line);
            }
        }
        self.ok(
            tag,
            if uid {
                "UID SEARCH completed"
            } else {
                "SEARCH completed"
            },
        );
    }

    pub(super) async fn sort(
        &mut self,
        tag: &str,
        uid: bool,
        criteria: &[SortCriterion],
        key: &SearchKey,
        returns: Option<Vec<SearchReturn>>,
    ) {
        let found = self.evaluate(key).await;
        let messages: Vec<Message> = found
            .iter()
            .map(|&i| self.view_messages()[i].clone())
            .collect();
        let mut cache: HashMap<BlobId, Summary> = HashMap::new();
        let empty = Summary::default();
        let mut infos = Vec::with_capacity(messages.len());
        for (n, (m, &i)) in messages.iter().zip(&found).enumerate() {
            self.refill(&mut cache, &messages, n).await;
            let s = cache.get(&m.blob).unwrap_or(&empty);
            infos.push(crate::sort::sort_info(
                i as u32 + 1,
                m.internal_date,
                m.size,
                s,
            ));
        }
        let order = crate::sort::sort(&infos, criteria);
        let ids: Vec<u32> = order
            .iter()
            .map(|&k| {
                if uid {
                    messages[k].uid
                } else {
                    found[k] as u32 + 1
                }
            })
            .collect();
        match returns {
            // ESORT (RFC 5267): the ESEARCH form, ALL keeps the sorted order.
            Some(r) => {
                let mut line = format!("ESEARCH (TAG \"{tag}\")");
                if uid {
                    line.push_str(" UID");
                }
                for x in if r.is_empty() {
                    vec![SearchReturn::All]
                } else {
                    r
                } {
                    match x {
                        SearchReturn::Min if !ids.is_empty() => {
                            line.push_str(&format!(" MIN {}", ids[0]))
                        }
                        SearchReturn::Max if !ids.is_empty() => {
                            line.push_str(&format!(" MAX {}", ids[ids.len() - 1]))
                        }
                        SearchReturn::Count => line.push_str(&format!(" COUNT {}", ids.len())),
                        SearchReturn::All if !ids.is_empty() => line.push_str(&format!(
                            " ALL {}",
                            ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                        )),
                        _ => {}
                    }
                }
                self.untagged(&line);
            }
            None => self.untagged(&format!(
                "SORT{}",
                ids.iter().map(|i| format!(" {i}")).collect::<String>()
            )),
        }
        self.ok(
            tag,
            if uid {
                "UID SORT completed"
            } else {
                "SORT completed"
            },
        );
    }

    pub(super) async fn thread(
        &mut self,
        tag: &str,
        uid: bool,
        algorithm: ThreadAlgorithm,
        key: &SearchKey,
    ) {
        let found = self.evaluate(key).await;
        let messages: Vec<Message> = found
            .iter()
            .map(|&i| self.view_messages()[i].clone())
            .collect();
        let store = self.shared.store.clone();
        let mut cache: HashMap<BlobId, Summary> = HashMap::new();
        let empty = Summary::default();
        let mut infos = Vec::with_capacity(messages.len());
        for (n, (m, &i)) in messages.iter().zip(&found).enumerate() {
            self.refill(&mut cache, &messages, n).await;
            let s = cache.get(&m.blob).unwrap_or(&empty);
            let raw = store.blobs().read(m.blob).await.ok();
            let header_end = raw
                .as_ref()
                .map(|r| (s.body.body_start as usize).min(r.len()))
                .unwrap_or(0);
            let id = if uid { m.uid } else { i as u32 + 1 };
            infos.push(crate::thread::thread_info(
                id,
                m.internal_date,
                s,
                raw.as_deref().map(|r| &r[..header_end]),
            ));
        }
        let threads = crate::thread::thread(&infos, algorithm);
        let mut text = String::new();
        crate::thread::render_threads(&mut text, &threads);
        self.untagged(format!("THREAD {text}").trim_end());
        self.ok(
            tag,
            if uid {
                "UID THREAD completed"
            } else {
                "THREAD completed"
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn internal_dates() {
        assert_eq!(super::internal_date(0), " 1-Jan-1970 00:00:00 +0000");
        assert_eq!(
            super::internal_date(1_795_245_096),
            "21-Nov-2026 07:11:36 +0000"
        );
    }
}
