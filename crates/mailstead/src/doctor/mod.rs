//! `mailstead doctor`: the checks mailcow's "Prepare your system" page asks a person to make,
//! made by the program. The configuration is valid; every port is free or held by this server
//! (and when another process holds it, which one, as `ss -tlpn` shows); the clock is
//! synchronised; there is disk and memory; the certificate covers the host name and is not
//! about to expire. The exit code is 1 when any check failed. DNS checks come later.

pub mod host;

use crate::paths::{Paths, RunFiles};
use crate::{output, tls_cert};
use anyhow::Result;
use clap::Args;
use mailstead_core::config::Config;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Skip checks by name (config, ports, clock, disk, memory, certificate, store).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn check(check: &'static str, status: Status, message: impl Into<String>) -> Check {
    Check {
        check,
        status,
        message: message.into(),
    }
}

/// The addresses a running server got, by key, from `run/listeners.json`.
fn running_binds(config: &Config) -> std::collections::HashMap<String, SocketAddr> {
    let path = RunFiles::new(config).listeners();
    let Ok(text) = std::fs::read_to_string(path) else {
        return Default::default();
    };
    let Ok(list) = serde_json::from_str::<Vec<serde_json::Value>>(&text) else {
        return Default::default();
    };
    list.iter()
        .filter_map(|l| {
            let key = l.get("key")?.as_str()?.to_string();
            let addr = l.get("address")?.as_str()?.parse().ok()?;
            Some((key, addr))
        })
        .collect()
}

fn ports(config: &Config, server_pid: Option<u32>) -> Vec<Check> {
    let mut out = Vec::new();
    let running = if server_pid.is_some() {
        running_binds(config)
    } else {
        Default::default()
    };
    for (key, mut bind) in config.listener_binds() {
        if bind.port == 0 {
            match running.get(key) {
                // A running server chose this port: check it like any other.
                Some(addr) => {
                    bind = mailstead_core::config::kinds::Bind {
                        ip: Some(addr.ip()),
                        port: addr.port(),
                    }
                }
                None => {
                    out.push(check(
                        "ports",
                        Status::Ok,
                        format!("{key}: port 0, chosen at start"),
                    ));
                    continue;
                }
            }
        }
        let holders = host::listeners_on(bind.port).unwrap_or_default();
        // Sockets on the configured address, or on every address, conflict with ours.
        let relevant: Vec<_> = holders
            .iter()
            .filter(|h| match bind.ip {
                None => true,
                Some(ip) => h.addr.ip() == ip || h.addr.ip().is_unspecified(),
            })
            .collect();
        let ours = |h: &&host::PortHolder| server_pid.is_some() && h.pid == server_pid;
        if !relevant.is_empty() && relevant.iter().all(ours) {
            out.push(check(
                "ports",
                Status::Ok,
                format!(
                    "{key}: {bind} is held by this server (pid {})",
                    server_pid.unwrap_or(0)
                ),
            ));
            continue;
        }
        if let Some(h) = relevant.iter().find(|h| !ours(h)) {
            let who = match (&h.process, h.pid, &h.cmdline) {
                (Some(p), Some(pid), Some(cmd)) => format!("{p} (pid {pid}: {cmd})"),
                (Some(p), Some(pid), None) => format!("{p} (pid {pid})"),
                _ => "a process this user may not inspect (run doctor as root to see it)".into(),
            };
            out.push(check(
                "ports",
                Status::Fail,
                format!(
                    "{key}: port {} is in use on {} by {who}; stop it or change {key}",
                    bind.port, h.addr
                ),
            ));
            continue;
        }
        let probe = SocketAddr::new(
            bind.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            bind.port,
        );
        match host::try_bind(probe) {
            Ok(()) => out.push(check("ports", Status::Ok, format!("{key}: {bind} is free"))),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => out.push(check(
                "ports",
                Status::Fail,
                format!(
                    "{key}: port {} needs root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the binary)",
                    bind.port
                ),
            )),
            Err(e) => out.push(check("ports", Status::Fail, format!("{key}: cannot bind {probe}: {e}"))),
        }
    }
    out
}

fn clock() -> Check {
    match host::clock_status() {
        Ok(c) if c.synchronized => check("clock", Status::Ok, "the clock is synchronised (NTP)"),
        Ok(c) if c.max_error_within_limit => check(
            "clock",
            Status::Warn,
            format!(
                "the kernel does not mark the clock synchronised, but its error is small ({} ms); \
                 with chrony, enable rtcsync",
                c.max_error_us / 1000
            ),
        ),
        Ok(c) => check(
            "clock",
            Status::Fail,
            format!(
                "the clock is not synchronised (kernel state {}, flags {}): TOTP codes and DKIM \
                 signatures need the right time; enable systemd-timesyncd (timedatectl set-ntp \
                 true) or chrony",
                c.state_name(),
                c.status_flags().join(",")
            ),
        ),
        Err(e) => check(
            "clock",
            Status::Warn,
            format!("cannot read the clock state: {e}"),
        ),
    }
}

