//! `mailstead alias add|list|remove` and `mailstead alias-domain add|list|remove`.

use super::open;
use crate::output::{self, Table};
use crate::paths::Paths;
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Add an alias: ADDRESS (or @domain for a catch-all) delivers to every TARGET.
    Add {
        address: String,
        /// One or more addresses, local or remote (also comma-separated).
        #[arg(required = true, value_delimiter = ',')]
        targets: Vec<String>,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        json: bool,
    },
    /// List aliases.
    List {
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an alias.
    Remove { address: String },
}

#[derive(Subcommand, Debug)]
pub enum AliasDomainCommand {
    /// Make ALIAS an alias domain of TARGET: mail for x@ALIAS goes to x@TARGET.
    Add {
        alias: String,
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// List alias domains.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an alias domain.
    Remove { alias: String },
}

pub async fn run(paths: &Paths, cmd: AliasCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    match cmd {
        AliasCommand::Add {
            address,
            targets,
            comment,
            json,
        } => {
            let targets: Vec<String> = targets
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            let a = d.add_alias(&address, &targets, &comment).await?;
            if json {
                output::json(&a)?;
            } else {
                println!("added alias {} -> {}", a.address, a.targets.join(", "));
            }
        }
        AliasCommand::List { domain, json } => {
            let domain = domain.map(|s| s.to_lowercase());
            let list = d.store().alias_list(domain.as_deref()).await?;
            if json {
                output::json(&list)?;
            } else {
                let mut t = Table::new(&["ALIAS", "TARGETS", "ACTIVE", "COMMENT"]);
                for a in list {
                    t.row(vec![
                        a.address,
                        a.targets.join(","),
                        output::yes_no(a.active),
                        a.comment,
                    ]);
                }
                t.print();
            }
        }
        AliasCommand::Remove { address } => {
            d.remove_alias(&address).await?;
            println!("removed alias {}", address.trim().to_lowercase());
        }
    }
    d.store().clone().close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn run_domain(paths: &Paths, cmd: AliasDomainCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    match cmd {
        AliasDomainCommand::Add {
            alias,
            target,
            json,
        } => {
            let ad = d.add_alias_domain(&alias, &target).await?;
            if json {
                output::json(&ad)?;
            } else {
                println!("added alias domain {} -> {}", ad.name, ad.target);
            }
        }
        AliasDomainCommand::List { json } => {
            let list = d.store().alias_domain_list().await?;
            if json {
                output::json(&list)?;
            } else {
                let mut t = Table::new(&["ALIAS DOMAIN", "TARGET", "ACTIVE"]);
                for a in list {
                    t.row(vec![a.name, a.target, output::yes_no(a.active)]);
                }
                t.print();
            }
        }
        AliasDomainCommand::Remove { alias } => {
            d.remove_alias_domain(&alias).await?;
            println!("removed alias domain {}", alias.trim().to_lowercase());
        }
    }
    d.store().clone().close().await;
    Ok(ExitCode::SUCCESS)
}
