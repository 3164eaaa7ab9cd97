//! `mailstead init`: what mailcow's generate_config.sh does, plus the first administrator.
//! Asks for (or takes) the host name and time zone, writes a complete commented
//! `mailstead.conf` with fresh secrets, creates the data directory, a self-signed certificate
//! and the administrator, whose random password is printed once.

use crate::paths::{Paths, write_atomic};
use crate::{output, tls_cert};
use anyhow::{Context, Result, bail};
use clap::Args;
use mailstead_core::config::kinds::{Hostname, Kind, TimeZone};
use mailstead_core::config::render_conf_file;
use mailstead_directory::Directory;
use mailstead_store::{Store, StoreConfig};
use rand::Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The server's fully qualified host name, e.g. mail.example.com (asked for if missing).
    #[arg(long)]
    hostname: Option<String>,
    /// Time zone, e.g. Europe/Berlin (default: this machine's).
    #[arg(long)]
    tz: Option<String>,
    /// A development instance: unprivileged ports on 127.0.0.1 (2525, 2465, 2587, 1143, 1993,
    /// 1110, 1995, 4190, 8080, 8443) and this machine's host name, so no root is needed.
    #[arg(long)]
    dev: bool,
    /// Rewrite an existing configuration with every key listed, keeping the values it sets
    /// (mail and accounts are kept; the administrator gets a new password).
    #[arg(long)]
    force: bool,
    /// Name of the first administrator.
    #[arg(long, default_value = "admin")]
    admin: String,
    /// Print the result as JSON (including the administrator's password).
    #[arg(long)]
    json: bool,
}

/// The ports of a development instance.
pub const DEV_PORTS: &[(&str, &str)] = &[
    ("SMTP_PORT", "127.0.0.1:2525"),
    ("SMTPS_PORT", "127.0.0.1:2465"),
    ("SUBMISSION_PORT", "127.0.0.1:2587"),
    ("IMAP_PORT", "127.0.0.1:1143"),
    ("IMAPS_PORT", "127.0.0.1:1993"),
    ("POP_PORT", "127.0.0.1:1110"),
    ("POPS_PORT", "127.0.0.1:1995"),
    ("SIEVE_PORT", "127.0.0.1:4190"),
    ("HTTP_PORT", "8080"),
    ("HTTP_BIND", "127.0.0.1"),
    ("HTTPS_PORT", "8443"),
    ("HTTPS_BIND", "127.0.0.1"),
];

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// This machine's name, made fully qualified if it is not.
fn machine_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let name = if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    };
    if name.contains('.') {
        name
    } else {
        format!("{name}.localdomain")
    }
}

/// This machine's time zone, as generate_config.sh detects it.
fn machine_tz() -> String {
    if let Ok(tz) = std::fs::read_to_string("/etc/timezone") {
        let tz = tz.trim();
        if TimeZone::parse("TZ", tz).is_ok() {
            return tz.to_string();
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let s = target.to_string_lossy();
        if let Some((_, zone)) = s.split_once("zoneinfo/")
            && TimeZone::parse("TZ", zone).is_ok()
        {
            return zone.to_string();
        }
    }
    "UTC".to_string()
}

/// The values an existing configuration file sets for known keys (for `init --force`).
fn kept_values(path: &std::path::Path) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let (assignments, _) = mailstead_core::config::file::parse(&text, path);
    for a in assignments {
        if let Some(def) = mailstead_core::config::KeyDef::find(&a.key)
            && !a.value.is_empty()
            && (def.check)(def.name, &a.value).is_ok()
        {
            out.insert(def.name, a.value);
        }
    }
    out
}

fn ask(question: &str, default: &str) -> Result<String> {
    eprint!("{question} [{default}]: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        default.to_string()
    } else {
        answer.to_string()
    })
}

