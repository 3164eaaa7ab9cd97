//! `mailstead sieve`, `mailstead vacation` and `mailstead forward`: a mailbox's filter scripts,
//! the admin's global pre- and post-filters, and the out-of-office reply and forwarding that
//! mailcow users set in its web interface, written as Sieve underneath.

use super::open;
use crate::output::{self, Table};
use crate::paths::Paths;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mailstead_directory::Directory;
use mailstead_sieve::generate::{self, Vacation};
use mailstead_store::{Mailbox, SievePhase};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SieveCommand {
    /// Store a script for a mailbox (checked first; an error names its line).
    Put {
        address: String,
        name: String,
        /// The script file, or - for standard input.
        file: PathBuf,
        /// Make it the active script.
        #[arg(long)]
        activate: bool,
    },
    /// Make NAME the mailbox's active script.
    Activate { address: String, name: String },
    /// Leave the mailbox without an active script.
    Deactivate { address: String },
    /// List a mailbox's scripts.
    List {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a script.
    Show { address: String, name: String },
    /// Remove a script (deactivate it first if it is active).
    Remove { address: String, name: String },
    /// Check a script file without storing it.
    Check { file: PathBuf },
    /// Global filters, run for every mailbox of a domain or of the server.
    #[command(subcommand)]
    Global(GlobalCommand),
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Scope {
    /// For the mailboxes of this domain.
    #[arg(long)]
    domain: Option<String>,
    /// For every mailbox of the server.
    #[arg(long)]
    all: bool,
}

impl Scope {
    fn key(&self) -> String {
        self.domain.as_deref().unwrap_or("").trim().to_lowercase()
    }
}

fn phase(s: &str) -> Result<SievePhase, String> {
    SievePhase::parse(&s.to_ascii_lowercase())
        .ok_or_else(|| format!("{s:?} is not a phase; use pre (before the user's script) or post"))
}

#[derive(Subcommand, Debug)]
pub enum GlobalCommand {
    /// Set a global filter from a file (- for standard input).
    Set {
        #[command(flatten)]
        scope: Scope,
        /// pre: before the user's own script; post: after it.
        #[arg(long, value_parser = phase)]
        phase: SievePhase,
        file: PathBuf,
    },
    /// Remove a global filter.
    Clear {
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_parser = phase)]
        phase: SievePhase,
    },
    /// List the global filters.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum VacationCommand {
    /// Turn the out-of-office reply on (or replace it).
    Set {
        address: String,
        #[arg(long)]
        subject: String,
        /// The reply's text.
        #[arg(
            long,
            conflicts_with = "message_file",
            required_unless_present = "message_file"
        )]
        message: Option<String>,
        /// A file holding the reply's text.
        #[arg(long)]
        message_file: Option<PathBuf>,
        /// One reply per sender in this many days.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
        /// First day of the reply (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Last day of the reply (YYYY-MM-DD).
        #[arg(long)]
        until: Option<String>,
    },
    /// Turn the out-of-office reply off.
    Clear { address: String },
    /// Print the out-of-office script.
    Show { address: String },
}

#[derive(Subcommand, Debug)]
pub enum ForwardCommand {
    /// Forward the mailbox's mail to one or more addresses.
    Set {
        address: String,
        /// Where to (repeat for more; also comma-separated).
        #[arg(long = "to", required = true, value_delimiter = ',')]
        to: Vec<String>,
        /// Keep a copy in the mailbox too.
        #[arg(long)]
        keep: bool,
    },
    /// Stop forwarding.
    Clear { address: String },
    /// Print the forwarding script.
    Show { address: String },
}

async fn mailbox(d: &Directory, address: &str) -> Result<Mailbox> {
    let address = address.trim().to_lowercase();
    d.store()
        .mailbox_get(&address)
        .await?
        .with_context(|| format!("there is no mailbox {address}"))
}

fn read_script(file: &PathBuf) -> Result<String> {
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the script from standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    if let Err(e) = mailstead_sieve::compile(&bytes) {
        bail!("{} is not a usable script: {e}", file.display());
    }
    String::from_utf8(bytes).context("the script is not UTF-8")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        bail!("{name:?} is not a script name: 1 to 128 characters, no control characters");
    }
    Ok(())
}

