//! Listening sockets shared by every protocol: binding what the configuration asks for,
//! implicit TLS and the STARTTLS upgrade, limits (connections in total and per client address,
//! idle time) and a graceful drain at shutdown. A protocol plugs in as a [`Service`]: it gets
//! each accepted [`Connection`] and runs its session loop on it.
//!
//! Depends on `core` for the bind type. Knows nothing about any protocol beyond the one line a
//! service may want to send when a connection is refused.

mod bind;
mod stream;
mod tls;

pub use bind::bind;
pub use stream::Stream;
pub use tls::{TlsError, TlsIdentity, TlsInfo, iana_cipher_name, load_server_config};

use futures::future::BoxFuture;
use mailstead_core::config::kinds::Bind;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stream::Inner;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client gets to complete a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a listener is.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Short protocol name for logs: `smtp`, `submissions`, `imaps`, ...
    pub name: &'static str,
    /// The configuration key it came from, for messages (`SMTP_PORT`).
    pub key: &'static str,
    pub bind: Bind,
    /// TLS from the first byte (RFC 8314) rather than after STARTTLS.
    pub implicit_tls: bool,
    /// How long a connection may be silent before it is closed.
    pub idle_timeout: Duration,
}

/// Why a connection is turned away before its session starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client address holds as many connections as `MAX_CONNECTIONS_PER_IP` allows.
    TooManyFromAddress,
}

/// A protocol server.
pub trait Service: Send + Sync + 'static {
    /// Runs one session to its end. It should watch [`Connection::shutdown`] and end with the
    /// protocol's goodbye (SMTP 421, IMAP BYE) when it fires.
    fn serve(self: Arc<Self>, conn: Connection) -> BoxFuture<'static, ()>;

    /// The line sent to a refused client before the connection is closed (plain listeners
    /// only; implicit-TLS clients are closed without a word).
    fn refusal(&self, reason: Refusal) -> Option<Vec<u8>>;
}

/// One accepted client.
pub struct Connection {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The listener's [`Spec::name`].
    pub listener: &'static str,
    /// Fires when the server is shutting down: finish the current command and say goodbye.
    pub shutdown: CancellationToken,
    tls: Option<TlsIdentity>,
    tls_info: Option<TlsInfo>,
    _slot: Slot,
}

impl Connection {
    /// What TLS negotiated, if the connection is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info.as_ref()
    }

    /// Whether STARTTLS can be offered: there is a certificate and TLS is not on yet.
    pub fn can_start_tls(&self) -> bool {
        self.tls.is_some() && !self.stream.is_tls()
    }

    /// Upgrades to TLS (RFC 3207 §4, RFC 9051 §6.2.1). The caller must first drop any bytes it
    /// buffered after the STARTTLS command: they arrived in clear text and must not be taken as
    /// commands of the encrypted session (the 2011 STARTTLS command injection).
    pub async fn start_tls(&mut self) -> io::Result<&TlsInfo> {
        let Some(identity) = &self.tls else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no TLS certificate configured",
            ));
        };
        let tcp = match std::mem::replace(&mut self.stream.inner, Inner::Upgrading) {
            Inner::Plain(tcp) => tcp,
            other => {
                self.stream.inner = other;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS is already active",
                ));
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.current());
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let info = TlsInfo::of(tls.get_ref().1);
        self.stream.inner = Inner::Tls(Box::new(tls));
        self.stream.set_idle_timeout(self.stream.idle_timeout());
        Ok(self.tls_info.insert(info))
    }
}

/// The key connections are counted under: the address, or its /64 for IPv6, where one client
/// usually holds a whole prefix.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(Default)]
struct PerAddress {
    counts: Mutex<HashMap<(&'static str, IpAddr), u32>>,
    /// Sessions open over all addresses.
    active: std::sync::atomic::AtomicUsize,
}

impl PerAddress {
    fn try_take(self: &Arc<Self>, listener: &'static str, ip: IpAddr, max: u32) -> Option<Slot> {
        let key = (listener, client_key(ip));
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        self.active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Slot {
            table: self.clone(),
            key,
            _permit: None,
        })
    }
}

