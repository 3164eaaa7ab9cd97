//! Name resolution for outbound mail: MX with RFC 5321 §5.1's rules, addresses, TXT (MTA-STS)
//! and DNSSEC-validated TLSA (DANE), through hickory-resolver.
//!
//! `DNS_STATIC_MAP` names a file of static answers that take precedence over real DNS, one per
//! line: `NAME MX PREFERENCE HOST[:PORT]`, `NAME A ADDRESS[:PORT]`, `NAME AAAA ADDRESS`,
//! `NAME TXT "TEXT"`, `NAME TLSA USAGE SELECTOR MATCHING HEX`. It is a testing aid: a name that
//! is listed, or whose parent is, is answered from the file alone, so tests never ask real DNS.
//! The `:PORT` is the test-only extension that sends "port 25" elsewhere on loopback; static
//! TLSA answers count as DNSSEC-validated.

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// A mail exchanger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    pub host: String,
    /// Test-only: a port other than 25, from the static map.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// Hosts by preference (lowest first).
    Hosts(Vec<MxHost>),
    /// RFC 7505: the domain accepts no mail.
    NullMx,
    /// The domain does not exist.
    NoDomain,
}

/// A lookup that failed for now; retry later.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DNS lookup of {name} failed: {reason}")]
pub struct DnsError {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum StaticRecord {
    Mx(u16, String, Option<u16>),
    A(IpAddr, Option<u16>),
    Txt(String),
    Tlsa(String),
}

/// The static answers of `DNS_STATIC_MAP`.
#[derive(Clone, Debug, Default)]
pub struct StaticMap {
    names: HashMap<String, Vec<StaticRecord>>,
}

fn norm(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn host_port(s: &str) -> (String, Option<u16>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), Some(port)),
            Err(_) => (s.to_string(), None),
        },
        _ => (s.to_string(), None),
    }
}

