//! The queue runner: picks due recipients, groups them by route, delivers each group over as few
//! connections as it can, and records what happened to every recipient. Concurrency is bounded
//! in total and per destination. A recipient is at most in one delivery at a time.

use crate::client::{ClientError, EnvRcpt, Envelope, Reply, SmtpSession, TlsMode};
use crate::route::{Hop, PlanError, plan};
use crate::{Queue, report};
use mailstead_store::{Attempt, QueuedMessage, Relayhost, StoreError};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) enum RouteKey {
    Relay(i64),
    Domain(String),
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteKey::Relay(id) => write!(f, "relay host {id}"),
            RouteKey::Domain(d) => f.write_str(d),
        }
    }
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Queue {
    /// Runs until `shutdown`; deliveries in progress are waited for by [`Queue::wait_idle`].
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let signal = self.store.queue_signal();
        tracing::info!("outbound queue started");
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(e) = self.dispatch().await {
                tracing::error!(error = %e, "queue scan failed");
            }
            if let Err(e) = report::pending_reports(&self).await {
                tracing::error!(error = %e, "sending delivery reports failed");
            }
            let wait = match self.store.queue_next_due().await {
                Ok(Some(t)) => (t - now()).clamp(0, 5),
                _ => 5,
            };
            // Changes made by another process (an admin command) are seen within 5 seconds.
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(wait.max(0) as u64).max(Duration::from_millis(50))) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!("outbound queue stopped");
    }

    /// Waits for deliveries in progress, at most `grace`.
    pub async fn wait_idle(&self, grace: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }

    async fn relay_for(
        &self,
        m: &QueuedMessage,
        cache: &mut HashMap<String, Option<Relayhost>>,
    ) -> Option<Relayhost> {
        let who = m.auth_user.as_deref().unwrap_or(&m.sender);
        let domain = who
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        if domain.is_empty() {
            return None;
        }
        if let Some(r) = cache.get(&domain) {
            return r.clone();
        }
        let r = self
            .store
            .relayhost_for_domain(&domain)
            .await
            .ok()
            .flatten();
        cache.insert(domain, r.clone());
        r
    }

    async fn dispatch(self: &Arc<Self>) -> Result<(), StoreError> {
        // Recipients in a delivery before the scan are skipped even if that delivery ends
        // while the scan runs: the scan may predate the outcome, and sending again would
        // deliver twice.
        let busy_before = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let due = self.store.queue_due(now(), 1000, &busy_before).await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut relays: HashMap<String, Option<Relayhost>> = HashMap::new();
        let mut with_relay = Vec::with_capacity(due.len());
        for m in due {
            let relay = self.relay_for(&m, &mut relays).await;
            with_relay.push((m, relay));
        }
        let mut groups: HashMap<RouteKey, (Option<Relayhost>, Vec<QueuedMessage>)> = HashMap::new();
        {
            // `due` holds no recipient in flight: only this loop starts deliveries, and the
            // store left out those in flight when the scan began.
            for (m, relay) in &with_relay {
                let mut by_route: HashMap<RouteKey, Vec<_>> = HashMap::new();
                for r in &m.rcpts {
                    let key = match &relay {
                        Some(rh) => RouteKey::Relay(rh.id),
                        None => RouteKey::Domain(r.domain.clone()),
                    };
                    by_route.entry(key).or_default().push(r.clone());
                }
                for (key, rcpts) in by_route {
                    let entry = groups
                        .entry(key)
                        .or_insert_with(|| (relay.clone(), Vec::new()));
                    entry.1.push(QueuedMessage { rcpts, ..m.clone() });
                }
            }
        }
        for (key, (relay, messages)) in groups {
            let active = *self
                .per_route
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .unwrap_or(&0);
            let slots = self
                .cfg
                .per_destination
                .saturating_sub(active)
                .min(messages.len());
            if slots == 0 {
                continue;
            }
            // Spread the messages over `slots` connections.
            let mut chunks: Vec<Vec<QueuedMessage>> = vec![Vec::new(); slots];
            for (i, m) in messages.into_iter().enumerate() {
                chunks[i % slots].push(m);
            }
            for chunk in chunks {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    return Ok(());
                };
                {
                    let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                    for m in &chunk {
                        inflight.extend(m.rcpts.iter().map(|r| r.id));
                    }
                    *self
                        .per_route
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(key.clone())
                        .or_insert(0) += 1;
                }
                let this = self.clone();
                let key = key.clone();
                let relay = relay.clone();
                self.tasks.spawn(async move {
                    this.deliver_chunk(&key, relay.as_ref(), chunk.clone())
                        .await;
                    let mut inflight = this.inflight.lock().unwrap_or_else(|p| p.into_inner());
                    for m in &chunk {
                        for r in &m.rcpts {
                            inflight.remove(&r.id);
                        }
                    }
                    if let Some(n) = this
                        .per_route
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&key)
                    {
                        *n = n.saturating_sub(1);
                    }
                    drop(permit);
                    this.store.queue_signal().notify_one();
                });
            }
        }
        Ok(())
    }

    /// Delivers messages that share a route.
    async fn deliver_chunk(
        &self,
        key: &RouteKey,
        relay: Option<&Relayhost>,
        chunk: Vec<QueuedMessage>,
    ) {
        let domain = match key {
            RouteKey::Domain(d) => d.clone(),
            RouteKey::Relay(_) => String::new(),
        };
        let hops = match plan(&self.store, &self.dns, &self.tls, &self.sts, &domain, relay).await {
            Ok(h) => h,
            Err(PlanError::Permanent(why)) => {
                for m in &chunk {
                    let outcomes = m
                        .rcpts
                        .iter()
                        .map(|r| {
                            (
                                r.id,
                                Attempt::Failed {
                                    diagnostic: why.clone(),
                                    remote_mta: None,
                                },
                            )
                        })
                        .collect();
                    self.record(m, outcomes, None, "bounced", &why).await;
                }
                return;
            }
            Err(PlanError::Temporary(why)) => {
                for m in &chunk {
                    self.defer_all(m, &why, None).await;
                }
                return;
            }
        };
        let mut pending: VecDeque<QueuedMessage> = chunk.into();
        let mut last_error = String::from("451 4.4.1 no server could be reached");
        'hops: for hop in &hops {
            let (addrs, static_port) = match self.dns.addresses(&hop.host).await {
                Ok(a) => a,
                Err(e) => {
                    last_error = format!("451 4.4.3 {e}");
                    continue;
                }
            };
            if addrs.is_empty() {
                last_error = format!("451 4.4.3 {} has no address", hop.host);
                continue;
            }
            let port = hop.port.or(static_port).unwrap_or(25);
            for ip in addrs {
                let addr = SocketAddr::new(ip, port);
                let auth = hop.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
                let connect = |tls| {
                    SmtpSession::connect(
                        addr,
                        &hop.host,
                        &self.cfg.hostname,
                        self.cfg.timeouts,
                        tls,
                        auth,
                    )
                };
                let mut attempt = connect(&hop.tls).await;
                // Opportunistic TLS that fails in the handshake is retried in plain text, as
                // Postfix does at security level `may` (RFC 7435: never worse than no TLS).
                if matches!(hop.tls, TlsMode::Opportunistic(_))
                    && auth.is_none()
                    && matches!(
                        attempt,
                        Err(ClientError::Tls(_)
                            | ClientError::Refused {
                                stage: "STARTTLS",
                                ..
                            })
                    )
                {
                    if let Err(e) = &attempt {
                        tracing::info!(host = %hop.host, %addr, error = %e, "TLS failed; retrying in plain text");
                    }
                    attempt = connect(&TlsMode::Never).await;
                }
                let mut session = match attempt {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::info!(host = %hop.host, %addr, tls = %hop.tls_reason, error = %e, "cannot deliver through this server");
                        last_error = format!("451 4.4.1 {} [{addr}]: {e}", hop.host);
                        continue;
                    }
                };
                while let Some(m) = pending.pop_front() {
                    match self.send_one(&mut session, hop, &m).await {
                        Ok(()) => {}
                        Err(e) => {
                            last_error = format!("451 4.4.2 {} [{addr}]: {e}", hop.host);
                            pending.push_front(m);
                            break;
                        }
                    }
                }
                session.quit().await;
                if pending.is_empty() {
                    break 'hops;
                }
            }
        }
        while let Some(m) = pending.pop_front() {
            self.defer_all(&m, &last_error, None).await;
        }
    }

    /// Sends one message over an open session and records the outcome per recipient. `Err`
    /// means the connection broke and the message is still to be sent.
    async fn send_one(
        &self,
        session: &mut SmtpSession,
        hop: &Hop,
        m: &QueuedMessage,
    ) -> Result<(), ClientError> {
        let raw = match self.store.blobs().read(m.blob).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(qid = %m.qid, error = %e, "queued message unreadable");
                self.defer_all(
                    m,
                    &format!("451 4.3.0 local error reading the message: {e}"),
                    None,
                )
                .await;
                return Ok(());
            }
        };
        let body = raw.get(m.skip as usize..).unwrap_or_default();
        let env = Envelope {
            from: m.sender.clone(),
            rcpts: m
                .rcpts
                .iter()
                .map(|r| EnvRcpt {
                    address: r.address.clone(),
                    notify: r.notify,
                    orcpt: r.orcpt.clone(),
                })
                .collect(),
            eight_bit: m.eight_bit,
            smtputf8: m.smtputf8,
            ret_full: m.ret_full,
            envid: m.envid.clone(),
        };
        let replies = session.send(&env, body).await?;
        let mta = Some(session.host.clone());
        let mut outcomes = Vec::with_capacity(replies.len());
        let mut summary = Vec::new();
        for (r, reply) in m.rcpts.iter().zip(replies) {
            let outcome = self.outcome(m, &reply, mta.clone());
            summary.push(format!("{}={}", r.address, reply.code));
            outcomes.push((r.id, outcome));
        }
        let relay = format!("{}[{}]", session.host, session.addr);
        let tls = session.tls.clone().unwrap_or_else(|| "none".into());
        let result = summary.join(" ");
        self.record(
            m,
            outcomes,
            Some((&relay, &tls, &hop.tls_reason)),
            "attempt",
            &result,
        )
        .await;
        Ok(())
    }

    fn outcome(&self, m: &QueuedMessage, reply: &Reply, remote_mta: Option<String>) -> Attempt {
        if reply.is_positive() {
            Attempt::Delivered {
                remote_mta,
                reply: reply.text(),
            }
        } else if reply.is_transient() {
            self.deferred(m, reply.text(), remote_mta)
        } else {
            Attempt::Failed {
                diagnostic: reply.text(),
                remote_mta,
            }
        }
    }

    /// A temporary failure: retry with backoff, or give up when the queue lifetime is over.
    fn deferred(&self, m: &QueuedMessage, error: String, remote_mta: Option<String>) -> Attempt {
        let now = now();
        if now >= m.created + self.cfg.lifetime.as_secs() as i64 {
            return Attempt::Expired {
                diagnostic: format!(
                    "{error} (gave up after {} in the queue)",
                    human(self.cfg.lifetime)
                ),
            };
        }
        let attempts = m.rcpts.iter().map(|r| r.attempts).max().unwrap_or(0) as u32 + 1;
        let backoff = self
            .cfg
            .min_backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)));
        let backoff = backoff.min(self.cfg.max_backoff);
        Attempt::Deferred {
            error,
            remote_mta,
            retry_at: now + backoff.as_secs().max(1) as i64,
        }
    }

    async fn defer_all(&self, m: &QueuedMessage, why: &str, mta: Option<String>) {
        let outcomes = m
            .rcpts
            .iter()
            .map(|r| (r.id, self.deferred(m, why.to_string(), mta.clone())))
            .collect();
        self.record(m, outcomes, None, "deferred", why).await;
    }

    async fn record(
        &self,
        m: &QueuedMessage,
        outcomes: Vec<(i64, Attempt)>,
        via: Option<(&str, &str, &str)>,
        what: &str,
        result: &str,
    ) {
        let (relay, tls, policy) = via.unwrap_or(("none", "none", ""));
        let rcpts: Vec<&str> = m.rcpts.iter().map(|r| r.address.as_str()).collect();
        let states: Vec<&str> = outcomes
            .iter()
            .map(|(_, o)| match o {
                Attempt::Delivered { .. } => "sent",
                Attempt::Deferred { .. } => "deferred",
                Attempt::Failed { .. } => "bounced",
                Attempt::Expired { .. } => "expired",
            })
            .collect();
        tracing::info!(
            qid = %m.qid,
            from = %m.sender,
            rcpts = ?rcpts,
            relay,
            tls,
            tls_policy = policy,
            status = ?states,
            result,
            attempt = what,
            delay = now() - m.created,
            "outbound delivery"
        );
        match self.store.queue_record(m.id, outcomes).await {
            Ok(_) => {}
            Err(e) => tracing::error!(qid = %m.qid, error = %e, "cannot record a delivery attempt"),
        }
        if let Err(e) = report::report_message(self, m.id).await {
            tracing::error!(qid = %m.qid, error = %e, "cannot report on a message");
        }
    }
}

pub(crate) fn human(d: Duration) -> String {
    mailstead_core::config::kinds::format_duration(d)
}
