//! Where mail for an address goes: the lookup SMTP does at RCPT time.
//!
//! Order, as Postfix's virtual maps in mailcow apply it: an alias domain is rewritten to its
//! target domain; then the exact address is a mailbox or an alias; then `user+tag` is tried as
//! `user` (RFC 5233 sub-addressing); then the domain's catch-all (`@domain`). Aliases expand
//! recursively (an alias may point at another alias, an alias-domain address or a remote
//! address) with a depth and size limit and loop detection.

use crate::{Directory, DirectoryError};
use mailstead_core::address::Address;
use mailstead_core::event::MailboxId;
use std::collections::HashSet;

/// How deep aliases may point at aliases.
pub const MAX_ALIAS_DEPTH: usize = 10;
/// Most recipients one address may expand to.
pub const MAX_EXPANSION: usize = 1000;

/// A local mailbox that receives a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTarget {
    pub mailbox: MailboxId,
    /// The mailbox's address.
    pub address: String,
    /// The `+tag` of the address the mail was sent to, if it reached the mailbox directly.
    pub detail: Option<String>,
}

/// The outcome of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Deliver to these mailboxes and forward to these remote addresses.
    Deliver {
        local: Vec<LocalTarget>,
        remote: Vec<String>,
    },
    /// A local domain without such an address (SMTP 550 5.1.1).
    Unknown,
    /// The address exists but its mailbox, alias or domain is disabled (SMTP 550 5.2.1).
    Disabled,
    /// Not one of our domains: delivering there is relaying.
    NotLocal,
}

enum Found {
    Mailbox(LocalTarget, bool),
    Alias(Vec<String>, bool),
    Nothing,
}

impl Directory {
    /// Whether `domain` (normalised) is one of ours, directly or as an alias domain, and the
    /// domain it stands for.
    pub async fn local_domain(
        &self,
        domain: &str,
    ) -> Result<Option<(String, bool)>, DirectoryError> {
        if let Some(d) = self.store.domain_get(domain).await? {
            return Ok(Some((d.name, d.active)));
        }
        if let Some(ad) = self.store.alias_domain_get(domain).await? {
            let active = ad.active
                && self
                    .store
                    .domain_get(&ad.target)
                    .await?
                    .is_some_and(|d| d.active);
            return Ok(Some((ad.target, active)));
        }
        Ok(None)
    }

    async fn find(&self, addr: &Address, detail: Option<&str>) -> Result<Found, DirectoryError> {
        let text = addr.to_string();
        if let Some(m) = self.store.mailbox_get(&text).await? {
            let target = LocalTarget {
                mailbox: m.id,
                address: m.address,
                detail: detail.map(str::to_string),
            };
            return Ok(Found::Mailbox(target, m.active));
        }
        if let Some(a) = self.store.alias_get(&text).await? {
            return Ok(Found::Alias(a.targets, a.active));
        }
        Ok(Found::Nothing)
    }

    /// Looks an address up once, without following aliases.
    async fn lookup_one(&self, addr: &Address) -> Result<(Found, bool), DirectoryError> {
        let Some((domain, domain_active)) = self.local_domain(addr.domain()).await? else {
            return Ok((Found::Nothing, false));
        };
        let addr = addr.with_domain(&domain);
        let found = self.find(&addr, None).await?;
        if !matches!(found, Found::Nothing) {
            return Ok((found, domain_active));
        }
        let (base, detail) = addr.without_detail();
        if detail.is_some() {
            let found = self.find(&base, detail).await?;
            if !matches!(found, Found::Nothing) {
                return Ok((found, domain_active));
            }
        }
        let catch_all = format!("@{domain}");
        if let Some(a) = self.store.alias_get(&catch_all).await? {
            return Ok((Found::Alias(a.targets, a.active), domain_active));
        }
        Ok((Found::Nothing, domain_active))
    }

    /// Resolves a recipient address.
    pub async fn resolve(&self, addr: &Address) -> Result<Resolution, DirectoryError> {
        if self.local_domain(addr.domain()).await?.is_none() {
            return Ok(Resolution::NotLocal);
        }
        let mut local: Vec<LocalTarget> = Vec::new();
        let mut remote: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut any_disabled = false;
        // (address, depth); breadth-first so the nearest targets win the size limit.
        let mut queue = std::collections::VecDeque::from([(addr.clone(), 0usize)]);
        seen.insert(addr.to_string());
        while let Some((current, depth)) = queue.pop_front() {
            if local.len() + remote.len() >= MAX_EXPANSION {
                tracing::warn!(address = %addr, "alias expansion reached {MAX_EXPANSION} recipients; the rest is dropped");
                break;
            }
            if self.local_domain(current.domain()).await?.is_none() {
                remote.push(current.to_string());
                continue;
            }
            let (found, domain_active) = self.lookup_one(&current).await?;
            if !domain_active && !matches!(found, Found::Nothing) {
                any_disabled = true;
                continue;
            }
            match found {
                Found::Mailbox(target, active) => {
                    if !active {
                        any_disabled = true;
                    } else if !local.iter().any(|t| t.mailbox == target.mailbox) {
                        local.push(target);
                    }
                }
                Found::Alias(targets, active) => {
                    if !active {
                        any_disabled = true;
                        continue;
                    }
                    if depth >= MAX_ALIAS_DEPTH {
                        tracing::warn!(address = %addr, alias = %current, "aliases nested deeper than {MAX_ALIAS_DEPTH}; not followed");
                        continue;
                    }
                    for t in targets {
                        match Address::parse(&t) {
                            Ok(a) => {
                                if seen.insert(a.to_string()) {
                                    queue.push_back((a, depth + 1));
                                }
                            }
                            Err(e) => {
                                tracing::warn!(alias = %current, target = %t, error = %e, "alias target is not an address; skipped")
                            }
                        }
                    }
                }
                // An alias pointing at a local address that does not exist: nothing to deliver.
                Found::Nothing => {}
            }
        }
        if local.is_empty() && remote.is_empty() {
            return Ok(if any_disabled {
                Resolution::Disabled
            } else {
                Resolution::Unknown
            });
        }
        Ok(Resolution::Deliver { local, remote })
    }

    /// Every address a mailbox may use as its sender: its own, the aliases that deliver to it
    /// (catch-alls excepted) and their alias-domain forms. Used by the submission sender rules.
    pub async fn sender_addresses(&self, mailbox: &str) -> Result<Vec<String>, DirectoryError> {
        let Some(m) = self.store.mailbox_get(mailbox).await? else {
            return Ok(Vec::new());
        };
        let mut own = vec![m.address.clone()];
        // Aliases in any local domain that deliver to the mailbox (catch-alls excepted).
        for alias in self.store.aliases_targeting(&m.address).await? {
            if alias.active && !alias.address.starts_with('@') {
                own.push(alias.address);
            }
        }
        let alias_domains = self.store.alias_domain_list().await?;
        let mut out = own.clone();
        for addr in &own {
            if let Some((local, domain)) = addr.rsplit_once('@') {
                for ad in alias_domains
                    .iter()
                    .filter(|ad| ad.active && ad.target == domain)
                {
                    out.push(format!("{local}@{}", ad.name));
                }
            }
        }
        Ok(out)
    }
}
