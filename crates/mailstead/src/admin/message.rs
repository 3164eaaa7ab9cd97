//! `mailstead message list|show`: what is stored in a mailbox, as `doveadm fetch` shows it in
//! Dovecot. For support and for checking a delivery without a mail client.

use super::open;
use crate::output::{self, Table};
use crate::paths::Paths;
use anyhow::{Result, bail};
use clap::Subcommand;
use std::io::Write;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// List the messages of a folder.
    List {
        address: String,
        #[arg(long, default_value = "INBOX")]
        folder: String,
        #[arg(long)]
        json: bool,
    },
    /// Print one message exactly as stored.
    Show {
        address: String,
        uid: u32,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
}

pub async fn run(paths: &Paths, cmd: MessageCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        MessageCommand::List {
            address,
            folder,
            json,
        } => {
            let m = d.mailbox(&address).await?;
            let Some(f) = store.folder_get(m.id, &folder).await? else {
                bail!("mailbox {} has no folder {folder}", m.address);
            };
            let mut rows = Vec::new();
            for msg in store.messages(f.id).await? {
                let summary = store.summary(msg.blob).await?;
                let from = summary
                    .envelope
                    .from
                    .iter()
                    .find_map(|a| match a {
                        mailstead_store::summary::EnvAddress::Mailbox { local, domain, .. } => {
                            Some(match domain {
                                Some(d) => format!("{local}@{d}"),
                                None => local.clone(),
                            })
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                rows.push(serde_json::json!({
                    "uid": msg.uid,
                    "modseq": msg.modseq,
                    "size": msg.size,
                    "flags": msg.flags.names().collect::<Vec<_>>(),
                    "keywords": msg.keywords,
                    "internal_date": msg.internal_date,
                    "from": from,
                    "subject": summary.envelope.subject.unwrap_or_default(),
                    "message_id": summary.envelope.message_id.unwrap_or_default(),
                    "blob": msg.blob.to_hex(),
                }));
            }
            if json {
                output::json(&serde_json::json!({
                    "folder": f.name,
                    "uidvalidity": f.uidvalidity,
                    "uidnext": f.uidnext,
                    "highestmodseq": f.highestmodseq,
                    "messages": rows,
                }))?;
            } else {
                let mut t = Table::new(&["UID", "SIZE", "DATE", "FROM", "SUBJECT"]);
                for r in &rows {
                    t.row(vec![
                        r["uid"].to_string(),
                        output::human_size(r["size"].as_u64().unwrap_or(0)),
                        output::time(r["internal_date"].as_i64().unwrap_or(0)),
                        r["from"].as_str().unwrap_or("").to_string(),
                        r["subject"].as_str().unwrap_or("").to_string(),
                    ]);
                }
                t.print();
            }
        }
        MessageCommand::Show {
            address,
            uid,
            folder,
        } => {
            let m = d.mailbox(&address).await?;
            let Some(f) = store.folder_get(m.id, &folder).await? else {
                bail!("mailbox {} has no folder {folder}", m.address);
            };
            let Some(msg) = store.message(f.id, uid).await? else {
                bail!(
                    "folder {folder} of {} has no message with UID {uid}",
                    m.address
                );
            };
            let raw = store.blobs().read(msg.blob).await?;
            std::io::stdout().write_all(&raw)?;
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