impl StaticMap {
    /// Parses the file. Errors name the file and line.
    pub fn parse(text: &str, path: &Path) -> Result<StaticMap, String> {
        let mut names: HashMap<String, Vec<StaticRecord>> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what: &str| format!("{} line {}: {what}: {line:?}", path.display(), i + 1);
            let mut parts = line.splitn(3, char::is_whitespace);
            let (Some(name), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("expected NAME TYPE DATA"));
            };
            let rest = rest.trim();
            let record = match kind.to_ascii_uppercase().as_str() {
                "MX" => {
                    let mut f = rest.split_whitespace();
                    let (Some(pref), Some(host)) = (f.next(), f.next()) else {
                        return Err(err("MX needs PREFERENCE HOST[:PORT]"));
                    };
                    let pref: u16 = pref
                        .parse()
                        .map_err(|_| err("MX preference is not a number"))?;
                    let (host, port) = host_port(host);
                    StaticRecord::Mx(pref, norm(&host), port)
                }
                "A" | "AAAA" => {
                    let (addr, port) = match rest.parse::<SocketAddr>() {
                        Ok(sa) => (sa.ip(), Some(sa.port())),
                        Err(_) => (
                            rest.parse::<IpAddr>()
                                .map_err(|_| err("not an IP address"))?,
                            None,
                        ),
                    };
                    StaticRecord::A(addr, port)
                }
                "TXT" => StaticRecord::Txt(rest.trim_matches('"').to_string()),
                "TLSA" => StaticRecord::Tlsa(rest.to_string()),
                _ => return Err(err("type must be MX, A, AAAA, TXT or TLSA")),
            };
            names.entry(norm(name)).or_default().push(record);
        }
        Ok(StaticMap { names })
    }

    /// Whether the map answers for `name`: it or a parent is listed.
    fn covers(&self, name: &str) -> bool {
        let mut n = norm(name);
        loop {
            if self.names.contains_key(&n) {
                return true;
            }
            match n.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => n = parent.to_string(),
                _ => return false,
            }
        }
    }

    fn get(&self, name: &str) -> &[StaticRecord] {
        self.names
            .get(&norm(name))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Answers from the static map or real DNS.
pub struct Dns {
    resolver: Option<TokioResolver>,
    /// A resolver that validates DNSSEC, for TLSA only: a validating resolver for everything
    /// would lose mail to domains with broken signatures, which mailcow's unbound tolerates
    /// for non-DANE lookups just as little, but most hosts' resolvers strip signatures.
    validating: Option<TokioResolver>,
    map: StaticMap,
}

impl Dns {
    pub fn new(static_map: Option<&Path>) -> Result<Dns, String> {
        let map = match static_map {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read DNS_STATIC_MAP {}: {e}", p.display()))?;
                StaticMap::parse(&text, p)?
            }
            None => StaticMap::default(),
        };
        let resolver = TokioResolver::builder_tokio()
            .ok()
            .and_then(|b| b.build().ok());
        let validating = TokioResolver::builder_tokio().ok().and_then(|mut b| {
            b.options_mut().validate = true;
            b.build().ok()
        });
        if resolver.is_none() {
            tracing::warn!("no system DNS configuration; only DNS_STATIC_MAP answers");
        }
        Ok(Dns {
            resolver,
            validating,
            map,
        })
    }

    /// A resolver with only static answers (tests).
    pub fn with_map(map: StaticMap) -> Dns {
        Dns {
            resolver: None,
            validating: None,
            map,
        }
    }

    fn resolver(&self, name: &str) -> Result<&TokioResolver, DnsError> {
        self.resolver.as_ref().ok_or_else(|| DnsError {
            name: name.into(),
            reason: "no resolver configured".into(),
        })
    }

    /// MX hosts of a domain (RFC 5321 §5.1): by preference; the domain itself when it has no MX
    /// but has an address; [`MxAnswer::NullMx`] for RFC 7505's `MX 0 .`.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let domain = norm(domain);
        // An address literal is its own host (RFC 5321 §4.1.3, §5.1).
        if domain.starts_with('[') && domain.ends_with(']') {
            return Ok(MxAnswer::Hosts(vec![MxHost {
                preference: 0,
                host: domain,
                port: None,
            }]));
        }
        let mut hosts: Vec<MxHost> = Vec::new();
        if self.map.covers(&domain) {
            for r in self.map.get(&domain) {
                if let StaticRecord::Mx(pref, host, port) = r {
                    hosts.push(MxHost {
                        preference: *pref,
                        host: host.clone(),
                        port: *port,
                    });
                }
            }
            if hosts.is_empty() {
                let has_address = self
                    .map
                    .get(&domain)
                    .iter()
                    .any(|r| matches!(r, StaticRecord::A(..)));
                return Ok(if has_address {
                    MxAnswer::Hosts(vec![MxHost {
                        preference: 0,
                        host: domain,
                        port: None,
                    }])
                } else {
                    MxAnswer::NoDomain
                });
            }
        } else {
            let resolver = self.resolver(&domain)?;
            match resolver.mx_lookup(format!("{domain}.")).await {
                Ok(lookup) => {
                    for record in lookup.answers() {
                        if let RData::MX(mx) = &record.data {
                            hosts.push(MxHost {
                                preference: mx.preference,
                                host: norm(&mx.exchange.to_ascii()),
                                port: None,
                            });
                        }
                    }
                }
                Err(e) if e.is_nx_domain() => return Ok(MxAnswer::NoDomain),
                Err(e) if e.is_no_records_found() => {}
                Err(e) => {
                    return Err(DnsError {
                        name: domain,
                        reason: e.to_string(),
                    });
                }
            }
            if hosts.is_empty() {
                // No MX: the domain's own address records stand in (RFC 5321 §5.1).
                return match resolver.lookup_ip(format!("{domain}.")).await {
                    Ok(ips) if ips.iter().next().is_some() => Ok(MxAnswer::Hosts(vec![MxHost {
                        preference: 0,
                        host: domain,
                        port: None,
                    }])),
                    Ok(_) => Ok(MxAnswer::NoDomain),
                    Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(MxAnswer::NoDomain),
                    Err(e) => Err(DnsError {
                        name: domain,
                        reason: e.to_string(),
                    }),
                };
            }
        }
        // RFC 7505 §3: a single MX with the root as exchange means "no mail here".
        if hosts.len() == 1 && (hosts[0].host.is_empty() || hosts[0].host == ".") {
            return Ok(MxAnswer::NullMx);
        }
        hosts.retain(|h| !h.host.is_empty());
        // Equal preferences in random order spread the load (RFC 5321 §5.1).
        hosts.sort_by_key(|h| (h.preference, rand::random::<u16>()));
        Ok(MxAnswer::Hosts(hosts))
    }

    /// Addresses of a host, and a test-only port.
    pub async fn addresses(&self, host: &str) -> Result<(Vec<IpAddr>, Option<u16>), DnsError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("IPv6:")
            .parse::<IpAddr>()
        {
            return Ok((vec![ip], None));
        }
        if self.map.covers(host) {
            let mut ips = Vec::new();
            let mut port = None;
            for r in self.map.get(host) {
                if let StaticRecord::A(ip, p) = r {
                    ips.push(*ip);
                    port = port.or(*p);
                }
            }
            return Ok((ips, port));
        }
        let resolver = self.resolver(host)?;
        match resolver.lookup_ip(format!("{}.", norm(host))).await {
            Ok(ips) => Ok((ips.iter().collect(), None)),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok((Vec::new(), None)),
            Err(e) => Err(DnsError {
                name: host.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// TXT strings of a name (each record's strings joined).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        if self.map.covers(name) {
            return Ok(self
                .map
                .get(name)
                .iter()
                .filter_map(|r| match r {
                    StaticRecord::Txt(t) => Some(t.clone()),
                    _ => None,
                })
                .collect());
        }
        let resolver = self.resolver(name)?;
        match resolver.txt_lookup(format!("{}.", norm(name))).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(DnsError {
                name: name.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// TLSA records in presentation form (`3 1 1 hex`), only if DNSSEC-validated: `Ok(None)`
    /// when the zone is unsigned (no DANE), an error when the answer is bogus (RFC 7672 §2.2:
    /// a validation failure must not fall back to clear text).
    pub async fn tlsa(&self, name: &str) -> Result<Option<Vec<String>>, DnsError> {
        if self.map.covers(name) {
            let records: Vec<String> = self
                .map
                .get(name)
                .iter()
                .filter_map(|r| match r {
                    StaticRecord::Tlsa(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            return Ok((!records.is_empty()).then_some(records));
        }
        let Some(resolver) = &self.validating else {
            return Ok(None);
        };
        match resolver
            .lookup(format!("{}.", norm(name)), RecordType::TLSA)
            .await
        {
            Ok(lookup) => {
                let mut out = Vec::new();
                for r in lookup.answers() {
                    match r.proof {
                        Proof::Secure => {}
                        Proof::Bogus => {
                            return Err(DnsError {
                                name: name.into(),
                                reason: "DNSSEC validation failed".into(),
                            });
                        }
                        _ => return Ok(None),
                    }
                    if let RData::TLSA(t) = &r.data {
                        let hex: String = t.cert_data.iter().map(|b| format!("{b:02x}")).collect();
                        out.push(format!(
                            "{} {} {} {hex}",
                            u8::from(t.cert_usage),
                            u8::from(t.selector),
                            u8::from(t.matching)
                        ));
                    }
                }
                Ok((!out.is_empty()).then_some(out))
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(None),
            // A lookup error here is treated like an unsigned zone: RFC 7672 §2.2.1 asks for
            // deferral only when the zone is known to be signed, which a failed lookup hides.
            Err(e) => {
                tracing::debug!(name, error = %e, "TLSA lookup failed; no DANE for this host");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(text: &str) -> Dns {
        Dns::with_map(StaticMap::parse(text, Path::new("map")).unwrap())
    }

    #[tokio::test]
    async fn static_answers() {
        let d = dns("# test map\n\
             remote.test MX 20 mx2.remote.test\n\
             remote.test MX 10 mx1.remote.test:2526\n\
             mx1.remote.test A 127.0.0.1\n\
             mx2.remote.test A 127.0.0.2:2527\n\
             nomx.test A 127.0.0.3\n\
             null.test MX 0 .\n\
             _mta-sts.remote.test TXT \"v=STSv1; id=1\"\n\
             _25._tcp.mx1.remote.test TLSA 3 1 1 abcd\n");
        let MxAnswer::Hosts(h) = d.mx("Remote.Test.").await.unwrap() else {
            panic!()
        };
        assert_eq!(
            h[0],
            MxHost {
                preference: 10,
                host: "mx1.remote.test".into(),
                port: Some(2526)
            }
        );
        assert_eq!(h[1].host, "mx2.remote.test");
        assert_eq!(
            d.mx("nomx.test").await.unwrap(),
            MxAnswer::Hosts(vec![MxHost {
                preference: 0,
                host: "nomx.test".into(),
                port: None
            }])
        );
        assert_eq!(d.mx("null.test").await.unwrap(), MxAnswer::NullMx);
        assert_eq!(
            d.mx("sub.remote.test").await.unwrap(),
            MxAnswer::NoDomain,
            "covered by the parent: no real DNS"
        );
        assert_eq!(
            d.addresses("mx2.remote.test").await.unwrap(),
            (vec!["127.0.0.2".parse().unwrap()], Some(2527))
        );
        assert_eq!(
            d.addresses("[192.0.2.1]").await.unwrap().0,
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            d.txt("_mta-sts.remote.test").await.unwrap(),
            vec!["v=STSv1; id=1"]
        );
        assert_eq!(
            d.tlsa("_25._tcp.mx1.remote.test").await.unwrap(),
            Some(vec!["3 1 1 abcd".to_string()])
        );
        assert_eq!(d.tlsa("_25._tcp.mx2.remote.test").await.unwrap(), None);
    }

    #[test]
    fn map_errors_name_the_line() {
        let e = StaticMap::parse("a.test MX ten mx.test\n", Path::new("m.txt")).unwrap_err();
        assert_eq!(
            e,
            "m.txt line 1: MX preference is not a number: \"a.test MX ten mx.test\""
        );
        assert!(
            StaticMap::parse("a.test CNAME b\n", Path::new("m"))
                .unwrap_err()
                .contains("type must be")
        );
        assert!(
            StaticMap::parse("a.test A nope\n", Path::new("m"))
                .unwrap_err()
                .contains("not an IP address")
        );
    }
}
