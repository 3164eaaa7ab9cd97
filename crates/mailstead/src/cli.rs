//! The command line.

use crate::paths::Paths;
use crate::{admin, doctor, init, serve};
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "mailstead", version, about = "A complete mail server in one program", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The data directory; mailstead.conf is in it.
    #[arg(long, global = true, env = "DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The configuration file, if not DATA_DIR/mailstead.conf.
    #[arg(long, global = true, env = "MAILSTEAD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Global {
    pub fn paths(&self) -> Paths {
        Paths::new(self.data_dir.clone(), self.config.clone())
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the configuration, data directory, certificate and first administrator.
    Init(init::InitArgs),
    /// Run the server.
    Serve,
    /// Check the configuration and the host: ports, clock, disk, memory, certificate.
    Doctor(doctor::DoctorArgs),
    /// Check or document the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage mail domains.
    #[command(subcommand)]
    Domain(admin::domain::DomainCommand),
    /// Manage mailboxes.
    #[command(subcommand)]
    Mailbox(admin::mailbox::MailboxCommand),
    /// Manage aliases, including catch-alls (@domain).
    #[command(subcommand)]
    Alias(admin::alias::AliasCommand),
    /// Manage alias domains.
    #[command(subcommand, name = "alias-domain")]
    AliasDomain(admin::alias::AliasDomainCommand),
    /// Manage administrator accounts.
    #[command(subcommand)]
    Admin(admin::admins::AdminCommand),
    /// Look at stored messages.
    #[command(subcommand)]
    Message(admin::message::MessageCommand),
    /// The outbound queue: list, show, flush, retry, delete, hold, release.
    #[command(subcommand)]
    Queue(admin::outbound::QueueCommand),
    /// DKIM signing keys and the DNS records to publish.
    #[command(subcommand)]
    Dkim(admin::outbound::DkimCommand),
    /// Relay hosts (smarthosts) for outbound mail.
    #[command(subcommand)]
    Relayhost(admin::outbound::RelayhostCommand),
    /// TLS policies for destination domains.
    #[command(subcommand, name = "tls-policy")]
    TlsPolicy(admin::outbound::TlsPolicyCommand),
    /// Sieve filter scripts of mailboxes, and global pre- and post-filters.
    #[command(subcommand)]
    Sieve(admin::sieve::SieveCommand),
    /// The out-of-office reply of a mailbox.
    #[command(subcommand)]
    Vacation(admin::sieve::VacationCommand),
    /// Forwarding of a mailbox's mail.
    #[command(subcommand)]
    Forward(admin::sieve::ForwardCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load the configuration and report errors, warnings and notes.
    Check,
    /// Print the reference of every key (docs/configuration.md).
    Reference,
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let paths = cli.global.paths();
    match cli.command {
        Command::Init(args) => init::run(&paths, args).await,
        Command::Serve => serve::run(&paths).await,
        Command::Doctor(args) => doctor::run(&paths, args).await,
        Command::Config(ConfigCommand::Check) => {
            let loaded = paths.load_config()?;
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            for n in &loaded.notes {
                println!("note: {n}");
            }
            println!("{} is valid", loaded.config.config_path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Reference) => {
            print!("{}", mailstead_core::config::render_reference());
            Ok(ExitCode::SUCCESS)
        }
        Command::Domain(c) => admin::domain::run(&paths, c).await,
        Command::Mailbox(c) => admin::mailbox::run(&paths, c).await,
        Command::Alias(c) => admin::alias::run(&paths, c).await,
        Command::AliasDomain(c) => admin::alias::run_domain(&paths, c).await,
        Command::Admin(c) => admin::admins::run(&paths, c).await,
        Command::Message(c) => admin::message::run(&paths, c).await,
        Command::Queue(c) => admin::outbound::queue(&paths, c).await,
        Command::Dkim(c) => admin::outbound::dkim(&paths, c).await,
        Command::Relayhost(c) => admin::outbound::relayhost(&paths, c).await,
        Command::TlsPolicy(c) => admin::outbound::tls_policy(&paths, c).await,
        Command::Sieve(c) => admin::sieve::sieve(&paths, c).await,
        Command::Vacation(c) => admin::sieve::vacation(&paths, c).await,
        Command::Forward(c) => admin::sieve::forward(&paths, c).await,
    }
}