/// A connection's place in the counters; freed when the connection ends.
struct Slot {
    table: Arc<PerAddress>,
    key: (&'static str, IpAddr),
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Limits shared by all listeners.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_address: u32,
}

/// A bound listener, not yet serving.
pub struct Bound {
    pub spec: Spec,
    pub local_addr: SocketAddr,
    listener: TcpListener,
}

/// Every listener of the server, their sessions, and the way to stop them.
pub struct Listeners {
    limits: Limits,
    tls: Option<TlsIdentity>,
    enable_ipv6: bool,
    total: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    /// Stop accepting; sessions wrap up.
    graceful: CancellationToken,
    /// Drop every session still running.
    hard: CancellationToken,
    tasks: TaskTracker,
}

impl Listeners {
    pub fn new(limits: Limits, tls: Option<TlsIdentity>, enable_ipv6: bool) -> Listeners {
        Listeners {
            limits,
            tls,
            enable_ipv6,
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Arc::default(),
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Binds a listener. The error names the configuration key and the address.
    pub fn bind(&self, spec: Spec) -> io::Result<Bound> {
        if spec.implicit_tls && self.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} ({}) needs a TLS certificate", spec.key, spec.name),
            ));
        }
        let listener = bind(spec.bind, self.enable_ipv6).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} ({}): cannot listen on {e}", spec.key, spec.name),
            )
        })?;
        let local_addr = listener.local_addr()?;
        Ok(Bound {
            spec,
            local_addr,
            listener,
        })
    }

    /// Starts accepting on a bound listener.
    pub fn serve(&self, bound: Bound, service: Arc<dyn Service>) {
        let ctx = AcceptLoop {
            spec: bound.spec,
            listener: bound.listener,
            service,
            limits: self.limits,
            tls: self.tls.clone(),
            total: self.total.clone(),
            per_address: self.per_address.clone(),
            graceful: self.graceful.clone(),
            hard: self.hard.clone(),
            tasks: self.tasks.clone(),
        };
        self.tasks.spawn(ctx.run());
    }

    /// Sessions open right now.
    pub fn open_connections(&self) -> usize {
        self.per_address
            .active
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops accepting, gives sessions `grace` to end, then drops the rest. Returns how many
    /// sessions had to be cut off.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.graceful.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return 0;
        }
        let cut = self.open_connections();
        self.hard.cancel();
        self.tasks.wait().await;
        cut
    }
}

struct AcceptLoop {
    spec: Spec,
    listener: TcpListener,
    service: Arc<dyn Service>,
    limits: Limits,
    tls: Option<TlsIdentity>,
    total: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    graceful: CancellationToken,
    hard: CancellationToken,
    tasks: TaskTracker,
}

impl AcceptLoop {
    async fn run(self) {
        let mut last_full_warning: Option<Instant> = None;
        loop {
            // Wait for room first: at MAX_CONNECTIONS new clients queue in the kernel backlog.
            let permit = if let Ok(p) = self.total.clone().try_acquire_owned() {
                p
            } else {
                if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        listener = self.spec.name,
                        max = self.limits.max_connections,
                        "MAX_CONNECTIONS reached; new connections wait"
                    );
                    last_full_warning = Some(Instant::now());
                }
                tokio::select! {
                    _ = self.graceful.cancelled() => return,
                    p = self.total.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                }
            };
            let accepted = tokio::select! {
                _ = self.graceful.cancelled() => return,
                a = self.listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = self.spec.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(mut slot) =
                self.per_address
                    .try_take(self.spec.name, peer.ip(), self.limits.max_per_address)
            else {
                tracing::info!(listener = self.spec.name, client = %peer.ip(),
                    max = self.limits.max_per_address, "refused: too many connections from this address");
                if !self.spec.implicit_tls
                    && let Some(line) = self.service.refusal(Refusal::TooManyFromAddress)
                {
                    let mut tcp = tcp;
                    self.tasks.spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&line))
                            .await;
                        let _ = tcp.shutdown().await;
                    });
                }
                continue;
            };
            slot._permit = Some(permit);
            let local = tcp.local_addr().unwrap_or(peer);
            let session = Session {
                spec: self.spec.clone(),
                service: self.service.clone(),
                tls: self.tls.clone(),
                graceful: self.graceful.clone(),
                hard: self.hard.clone(),
            };
            self.tasks.spawn(session.run(tcp, peer, local, slot));
        }
    }
}

struct Session {
    spec: Spec,
    service: Arc<dyn Service>,
    tls: Option<TlsIdentity>,
    graceful: CancellationToken,
    hard: CancellationToken,
}

impl Session {
    async fn run(
        self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        slot: Slot,
    ) {
        let hard = self.hard.clone();
        let work = async move {
            let (inner, tls_info) = if self.spec.implicit_tls {
                let Some(identity) = &self.tls else { return };
                let acceptor = tokio_rustls::TlsAcceptor::from(identity.current());
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let info = TlsInfo::of(tls.get_ref().1);
                        (Inner::Tls(Box::new(tls)), Some(info))
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(listener = self.spec.name, client = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(listener = self.spec.name, client = %peer, "TLS handshake timed out");
                        return;
                    }
                }
            } else {
                (Inner::Plain(tcp), None)
            };
            let conn = Connection {
                stream: Stream::new(inner, self.spec.idle_timeout),
                peer,
                local,
                listener: self.spec.name,
                shutdown: self.graceful.clone(),
                tls: self.tls.clone(),
                tls_info,
                _slot: slot,
            };
            self.service.serve(conn).await;
        };
        tokio::select! {
            _ = work => {}
            _ = hard.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests;
