//! `mailstead mailbox add|list|show|edit|passwd|remove`.

use super::{confirm, open, read_password, size, yes_no};
use crate::output::{self, Table, quota};
use crate::paths::Paths;
use anyhow::Result;
use clap::{Args, Subcommand};
use mailstead_directory::MailboxSpec;
use mailstead_store::{Access, Mailbox, MailboxPatch};
use std::process::ExitCode;

/// mailcow's per-protocol access flags.
#[derive(Args, Debug, Default)]
pub struct AccessArgs {
    #[arg(long, value_parser = yes_no, value_name = "y|n")]
    imap: Option<bool>,
    #[arg(long, value_parser = yes_no, value_name = "y|n")]
    pop3: Option<bool>,
    /// SMTP submission (sending with this account).
    #[arg(long, value_parser = yes_no, value_name = "y|n")]
    smtp: Option<bool>,
    /// ManageSieve (filters).
    #[arg(long, value_parser = yes_no, value_name = "y|n")]
    sieve: Option<bool>,
}

#[derive(Subcommand, Debug)]
pub enum MailboxCommand {
    /// Add a mailbox; its password is read from standard input or asked for.
    Add {
        address: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Quota such as 1G; 0 for unlimited; default: the domain's default quota.
        #[arg(long, value_parser = size)]
        quota: Option<i64>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Create it disabled.
        #[arg(long)]
        inactive: bool,
        #[command(flatten)]
        access: AccessArgs,
        #[arg(long)]
        json: bool,
    },
    /// List mailboxes.
    List {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one mailbox.
    Show {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a mailbox's name, quota, state or access.
    Edit {
        address: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = size)]
        quota: Option<i64>,
        #[arg(long, value_parser = yes_no, value_name = "y|n")]
        active: Option<bool>,
        #[command(flatten)]
        access: AccessArgs,
        #[arg(long)]
        json: bool,
    },
    /// Set a mailbox's password.
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a mailbox and all its mail.
    Remove {
        address: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

fn describe(m: &Mailbox) {
    let used = if m.quota > 0 {
        format!(
            "{} of {} ({}%)",
            output::human_size(m.used_bytes.max(0) as u64),
            quota(m.quota),
            m.used_bytes * 100 / m.quota
        )
    } else {
        format!(
            "{} (no quota)",
            output::human_size(m.used_bytes.max(0) as u64)
        )
    };
    output::fields(&[
        ("address", m.address.clone()),
        ("name", m.name.clone()),
        ("active", output::yes_no(m.active)),
        ("quota", quota(m.quota)),
        ("used", used),
        ("messages", m.used_messages.to_string()),
        (
            "access",
            [
                ("imap", m.access.imap),
                ("pop3", m.access.pop3),
                ("smtp", m.access.smtp),
                ("sieve", m.access.sieve),
            ]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(" "),
        ),
        ("created", output::time(m.created)),
    ]);
}

pub async fn run(paths: &Paths, cmd: MailboxCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    match cmd {
        MailboxCommand::Add {
            address,
            name,
            quota,
            password_stdin,
            inactive,
            access,
            json,
        } => {
            let password = read_password(password_stdin, &address)?;
            let defaults = Access::default();
            let spec = MailboxSpec {
                name: name.unwrap_or_default(),
                quota,
                active: !inactive,
                access: Access {
                    imap: access.imap.unwrap_or(defaults.imap),
                    pop3: access.pop3.unwrap_or(defaults.pop3),
                    smtp: access.smtp.unwrap_or(defaults.smtp),
                    sieve: access.sieve.unwrap_or(defaults.sieve),
                },
            };
            let m = d.add_mailbox(&address, &password, spec).await?;
            if json {
                output::json(&m)?;
            } else {
                println!(
                    "added mailbox {} with quota {}",
                    m.address,
                    output::quota(m.quota)
                );
            }
        }
        MailboxCommand::List { domain, json } => {
            let domain = domain.map(|s| s.to_lowercase());
            let list = d.store().mailbox_list(domain.as_deref()).await?;
            if json {
                output::json(&list)?;
            } else {
                let mut t = Table::new(&["ADDRESS", "NAME", "QUOTA", "USED", "MESSAGES", "ACTIVE"]);
                for m in list {
                    t.row(vec![
                        m.address,
                        m.name,
                        quota(m.quota),
                        output::human_size(m.used_bytes.max(0) as u64),
                        m.used_messages.to_string(),
                        output::yes_no(m.active),
                    ]);
                }
                t.print();
            }
        }
        MailboxCommand::Show { address, json } => {
            let m = d.mailbox(&address).await?;
            if json {
                output::json(&m)?;
            } else {
                describe(&m);
            }
        }
        MailboxCommand::Edit {
            address,
            name,
            quota,
            active,
            access,
            json,
        } => {
            let patch = MailboxPatch {
                name,
                quota,
                active,
                imap: access.imap,
                pop3: access.pop3,
                smtp: access.smtp,
                sieve: access.sieve,
            };
            let m = d.edit_mailbox(&address, patch).await?;
            if json {
                output::json(&m)?;
            } else {
                println!("updated mailbox {}", m.address);
            }
        }
        MailboxCommand::Passwd {
            address,
            password_stdin,
        } => {
            let m = d.mailbox(&address).await?;
            let password = read_password(password_stdin, &m.address)?;
            d.set_mailbox_password(&m.address, &password).await?;
            println!("password of {} changed", m.address);
        }
        MailboxCommand::Remove { address, yes } => {
            let m = d.mailbox(&address).await?;
            confirm(
                yes,
                &format!(
                    "Remove mailbox {} and its {} messages?",
                    m.address, m.used_messages
                ),
            )?;
            d.remove_mailbox(&m.address).await?;
            println!("removed mailbox {}", m.address);
        }
    }
    d.store().clone().close().await;
    Ok(ExitCode::SUCCESS)
}
