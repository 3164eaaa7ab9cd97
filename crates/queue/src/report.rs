//! Delivery status notifications to senders (RFC 3464): a bounce for recipients that failed or
//! expired, a delay notice for recipients still waiting after QUEUE_DELAY_WARNING. Never to the
//! null sender and never about a notification (RFC 3461 §6.2, RFC 5321 §6.1: no loops).

use crate::Queue;
use crate::dsn::{DsnAction, DsnInput, DsnRecipient, build_dsn, status_of};
use crate::runner::now;
use mailstead_core::address::Address;
use mailstead_directory::Resolution;
use mailstead_store::{
    DeliveryTarget, Flags, NewQueued, NewQueuedRcpt, QueuedMessage, QueuedRcpt, RcptState,
    StoreError, prepare_message,
};
use std::sync::Arc;

/// Whether the sender asked for this kind of notice (RFC 3461 §4.1). Without NOTIFY we send
/// failures and delays, as most MTAs do.
fn wants(r: &QueuedRcpt, bit: u64) -> bool {
    if r.notify == 0 {
        return bit != smtp_proto::RCPT_NOTIFY_SUCCESS;
    }
    r.notify & smtp_proto::RCPT_NOTIFY_NEVER == 0 && r.notify & bit != 0
}

/// Reports on every message that has unreported failures (after a restart, or when sending a
/// report failed before).
pub(crate) async fn pending_reports(q: &Queue) -> Result<(), StoreError> {
    for m in q.store.queue_unreported().await? {
        report_message(q, m.id).await?;
    }
    Ok(())
}

/// Reports on one message after an attempt. The state is read under the report lock, so
/// what another task has just reported is seen as reported.
pub(crate) async fn report_message(q: &Queue, message_id: i64) -> Result<(), StoreError> {
    let _serial = q.report_lock.lock().await;
    let Some(m) = q.store.queue_list_one(message_id).await? else {
        return Ok(());
    };
    report(q, &m).await
}

async fn report(q: &Queue, m: &QueuedMessage) -> Result<(), StoreError> {
    let now = now();
    let silent = m.sender.is_empty() || m.is_dsn;
    let failed: Vec<&QueuedRcpt> = m
        .rcpts
        .iter()
        .filter(|r| matches!(r.state, RcptState::Failed | RcptState::Expired) && !r.reported)
        .collect();
    if !failed.is_empty() {
        let notify: Vec<&QueuedRcpt> = failed
            .iter()
            .copied()
            .filter(|r| wants(r, smtp_proto::RCPT_NOTIFY_FAILURE))
            .collect();
        if !silent && !notify.is_empty() {
            send(q, m, &notify, DsnAction::Failed).await?;
        }
        q.store
            .queue_mark(m.id, failed.iter().map(|r| r.id).collect(), Vec::new())
            .await?;
    }
    let warning = q.cfg.delay_warning.as_secs() as i64;
    if warning > 0 && now - m.created >= warning {
        let delayed: Vec<&QueuedRcpt> = m
            .rcpts
            .iter()
            .filter(|r| r.state == RcptState::Waiting && r.attempts > 0 && !r.delay_notified)
            .collect();
        if !delayed.is_empty() {
            let notify: Vec<&QueuedRcpt> = delayed
                .iter()
                .copied()
                .filter(|r| wants(r, smtp_proto::RCPT_NOTIFY_DELAY))
                .collect();
            if !silent && !notify.is_empty() {
                send(q, m, &notify, DsnAction::Delayed).await?;
            }
            q.store
                .queue_mark(m.id, Vec::new(), delayed.iter().map(|r| r.id).collect())
                .await?;
        }
    }
    Ok(())
}

async fn send(
    q: &Queue,
    m: &QueuedMessage,
    rcpts: &[&QueuedRcpt],
    action: DsnAction,
) -> Result<(), StoreError> {
    let raw = q.store.blobs().read(m.blob).await?;
    let original = raw.get(m.skip as usize..).unwrap_or_default();
    let until = m.created + q.cfg.lifetime.as_secs() as i64;
    let recipients = rcpts
        .iter()
        .map(|r| {
            let diagnostic = r.diagnostic.clone().or_else(|| r.last_error.clone());
            DsnRecipient {
                final_recipient: r.address.clone(),
                original_recipient: r.orcpt.clone(),
                action,
                status: status_of(diagnostic.as_deref().unwrap_or(""), action),
                remote_mta: r.remote_mta.clone(),
                diagnostic,
                last_attempt: Some(now()),
                will_retry_until: (action == DsnAction::Delayed).then_some(until),
            }
        })
        .collect();
    let bytes = match build_dsn(&DsnInput {
        reporting_mta: &q.cfg.hostname,
        envid: m.envid.as_deref(),
        arrival_date: m.created,
        sender: &m.sender,
        recipients,
        original,
        return_full: m.ret_full != Some(false),
        now: now(),
    }) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(qid = %m.qid, error = %e, "no notice can be built");
            return Ok(());
        }
    };
    let what = if action == DsnAction::Delayed {
        "delay notice"
    } else {
        "bounce"
    };
    tracing::info!(qid = %m.qid, to = %m.sender, rcpts = rcpts.len(), "sending a {what}");
    deliver_notice(q, &m.sender, bytes).await
}

/// Delivers a notice to `to`: into local mailboxes when the address is ours, else through the
/// queue with the null sender.
async fn deliver_notice(q: &Queue, to: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
    let (blob, summary) = prepare_message(q.store.blobs(), Arc::from(bytes)).await?;
    let mut remote = vec![to.to_string()];
    if let Ok(addr) = Address::parse(to) {
        match q.directory.resolve(&addr).await {
            Ok(Resolution::Deliver {
                local,
                remote: forwards,
            }) => {
                let mut targets = Vec::new();
                for t in &local {
                    if let Some(f) = q.store.folder_get(t.mailbox, "INBOX").await? {
                        targets.push(DeliveryTarget {
                            folder: f.id,
                            flags: Flags::default(),
                            keywords: Vec::new(),
                            message: None,
                        });
                    }
                }
                if !targets.is_empty() {
                    q.store
                        .deliver(blob, summary.clone(), now(), targets)
                        .await?;
                }
                remote = forwards;
            }
            // A local address that no longer exists or is disabled: the notice is dropped,
            // as there is nobody to tell (and bouncing a bounce is not allowed).
            Ok(Resolution::Unknown | Resolution::Disabled) => remote.clear(),
            Ok(Resolution::NotLocal) => {}
            Err(e) => return Err(StoreError::Invalid(e.to_string())),
        }
    }
    if !remote.is_empty() {
        q.store
            .enqueue(NewQueued {
                qid: mailstead_core::id::new_id(),
                blob,
                summary,
                skip: 0,
                sender: String::new(),
                envid: None,
                ret_full: None,
                smtputf8: !to.is_ascii(),
                eight_bit: true,
                auth_user: None,
                is_dsn: true,
                rcpts: remote
                    .into_iter()
                    .map(|a| NewQueuedRcpt {
                        address: a,
                        orcpt: None,
                        notify: smtp_proto::RCPT_NOTIFY_NEVER,
                    })
                    .collect(),
                first_attempt: now(),
            })
            .await?;
    } else {
        q.store.discard_blob(blob.id).await;
    }
    Ok(())
}
