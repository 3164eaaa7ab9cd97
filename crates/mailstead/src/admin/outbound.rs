//! Outbound administration: `mailstead queue ...` (Postfix's mailq, postqueue and postsuper),
//! `mailstead dkim ...` (mailcow's DKIM page), `mailstead relayhost ...` and
//! `mailstead tls-policy ...` (mailcow's relay hosts and TLS policy maps).

use super::{open, read_password};
use crate::output::{self, Table};
use crate::paths::Paths;
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Subcommand;
use mailstead_store::{DkimKey, DomainRelay, RcptState};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List queued messages (like mailq).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one queued message and the state of each recipient.
    Show {
        qid: String,
        #[arg(long)]
        json: bool,
    },
    /// Try every waiting message now (like postqueue -f).
    Flush,
    /// Try one message now.
    Retry { qid: String },
    /// Delete a message without delivering it (like postsuper -d).
    Delete { qid: String },
    /// Stop delivery attempts for a message (like postsuper -h).
    Hold { qid: String },
    /// Resume delivery attempts (like postsuper -H).
    Release { qid: String },
}

#[derive(Subcommand, Debug)]
pub enum DkimCommand {
    /// Create a signing key for a domain (replacing an older one) and print its DNS record.
    Add {
        domain: String,
        /// DNS selector (mailcow's default: dkim).
        #[arg(long, default_value = "dkim")]
        selector: String,
        /// rsa-2048 (mailcow's default), rsa-3072, rsa-4096 or ed25519.
        #[arg(long, default_value = "rsa-2048")]
        algorithm: String,
    },
    /// Print the TXT record to publish for a domain's key.
    Show {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// List domains with keys.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a domain's key (its mail is no longer signed).
    Remove { domain: String },
}

#[derive(Subcommand, Debug)]
pub enum RelayhostCommand {
    /// Add a relay host: HOST[:PORT] (default port 587 when a user is given, else 25).
    Add {
        host: String,
        /// User name for AUTH; the password is read from stdin or asked for.
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        /// Use it for every domain without a relay host of its own.
        #[arg(long)]
        default: bool,
    },
    /// List relay hosts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a relay host.
    Remove { id: i64 },
    /// Send a domain's mail through a relay host: its id, `none` (directly, even when there
    /// is a default relay host) or `default` (through the default relay host, if any).
    Use { domain: String, id: String },
    /// Set or clear (`none`) the default relay host.
    Default { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TlsPolicyCommand {
    /// Set the TLS policy for a destination domain: none, may, encrypt, verify, secure, dane,
    /// dane-only.
    Set { dest: String, policy: String },
    /// List TLS policies.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a destination's policy.
    Remove { dest: String },
}

fn state(s: RcptState) -> &'static str {
    match s {
        RcptState::Waiting => "waiting",
        RcptState::Delivered => "delivered",
        RcptState::Failed => "failed",
        RcptState::Expired => "expired",
    }
}

pub async fn queue(paths: &Paths, cmd: QueueCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        QueueCommand::List { json } => {
            let list = store.queue_list().await?;
            if json {
                output::json(&list)?;
            } else if list.is_empty() {
                println!("the queue is empty");
            } else {
                let mut t = Table::new(&[
                    "QUEUE ID",
                    "SIZE",
                    "ARRIVED",
                    "SENDER",
                    "WAITING",
                    "HELD",
                    "LAST ERROR",
                ]);
                for m in &list {
                    let waiting: Vec<&str> = m
                        .rcpts
                        .iter()
                        .filter(|r| r.state == RcptState::Waiting)
                        .map(|r| r.address.as_str())
                        .collect();
                    let error = m
                        .rcpts
                        .iter()
                        .filter_map(|r| r.last_error.as_deref())
                        .next_back()
                        .unwrap_or("");
                    t.row(vec![
                        m.qid.clone(),
                        output::human_size(m.size),
                        output::time(m.created),
                        if m.sender.is_empty() {
                            "<>".into()
                        } else {
                            m.sender.clone()
                        },
                        waiting.join(","),
                        output::yes_no(m.held),
                        error.chars().take(60).collect(),
                    ]);
                }
                t.print();
                println!("{} message(s)", list.len());
            }
        }
        QueueCommand::Show { qid, json } => {
            let Some(m) = store.queue_get(&qid).await? else {
                bail!("queue entry {qid} does not exist")
            };
            if json {
                output::json(&m)?;
            } else {
                output::fields(&[
                    ("queue id", m.qid.clone()),
                    (
                        "sender",
                        if m.sender.is_empty() {
                            "<>".into()
                        } else {
                            m.sender.clone()
                        },
                    ),
                    ("size", output::human_size(m.size)),
                    ("arrived", output::time(m.created)),
                    ("held", output::yes_no(m.held)),
                    ("submitted by", m.auth_user.clone().unwrap_or_default()),
                ]);
                let mut t = Table::new(&[
                    "RECIPIENT",
                    "STATE",
                    "ATTEMPTS",
                    "NEXT ATTEMPT",
                    "LAST RESULT",
                ]);
                for r in &m.rcpts {
                    t.row(vec![
                        r.address.clone(),
                        state(r.state).into(),
                        r.attempts.to_string(),
                        if r.state == RcptState::Waiting {
                            output::time(r.next_attempt)
                        } else {
                            String::new()
                        },
                        r.diagnostic
                            .clone()
                            .or(r.last_error.clone())
                            .unwrap_or_default(),
                    ]);
                }
                t.print();
            }
        }
        QueueCommand::Flush => {
            let n = store.queue_retry_now(None).await?;
            println!("{n} recipient(s) will be tried now");
        }
        QueueCommand::Retry { qid } => {
            if store.queue_get(&qid).await?.is_none() {
                bail!("queue entry {qid} does not exist");
            }
            let n = store.queue_retry_now(Some(&qid)).await?;
            println!("{n} recipient(s) of {qid} will be tried now");
        }
        QueueCommand::Delete { qid } => {
            store.queue_delete(&qid).await?;
            println!("deleted {qid}");
        }
        QueueCommand::Hold { qid } => {
            store.queue_hold(&qid, true).await?;
            println!("{qid} is held");
        }
        QueueCommand::Release { qid } => {
            store.queue_hold(&qid, false).await?;
            println!("{qid} is released");
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The DNS record of a key (RFC 6376 §3.6.1; Ed25519 keys per RFC 8463).
fn txt_record(k: &DkimKey) -> (String, String) {
    let kind = if k.algorithm == "ed25519" {
        "ed25519"
    } else {
        "rsa"
    };
    (
        format!("{}._domainkey.{}", k.selector, k.domain),
        format!("v=DKIM1; k={kind}; p={}", k.public_key),
    )
}

/// The value as a zone file wants it: strings of at most 255 bytes (RFC 1035 §3.3.14).
fn zone_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn generate(domain: &str, selector: &str, algorithm: &str) -> Result<DkimKey> {
    use rcgen::{KeyPair, PublicKeyData, RsaKeySize};
    let (key, public) = match algorithm {
        "ed25519" => {
            let k = KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .context("cannot generate an Ed25519 key")?;
            let public = base64::engine::general_purpose::STANDARD.encode(k.public_key_raw());
            (k, public)
        }
        "rsa-2048" | "rsa-3072" | "rsa-4096" => {
            let size = match algorithm {
                "rsa-3072" => RsaKeySize::_3072,
                "rsa-4096" => RsaKeySize::_4096,
                _ => RsaKeySize::_2048,
            };
            let k = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
                .context("cannot generate an RSA key")?;
            let public =
                base64::engine::general_purpose::STANDARD.encode(k.subject_public_key_info());
            (k, public)
        }
        other => {
            bail!("{other:?} is not a DKIM algorithm; use rsa-2048, rsa-3072, rsa-4096 or ed25519")
        }
    };
    Ok(DkimKey {
        domain: domain.to_string(),
        selector: selector.to_string(),
        algorithm: algorithm.to_string(),
        private_key: key.serialize_pem(),
        public_key: public,
        created: 0,
    })
}

pub async fn dkim(paths: &Paths, cmd: DkimCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        DkimCommand::Add {
            domain,
            selector,
            algorithm,
        } => {
            let domain = d.domain(&domain).await?.name;
            if selector.is_empty()
                || !selector
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                bail!("{selector:?} is not a DNS selector: use letters, digits, - and _");
            }
            let key = generate(&domain, &selector, &algorithm)?;
            let key = store.dkim_set(key).await?;
            let (name, value) = txt_record(&key);
            println!(
                "DKIM key for {domain} created ({algorithm}, selector {selector}). Publish this TXT record:"
            );
            println!("{name}. IN TXT {}", zone_strings(&value));
        }
        DkimCommand::Show { domain, json } => {
            let domain = domain.to_lowercase();
            let Some(key) = store.dkim_get(&domain).await? else {
                bail!(
                    "domain {domain} has no DKIM key; create one with `mailstead dkim add {domain}`"
                )
            };
            let (name, value) = txt_record(&key);
            if json {
                output::json(
                    &serde_json::json!({ "domain": key.domain, "selector": key.selector, "algorithm": key.algorithm, "name": name, "type": "TXT", "value": value }),
                )?;
            } else {
                output::fields(&[
                    ("name", name.clone()),
                    ("type", "TXT".into()),
                    ("value", value.clone()),
                ]);
                println!();
                println!("zone file line:");
                println!("{name}. IN TXT {}", zone_strings(&value));
            }
        }
        DkimCommand::List { json } => {
            let keys = store.dkim_list().await?;
            if json {
                output::json(&keys)?;
            } else {
                let mut t = Table::new(&["DOMAIN", "SELECTOR", "ALGORITHM", "CREATED"]);
                for k in keys {
                    t.row(vec![
                        k.domain,
                        k.selector,
                        k.algorithm,
                        output::time(k.created),
                    ]);
                }
                t.print();
            }
        }
        DkimCommand::Remove { domain } => {
            store.dkim_delete(&domain.to_lowercase()).await?;
            println!("removed the DKIM key of {}", domain.to_lowercase());
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn optional_id(s: &str) -> Result<Option<i64>> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        anyhow::anyhow!("{s:?} is not a relay host id (see `mailstead relayhost list`) or none")
    })
}

pub async fn relayhost(paths: &Paths, cmd: RelayhostCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        RelayhostCommand::Add {
            host,
            username,
            password_stdin,
            default,
        } => {
            let (name, port) = match host.trim_start_matches('[').rsplit_once(':') {
                Some((h, p)) => (
                    h.trim_end_matches(']').to_string(),
                    p.parse::<u16>()
                        .map_err(|_| anyhow::anyhow!("{p:?} is not a port"))?,
                ),
                None => (
                    host.trim_matches(['[', ']']).to_string(),
                    if username.is_some() { 587 } else { 25 },
                ),
            };
            if !mailstead_core::config::kinds::is_valid_hostname(&name)
                && name.parse::<std::net::IpAddr>().is_err()
            {
                bail!("{name:?} is not a host name or address");
            }
            let password = match &username {
                Some(u) => read_password(password_stdin, u)?,
                None => String::new(),
            };
            let r = store
                .relayhost_create(&name, port, username.as_deref().unwrap_or(""), &password)
                .await?;
            if default {
                store.relayhost_set_default(Some(r.id)).await?;
            }
            println!(
                "added relay host {} ({}:{}){}",
                r.id,
                r.hostname,
                r.port,
                if default { ", the default" } else { "" }
            );
        }
        RelayhostCommand::List { json } => {
            let list = store.relayhost_list().await?;
            let default = store.relayhost_default().await?;
            if json {
                output::json(&serde_json::json!({ "default": default, "relayhosts": list }))?;
            } else {
                let mut t = Table::new(&["ID", "HOST", "PORT", "USER", "DEFAULT"]);
                for r in list {
                    t.row(vec![
                        r.id.to_string(),
                        r.hostname,
                        r.port.to_string(),
                        r.username,
                        output::yes_no(default == Some(r.id)),
                    ]);
                }
                t.print();
            }
        }
        RelayhostCommand::Remove { id } => {
            store.relayhost_delete(id).await?;
            println!("removed relay host {id}");
        }
        RelayhostCommand::Use { domain, id } => {
            let domain = d.domain(&domain).await?.name;
            let choice = if id.eq_ignore_ascii_case("default") {
                DomainRelay::Default
            } else {
                optional_id(&id)?.map_or(DomainRelay::Direct, DomainRelay::Host)
            };
            store.domain_set_relayhost(&domain, choice).await?;
            match choice {
                DomainRelay::Host(id) => {
                    println!("mail from {domain} goes through relay host {id}")
                }
                DomainRelay::Direct => println!("mail from {domain} is sent directly"),
                DomainRelay::Default => {
                    println!("mail from {domain} goes through the default relay host, if any")
                }
            }
        }
        RelayhostCommand::Default { id } => {
            let id = optional_id(&id)?;
            store.relayhost_set_default(id).await?;
            match id {
                Some(id) => println!("relay host {id} is the default"),
                None => println!("no default relay host"),
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn tls_policy(paths: &Paths, cmd: TlsPolicyCommand) -> Result<ExitCode> {
    let d = open(paths).await?;
    let store = d.store().clone();
    match cmd {
        TlsPolicyCommand::Set { dest, policy } => {
            const POLICIES: &[&str] = &[
                "none",
                "may",
                "encrypt",
                "verify",
                "secure",
                "dane",
                "dane-only",
            ];
            let policy = policy.to_lowercase();
            if !POLICIES.contains(&policy.as_str()) {
                bail!(
                    "{policy:?} is not a TLS policy; use one of {}",
                    POLICIES.join(", ")
                );
            }
            let dest = mailstead_core::address::normalize_domain(&dest)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.tls_policy_set(&dest, &policy, "").await?;
            println!("TLS policy for {dest}: {policy}");
        }
        TlsPolicyCommand::List { json } => {
            let list = store.tls_policy_list().await?;
            if json {
                output::json(&list)?;
            } else {
                let mut t = Table::new(&["DESTINATION", "POLICY"]);
                for p in list {
                    t.row(vec![p.dest, p.policy]);
                }
                t.print();
            }
        }
        TlsPolicyCommand::Remove { dest } => {
            store.tls_policy_delete(&dest.to_lowercase()).await?;
            println!("removed the TLS policy for {}", dest.to_lowercase());
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records() {
        let k = generate("example.test", "dkim", "ed25519").unwrap();
        let (name, value) = txt_record(&k);
        assert_eq!(name, "dkim._domainkey.example.test");
        assert!(value.starts_with("v=DKIM1; k=ed25519; p="));
        let r = generate("example.test", "s1", "rsa-2048").unwrap();
        let (_, value) = txt_record(&r);
        assert!(value.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "{value}");
        let zone = zone_strings(&value);
        assert!(
            zone.split("\" \"")
                .all(|part| part.trim_matches('"').len() <= 255)
        );
        assert!(generate("example.test", "x", "dsa").is_err());
    }
}