fn disk(config: &Config) -> Check {
    match host::disk_space(&config.data_dir) {
        Ok(d) => {
            let free = d.available_bytes;
            let pct = (free * 100).checked_div(d.total_bytes).unwrap_or(0);
            let text = format!(
                "{} free of {} ({pct}%) for {}",
                output::human_size(free),
                output::human_size(d.total_bytes),
                config.data_dir.display()
            );
            let status = if free < GIB || pct < 5 {
                Status::Fail
            } else if free < 5 * GIB || pct < 10 {
                Status::Warn
            } else {
                Status::Ok
            };
            check("disk", status, text)
        }
        Err(e) => check(
            "disk",
            Status::Fail,
            format!("cannot measure free space: {e}"),
        ),
    }
}

fn memory() -> Check {
    match host::memory() {
        Ok(m) => {
            let text = format!(
                "{} available of {}",
                output::human_size(m.available_bytes),
                output::human_size(m.total_bytes)
            );
            let status = if m.available_bytes < 128 * MIB {
                Status::Fail
            } else if m.available_bytes < 256 * MIB {
                Status::Warn
            } else {
                Status::Ok
            };
            check("memory", status, text)
        }
        Err(e) => check("memory", Status::Warn, format!("cannot read memory: {e}")),
    }
}

fn certificate(config: &Config) -> Vec<Check> {
    let path = config.tls_cert_path();
    let info = match tls_cert::inspect(&path) {
        Ok(i) => i,
        Err(e) => return vec![check("certificate", Status::Fail, format!("{e:#}"))],
    };
    let mut out = Vec::new();
    if let Err(e) = mailstead_listener::load_server_config(&path, &config.tls_key_path()) {
        out.push(check("certificate", Status::Fail, e.to_string()));
    }
    let missing: Vec<String> = config
        .certificate_names()
        .into_iter()
        .filter(|n| !info.covers(n))
        .collect();
    if missing.is_empty() {
        out.push(check(
            "certificate",
            Status::Ok,
            format!(
                "{} covers {}",
                path.display(),
                config.certificate_names().join(", ")
            ),
        ));
    } else {
        out.push(check(
            "certificate",
            Status::Fail,
            format!(
                "{} does not cover {} (it names {})",
                path.display(),
                missing.join(", "),
                info.names.join(", ")
            ),
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let days = (info.not_after - now) / 86400;
    if info.not_after <= now {
        out.push(check(
            "certificate",
            Status::Fail,
            format!("expired on {}", output::time(info.not_after)),
        ));
    } else if days < 14 {
        out.push(check(
            "certificate",
            Status::Warn,
            format!(
                "expires in {days} days, on {}",
                output::time(info.not_after)
            ),
        ));
    } else {
        out.push(check(
            "certificate",
            Status::Ok,
            format!("valid for {days} more days"),
        ));
    }
    if info.self_signed {
        out.push(check(
            "certificate",
            Status::Warn,
            "self-signed: mail clients will warn until a certificate from a CA is installed",
        ));
    }
    out
}

async fn store(config: &Config) -> Check {
    if !config.data_dir.join("mailstead.db").exists() {
        return check(
            "store",
            Status::Warn,
            "no database yet; `mailstead init` or `serve` creates it",
        );
    }
    match mailstead_store::Store::open(&mailstead_store::StoreConfig::new(&config.data_dir)).await {
        Ok(s) => {
            let r = s.check().await;
            s.close().await;
            match r {
                Ok(()) => check(
                    "store",
                    Status::Ok,
                    "the database passes its integrity check",
                ),
                Err(e) => check("store", Status::Fail, e.to_string()),
            }
        }
        Err(e) => check(
            "store",
            Status::Fail,
            format!("cannot open the database: {e}"),
        ),
    }
}

/// The names `--skip` takes.
const CHECKS: &[&str] = &[
    "config",
    "ports",
    "clock",
    "disk",
    "memory",
    "certificate",
    "store",
];

pub async fn run(paths: &Paths, args: DoctorArgs) -> Result<ExitCode> {
    if let Some(bad) = args.skip.iter().find(|s| !CHECKS.contains(&s.as_str())) {
        anyhow::bail!(
            "--skip {bad:?} is not a check; the checks are {}",
            CHECKS.join(", ")
        );
    }
    let skip = |name: &str| args.skip.iter().any(|s| s == name);
    let mut checks = Vec::new();
    let config = match paths.load_config() {
        Ok(loaded) => {
            if !skip("config") {
                checks.push(check(
                    "config",
                    Status::Ok,
                    format!("{} is valid", paths.config.display()),
                ));
                for w in &loaded.warnings {
                    checks.push(check("config", Status::Warn, w.to_string()));
                }
            }
            Some(loaded.config)
        }
        Err(e) => {
            checks.push(check("config", Status::Fail, format!("{e:#}")));
            None
        }
    };
    if let Some(config) = &config {
        let server = RunFiles::new(config).running_pid();
        if !skip("ports") {
            checks.extend(ports(config, server));
        }
        if !skip("certificate") {
            checks.extend(certificate(config));
        }
        if !skip("disk") {
            checks.push(disk(config));
        }
        if !skip("store") {
            checks.push(store(config).await);
        }
    }
    if !skip("clock") {
        checks.push(clock());
    }
    if !skip("memory") {
        checks.push(memory());
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        output::json(&serde_json::json!({ "ok": !failed, "checks": checks }))?;
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Ok => " ok ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("[{tag}] {:<12} {}", c.check, c.message);
        }
        let (w, f) = (
            checks.iter().filter(|c| c.status == Status::Warn).count(),
            checks.iter().filter(|c| c.status == Status::Fail).count(),
        );
        println!("{} checks: {f} failed, {w} warnings", checks.len());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