pub async fn run(paths: &Paths, args: InitArgs) -> Result<ExitCode> {
    if paths.config.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to rewrite it (the values it sets, mail and accounts are kept; the administrator gets a new password)",
            paths.config.display()
        );
    }
    let interactive = std::io::stdin().is_terminal() && !args.dev;
    let hostname = match (&args.hostname, args.dev, interactive) {
        (Some(h), _, _) => h.clone(),
        (None, true, _) => machine_hostname(),
        (None, false, true) => ask(
            "Mail server hostname (FQDN), as in the MX record",
            &machine_hostname(),
        )?,
        (None, false, false) => {
            bail!("give the server's host name with --hostname mail.example.com")
        }
    };
    let hostname = Hostname::parse("MAILCOW_HOSTNAME", &hostname).map_err(|reason| {
        if reason.is_empty() {
            anyhow::anyhow!("--hostname {hostname:?} is not a host name; use a fully qualified name such as mail.example.com")
        } else {
            anyhow::anyhow!("--hostname {hostname:?}: {reason}")
        }
    })?;
    let tz = match (&args.tz, interactive && args.hostname.is_none()) {
        (Some(tz), _) => tz.clone(),
        (None, true) => ask("Time zone", &machine_tz())?,
        (None, false) => machine_tz(),
    };
    TimeZone::parse("TZ", &tz).map_err(|reason| {
        anyhow::anyhow!(
            "--tz {tz:?} is not a time zone{}",
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        )
    })?;

    std::fs::create_dir_all(&paths.data_dir)
        .with_context(|| format!("cannot create {}", paths.data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&paths.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // With --force, what the old file set is kept; the command line and --dev win over it.
    let mut values: BTreeMap<&str, String> = kept_values(&paths.config);
    values.insert("MAILCOW_HOSTNAME", hostname.clone());
    values.insert("TZ", tz.clone());
    values
        .entry("SESSION_KEY")
        .or_insert_with(|| random_string(48));
    if args.dev {
        for (k, v) in DEV_PORTS {
            values.insert(k, v.to_string());
        }
    }
    let header = format!(
        "mailstead configuration, written by `mailstead init`{}.\n\
         Every key is listed with its meaning and default; mailcow's keys keep mailcow's names.\n\
         An environment variable of the same name overrides a line. Check with `mailstead doctor`.",
        if args.dev {
            " --dev (a development instance)"
        } else {
            ""
        }
    );
    write_atomic(
        &paths.config,
        render_conf_file(&header, &values).as_bytes(),
        0o600,
    )?;
    let loaded = paths
        .load_config()
        .context("the written configuration does not load back")?;
    let config = loaded.config;

    let (cert, key) = (config.tls_cert_path(), config.tls_key_path());
    let covered = tls_cert::inspect(&cert)
        .map(|i| i.covers(&hostname))
        .unwrap_or(false);
    if config.tls_cert.is_none() && (!covered || !key.exists()) {
        tls_cert::create_self_signed(&config.certificate_names(), &cert, &key)?;
    }

    let store = Store::open(&StoreConfig::new(&config.data_dir)).await?;
    let directory = Directory::new(store.clone());
    let password = random_string(20);
    if store.admin_get(&args.admin).await?.is_some() {
        directory.set_admin_password(&args.admin, &password).await?;
    } else {
        directory.add_admin(&args.admin, &password).await?;
    }
    store.close().await;

    if args.json {
        output::json(&serde_json::json!({
            "data_dir": config.data_dir,
            "config": config.config_path,
            "hostname": hostname,
            "certificate": cert,
            "admin": args.admin,
            "password": password,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let data = paths.data_dir.display();
    println!("mailstead is set up in {data}");
    output::fields(&[
        ("  configuration", config.config_path.display().to_string()),
        ("  host name", hostname.clone()),
        (
            "  certificate",
            format!("{} (self-signed until ACME is set up)", cert.display()),
        ),
        ("  administrator", args.admin.clone()),
        (
            "  password",
            format!("{password}   <- shown only now; `mailstead admin passwd` sets a new one"),
        ),
    ]);
    println!();
    println!("Next steps:");
    println!("  mailstead serve --data-dir {data}");
    println!("  mailstead domain add example.com --data-dir {data}");
    println!("  mailstead mailbox add alice@example.com --data-dir {data}");
    println!("  mailstead doctor --data-dir {data}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_are_usable_defaults() {
        assert!(Hostname::parse("H", &machine_hostname()).is_ok());
        assert!(TimeZone::parse("TZ", &machine_tz()).is_ok());
        let a = random_string(20);
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_string(20));
    }
}
