//! Where a message goes among local mailboxes: each recipient's Sieve scripts decide its
//! folders, flags, redirects, replies and rejections; recipients without scripts get it in
//! INBOX. Nothing here writes the delivery itself: the caller commits the folders and queue
//! entries this returns in one transaction, after which the SMTP client hears 250.

use crate::delivery::Finished;
use crate::session::{Target, Transaction};
use crate::shell::{Shared, new_id};
use mailstead_core::address::Address;
use mailstead_core::event::MailboxId;
use mailstead_directory::Resolution;
use mailstead_sieve::{Action, Request};
use mailstead_store::{BlobRef, DeliveryTarget, Flags, NewQueued, NewQueuedRcpt, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// A message's local routing, ready to commit.
#[derive(Default)]
pub(crate) struct Routing {
    pub targets: Vec<DeliveryTarget>,
    /// Redirects, vacation replies and rejection notices.
    pub queued: Vec<NewQueued>,
    /// Recipients whose scripts rejected the message, with the reason.
    pub rejected: Vec<(String, String)>,
    /// Blobs written for this delivery beyond the message's own, to drop if it fails.
    pub blobs: Vec<BlobRef>,
}

/// One mailbox to deliver to, and the mailboxes whose redirects led here (loop detection).
struct Job {
    target: Target,
    via: Vec<MailboxId>,
}

/// How deep local redirects may chain within one delivery.
const MAX_CHAIN: usize = 10;

/// The message bytes, read once when the first script needs them.
struct Lazy<'a> {
    shared: &'a Shared,
    finished: &'a Finished,
    bytes: Option<Arc<Vec<u8>>>,
}

impl Lazy<'_> {
    async fn get(&mut self) -> Result<Arc<Vec<u8>>, StoreError> {
        if let Some(b) = &self.bytes {
            return Ok(b.clone());
        }
        let raw = self
            .shared
            .store
            .blobs()
            .read(self.finished.blob.id)
            .await?;
        let raw = Arc::new(raw);
        self.bytes = Some(raw.clone());
        Ok(raw)
    }
}

pub(crate) async fn route(
    shared: &Shared,
    tx: &Transaction,
    finished: &Finished,
    now: i64,
) -> Result<Routing, StoreError> {
    let mut out = Routing::default();
    let mut message = Lazy {
        shared,
        finished,
        bytes: None,
    };
    let mut done: HashSet<MailboxId> = HashSet::new();
    // Folders already given the message, per mailbox: a second fileinto of the same folder
    // stores nothing more (RFC 5228 §2.10.3).
    let mut filed: HashSet<(MailboxId, i64)> = HashSet::new();
    // Remote redirects by the message they send (None: the delivered one).
    let mut remote: HashMap<Option<usize>, Vec<String>> = HashMap::new();
    let mut edited: Vec<(BlobRef, String, u64)> = Vec::new();
    let mut jobs: VecDeque<Job> = tx
        .targets
        .iter()
        .map(|t| Job {
            target: t.clone(),
            via: Vec::new(),
        })
        .collect();
    while let Some(job) = jobs.pop_front() {
        let t = &job.target;
        if !done.insert(t.mailbox) {
            continue;
        }
        let domain = t.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let plan = match shared.filter.plan(t.mailbox, domain).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(id = %tx.id, mailbox = %t.address, error = %e, "cannot read the Sieve scripts; keeping");
                None
            }
        };
        let Some(plan) = plan else {
            file(
                shared,
                &mut out,
                &mut filed,
                t.mailbox,
                "INBOX",
                &[],
                false,
                None,
            )
            .await?;
            continue;
        };
        let raw = message.get().await?;
        let user_name = match shared.store.mailbox_by_id(t.mailbox).await {
            Ok(Some(m)) => m.name,
            _ => String::new(),
        };
        let outcome = shared
            .filter
            .run(
                &plan,
                Request {
                    message: &raw,
                    mailbox: t.mailbox,
                    user: &t.address,
                    user_name: &user_name,
                    rcpt: &t.rcpt,
                    sender: &tx.from,
                },
            )
            .await;
        if let Some(e) = &outcome.error {
            tracing::warn!(id = %tx.id, mailbox = %t.address, error = %e, "Sieve failed; the message goes to INBOX");
        }
        if let Some(reason) = outcome.actions.iter().find_map(|a| match a {
            Action::Reject { reason } => Some(reason.clone()),
            _ => None,
        }) {
            tracing::info!(id = %tx.id, mailbox = %t.address, reason = %reason, "rejected by Sieve");
            out.rejected.push((t.rcpt.clone(), reason));
            continue;
        }
        for action in outcome.actions {
            match action {
                Action::Store {
                    folder,
                    flags,
                    create,
                    message: changed,
                } => {
                    let copy = match changed {
                        Some(m) => Some(put(shared, &mut out, &m).await?),
                        None => None,
                    };
                    file(
                        shared, &mut out, &mut filed, t.mailbox, &folder, &flags, create, copy,
                    )
                    .await?;
                }
                Action::Redirect {
                    to,
                    message: changed,
                } => {
                    let key = match changed {
                        Some(m) => {
                            let (blob, summary) = put(shared, &mut out, &m).await?;
                            edited.push((blob, summary, return_path_len(&m)));
                            Some(edited.len() - 1)
                        }
                        None => None,
                    };
                    redirect(
                        shared,
                        tx,
                        &job,
                        &to,
                        key,
                        &mut jobs,
                        &mut remote,
                        &mut out,
                        &mut filed,
                    )
                    .await?;
                }
                Action::Send { to, message } => {
                    let (blob, summary) = put(shared, &mut out, &message).await?;
                    out.queued
                        .push(queued(blob, summary, 0, "", vec![to], false, now, tx));
                }
                Action::Reject { .. } => {}
            }
        }
    }
    for (key, to) in remote {
        if to.is_empty() {
            continue;
        }
        let (blob, summary, skip) = match key.and_then(|k| edited.get(k)) {
            Some((b, s, skip)) => (*b, s.clone(), *skip),
            None => (finished.blob, finished.summary.clone(), finished.skip),
        };
        out.queued.push(queued(
            blob,
            summary,
            skip,
            &tx.from,
            to,
            tx.params.smtputf8,
            now,
            tx,
        ));
    }
    Ok(out)
}

