//! Where and how a destination is reached: the relay host or the MX hosts, and the TLS each
//! needs. Precedence, strongest first: a TLS policy map entry for the destination (mailcow's
//! TLS policy maps), DANE for an MX host with DNSSEC-signed TLSA records (RFC 7672; RFC 8461
//! §2 gives DANE precedence over MTA-STS), an MTA-STS policy in enforce mode (RFC 8461), and
//! otherwise opportunistic STARTTLS.

use crate::client::TlsMode;
use crate::dane::{Tlsa, usable};
use crate::dns::{Dns, MxAnswer};
use crate::sts::StsResolver;
use crate::tls::TlsConfigs;
use mailstead_store::{Relayhost, Store};

/// One server to try.
#[derive(Clone)]
pub struct Hop {
    pub host: String,
    /// `None`: 25 (or the static map's test port).
    pub port: Option<u16>,
    pub tls: TlsMode,
    pub auth: Option<(String, String)>,
    /// Why this TLS mode, for logs: `dane`, `mta-sts`, `policy verify`, `opportunistic`, ...
    pub tls_reason: String,
}

/// Why a destination cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Give up on these recipients (the reply for the DSN).
    Permanent(String),
    /// Try again later.
    Temporary(String),
}

/// The TLS policies of mailcow's TLS policy maps (Postfix's names).
fn policy_mode(
    policy: &str,
    tls: &TlsConfigs,
    host: &str,
) -> Result<Option<(TlsMode, String)>, PlanError> {
    let mode = match policy {
        "none" => TlsMode::Never,
        "may" => TlsMode::Opportunistic(tls.opportunistic.clone()),
        "encrypt" => TlsMode::Required(tls.opportunistic.clone()),
        "verify" | "secure" => TlsMode::Required(tls.pkix.clone()),
        // DANE policies are decided per host below.
        "dane" | "dane-only" => return Ok(None),
        other => {
            return Err(PlanError::Temporary(format!(
                "4.7.5 unknown TLS policy {other:?} for {host}; use none, may, encrypt, verify, secure, dane or dane-only"
            )));
        }
    };
    Ok(Some((mode, format!("policy {policy}"))))
}

/// DANE for a host: `Some` with a verifying configuration when it publishes usable TLSA
/// records under DNSSEC.
async fn dane_for(dns: &Dns, host: &str) -> Result<Option<TlsMode>, PlanError> {
    // RFC 7672 §2.2.1: TLSA records sit under the MX host's name; an address (a static route
    // or an address MX) has none, and asking DNS for `_25._tcp.127.0.0.1` only leaks the query.
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(None);
    }
    let records = dns
        .tlsa(&format!("_25._tcp.{host}"))
        .await
        .map_err(|e| PlanError::Temporary(format!("4.7.5 {e}")))?;
    let Some(records) = records else {
        return Ok(None);
    };
    let parsed: Vec<Tlsa> = records
        .iter()
        .filter_map(|r| Tlsa::parse_presentation(r).ok())
        .collect();
    let usable = usable(&parsed);
    if usable.is_empty() {
        // RFC 7672 §2.2: TLSA records, none usable: TLS without authentication.
        return Ok(None);
    }
    let config = TlsConfigs::dane(usable, vec![host.to_string()])
        .map_err(|e| PlanError::Temporary(format!("4.7.5 {e}")))?;
    Ok(Some(TlsMode::Required(config)))
}

/// Plans delivery to `domain` directly, or through `relay`.
pub async fn plan(
    store: &Store,
    dns: &Dns,
    tls: &TlsConfigs,
    sts: &StsResolver,
    domain: &str,
    relay: Option<&Relayhost>,
) -> Result<Vec<Hop>, PlanError> {
    if let Some(r) = relay {
        // A relay host is checked like a `secure` destination unless a policy says otherwise;
        // credentials never travel in clear.
        let policy = store.tls_policy_get(&r.hostname).await.ok().flatten();
        let (mode, reason) = match policy {
            Some(p) => policy_mode(&p.policy, tls, &r.hostname)?
                .unwrap_or((TlsMode::Required(tls.pkix.clone()), "relay host".into())),
            None => (TlsMode::Required(tls.pkix.clone()), "relay host".into()),
        };
        let auth = (!r.username.is_empty()).then(|| (r.username.clone(), r.password.clone()));
        if auth.is_some() && matches!(mode, TlsMode::Never | TlsMode::Opportunistic(_)) {
            return Err(PlanError::Temporary(format!(
                "4.7.5 relay host {} has credentials and a TLS policy that allows clear text; refusing to send them",
                r.hostname
            )));
        }
        return Ok(vec![Hop {
            host: r.hostname.clone(),
            port: Some(r.port),
            tls: mode,
            auth,
            tls_reason: reason,
        }]);
    }

    let hosts = match dns.mx(domain).await {
        Ok(MxAnswer::Hosts(h)) => h,
        // RFC 7505 §3: null MX means the domain takes no mail; bounce at once.
        Ok(MxAnswer::NullMx) => {
            return Err(PlanError::Permanent(format!(
                "556 5.1.10 {domain} does not accept mail (null MX)"
            )));
        }
        Ok(MxAnswer::NoDomain) => {
            return Err(PlanError::Permanent(format!(
                "550 5.1.2 domain {domain} does not exist"
            )));
        }
        Err(e) => return Err(PlanError::Temporary(format!("451 4.4.3 {e}"))),
    };
    let policy = store.tls_policy_get(domain).await.ok().flatten();
    let forced = match &policy {
        Some(p) => policy_mode(&p.policy, tls, domain)?,
        None => None,
    };
    let dane_only = policy.as_ref().is_some_and(|p| p.policy == "dane-only");
    let sts_policy = if forced.is_none() {
        sts.policy(domain).await
    } else {
        None
    };

    let mut hops = Vec::with_capacity(hosts.len());
    for mx in hosts {
        if let Some((mode, reason)) = &forced {
            hops.push(Hop {
                host: mx.host,
                port: mx.port,
                tls: mode.clone(),
                auth: None,
                tls_reason: reason.clone(),
            });
            continue;
        }
        if let Some(mode) = dane_for(dns, &mx.host).await? {
            hops.push(Hop {
                host: mx.host,
                port: mx.port,
                tls: mode,
                auth: None,
                tls_reason: "dane".into(),
            });
            continue;
        }
        if dane_only {
            continue;
        }
        if let Some(p) = &sts_policy
            && p.enforce
        {
            // RFC 8461 §4.1: only MX hosts the policy names, with a valid certificate.
            if p.matches_mx(&mx.host) {
                hops.push(Hop {
                    host: mx.host,
                    port: mx.port,
                    tls: TlsMode::Required(tls.pkix.clone()),
                    auth: None,
                    tls_reason: "mta-sts".into(),
                });
            }
            continue;
        }
        hops.push(Hop {
            host: mx.host,
            port: mx.port,
            tls: TlsMode::Opportunistic(tls.opportunistic.clone()),
            auth: None,
            tls_reason: "opportunistic".into(),
        });
    }
    if hops.is_empty() {
        let why = if dane_only {
            format!(
                "4.7.5 TLS policy dane-only for {domain}, but no MX host publishes usable TLSA records"
            )
        } else {
            format!("4.7.5 no MX host of {domain} matches its MTA-STS policy")
        };
        return Err(PlanError::Temporary(why));
    }
    Ok(hops)
}