pub async fn sieve(paths: &Paths, cmd: SieveCommand) -> Result<ExitCode> {
    if let SieveCommand::Check { file } = &cmd {
        read_script(file)?;
        println!("{} is a valid script", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        SieveCommand::Put {
            address,
            name,
            file,
            activate,
        } => {
            check_name(&name)?;
            let m = mailbox(&d, &address).await?;
            let text = read_script(&file)?;
            store.sieve_put(m.id, &name, &text).await?;
            if activate {
                store.sieve_activate(m.id, Some(&name)).await?;
            }
            println!(
                "stored script {name} for {}{}",
                m.address,
                if activate { " (active)" } else { "" }
            );
        }
        SieveCommand::Activate { address, name } => {
            let m = mailbox(&d, &address).await?;
            store.sieve_activate(m.id, Some(&name)).await?;
            println!("script {name} is active for {}", m.address);
        }
        SieveCommand::Deactivate { address } => {
            let m = mailbox(&d, &address).await?;
            store.sieve_activate(m.id, None).await?;
            println!("{} has no active script", m.address);
        }
        SieveCommand::List { address, json } => {
            let m = mailbox(&d, &address).await?;
            let list = store.sieve_list(m.id).await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name, "active": s.active, "size": s.content.len(),
                            "modified": s.modified,
                        })
                    })
                    .collect();
                output::json(&rows)?;
            } else {
                let mut t = Table::new(&["NAME", "ACTIVE", "SIZE", "MODIFIED"]);
                for s in list {
                    t.row(vec![
                        s.name,
                        output::yes_no(s.active),
                        s.content.len().to_string(),
                        output::time(s.modified),
                    ]);
                }
                t.print();
            }
        }
        SieveCommand::Show { address, name } => {
            let m = mailbox(&d, &address).await?;
            let s = store
                .sieve_get(m.id, &name)
                .await?
                .with_context(|| format!("{} has no script {name}", m.address))?;
            print!("{}", s.content);
        }
        SieveCommand::Remove { address, name } => {
            let m = mailbox(&d, &address).await?;
            store.sieve_delete(m.id, &name).await?;
            println!("removed script {name} of {}", m.address);
        }
        SieveCommand::Check { .. } => {}
        SieveCommand::Global(g) => global(&d, g).await?,
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn global(d: &Directory, cmd: GlobalCommand) -> Result<()> {
    let store = d.store();
    match cmd {
        GlobalCommand::Set { scope, phase, file } => {
            let key = scope.key();
            if !key.is_empty() && store.domain_get(&key).await?.is_none() {
                bail!("there is no domain {key}");
            }
            let text = read_script(&file)?;
            store.sieve_global_set(&key, phase, Some(&text)).await?;
            println!("set the {} filter of {}", phase.as_str(), describe(&key));
        }
        GlobalCommand::Clear { scope, phase } => {
            let key = scope.key();
            store.sieve_global_set(&key, phase, None).await?;
            println!(
                "cleared the {} filter of {}",
                phase.as_str(),
                describe(&key)
            );
        }
        GlobalCommand::List { json } => {
            let list = store.sieve_globals().await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "scope": if g.scope.is_empty() { "*" } else { g.scope.as_str() },
                            "phase": g.phase.as_str(), "size": g.content.len(),
                            "modified": g.modified,
                        })
                    })
                    .collect();
                output::json(&rows)?;
            } else {
                let mut t = Table::new(&["SCOPE", "PHASE", "SIZE", "MODIFIED"]);
                for g in list {
                    t.row(vec![
                        describe(&g.scope),
                        g.phase.as_str().to_string(),
                        g.content.len().to_string(),
                        output::time(g.modified),
                    ]);
                }
                t.print();
            }
        }
    }
    Ok(())
}

fn describe(scope: &str) -> String {
    if scope.is_empty() {
        "every domain".into()
    } else {
        scope.to_string()
    }
}

pub async fn vacation(paths: &Paths, cmd: VacationCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        VacationCommand::Set {
            address,
            subject,
            message,
            message_file,
            days,
            from,
            until,
        } => {
            for (flag, date) in [("--from", &from), ("--until", &until)] {
                if let Some(date) = date
                    && !generate::is_date(date)
                {
                    bail!("{flag} {date:?} is not a date; use YYYY-MM-DD");
                }
            }
            if let (Some(f), Some(u)) = (&from, &until)
                && f > u
            {
                bail!("--from {f} is after --until {u}");
            }
            let message = match (message, message_file) {
                (Some(m), _) => m,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
                (None, None) => bail!("give --message or --message-file"),
            };
            let m = mailbox(&d, &address).await?;
            let script = generate::vacation(&Vacation {
                subject,
                message,
                days,
                from,
                until,
            });
            mailstead_sieve::compile(script.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write the reply as Sieve: {e}"))?;
            store.sieve_put(m.id, "_vacation", &script).await?;
            // A new reply goes to everyone again, including those who had the last one.
            store.sieve_forget(m.id, "id").await?;
            println!("out-of-office reply on for {}", m.address);
        }
        VacationCommand::Clear { address } => {
            let m = mailbox(&d, &address).await?;
            match store.sieve_delete(m.id, "_vacation").await {
                Ok(()) | Err(mailstead_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            println!("out-of-office reply off for {}", m.address);
        }
        VacationCommand::Show { address } => show(&d, &address, "_vacation", "reply").await?,
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn forward(paths: &Paths, cmd: ForwardCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        ForwardCommand::Set { address, to, keep } => {
            let to: Vec<String> = to
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if to.len() > mailstead_sieve::filter::MAX_REDIRECTS {
                bail!(
                    "at most {} forwarding addresses",
                    mailstead_sieve::filter::MAX_REDIRECTS
                );
            }
            for t in &to {
                if mailstead_core::address::Address::parse(t).is_err() {
                    bail!("--to {t:?} is not a mail address");
                }
            }
            let m = mailbox(&d, &address).await?;
            if to.iter().any(|t| t.eq_ignore_ascii_case(&m.address)) {
                bail!("{} cannot forward to itself", m.address);
            }
            let script = generate::forward(&to, keep);
            mailstead_sieve::compile(script.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write the forwarding as Sieve: {e}"))?;
            store.sieve_put(m.id, "_forward", &script).await?;
            println!(
                "{} forwards to {}{}",
                m.address,
                to.join(", "),
                if keep { ", keeping a copy" } else { "" }
            );
        }
        ForwardCommand::Clear { address } => {
            let m = mailbox(&d, &address).await?;
            match store.sieve_delete(m.id, "_forward").await {
                Ok(()) | Err(mailstead_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            println!("{} no longer forwards", m.address);
        }
        ForwardCommand::Show { address } => show(&d, &address, "_forward", "forwarding").await?,
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn show(d: &Directory, address: &str, name: &str, what: &str) -> Result<()> {
    let m = mailbox(d, address).await?;
    match d.store().sieve_get(m.id, name).await? {
        Some(s) => print!("{}", s.content),
        None => println!("{} has no {what}", m.address),
    }
    Ok(())
}
