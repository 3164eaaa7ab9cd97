//! The outbound queue: delivers queued messages to other servers, directly by MX or through a
//! relay host, with STARTTLS under the strongest TLS policy that applies (policy map, DANE,
//! MTA-STS, opportunistic), retries temporary failures with backoff up to the queue lifetime,
//! and returns delivery status notifications for what fails.
//!
//! Messages enter the queue through the store (the SMTP service queues them in the same
//! transaction as local copies); the store's queue signal wakes the runner. Depends on core,
//! store and directory; never on another service.

pub mod client;
pub mod dane;
pub mod dns;
pub mod downgrade;
pub mod dsn;
pub mod mta_sts;
mod report;
mod route;
mod runner;
pub mod sts;
pub mod tls;

use mailstead_directory::Directory;
use mailstead_store::Store;
use runner::RouteKey;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// The queue's settings, from the configuration.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Our host name: EHLO, Reporting-MTA, the notices' From.
    pub hostname: String,
    /// First retry after this (Postfix's minimal_backoff_time); doubles each time.
    pub min_backoff: Duration,
    /// The longest wait between attempts (maximal_backoff_time).
    pub max_backoff: Duration,
    /// Give up and bounce after this long (maximal_queue_lifetime).
    pub lifetime: Duration,
    /// Tell the sender about a delay after this long; zero for never.
    pub delay_warning: Duration,
    /// Deliveries at once, in total.
    pub concurrency: usize,
    /// Connections at once to one destination.
    pub per_destination: usize,
    pub timeouts: client::Timeouts,
    /// DNS_STATIC_MAP.
    pub static_map: Option<PathBuf>,
    /// TLS_EXTRA_CA: more trusted certificate authorities for outbound TLS.
    pub extra_ca: Option<PathBuf>,
}

/// The queue runner and what it shares between deliveries.
pub struct Queue {
    cfg: QueueConfig,
    store: Store,
    directory: Directory,
    dns: Arc<dns::Dns>,
    tls: tls::TlsConfigs,
    sts: sts::StsResolver,
    inflight: Mutex<HashSet<i64>>,
    per_route: Mutex<HashMap<RouteKey, usize>>,
    /// Held while deciding on and sending notices, so two deliveries of one message (to two
    /// domains) and the runner's catch-up never report the same recipient twice.
    report_lock: tokio::sync::Mutex<()>,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Queue {
    pub fn new(cfg: QueueConfig, store: Store, directory: Directory) -> Result<Arc<Queue>, String> {
        let dns = Arc::new(dns::Dns::new(cfg.static_map.as_deref())?);
        let roots = match &cfg.extra_ca {
            Some(p) => tls::load_roots(p)?,
            None => Vec::new(),
        };
        let tls = tls::TlsConfigs::new(roots.clone())?;
        let sts = sts::StsResolver::new(dns.clone(), store.clone(), &roots);
        Ok(Arc::new(Queue {
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            cfg,
            store,
            directory,
            dns,
            tls,
            sts,
            inflight: Mutex::new(HashSet::new()),
            per_route: Mutex::new(HashMap::new()),
            report_lock: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
        }))
    }
}
