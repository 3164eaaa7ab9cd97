//! The async shell around [`Session`]: it owns the connection, the timeouts and the message
//! sink, answers the session's questions from the directory, and delivers into the store. It
//! never decides anything the session decides (replies, relaying, sequence).

use crate::SmtpConfig;
use crate::data::ChunkNormalizer;
use crate::delivery::MessageSink;
use crate::received;
use crate::reply::{self, Reply};
use crate::session::{Action, AuthVerdict, Mode, RcptVerdict, Session, Target, Transaction};
use crate::wire::{Line, Wire};
use mailstead_core::address::{Address, normalize_domain};
use mailstead_directory::{Directory, Protocol, Resolution};
use mailstead_listener::Connection;
use mailstead_store::{NewQueued, NewQueuedRcpt, Store, StoreError};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// What every session of the service shares.
pub struct Shared {
    pub cfg: SmtpConfig,
    pub directory: Directory,
    pub store: Store,
    /// Sieve at delivery.
    pub filter: mailstead_sieve::Filter,
}

pub use mailstead_core::id::new_id;

/// Received fields a message may carry before it is refused as looping.
const MAX_HOPS: u32 = 100;

impl Shared {
    /// Where mail for `address` goes. Any address whose domain is not ours is "remote": the
    /// session alone decides whether that may be relayed.
    async fn check_recipient(&self, address: &str, size_hint: Option<u64>) -> RcptVerdict {
        // RFC 5321 §4.5.1: mail to `postmaster` must be deliverable. When the host name is not a
        // mail domain, the first local domain with a postmaster takes it.
        if address.eq_ignore_ascii_case(&format!("postmaster@{}", self.cfg.hostname))
            && matches!(
                self.directory.local_domain(&self.cfg.hostname).await,
                Ok(None)
            )
        {
            let domains = self.store.domain_list().await.unwrap_or_default();
            for d in domains {
                let candidate = format!("postmaster@{}", d.name);
                let verdict = Box::pin(self.check_recipient(&candidate, size_hint)).await;
                if matches!(verdict, RcptVerdict::Local { .. }) {
                    return verdict;
                }
            }
            return RcptVerdict::Unknown;
        }
        let Some((_, domain)) = address.rsplit_once('@') else {
            return RcptVerdict::Unknown;
        };
        // Address literals and anything that is not a domain name are never ours.
        let Ok(domain) = normalize_domain(domain) else {
            return RcptVerdict::Remote;
        };
        let resolution = match Address::parse(address) {
            Ok(a) => self.directory.resolve(&a).await,
            // A local part that is not a dot-atom (`"a@b"@ours`, stray quotes) names no mailbox
            // of ours; it is unknown here or remote elsewhere, never rerouted.
            Err(_) => match self.directory.local_domain(&domain).await {
                Ok(Some(_)) => Ok(Resolution::Unknown),
                Ok(None) => Ok(Resolution::NotLocal),
                Err(e) => Err(e),
            },
        };
        let (local, remote) = match resolution {
            Ok(Resolution::NotLocal) => return RcptVerdict::Remote,
            Ok(Resolution::Unknown) => return RcptVerdict::Unknown,
            Ok(Resolution::Disabled) => return RcptVerdict::Disabled,
            Ok(Resolution::Deliver { local, remote }) => (local, remote),
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                return RcptVerdict::TempFail("lookup failed".into());
            }
        };
        let mut targets = Vec::with_capacity(local.len());
        for t in local {
            match self.store.mailbox_by_id(t.mailbox).await {
                Ok(Some(m)) => {
                    let grace_limit = m.quota + m.quota / 10;
                    let incoming = size_hint.unwrap_or(0) as i64;
                    if m.quota > 0
                        && (m.used_bytes >= m.quota || m.used_bytes + incoming > grace_limit)
                    {
                        return RcptVerdict::Full(m.address);
                    }
                }
                Ok(None) => return RcptVerdict::Unknown,
                Err(e) => {
                    tracing::error!(error = %e, "mailbox lookup failed");
                    return RcptVerdict::TempFail("lookup failed".into());
                }
            }
            targets.push(Target {
                mailbox: t.mailbox,
                address: t.address,
                rcpt: address.to_string(),
            });
        }
        RcptVerdict::Local {
            targets,
            forward: remote,
        }
    }

    /// Whether `user` may send as `address`: their own address, an alias that delivers to
    /// them, or one of those in an alias domain, with or without a `+tag`.
    async fn owns(&self, user: &str, address: &str) -> Result<bool, ()> {
        let Ok(a) = Address::parse(address) else {
            return Ok(false);
        };
        let owned = self.directory.sender_addresses(user).await.map_err(|e| {
            tracing::error!(error = %e, "sender lookup failed");
        })?;
        let (base, _) = a.without_detail();
        Ok(owned
            .iter()
            .any(|o| *o == a.to_string() || *o == base.to_string()))
    }

    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
        mode: Mode,
    ) -> AuthVerdict {
        match self
            .directory
            .login(user, password, Protocol::Smtp, peer)
            .await
        {
            Ok(Ok(m)) => {
                tracing::info!(protocol = mode.name(), user = %m.address, client = %peer, result = "ok", "login");
                AuthVerdict::Ok(m.address)
            }
            Ok(Err(why)) => {
                tracing::info!(protocol = mode.name(), user = %user.to_lowercase(), client = %peer, result = ?why, "login failed");
                AuthVerdict::Failed
            }
            Err(e) => {
                tracing::error!(error = %e, "login check failed");
                AuthVerdict::TempFail
            }
        }
    }

    /// RFC 6409 §8: submission may reject a From header the user does not own. Every From
    /// header counts (RFC 5322 §3.6 allows one; a second is refused), in the whole header.
    async fn check_from_header(&self, user: &str, message: &[u8]) -> Option<Reply> {
        let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
        let froms: Vec<&mail_parser::Header<'_>> = parsed
            .headers()
            .iter()
            .filter(|h| h.name == mail_parser::HeaderName::From)
            .collect();
        let mut addresses = Vec::new();
        for from in &froms {
            if let mail_parser::HeaderValue::Address(a) = &from.value {
                addresses.extend(
                    a.iter()
                        .filter_map(|x| x.address.as_deref().map(str::to_string)),
                );
            }
        }
        for a in addresses {
            match self.owns(user, &a).await {
                Ok(true) => {}
                Ok(false) => {
                    return Some(Reply::new(
                        553,
                        "5.7.1",
                        format!(
                            "From header address <{}> is not owned by user {user}",
                            received::header_safe(&a)
                        ),
                    ));
                }
                Err(()) => return Some(reply::local_error()),
            }
        }
        if froms.len() > 1 {
            return Some(Reply::new(
                550,
                "5.6.0",
                "the message has more than one From header",
            ));
        }
        None
    }

    async fn deliver(&self, session: &Session, sink: MessageSink, mode: Mode) -> Reply {
        let Some(tx) = session.transaction() else {
            return reply::local_error();
        };
        // RFC 5321 §6.3: a message that passed this many relays is looping; the threshold
        // "normally at least 100".
        if sink.hops() > MAX_HOPS {
            return Reply::new(
                554,
                "5.4.6",
                format!("too many hops ({}): a mail loop?", sink.hops()),
            );
        }
        let mut signature = None;
        if mode != Mode::Mx
            && let Some(user) = session.user()
        {
            if let Some(message) = sink.message()
                && let Some(refusal) = self.check_from_header(user, message).await
            {
                return refusal;
            }
            // Submitted mail from a domain with a key is signed before it goes anywhere.
            if let Some(domain) = sink.sender_domain()
                && let Ok(Some(key)) = self.store.dkim_get(&domain).await
                && let Some(message) = sink.message()
            {
                signature = crate::delivery::signature(&key, message);
            }
        }
        let finished = match sink.finish(signature).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(id = %tx.id, error = %e, "cannot store the message");
                return reply::local_error();
            }
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let blob = finished.blob;
        let mut routing = match crate::local::route(self, tx, &finished, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(id = %tx.id, error = %e, "local routing failed");
                self.store.discard_blob(blob.id).await;
                return reply::local_error();
            }
        };
        if !routing.rejected.is_empty() {
            // RFC 5429 §2.1: when every recipient refuses, the refusal is the SMTP reply;
            // otherwise the others get the message and the sender a notice.
            if routing.targets.is_empty() && routing.queued.is_empty() && tx.remote.is_empty() {
                self.discard(blob, &routing).await;
                let reasons: Vec<&str> = routing.rejected.iter().map(|(_, r)| r.as_str()).collect();
                let text = reasons.join("; ").replace(['\r', '\n'], " ");
                return Reply::new(550, "5.7.1", text);
            }
            if !tx.from.is_empty() {
                let original = match self.store.blobs().read(blob.id).await {
                    Ok(raw) => raw,
                    Err(e) => {
                        tracing::error!(id = %tx.id, error = %e, "cannot read the message");
                        self.discard(blob, &routing).await;
                        return reply::local_error();
                    }
                };
                let notice = crate::local::rejection_notice(
                    &self.cfg.hostname,
                    &tx.from,
                    &routing.rejected,
                    original.get(finished.skip as usize..).unwrap_or_default(),
                );
                if let Err(e) =
                    crate::local::queue_notice(self, &mut routing, notice, &tx.from, now, tx).await
                {
                    tracing::error!(id = %tx.id, error = %e, "cannot write the rejection notice");
                    self.discard(blob, &routing).await;
                    return reply::local_error();
                }
            }
        }
        let mut queued = routing.queued.clone();
        if !tx.remote.is_empty() {
            queued.push(NewQueued {
                qid: tx.id.clone(),
                blob: finished.blob,
                summary: finished.summary.clone(),
                skip: finished.skip,
                sender: tx.from.clone(),
                envid: tx.params.envid.clone(),
                ret_full: tx.params.ret_full,
                smtputf8: tx.params.smtputf8,
                eight_bit: tx.params.eight_bit,
                auth_user: session.user().map(str::to_string),
                is_dsn: false,
                rcpts: tx
                    .remote
                    .iter()
                    .map(|r| NewQueuedRcpt {
                        address: r.address.clone(),
                        orcpt: r.orcpt.clone(),
                        notify: r.notify,
                    })
                    .collect(),
                first_attempt: now,
            });
        }
        if routing.targets.is_empty() && queued.is_empty() {
            // Every script discarded it: accepted, and nothing to keep.
            self.discard(blob, &routing).await;
            return Reply::new(250, "2.0.0", format!("OK: queued as {}", tx.id));
        }
        match self
            .store
            .deliver_and_enqueue(blob, finished.summary, now, routing.targets.clone(), queued)
            .await
        {
            Ok(_) => Reply::new(250, "2.0.0", format!("OK: queued as {}", tx.id)),
            Err(StoreError::OverQuota(why)) => {
                self.discard(blob, &routing).await;
                Reply::new(452, "4.2.2", format!("{why}; try again later"))
            }
            Err(e) => {
                tracing::error!(id = %tx.id, error = %e, "delivery failed");
                self.discard(blob, &routing).await;
                reply::local_error()
            }
        }
    }

    /// Drops the blobs of a delivery that did not happen.
    async fn discard(&self, blob: mailstead_store::BlobRef, routing: &crate::local::Routing) {
        self.store.discard_blob(blob.id).await;
        for b in &routing.blobs {
            self.store.discard_blob(b.id).await;
        }
    }
}