/// Sieve's redirect: to the recipient itself it is a keep; to a local mailbox it is a
/// delivery there (through its own scripts) unless that would close a loop, in which case
/// this mailbox keeps the message; anything else goes to the queue.
#[allow(clippy::too_many_arguments)]
async fn redirect(
    shared: &Shared,
    tx: &Transaction,
    job: &Job,
    to: &str,
    key: Option<usize>,
    jobs: &mut VecDeque<Job>,
    remote: &mut HashMap<Option<usize>, Vec<String>>,
    out: &mut Routing,
    filed: &mut HashSet<(MailboxId, i64)>,
) -> Result<(), StoreError> {
    let t = &job.target;
    let keep = |why: &str| {
        tracing::info!(id = %tx.id, mailbox = %t.address, to, why, "redirect not followed; keeping");
    };
    let Ok(address) = Address::parse(to) else {
        keep("not an address");
        return file(shared, out, filed, t.mailbox, "INBOX", &[], false, None).await;
    };
    match shared.directory.resolve(&address).await {
        Ok(Resolution::NotLocal) => {
            remote.entry(key).or_default().push(address.to_string());
            Ok(())
        }
        Ok(Resolution::Deliver {
            local,
            remote: forwards,
        }) => {
            let mut looped = false;
            for l in local {
                if l.mailbox == t.mailbox
                    || job.via.contains(&l.mailbox)
                    || job.via.len() >= MAX_CHAIN
                {
                    looped = true;
                    continue;
                }
                let mut via = job.via.clone();
                via.push(t.mailbox);
                jobs.push_back(Job {
                    target: Target {
                        mailbox: l.mailbox,
                        address: l.address,
                        rcpt: address.to_string(),
                    },
                    via,
                });
            }
            remote.entry(key).or_default().extend(forwards);
            if looped {
                keep("a redirect loop");
                file(shared, out, filed, t.mailbox, "INBOX", &[], false, None).await?;
            }
            Ok(())
        }
        Ok(Resolution::Unknown | Resolution::Disabled) => {
            keep("no such local address");
            file(shared, out, filed, t.mailbox, "INBOX", &[], false, None).await
        }
        Err(e) => Err(StoreError::Io(format!("recipient lookup failed: {e}"))),
    }
}

/// Adds a folder target: `folder` when it exists (or `create` makes it), else INBOX (RFC 5228
/// §4.1 leaves a missing folder to the implementation; the message must not be lost).
#[allow(clippy::too_many_arguments)]
async fn file(
    shared: &Shared,
    out: &mut Routing,
    filed: &mut HashSet<(MailboxId, i64)>,
    mailbox: MailboxId,
    folder: &str,
    flags: &[String],
    create: bool,
    message: Option<(BlobRef, String)>,
) -> Result<(), StoreError> {
    let store = &shared.store;
    let mut found = store.folder_get(mailbox, folder).await?;
    if found.is_none() && create {
        match store.folder_create(mailbox, folder, None).await {
            Ok(_) | Err(StoreError::Exists(_)) => {}
            Err(e) => tracing::warn!(folder, error = %e, "cannot create the folder"),
        }
        found = store.folder_get(mailbox, folder).await?;
    }
    let found = match found {
        Some(f) => f,
        None => {
            tracing::warn!(folder, "no such folder; filing into INBOX");
            match store.folder_get(mailbox, "INBOX").await? {
                Some(f) => f,
                None => return Err(StoreError::NotFound("INBOX".into())),
            }
        }
    };
    if !filed.insert((mailbox, found.id)) {
        return Ok(());
    }
    let (flags, keywords) = split_flags(flags);
    out.targets.push(DeliveryTarget {
        folder: found.id,
        flags,
        keywords,
        message,
    });
    Ok(())
}

