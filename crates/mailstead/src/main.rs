//! The `mailstead` program: one binary for the server (`serve`), its set-up (`init`), its
//! checks (`doctor`) and its administration (`domain`, `mailbox`, `alias`, ...). Admin commands
//! work on the data directory directly, with the server running or stopped: the server reads
//! the directory at every lookup, so a change counts at once.

mod admin;
mod cli;
mod doctor;
mod init;
mod logging;
mod output;
mod paths;
mod serve;
mod services;
mod tls_cert;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailstead: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailstead: {e:#}");
            ExitCode::FAILURE
        }
    }
}