fn log_transaction(
    mode: Mode,
    peer: IpAddr,
    session: &Session,
    tx: &Transaction,
    size: u64,
    result: &str,
) {
    let rcpts: Vec<&str> = tx.rcpts.iter().map(|r| r.address.as_str()).collect();
    let refused: Vec<String> = tx.refused.iter().map(|(a, c)| format!("{a}={c}")).collect();
    tracing::info!(
        service = mode.name(),
        id = %tx.id,
        client = %peer,
        helo = session.helo().unwrap_or(""),
        tls = session.is_tls(),
        user = session.user().unwrap_or(""),
        from = %tx.from,
        rcpts = ?rcpts,
        refused = ?refused,
        size,
        result,
        "smtp transaction"
    );
}

/// Runs one SMTP session to its end.
pub async fn run(shared: Arc<Shared>, mode: Mode, mut conn: Connection) {
    let cfg = &shared.cfg;
    let peer = conn.peer.ip();
    let mut session = Session::new(
        cfg.hostname.clone(),
        mode,
        cfg.limits.clone(),
        conn.tls_info().is_some(),
        conn.can_start_tls(),
        new_id,
    );
    conn.stream.set_idle_timeout(cfg.command_timeout);
    let mut wire = Wire::default();
    wire.reply(&session.greeting());
    let mut sink: Option<MessageSink> = None;
    let mut chunks = ChunkNormalizer::default();
    let mut chunk_total: u64 = 0;

    'session: loop {
        let deadline = Instant::now() + cfg.command_timeout;
        let line = tokio::select! {
            biased;
            _ = conn.shutdown.cancelled(), if !wire.has_line() => {
                wire.reply(&reply::shutting_down(&cfg.hostname));
                let _ = wire.flush(&mut conn.stream).await;
                break 'session;
            }
            r = wire.line(&mut conn.stream, cfg.limits.line_limit, deadline) => r,
        };
        let actions = match line {
            Ok(Line::Complete(l)) => session.line(&l),
            Ok(Line::TooLong) => session.line_too_long(),
            Ok(Line::TimedOut) => {
                wire.reply(&reply::timeout(&cfg.hostname));
                let _ = wire.flush(&mut conn.stream).await;
                break 'session;
            }
            Ok(Line::Eof) | Err(_) => break 'session,
        };
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(r) => wire.reply(&r),
                Action::Ended(tx, why) => {
                    log_transaction(mode, peer, &session, &tx, 0, &why);
                    sink = None;
                }
                Action::Close => {
                    let _ = wire.flush(&mut conn.stream).await;
                    break 'session;
                }
                Action::StartTls => {
                    if wire.flush(&mut conn.stream).await.is_err() {
                        break 'session;
                    }
                    let injected = wire.discard_input();
                    if injected > 0 {
                        tracing::warn!(client = %peer, bytes = injected, "discarded input sent in clear text after STARTTLS");
                    }
                    match conn.start_tls().await {
                        Ok(_) => session.tls_started(),
                        Err(e) => {
                            tracing::debug!(client = %peer, error = %e, "STARTTLS handshake failed");
                            break 'session;
                        }
                    }
                }
                Action::CheckSender(address) => {
                    let user = session.user().unwrap_or_default().to_string();
                    let ok = shared.owns(&user, &address).await.unwrap_or(false);
                    queue.extend(session.sender_checked(ok));
                }
                Action::CheckRecipient(address) => {
                    let hint = session.transaction().and_then(|t| t.params.size);
                    let verdict = shared.check_recipient(&address, hint).await;
                    queue.extend(session.recipient_checked(verdict));
                }
                Action::Authenticate { user, password } => {
                    let verdict = shared.authenticate(&user, &password, peer, mode).await;
                    if verdict == AuthVerdict::Failed {
                        // Slows down password guessing (Dovecot's auth_failure_delay).
                        tokio::time::sleep(cfg.auth_failure_delay).await;
                    }
                    queue.extend(session.auth_checked(verdict));
                }
                Action::ReadData => {
                    let mut s = new_sink(&shared, &session, peer, &conn);
                    let deadline = Instant::now() + cfg.data_timeout;
                    match wire.data(&mut conn.stream, deadline, &mut s).await {
                        Ok(Ok(size)) => {
                            sink = Some(s);
                            queue.extend(session.data_read(size));
                        }
                        Ok(Err(Line::TimedOut)) => {
                            wire.reply(&reply::timeout(&cfg.hostname));
                            let _ = wire.flush(&mut conn.stream).await;
                            break 'session;
                        }
                        _ => break 'session,
                    }
                }
                Action::ReadChunk { size, discard } => {
                    if !discard && sink.is_none() {
                        sink = Some(new_sink(&shared, &session, peer, &conn));
                        chunks = ChunkNormalizer::default();
                        chunk_total = 0;
                    }
                    let deadline = Instant::now() + cfg.data_timeout;
                    let target = if discard { None } else { sink.as_mut() };
                    match wire
                        .chunk(&mut conn.stream, size, deadline, &mut chunks, target)
                        .await
                    {
                        Ok(Ok(())) => {
                            if !discard {
                                chunk_total = chunks.size();
                            }
                            let acts = session.chunk_read(chunk_total);
                            if session.transaction().is_none() {
                                sink = None;
                            }
                            queue.extend(acts);
                        }
                        Ok(Err(Line::TimedOut)) => {
                            wire.reply(&reply::timeout(&cfg.hostname));
                            let _ = wire.flush(&mut conn.stream).await;
                            break 'session;
                        }
                        _ => break 'session,
                    }
                }
                Action::Deliver => {
                    let Some(mut s) = sink.take() else {
                        queue.extend(session.delivered(reply::local_error()).0);
                        continue;
                    };
                    if session.transaction().is_some_and(|t| t.chunked) {
                        let mut tail = Vec::new();
                        chunks.finish(&mut tail);
                        s.push(&tail);
                    }
                    let size = s.body_size();
                    let result = shared.deliver(&session, s, mode).await;
                    let (acts, tx) = session.delivered(result.clone());
                    if let Some(tx) = tx {
                        log_transaction(mode, peer, &session, &tx, size, &result.summary());
                    }
                    queue.extend(acts);
                }
            }
        }
        if session.is_closed() {
            let _ = wire.flush(&mut conn.stream).await;
            break;
        }
    }
    if let Some(tx) = session.take_transaction() {
        log_transaction(
            mode,
            peer,
            &session,
            &tx,
            0,
            "aborted: connection ended before the message was complete",
        );
    }
}

/// A sink for the current transaction's message, with Return-Path and Received in front.
/// Submitted messages stay in memory: they may be signed before they are written.
fn new_sink(shared: &Shared, session: &Session, peer: IpAddr, conn: &Connection) -> MessageSink {
    let from = session.transaction().map(|t| t.from.as_str()).unwrap_or("");
    let received = received::received(
        session,
        &shared.cfg.hostname,
        peer,
        conn.tls_info(),
        time::OffsetDateTime::now_utc(),
    );
    MessageSink::new(
        shared.store.blobs().clone(),
        &received::return_path(from),
        &received,
        shared.cfg.limits.max_message_size,
        session.mode() != Mode::Mx,
    )
}
