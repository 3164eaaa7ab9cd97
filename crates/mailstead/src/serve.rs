//! `mailstead serve`: every enabled service in one process. Logs one line per listener, records
//! the bound addresses in `DATA_DIR/run/listeners.json`, reloads the certificate on SIGHUP, and
//! on SIGTERM/SIGINT stops accepting, lets sessions finish within SHUTDOWN_TIMEOUT and closes
//! the store cleanly.

use crate::doctor::host;
use crate::logging;
use crate::paths::{Paths, RunFiles, write_atomic};
use crate::services::{self, ServerContext};
use anyhow::{Context, Result, bail};
use mailstead_directory::Directory;
use mailstead_listener::{Limits, Listeners, TlsIdentity, load_server_config};
use mailstead_store::{Store, StoreConfig};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// Blob files older than this without an index row are leftovers of a crash.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Explains a failed bind: which process holds the port, as `ss -tlpn` would show.
fn bind_hint(port: u16) -> String {
    match host::listeners_on(port) {
        Ok(holders) if !holders.is_empty() => {
            let who: Vec<String> = holders
                .iter()
                .map(|h| match (&h.process, h.pid) {
                    (Some(p), Some(pid)) => format!("{p} (pid {pid}) on {}", h.addr),
                    _ => format!("another process on {}", h.addr),
                })
                .collect();
            format!("; the port is held by {}", who.join(", "))
        }
        _ if port < 1024 => "; ports below 1024 need root or CAP_NET_BIND_SERVICE".into(),
        _ => String::new(),
    }
}

pub async fn run(paths: &Paths) -> Result<ExitCode> {
    let loaded = paths.load_config()?;
    let config = Arc::new(loaded.config);
    logging::init(config.log_level, config.log_format);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    for n in &loaded.notes {
        tracing::info!("{n}");
    }

    let run = RunFiles::new(&config);
    std::fs::create_dir_all(&run.dir)
        .with_context(|| format!("cannot create {}", run.dir.display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run.lock())
        .with_context(|| format!("cannot open {}", run.lock().display()))?;
    if lock.try_lock().is_err() {
        let pid = std::fs::read_to_string(run.pid()).unwrap_or_default();
        bail!(
            "another mailstead (pid {}) already serves {}",
            pid.trim(),
            config.data_dir.display()
        );
    }

    let store = Store::open(&StoreConfig::new(&config.data_dir))
        .await
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let (cert, key) = (config.tls_cert_path(), config.tls_key_path());
    let tls = TlsIdentity::load(&cert, &key).map_err(|e| {
        anyhow::anyhow!(
            "{e}; `mailstead init` creates a self-signed certificate, or set TLS_CERT and TLS_KEY"
        )
    })?;
    let ctx = ServerContext {
        config: config.clone(),
        store: store.clone(),
        directory: Directory::new(store.clone()),
        tls: tls.clone(),
    };
    let queue = services::queue(&ctx)
        .map_err(|e| anyhow::anyhow!("the outbound queue cannot start: {e}"))?;
    let queue_stop = tokio_util::sync::CancellationToken::new();
    let queue_task = tokio::spawn(queue.clone().run(queue_stop.clone()));
    raise_open_files(config.max_connections);
    let limits = Limits {
        max_connections: config.max_connections as usize,
        max_per_address: u32::try_from(config.max_connections_per_ip).unwrap_or(u32::MAX),
    };
    let listeners = Listeners::new(limits, Some(tls.clone()), config.enable_ipv6);
    let mut bound_list = Vec::new();
    for (spec, service) in services::build(&ctx).await? {
        let port = spec.bind.port;
        let bound = listeners
            .bind(spec)
            .map_err(|e| anyhow::anyhow!("{e}{}", bind_hint(port)))?;
        tracing::info!(
            listener = %bound.spec.name,
            key = %bound.spec.key,
            address = %bound.local_addr,
            tls = if bound.spec.implicit_tls { "implicit" } else { "starttls" },
            "listening"
        );
        bound_list.push(serde_json::json!({
            "name": bound.spec.name,
            "key": bound.spec.key,
            "address": bound.local_addr.to_string(),
            "port": bound.local_addr.port(),
            "implicit_tls": bound.spec.implicit_tls,
        }));
        listeners.serve(bound, service);
    }
    write_atomic(
        &run.listeners(),
        serde_json::to_string_pretty(&bound_list)?.as_bytes(),
        0o644,
    )?;
    write_atomic(
        &run.pid(),
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    )?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        hostname = %config.hostname,
        data_dir = %config.data_dir.display(),
        listeners = bound_list.len(),
        "mailstead is ready"
    );

    let sweeper = {
        let store = store.clone();
        tokio::spawn(async move {
            match store.sweep_orphan_blobs(ORPHAN_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    "removed blob files left by an interrupted write"
                ),
                Err(e) => tracing::warn!(error = %e, "orphan blob sweep failed"),
            }
        })
    };

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match load_server_config(&cert, &key) {
                Ok(c) => {
                    tls.replace(c);
                    tracing::info!(cert = %cert.display(), "certificate reloaded");
                }
                Err(e) => tracing::error!(error = %e, "certificate reload failed; keeping the old one"),
            },
        }
    }
    tracing::info!(open = listeners.open_connections(), grace = ?config.shutdown_timeout, "shutting down");
    let cut = listeners.shutdown(config.shutdown_timeout).await;
    if cut > 0 {
        tracing::warn!(
            sessions = cut,
            "sessions still open after SHUTDOWN_TIMEOUT were closed"
        );
    }
    queue_stop.cancel();
    let _ = queue_task.await;
    queue.wait_idle(config.shutdown_timeout).await;
    drop(queue);
    sweeper.abort();
    drop(listeners);
    drop(ctx);
    store.close().await;
    let _ = std::fs::remove_file(run.listeners());
    let _ = std::fs::remove_file(run.pid());
    tracing::info!("stopped");
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// Descriptors the server needs besides its connections: the database, blob files being read
/// or written, listeners, outbound connections.
const OWN_FILES: u64 = 512;

/// Raises the soft open-files limit to the hard one: every connection is a descriptor, and the
/// usual soft limit (1024, from systemd and most shells) is below MAX_CONNECTIONS. Warns when
/// even the hard limit is too low, since connections beyond it fail at accept.
fn raise_open_files(max_connections: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(max)) = (limit.current, limit.maximum)
        && current < max
    {
        limit.current = Some(max);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    let have = getrlimit(Resource::Nofile).current;
    if let Some(have) = have
        && have < max_connections.saturating_add(OWN_FILES)
    {
        tracing::warn!(
            open_files = have,
            max_connections,
            "the open-files limit is below MAX_CONNECTIONS plus {OWN_FILES}; raise it \
             (systemd: LimitNOFILE) or lower MAX_CONNECTIONS"
        );
    }
}
