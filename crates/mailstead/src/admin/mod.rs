//! Administration commands. Each opens the data directory's store itself, so it works with the
//! server running (SQLite serialises the writers) or stopped.

pub mod admins;
pub mod alias;
pub mod domain;
pub mod mailbox;
pub mod message;
pub mod outbound;
pub mod sieve;

use crate::paths::Paths;
use anyhow::{Context, Result, bail};
use mailstead_directory::Directory;
use mailstead_store::{Store, StoreConfig};
use std::io::{BufRead, IsTerminal};

/// Opens the directory of the configured data directory.
pub async fn open(paths: &Paths) -> Result<Directory> {
    let loaded = paths.load_config()?;
    let store = Store::open(&StoreConfig::new(&loaded.config.data_dir))
        .await
        .with_context(|| {
            format!(
                "cannot open the store in {}",
                loaded.config.data_dir.display()
            )
        })?;
    Ok(Directory::new(store))
}

/// Reads a new password: the first line of standard input with `--password-stdin`, else a
/// prompt (twice) on the terminal. Never from the command line, where `ps` would show it.
pub fn read_password(from_stdin: bool, what: &str) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        if pw.is_empty() {
            bail!("standard input held no password");
        }
        return Ok(pw.to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no terminal to ask for the password of {what}; pass it on standard input with --password-stdin"
        );
    }
    let first = rpassword::prompt_password(format!("Password for {what}: "))?;
    let second = rpassword::prompt_password("Repeat it: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Parses `y`/`n` style flags (`--imap n`).
pub fn yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "1" | "on" => Ok(true),
        "n" | "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not y or n")),
    }
}

/// Parses a quota: a size such as `1G`, `500M`, or `0` for unlimited.
pub fn size(s: &str) -> Result<i64, String> {
    mailstead_core::config::kinds::parse_size(s)
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| {
            format!("{s:?} is not a size; use bytes or a number with K, M, G or T, e.g. 1G")
        })
}

/// Asks before destroying data; `--yes` answers for scripts.
pub fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Pass --yes to confirm.");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("cancelled")
    }
}
