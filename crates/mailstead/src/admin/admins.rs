//! `mailstead admin add|passwd`: administrator accounts of the web interface and API.

use super::{open, read_password};
use crate::paths::Paths;
use anyhow::{Result, bail};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Add an administrator.
    Add {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set an administrator's password (for a lost one).
    Passwd {
        #[arg(default_value = "admin")]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

pub async fn run(paths: &Paths, cmd: AdminCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    match cmd {
        AdminCommand::Add {
            username,
            password_stdin,
        } => {
            let pw = read_password(password_stdin, &username)?;
            let a = d.add_admin(&username, &pw).await?;
            println!("added administrator {}", a.username);
        }
        AdminCommand::Passwd {
            username,
            password_stdin,
        } => {
            if d.store().admin_get(&username).await?.is_none() {
                bail!("administrator {username} does not exist");
            }
            let pw = read_password(password_stdin, &username)?;
            d.set_admin_password(&username, &pw).await?;
            println!("password of administrator {username} changed");
        }
    }
    d.store().clone().close().await;
    Ok(ExitCode::SUCCESS)
}
