//! MTA-STS as the queue uses it (RFC 8461 §5): discover a domain's policy through its
//! `_mta-sts` TXT record, fetch it over HTTPS, keep it in the store for its max_age (so a
//! restart or a blocked fetch does not downgrade us), and refresh it when the record's id
//! changes.

use crate::dns::Dns;
use crate::mta_sts::{self, Mode};
use crate::runner::now;
use mailstead_store::{Store, StsPolicyRecord};
use std::sync::Arc;

/// A policy as routing needs it.
#[derive(Clone, Debug)]
pub struct StsPolicy {
    pub enforce: bool,
    pub mx: Vec<String>,
}

impl StsPolicy {
    pub fn matches_mx(&self, host: &str) -> bool {
        let policy = mta_sts::Policy {
            mode: Mode::Enforce,
            mx: self.mx.clone(),
            max_age: 0,
            id: String::new(),
        };
        policy.matches_mx(host)
    }
}

/// Resolves the MTA-STS policy of a domain.
pub struct StsResolver {
    dns: Arc<Dns>,
    store: Store,
    http: Option<reqwest::Client>,
}

/// Lets reqwest resolve `mta-sts.<domain>` through the same DNS (and static map) as mail.
struct Resolve(Arc<Dns>);

impl reqwest::dns::Resolve for Resolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let (ips, port) = dns
                .addresses(&host)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            // A static-map port (tests only) is kept by reqwest when the URL names none.
            let port = port.unwrap_or(0);
            let addrs: Vec<std::net::SocketAddr> = ips
                .into_iter()
                .map(|ip| std::net::SocketAddr::new(ip, port))
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl StsResolver {
    pub fn new(
        dns: Arc<Dns>,
        store: Store,
        extra_roots: &[rustls_pki_types::CertificateDer<'static>],
    ) -> StsResolver {
        let http = match mta_sts::client(extra_roots, Some(Arc::new(Resolve(dns.clone())))) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no HTTPS client for MTA-STS; policies are not fetched");
                None
            }
        };
        StsResolver { dns, store, http }
    }

    /// The domain's policy, if it has one (mode `none` counts as none).
    pub async fn policy(&self, domain: &str) -> Option<StsPolicy> {
        let now = now();
        let cached = self.store.sts_get(domain).await.ok().flatten();
        let fresh = cached.as_ref().filter(|c| c.fetched + c.max_age > now);
        let txt = match self.dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(t) => t,
            // Without an answer, a cached policy that has not expired still holds (§5.1).
            Err(_) => return fresh.and_then(to_policy),
        };
        let id = match mta_sts::parse_txt(&txt) {
            Ok(id) => id,
            Err(_) => return fresh.and_then(to_policy),
        };
        if let Some(c) = fresh
            && c.id == id
        {
            return to_policy(c);
        }
        let Some(http) = &self.http else {
            return fresh.and_then(to_policy);
        };
        let fetched = match mta_sts::fetch(http, domain).await {
            Ok(text) => mta_sts::parse_policy(&text, &id),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(p) => {
                let record = StsPolicyRecord {
                    domain: domain.to_string(),
                    id: p.id.clone(),
                    mode: match p.mode {
                        Mode::Enforce => "enforce",
                        Mode::Testing => "testing",
                        Mode::None => "none",
                    }
                    .into(),
                    mx: p.mx.clone(),
                    max_age: p.max_age as i64,
                    fetched: now,
                };
                if let Err(e) = self.store.sts_put(record.clone()).await {
                    tracing::warn!(domain, error = %e, "cannot cache an MTA-STS policy");
                }
                tracing::info!(domain, mode = %record.mode, "MTA-STS policy fetched");
                to_policy(&record)
            }
            Err(e) => {
                tracing::warn!(domain, error = %e, "MTA-STS policy could not be fetched");
                fresh.and_then(to_policy)
            }
        }
    }
}

fn to_policy(r: &StsPolicyRecord) -> Option<StsPolicy> {
    match r.mode.as_str() {
        "enforce" => Some(StsPolicy {
            enforce: true,
            mx: r.mx.clone(),
        }),
        // Testing: deliver as without a policy (reports would say what failed).
        "testing" => Some(StsPolicy {
            enforce: false,
            mx: r.mx.clone(),
        }),
        _ => None,
    }
}