/// IMAP system flags and keywords from imap4flags' list (RFC 5232 §3).
fn split_flags(list: &[String]) -> (Flags, Vec<String>) {
    let mut flags = Flags::default();
    let mut keywords = Vec::new();
    for f in list.iter().flat_map(|f| f.split_whitespace()) {
        if let Some(flag) = Flags::from_name(f) {
            flags = flags.union(flag);
        } else if !f.starts_with('\\')
            && !keywords.iter().any(|k: &String| k.eq_ignore_ascii_case(f))
        {
            keywords.push(f.to_string());
        }
    }
    (flags, keywords)
}

/// Writes a message the scripts made as a durable blob.
async fn put(
    shared: &Shared,
    out: &mut Routing,
    message: &[u8],
) -> Result<(BlobRef, String), StoreError> {
    let blobs = shared.store.blobs().clone();
    let raw = message.to_vec();
    let (blob, summary) = tokio::task::spawn_blocking(move || {
        let blob = blobs.put_sync(&raw)?;
        let summary =
            mailstead_store::summary::to_json(&mailstead_store::summary::summarize(&raw))?;
        Ok::<_, StoreError>((blob, summary))
    })
    .await
    .map_err(|e| StoreError::Io(e.to_string()))??;
    out.blobs.push(blob);
    Ok((blob, summary))
}

/// Bytes of a leading Return-Path line, which local copies carry and sent ones do not.
fn return_path_len(message: &[u8]) -> u64 {
    if message.len() >= 12 && message[..12].eq_ignore_ascii_case(b"Return-Path:") {
        memchr::memmem::find(message, b"\r\n").map_or(0, |i| i as u64 + 2)
    } else {
        0
    }
}

#[allow(clippy::too_many_arguments)]
fn queued(
    blob: BlobRef,
    summary: String,
    skip: u64,
    sender: &str,
    to: Vec<String>,
    smtputf8: bool,
    now: i64,
    tx: &Transaction,
) -> NewQueued {
    NewQueued {
        qid: new_id(),
        blob,
        summary,
        skip,
        sender: sender.to_string(),
        envid: None,
        ret_full: None,
        smtputf8,
        eight_bit: tx.params.eight_bit,
        auth_user: None,
        is_dsn: sender.is_empty(),
        rcpts: to
            .into_iter()
            .map(|address| NewQueuedRcpt {
                address,
                orcpt: None,
                notify: 0,
            })
            .collect(),
        first_attempt: now,
    }
}

/// Queues a rejection notice from `<>` to the sender.
pub(crate) async fn queue_notice(
    shared: &Shared,
    out: &mut Routing,
    notice: Vec<u8>,
    sender: &str,
    now: i64,
    tx: &Transaction,
) -> Result<(), StoreError> {
    let (blob, summary) = put(shared, out, &notice).await?;
    out.queued.push(queued(
        blob,
        summary,
        0,
        "",
        vec![sender.to_string()],
        tx.params.smtputf8,
        now,
        tx,
    ));
    Ok(())
}

/// The notice a sender gets when some recipients' scripts rejected the message (RFC 5429
/// §2.1: the reason goes back to the sender); sent from `<>`.
pub(crate) fn rejection_notice(
    hostname: &str,
    sender: &str,
    rejected: &[(String, String)],
    original: &[u8],
) -> Vec<u8> {
    let head_end = memchr::memmem::find(original, b"\r\n\r\n").map_or(original.len(), |i| i + 2);
    let subject = mail_parser::MessageParser::new()
        .parse_headers(original.get(..head_end).unwrap_or_default())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str(&format!(
        "Subject: Rejected: {}\r\n",
        subject.replace(['\r', '\n'], " ")
    ));
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!("Message-ID: <{}@{hostname}>\r\n", new_id()));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    m.push_str("Your message was rejected by the filter of the following recipients:\r\n\r\n");
    for (rcpt, reason) in rejected {
        m.push_str(&format!(
            "<{rcpt}>: {}\r\n",
            reason.replace("\r\n", "\r\n  ")
        ));
    }
    m.push_str("\r\n--- The headers of your message ---\r\n\r\n");
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(original.get(..head_end).unwrap_or_default());
    bytes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_split_into_system_flags_and_keywords() {
        let (f, k) = split_flags(&[
            "\\Seen $Label1".into(),
            "\\Flagged".into(),
            "$label1".into(),
        ]);
        assert_eq!(f, Flags::SEEN.union(Flags::FLAGGED));
        assert_eq!(k, ["$Label1"]);
    }

    #[test]
    fn return_path_is_measured() {
        assert_eq!(return_path_len(b"Return-Path: <a@b>\r\nX: y\r\n"), 20);
        assert_eq!(return_path_len(b"X: y\r\n"), 0);
    }
}
