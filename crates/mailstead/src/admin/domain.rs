//! `mailstead domain add|list|show|edit|remove`.

use super::{open, size, yes_no};
use crate::output::{self, Table, quota};
use crate::paths::Paths;
use anyhow::Result;
use clap::{Args, Subcommand};
use mailstead_store::{DomainPatch, NewDomain};
use std::process::ExitCode;

/// mailcow's domain limits. Sizes take K/M/G/T; 0 means unlimited.
#[derive(Args, Debug, Default)]
pub struct LimitArgs {
    /// Most mailboxes (mailcow default 10).
    #[arg(long, value_name = "N")]
    max_mailboxes: Option<i64>,
    /// Most aliases (mailcow default 400).
    #[arg(long, value_name = "N")]
    max_aliases: Option<i64>,
    /// Quota of a new mailbox when none is given (default 3G).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    default_quota: Option<i64>,
    /// Largest quota of one mailbox (default 10G).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    max_quota: Option<i64>,
    /// Sum of all mailbox quotas (default 10G).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    total_quota: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Add a domain.
    Add {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        #[arg(long)]
        description: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        inactive: bool,
        #[arg(long)]
        json: bool,
    },
    /// List domains with their usage.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one domain, its limits and usage.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a domain's limits, description or state.
    Edit {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_parser = yes_no, value_name = "y|n")]
        active: Option<bool>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a domain, its aliases and alias domains (it must have no mailboxes).
    Remove {
        name: String,
        /// Do not ask, even when aliases or alias domains go with it.
        #[arg(long)]
        yes: bool,
    },
}

async fn show(d: &mailstead_directory::Directory, name: &str, json: bool) -> Result<()> {
    let domain = d.domain(name).await?;
    let usage = d.store().domain_usage(&domain.name).await?;
    if json {
        return output::json(&serde_json::json!({ "domain": domain, "usage": usage }));
    }
    let limit = |n: i64| {
        if n == 0 {
            "unlimited".to_string()
        } else {
            n.to_string()
        }
    };
    output::fields(&[
        ("domain", domain.name.clone()),
        ("description", domain.description.clone()),
        ("active", output::yes_no(domain.active)),
        (
            "mailboxes",
            format!("{} of {}", usage.mailboxes, limit(domain.max_mailboxes)),
        ),
        (
            "aliases",
            format!("{} of {}", usage.aliases, limit(domain.max_aliases)),
        ),
        ("default quota", quota(domain.default_quota)),
        ("max quota", quota(domain.max_quota)),
        (
            "total quota",
            format!(
                "{} assigned of {}",
                output::human_size(usage.quota_assigned.max(0) as u64),
                quota(domain.total_quota)
            ),
        ),
        ("stored", output::human_size(usage.bytes_used.max(0) as u64)),
        ("created", output::time(domain.created)),
    ]);
    Ok(())
}

pub async fn run(paths: &Paths, cmd: DomainCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    match cmd {
        DomainCommand::Add {
            name,
            limits,
            description,
            inactive,
            json,
        } => {
            let mut new = NewDomain::with_defaults(&name);
            new.description = description.unwrap_or_default();
            new.active = !inactive;
            if let Some(v) = limits.max_mailboxes {
                new.max_mailboxes = v
            }
            if let Some(v) = limits.max_aliases {
                new.max_aliases = v
            }
            if let Some(v) = limits.default_quota {
                new.default_quota = v
            }
            if let Some(v) = limits.max_quota {
                new.max_quota = v
            }
            if let Some(v) = limits.total_quota {
                new.total_quota = v
            }
            let created = d.add_domain(new).await?;
            if json {
                output::json(&created)?;
            } else {
                println!("added domain {}", created.name);
            }
        }
        DomainCommand::List { json } => {
            let domains = d.store().domain_list().await?;
            let mut rows = Vec::new();
            for dom in domains {
                let usage = d.store().domain_usage(&dom.name).await?;
                rows.push((dom, usage));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(d, u)| serde_json::json!({ "domain": d, "usage": u }))
                    .collect();
                return output::json(&list).map(|()| ExitCode::SUCCESS);
            }
            let mut t = Table::new(&["DOMAIN", "MAILBOXES", "ALIASES", "QUOTA ASSIGNED", "ACTIVE"]);
            for (dom, u) in rows {
                t.row(vec![
                    dom.name,
                    format!("{}/{}", u.mailboxes, dom.max_mailboxes),
                    format!("{}/{}", u.aliases, dom.max_aliases),
                    format!(
                        "{}/{}",
                        mailstead_core::config::kinds::format_size(u.quota_assigned.max(0) as u64),
                        quota(dom.total_quota)
                    ),
                    output::yes_no(dom.active),
                ]);
            }
            t.print();
        }
        DomainCommand::Show { name, json } => show(&d, &name, json).await?,
        DomainCommand::Edit {
            name,
            limits,
            description,
            active,
            json,
        } => {
            let patch = DomainPatch {
                description,
                max_mailboxes: limits.max_mailboxes,
                max_aliases: limits.max_aliases,
                default_quota: limits.default_quota,
                max_quota: limits.max_quota,
                total_quota: limits.total_quota,
                active,
            };
            let updated = d.edit_domain(&name, patch).await?;
            if json {
                output::json(&updated)?;
            } else {
                println!("updated domain {}", updated.name);
            }
        }
        DomainCommand::Remove { name, yes } => {
            let domain = d.domain(&name).await?;
            let usage = d.store().domain_usage(&domain.name).await?;
            let alias_domains = d
                .store()
                .alias_domain_list()
                .await?
                .into_iter()
                .filter(|a| a.target == domain.name)
                .count();
            if usage.mailboxes == 0 && (usage.aliases > 0 || alias_domains > 0) {
                super::confirm(
                    yes,
                    &format!(
                        "Remove domain {} with its {} alias(es) and {} alias domain(s)?",
                        domain.name, usage.aliases, alias_domains
                    ),
                )?;
            }
            d.remove_domain(&name).await?;
            println!("removed domain {}", name.to_lowercase());
        }
    }
    d.store().clone().close().await;
    Ok(ExitCode::SUCCESS)
}
