//! SMTP MTA Strict Transport Security (RFC 8461): policy discovery,
//! fetching, parsing, MX matching and caching.
//!
//! The flow for a recipient domain, as the outbound queue runs it:
//!
//! 1. Look up the TXT records of `_mta-sts.{domain}` and pass them to
//!    [`parse_txt`] (RFC 8461 §3.1), which yields the policy id.
//! 2. If [`Cache::needs_fetch`] says so, [`fetch`] the policy and
//!    [`parse_policy`] it; store it with [`Cache::insert`], or record the
//!    failure with [`Cache::fetch_failed`].
//! 3. Whatever happened in steps 1 and 2, [`Cache::get`] gives the policy to
//!    apply, if any (§3.3, §5.1): a cached policy that has not expired keeps
//!    applying even when DNS or HTTPS fail, which is what stops an attacker
//!    who can block them from downgrading delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use rustls_pki_types::CertificateDer;

/// §3.3 suggests 64 KiB as the largest policy a sender accepts.
pub const MAX_POLICY_SIZE: usize = 64 * 1024;

/// §3.2 caps max_age at one year.
pub const MAX_MAX_AGE: u64 = 31_557_600;

/// §3.3 suggests a timeout of one minute for the whole fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// §3.3: after a failed fetch, wait at least five minutes before trying the
/// same policy id again, so that a struggling policy host is not hammered.
pub const RETRY_AFTER_FAILURE: i64 = 5 * 60;

/// The policy mode (§3.2, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse to deliver to an MX that fails validation.
    Enforce,
    /// Deliver anyway, but report failures (RFC 8460).
    Testing,
    /// The domain has withdrawn its policy (§8.3).
    None,
}

/// A parsed policy (§3.2) together with the id of the TXT record that
/// announced it (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns, lower-case, without trailing dot: host names, or
    /// `*.` followed by a host name.
    pub mx: Vec<String>,
    /// Seconds the policy stays valid after it was fetched.
    pub max_age: u64,
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error("no MTA-STS TXT record")]
    NoRecord,
    #[error("{0} MTA-STS TXT records where exactly one is allowed")]
    ManyRecords(usize),
    #[error("invalid MTA-STS TXT record: {0}")]
    BadRecord(&'static str),
    #[error("invalid MTA-STS policy: {0}")]
    BadPolicy(String),
    #[error("not a valid policy domain")]
    BadDomain,
    #[error("MTA-STS policy fetch failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("MTA-STS policy host answered with HTTP status {0}")]
    Status(u16),
    #[error("MTA-STS policy has media type {0:?} instead of text/plain")]
    ContentType(String),
    #[error("MTA-STS policy is larger than {MAX_POLICY_SIZE} octets")]
    TooLarge,
    #[error("MTA-STS policy is not UTF-8 text")]
    NotUtf8,
}

/// Finds the policy id in the TXT records of `_mta-sts.{domain}` (§3.1).
///
/// Each element is one record, its character-strings already joined.
/// Fields are separated by `;` with optional white space around it; empty
/// fields are tolerated, unknown fields are ignored, and of several `id`
/// fields the first counts (§3.2).
pub fn parse_txt(records: &[String]) -> Result<String, StsError> {
    // §3.1: records that do not begin with the version are discarded, and
    // anything but exactly one remaining record means "no policy".
    let candidates: Vec<&str> = records
        .iter()
        .map(String::as_str)
        .filter(|r| is_sts_record(r))
        .collect();
    let record = match candidates.as_slice() {
        [] => return Err(StsError::NoRecord),
        [one] => *one,
        many => return Err(StsError::ManyRecords(many.len())),
    };
    // §3.1 ABNF: sts-field-delim = *WSP ";" *WSP.
    let mut fields = record.split(';').map(|f| f.trim_matches([' ', '\t']));
    if fields.next() != Some("v=STSv1") {
        return Err(StsError::BadRecord("the version must be exactly v=STSv1"));
    }
    let mut id = None;
    for field in fields.filter(|f| !f.is_empty()) {
        let Some((name, value)) = field.split_once('=') else {
            return Err(StsError::BadRecord("a field without '='"));
        };
        // Field names are case-sensitive (%s strings, RFC 7405, in §3.1).
        if name == "id" && id.is_none() {
            id = Some(value);
        }
    }
    let id = id.ok_or(StsError::BadRecord("no id field"))?;
    // §3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT).
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StsError::BadRecord(
            "the id must be 1 to 32 letters or digits",
        ));
    }
    Ok(id.to_string())
}

/// §3.1: a record "begins with" `v=STSv1`, followed by the end, `;`, or
/// the white space the ABNF allows before it; `v=STSv10` is another version.
fn is_sts_record(record: &str) -> bool {
    record
        .strip_prefix("v=STSv1")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([';', ' ', '\t']))
}

/// Parses a policy body (§3.2) fetched for the TXT record with `id`.
///
/// Lines end in LF or CRLF; blank lines are skipped. Keys are
/// case-sensitive and may come in any order: the ABNF of §3.2 fixes no
/// order, so `version` need not be first. Unknown keys are ignored; of a
/// repeated key other than `mx` the first counts (§3.2).
pub fn parse_policy(text: &str, id: &str) -> Result<Policy, StsError> {
    if text.len() > MAX_POLICY_SIZE {
        return Err(StsError::TooLarge);
    }
    let bad = |why: &str| StsError::BadPolicy(why.to_string());
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    // §3.2 ABNF: sts-policy-term = LF / CRLF.
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(bad("a line without ':'"));
        };
        // §3.2 ABNF: sts-policy-field-delim = ":" *WSP, and *WSP may end
        // a field.
        let value = value.trim_matches([' ', '\t']);
        match key {
            "version" if version.is_none() => version = Some(value),
            "mode" if mode.is_none() => mode = Some(value),
            "max_age" if max_age.is_none() => max_age = Some(value),
            "mx" => mx.push(value),
            _ => {}
        }
    }

    if version.ok_or_else(|| bad("no version"))? != "STSv1" {
        return Err(bad("the version must be STSv1"));
    }
    let mode = match mode.ok_or_else(|| bad("no mode"))? {
        "enforce" => Mode::Enforce,
        "testing" => Mode::Testing,
        "none" => Mode::None,
        _ => return Err(bad("mode must be enforce, testing or none")),
    };
    // §3.2: max_age is 1*10 DIGIT, at most 31557600.
    let max_age = max_age.ok_or_else(|| bad("no max_age"))?;
    let max_age =
        if (1..=10).contains(&max_age.len()) && max_age.bytes().all(|b| b.is_ascii_digit()) {
            max_age
                .parse::<u64>()
                .ok()
                .filter(|age| *age <= MAX_MAX_AGE)
        } else {
            None
        }
        .ok_or_else(|| bad("max_age must be a number of seconds up to 31557600"))?;
    let mx = mx
        .into_iter()
        .map(|pattern| normalize_mx(pattern).ok_or_else(|| bad("an mx pattern is not a host name")))
        .collect::<Result<Vec<_>, _>>()?;
    // §3.2 (ABNF comments): mx is required at least once unless the mode
    // is none.
    if mx.is_empty() && mode != Mode::None {
        return Err(bad("no mx"));
    }
    Ok(Policy {
        mode,
        mx,
        max_age,
        id: id.to_string(),
    })
}

/// §3.2: sts-policy-mx-value = ["*."] Domain, the wildcard only as the
/// whole left-most label.
fn normalize_mx(pattern: &str) -> Option<String> {
    let lower = pattern.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    let host = lower.strip_prefix("*.").unwrap_or(lower);
    is_host_name(host).then(|| lower.to_string())
}

/// RFC 5321 §4.1.2 Domain: letters, digits and inner hyphens in labels of
/// 1 to 63 octets, at most 253 octets in all. Internationalized names must
/// come as A-labels.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Lower-case, without one trailing dot: the form names are compared in.
fn normalize_host(name: &str) -> String {
    let name = name.trim();
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Policy {
    /// Whether the MX host `host` is allowed by this policy (§4.1).
    ///
    /// A pattern matches the same name, compared without regard to case or
    /// a trailing dot; `*.example.com` matches a name with exactly one
    /// more label on the left, so `mx.example.com` but neither
    /// `example.com` nor `a.b.example.com`.
    pub fn matches_mx(&self, host: &str) -> bool {
        let host = normalize_host(host);
        if !is_host_name(&host) {
            return false;
        }
        self.mx.iter().any(|pattern| {
            let pattern = normalize_host(pattern);
            match pattern.strip_prefix("*.") {
                // §4.1: the wildcard stands for exactly one label.
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .and_then(|rest| rest.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.')),
                None => pattern == host,
            }
        })
    }
}

/// Fetches the policy body for `domain` from
/// `https://mta-sts.{domain}/.well-known/mta-sts.txt` (§3.2, §3.3) with a
/// client from [`client`].
///
/// `domain` is the policy domain in ASCII (A-labels); a trailing dot is
/// ignored. The URL names no port, as §3.2 fixes it, so HTTPS's 443 is
/// used; tests reach a server on another port through their resolver,
/// since reqwest keeps a resolver's non-zero port when the URL names none.
pub async fn fetch(client: &reqwest::Client, domain: &str) -> Result<String, StsError> {
    let domain = normalize_host(domain);
    // The name goes into a URL: anything but a host name could change
    // the host, port or path fetched.
    if !is_host_name(&domain) {
        return Err(StsError::BadDomain);
    }
    let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
    // The client's own timeout may be missing if a caller built it; §3.3
    // still wants the fetch bounded.
    let mut response = client.get(url).timeout(FETCH_TIMEOUT).send().await?;
    // §3.3: only a 200 response carries a policy. Redirects are not
    // followed (see `client`), so a 3xx ends up here as well.
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(StsError::Status(status.as_u16()));
    }
    // §3.3: the media type must be text/plain; its parameters (charset)
    // do not matter, as the body is decoded as UTF-8 in any case.
    let media = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = media.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("text/plain") {
        let shown: String = media
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        return Err(StsError::ContentType(shown));
    }
    // §3.3: a size limit on the body, checked up front when announced and
    // while reading otherwise, so an endless body is never buffered.
    if response
        .content_length()
        .is_some_and(|len| len > MAX_POLICY_SIZE as u64)
    {
        return Err(StsError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_POLICY_SIZE {
            return Err(StsError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| StsError::NotUtf8)
}

/// An HTTPS client for [`fetch`].
///
/// Certificates are validated against the platform's roots plus
/// `extra_roots`, with the aws-lc-rs provider; `resolver` replaces the
/// system resolver when given (a DNSSEC-validating one, or a test's).
pub fn client(
    extra_roots: &[CertificateDer<'static>],
    resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
) -> Result<reqwest::Client, StsError> {
    let roots = extra_roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = reqwest::Client::builder()
        // §3.3: "HTTP 3xx redirects MUST NOT be followed".
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        // §3.3: a timeout, one minute as suggested, for the whole fetch.
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        // A proxy would bypass `resolver`; §3.3 also forbids HTTP caching,
        // which a proxy might do (this client itself never caches).
        .no_proxy()
        .referer(false)
        // A policy host is visited again only when its id changes or the
        // policy expires, so idle connections would only hold sockets open.
        .pool_max_idle_per_host(0)
        .user_agent("mailstead MTA-STS")
        // §3.3: the certificate must be valid for the mta-sts host name
        // (RFC 6125) and chain to a trusted root; validation stays on.
        .tls_certs_merge(roots);
    if let Some(resolver) = resolver {
        builder = builder.dns_resolver(resolver);
    }
    Ok(builder.build()?)
}

/// In-memory policy cache keyed by policy domain (§3.3, §5.1).
///
/// Times are Unix seconds. A policy is valid while
/// `now < fetched_at + max_age`; a TXT id other than the cached policy's
/// asks for a new fetch, but the cached policy keeps applying until a new
/// one has been fetched (§3.3).
#[derive(Debug)]
pub struct Cache {
    entries: HashMap<String, Entry>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    policy: Option<(Policy, i64)>,
    /// The id whose fetch last failed, and when.
    failed: Option<(String, i64)>,
}

impl Entry {
    fn policy_until(&self) -> Option<i64> {
        self.policy
            .as_ref()
            .map(|(p, at)| at.saturating_add(i64::try_from(p.max_age).unwrap_or(i64::MAX)))
    }

    fn live(&self, now: i64) -> bool {
        self.policy_until().is_some_and(|until| now < until)
            || self
                .failed
                .as_ref()
                .is_some_and(|(_, at)| now < at.saturating_add(RETRY_AFTER_FAILURE))
    }
}

impl Cache {
    /// A cache holding at most `capacity` domains (at least one).
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The policy to apply to `domain` at `now`, if one is cached and has
    /// not expired (§3.3: a valid cached policy applies even when discovery
    /// or fetching fails).
    pub fn get(&self, domain: &str, now: i64) -> Option<&Policy> {
        let entry = self.entries.get(&normalize_host(domain))?;
        let until = entry.policy_until()?;
        entry
            .policy
            .as_ref()
            .filter(|_| now < until)
            .map(|(policy, _)| policy)
    }

    /// Whether to fetch the policy of `domain`, whose TXT record carries
    /// `txt_id`: yes when no valid policy with that id is cached (§3.1: a
    /// changed id means a new policy), unless fetching that id failed less
    /// than [`RETRY_AFTER_FAILURE`] seconds ago (§3.3).
    pub fn needs_fetch(&self, domain: &str, txt_id: &str, now: i64) -> bool {
        if self.get(domain, now).is_some_and(|p| p.id == txt_id) {
            return false;
        }
        let recently_failed = self
            .entries
            .get(&normalize_host(domain))
            .and_then(|e| e.failed.as_ref())
            .is_some_and(|(id, at)| id == txt_id && now < at.saturating_add(RETRY_AFTER_FAILURE));
        !recently_failed
    }

    /// Stores a policy fetched at `now`, replacing any older one.
    pub fn insert(&mut self, domain: &str, policy: Policy, now: i64) {
        let entry = self.entry(domain, now);
        entry.policy = Some((policy, now));
        entry.failed = None;
    }

    /// Records that fetching the policy with `txt_id` failed at `now`.
    /// A cached policy stays in force (§3.3).
    pub fn fetch_failed(&mut self, domain: &str, txt_id: &str, now: i64) {
        self.entry(domain, now).failed = Some((txt_id.to_string(), now));
    }

    fn entry(&mut self, domain: &str, now: i64) -> &mut Entry {
        let key = normalize_host(domain);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.live(now));
            if self.entries.len() >= self.capacity {
                // Evict the policy closest to expiry: it is the one
                // whose loss costs least protection.
                let victim = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.policy_until().unwrap_or(i64::MIN))
                    .map(|(k, _)| k.clone());
                if let Some(victim) = victim {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.entry(key).or_insert(Entry {
            policy: None,
            failed: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use reqwest::dns::{Addrs, Name, Resolve, Resolving};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    fn records(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn txt_records() {
        // §3.1 example.
        assert_eq!(
            parse_txt(&records(&["v=STSv1; id=20160831085700Z;"]))
                .ok()
                .as_deref(),
            Some("20160831085700Z")
        );
        let ok = |r: &[&str]| parse_txt(&records(r)).ok();
        assert_eq!(ok(&["v=STSv1;id=abc"]).as_deref(), Some("abc"));
        assert_eq!(ok(&["v=STSv1 ;\tid=abc ; "]).as_deref(), Some("abc"));
        assert_eq!(ok(&["v=STSv1;;id=abc;;"]).as_deref(), Some("abc"));
        assert_eq!(
            ok(&["v=STSv1; ext=1; id=abc; other=x"]).as_deref(),
            Some("abc")
        );
        assert_eq!(
            ok(&["v=STSv1; id=first; id=second"]).as_deref(),
            Some("first")
        );
        assert_eq!(
            ok(&["v=spf1 -all", "v=STSv1; id=abc", "hello"]).as_deref(),
            Some("abc")
        );
        assert_eq!(
            ok(&[&format!("v=STSv1; id={}", "a".repeat(32))]).map(|s| s.len()),
            Some(32)
        );

        let err = |r: &[&str]| parse_txt(&records(r)).err().map(|e| e.to_string());
        assert!(matches!(parse_txt(&[]), Err(StsError::NoRecord)));
        assert!(matches!(
            parse_txt(&records(&["v=spf1 -all"])),
            Err(StsError::NoRecord)
        ));
        assert!(matches!(
            parse_txt(&records(&["V=STSv1; id=1"])),
            Err(StsError::NoRecord)
        ));
        assert!(matches!(
            parse_txt(&records(&["v=STSv10; id=1"])),
            Err(StsError::NoRecord)
        ));
        assert!(matches!(
            parse_txt(&records(&[" v=STSv1; id=1"])),
            Err(StsError::NoRecord)
        ));
        assert!(matches!(
            parse_txt(&records(&["v=STSv1; id=1", "v=STSv1; id=2"])),
            Err(StsError::ManyRecords(2))
        ));
        assert!(matches!(
            parse_txt(&records(&["v=STSv1; id=1", "v=STSv1; id=1"])),
            Err(StsError::ManyRecords(2))
        ));
        assert!(err(&["v=STSv1"]).is_some());
        assert!(err(&["v=STSv1;"]).is_some());
        assert!(err(&["v=STSv1; id="]).is_some());
        assert!(err(&["v=STSv1; id=has-dash"]).is_some());
        assert!(err(&["v=STSv1; id=a b"]).is_some());
        assert!(err(&[&format!("v=STSv1; id={}", "a".repeat(33))]).is_some());
        assert!(err(&["v=STSv1; ID=abc"]).is_some());
        assert!(err(&["v=STSv1; id=abc; garbage"]).is_some());
        assert!(err(&["v=STSv1 extra; id=abc"]).is_some());
    }

    const RFC_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    #[test]
    fn policies() {
        // §3.2 example.
        let policy = parse_policy(RFC_POLICY, "20160831085700Z").expect("valid");
        assert_eq!(
            policy,
            Policy {
                mode: Mode::Enforce,
                mx: vec![
                    "mail.example.com".to_string(),
                    "*.example.net".to_string(),
                    "backupmx.example.com".to_string()
                ],
                max_age: 604_800,
                id: "20160831085700Z".to_string(),
            }
        );
        let lf = RFC_POLICY.replace("\r\n", "\n");
        assert_eq!(
            parse_policy(&lf, "20160831085700Z").ok(),
            Some(policy.clone())
        );
        let no_final_newline = RFC_POLICY.trim_end();
        assert_eq!(
            parse_policy(no_final_newline, "20160831085700Z").ok(),
            Some(policy.clone())
        );

        let ok = |t: &str| parse_policy(t, "1").ok();
        let testing = ok("mode: testing\nmax_age:86400\nmx:MX.Example.COM.\nversion: STSv1\n")
            .expect("any order");
        assert_eq!(testing.mode, Mode::Testing);
        assert_eq!(testing.mx, ["mx.example.com"]);
        assert_eq!(testing.max_age, 86_400);
        let none = ok("version: STSv1\nmode: none\nmax_age: 0\n").expect("none needs no mx");
        assert_eq!((none.mode, none.mx.len()), (Mode::None, 0));
        let extra = ok(
            "version: STSv1\n\nmode: enforce \t\nfoo: bar\nmx: a.example\nmax_age: 31557600\n\n",
        )
        .expect("blank lines, trailing blanks, unknown keys");
        assert_eq!(extra.max_age, MAX_MAX_AGE);
        let first = ok("version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\nmax_age: 10\n")
            .expect("duplicates");
        assert_eq!((first.mode, first.max_age), (Mode::Testing, 5));

        let bad = |t: &str| parse_policy(t, "1").is_err();
        assert!(
            bad("version: STSv1\nmode: enforce\nmax_age: 86400\n"),
            "missing mx"
        );
        assert!(
            bad("version: STSv1\nmode: testing\nmax_age: 86400\n"),
            "missing mx"
        );
        assert!(
            bad("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 86400\n"),
            "bad mode"
        );
        assert!(
            bad("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 86400\n"),
            "mode is case-sensitive"
        );
        assert!(
            bad("version: STSv1\nmx: a.example\nmax_age: 86400\n"),
            "missing mode"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n"),
            "max_age too big"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n"),
            "11 digits"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n"),
            "negative"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1e5\n"),
            "not digits"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n"),
            "empty"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\n"),
            "missing max_age"
        );
        assert!(
            bad("mode: enforce\nmx: a.example\nmax_age: 86400\n"),
            "missing version"
        );
        assert!(
            bad("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 86400\n"),
            "other version"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: mx*.example.com\nmax_age: 86400\n"),
            "inner wildcard"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.*.example.com\nmax_age: 86400\n"),
            "inner wildcard"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: *\nmax_age: 86400\n"),
            "bare wildcard"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 86400\n"),
            "empty label"
        );
        assert!(
            bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 86400\nnot a field\n"),
            "no colon"
        );
        assert!(bad("<html><body>Not found</body></html>"), "html");
        assert!(bad(""), "empty");
        let huge = format!("{RFC_POLICY}{}", "x: y\n".repeat(MAX_POLICY_SIZE / 5 + 1));
        assert!(matches!(parse_policy(&huge, "1"), Err(StsError::TooLarge)));
    }

    #[test]
    fn mx_matching() {
        let policy = Policy {
            mode: Mode::Enforce,
            mx: vec!["*.example.com".to_string(), "mail.example.net".to_string()],
            max_age: 86_400,
            id: "1".to_string(),
        };
        assert!(policy.matches_mx("mx.example.com"));
        assert!(policy.matches_mx("MX.Example.COM."));
        assert!(!policy.matches_mx("example.com"));
        assert!(!policy.matches_mx("a.b.example.com"));
        assert!(!policy.matches_mx("mxexample.com"));
        assert!(!policy.matches_mx(".example.com"));
        assert!(!policy.matches_mx("*.example.com"));
        assert!(!policy.matches_mx("mx.example.com.evil"));
        assert!(policy.matches_mx("mail.example.net"));
        assert!(policy.matches_mx("MAIL.example.net."));
        assert!(!policy.matches_mx("x.mail.example.net"));
        assert!(!policy.matches_mx("example.net"));
        assert!(!policy.matches_mx(""));
        // Patterns set by hand are compared in the same normal form.
        let by_hand = Policy {
            mx: vec!["*.Example.ORG.".to_string()],
            ..policy
        };
        assert!(by_hand.matches_mx("mx1.example.org"));
    }

    fn policy(id: &str, max_age: u64) -> Policy {
        Policy {
            mode: Mode::Enforce,
            mx: vec!["mx.example.com".to_string()],
            max_age,
            id: id.to_string(),
        }
    }

    #[test]
    fn cache_lifetime_and_refresh() {
        let mut cache = Cache::new(10);
        assert!(cache.get("example.com", 0).is_none());
        assert!(cache.needs_fetch("example.com", "a", 0));

        cache.insert("Example.COM.", policy("a", 100), 1_000);
        assert_eq!(
            cache.get("example.com", 1_000).map(|p| p.id.as_str()),
            Some("a")
        );
        assert!(cache.get("example.com", 1_099).is_some());
        assert!(
            cache.get("example.com", 1_100).is_none(),
            "expired at fetched_at + max_age"
        );
        assert!(
            !cache.needs_fetch("example.com", "a", 1_050),
            "same id, still valid"
        );
        assert!(cache.needs_fetch("example.com", "a", 1_100), "expired");
        assert!(
            cache.needs_fetch("example.com", "b", 1_050),
            "a new id means a new policy"
        );

        // A failed refresh keeps the old policy in force and holds off
        // further attempts at that id for a while.
        cache.fetch_failed("example.com", "b", 1_050);
        assert_eq!(
            cache.get("example.com", 1_060).map(|p| p.id.as_str()),
            Some("a")
        );
        assert!(!cache.needs_fetch("example.com", "b", 1_060));
        assert!(
            cache.needs_fetch("example.com", "c", 1_060),
            "yet another id is tried at once"
        );
        assert!(cache.needs_fetch("example.com", "b", 1_050 + RETRY_AFTER_FAILURE));

        cache.insert("example.com", policy("b", 1_000), 1_400);
        assert_eq!(
            cache.get("example.com", 1_500).map(|p| p.id.as_str()),
            Some("b")
        );
        assert!(!cache.needs_fetch("example.com", "b", 1_500));

        let zero = policy("z", 0);
        cache.insert("zero.example", zero, 10);
        assert!(
            cache.get("zero.example", 10).is_none(),
            "max_age 0 is never valid"
        );
    }

    #[test]
    fn cache_capacity() {
        let mut cache = Cache::new(2);
        cache.insert("a.example", policy("a", 1_000), 0);
        cache.insert("b.example", policy("b", 50), 0);
        // Full: the expired b goes first.
        cache.insert("c.example", policy("c", 1_000), 100);
        assert!(cache.get("a.example", 100).is_some());
        assert!(cache.get("c.example", 100).is_some());
        // Still full: the one closest to expiry goes.
        cache.insert("d.example", policy("d", 5_000), 200);
        assert!(cache.get("a.example", 200).is_none());
        assert!(cache.get("c.example", 200).is_some());
        assert!(cache.get("d.example", 200).is_some());
        assert_eq!(cache.entries.len(), 2);
    }

    // ---- fetching from a real HTTPS server -------------------------------

    const HOST: &str = "mta-sts.example.test";

    struct Ca {
        der: CertificateDer<'static>,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn server_cert(ca: &Ca, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &ca.issuer)
            .expect("server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }

    /// Resolves the policy host, and only it, to the test server, port
    /// included.
    struct TestResolver(SocketAddr);

    impl Resolve for TestResolver {
        fn resolve(&self, name: Name) -> Resolving {
            let found = name.as_str().eq_ignore_ascii_case(HOST).then_some(self.0);
            Box::pin(async move {
                match found {
                    Some(addr) => Ok(Box::new(std::iter::once(addr)) as Addrs),
                    None => Err("unknown test host".into()),
                }
            })
        }
    }

    struct Server {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        fn requests(&self) -> Vec<String> {
            self.requests.lock().expect("lock").clone()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A minimal HTTPS server: reads one request head per connection,
    /// records it, writes `response` and closes.
    async fn serve(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        response: Vec<u8>,
    ) -> Server {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let response = Arc::new(response);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, response) =
                    (acceptor.clone(), Arc::clone(&seen), Arc::clone(&response));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                        }
                    }
                    seen.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Server {
            addr,
            requests,
            task,
        }
    }

    fn http_response(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 {status}\r\n");
        for h in headers {
            r.push_str(h);
            r.push_str("\r\n");
        }
        r.push_str("Connection: close\r\n\r\n");
        let mut r = r.into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn with_length(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let length = format!("Content-Length: {}", body.len());
        http_response(status, &[content_type, &length], body)
    }

    /// Serves `response` with a certificate for `name` from `issuer`, and
    /// fetches through a client that trusts only `trusted`.
    async fn fetch_from(
        trusted: &Ca,
        issuer: &Ca,
        name: &str,
        response: Vec<u8>,
    ) -> (Result<String, StsError>, Vec<String>) {
        let (chain, key) = server_cert(issuer, name);
        let server = serve(chain, key, response).await;
        let resolver: Arc<dyn Resolve> = Arc::new(TestResolver(server.addr));
        let client = client(std::slice::from_ref(&trusted.der), Some(resolver)).expect("client");
        let result = fetch(&client, "example.test").await;
        (result, server.requests())
    }

    #[tokio::test]
    async fn fetches_a_good_policy() {
        let ca = ca("Test CA");
        let response = with_length(
            "200 OK",
            "Content-Type: text/plain; charset=utf-8",
            RFC_POLICY.as_bytes(),
        );
        let (result, requests) = fetch_from(&ca, &ca, HOST, response).await;
        let body = result.expect("policy");
        assert_eq!(body, RFC_POLICY);
        assert_eq!(parse_policy(&body, "x").map(|p| p.mx.len()).ok(), Some(3));
        assert_eq!(requests.len(), 1);
        let request = requests.first().expect("request").to_ascii_lowercase();
        assert!(
            request.starts_with("get /.well-known/mta-sts.txt http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nhost: mta-sts.example.test\r\n"),
            "{request}"
        );

        // The media type is case-insensitive; parameters are ignored.
        let response = http_response(
            "200 OK",
            &["Content-Type: TEXT/Plain ; format=flowed"],
            RFC_POLICY.as_bytes(),
        );
        let (result, _) = fetch_from(&ca, &ca, HOST, response).await;
        assert_eq!(result.ok().as_deref(), Some(RFC_POLICY));
    }

    #[tokio::test]
    async fn does_not_follow_redirects() {
        let ca = ca("Test CA");
        let response = http_response(
            "301 Moved Permanently",
            &[
                "Location: https://mta-sts.example.test/elsewhere.txt",
                "Content-Length: 0",
            ],
            b"",
        );
        let (result, requests) = fetch_from(&ca, &ca, HOST, response).await;
        assert!(matches!(result, Err(StsError::Status(301))), "{result:?}");
        assert_eq!(requests.len(), 1, "the redirect was followed");
    }

    #[tokio::test]
    async fn rejects_other_statuses_and_media_types() {
        let ca = ca("Test CA");
        let response = with_length("404 Not Found", "Content-Type: text/plain", b"not here");
        let (result, _) = fetch_from(&ca, &ca, HOST, response).await;
        assert!(matches!(result, Err(StsError::Status(404))), "{result:?}");

        let response = with_length("200 OK", "Content-Type: text/html", RFC_POLICY.as_bytes());
        let (result, _) = fetch_from(&ca, &ca, HOST, response).await;
        assert!(
            matches!(&result, Err(StsError::ContentType(t)) if t == "text/html"),
            "{result:?}"
        );

        let response = with_length("200 OK", "X-Nothing: here", RFC_POLICY.as_bytes());
        let (result, _) = fetch_from(&ca, &ca, HOST, response).await;
        assert!(
            matches!(&result, Err(StsError::ContentType(t)) if t.is_empty()),
            "{result:?}"
        );

        let response = with_length(
            "200 OK",
            "Content-Type: text/plain-policy",
            RFC_POLICY.as_bytes(),
        );
        let (result, _) = fetch_from(&ca, &ca, HOST, response).await;
        assert!(
            matches!(result, Err(StsError::ContentType(_))),
            "{result:?}"
        );

        let response = with_length("200 OK", "Content-Type: text/plain", b"mode: \xff\xfe");
        let (result, _) = fetch_from(&ca, &ca, HOST, response).await;
        assert!(matches!(result, Err(StsError::NotUtf8)), "{result:?}");
    }

    #[tokio::test]
    async fn rejects_oversized_bodies() {
        let ca = ca("Test CA");
        let body = vec![b'a'; MAX_POLICY_SIZE + 1];
        let announced = with_length("200 OK", "Content-Type: text/plain", &body);
        let (result, _) = fetch_from(&ca, &ca, HOST, announced).await;
        assert!(matches!(result, Err(StsError::TooLarge)), "{result:?}");

        // Without Content-Length the limit applies while reading.
        let big = vec![b'a'; 4 * MAX_POLICY_SIZE];
        let streamed = http_response("200 OK", &["Content-Type: text/plain"], &big);
        let (result, _) = fetch_from(&ca, &ca, HOST, streamed).await;
        assert!(matches!(result, Err(StsError::TooLarge)), "{result:?}");

        let exact = vec![b'a'; MAX_POLICY_SIZE];
        let streamed = http_response("200 OK", &["Content-Type: text/plain"], &exact);
        let (result, _) = fetch_from(&ca, &ca, HOST, streamed).await;
        assert_eq!(result.map(|b| b.len()).ok(), Some(MAX_POLICY_SIZE));
    }

    fn chain_text(error: &StsError) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            text.push_str(" / ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    #[tokio::test]
    async fn rejects_a_certificate_for_another_name() {
        let ca = ca("Test CA");
        let response = with_length("200 OK", "Content-Type: text/plain", RFC_POLICY.as_bytes());
        let (result, requests) = fetch_from(&ca, &ca, "www.example.test", response).await;
        let error = result.expect_err("wrong name accepted");
        assert!(matches!(error, StsError::Http(_)), "{error:?}");
        let why = chain_text(&error);
        assert!(why.contains("certificate not valid for name"), "{why}");
        assert!(
            requests.is_empty(),
            "a request went out over an unverified connection"
        );
    }

    #[tokio::test]
    async fn rejects_an_untrusted_certificate() {
        let trusted = ca("Trusted CA");
        let other = ca("Other CA");
        let response = with_length("200 OK", "Content-Type: text/plain", RFC_POLICY.as_bytes());
        let (result, requests) = fetch_from(&trusted, &other, HOST, response).await;
        let error = result.expect_err("untrusted issuer accepted");
        assert!(matches!(error, StsError::Http(_)), "{error:?}");
        let why = chain_text(&error);
        assert!(why.contains("UnknownIssuer"), "{why}");
        assert!(requests.is_empty());
    }

    #[tokio::test]
    async fn refuses_names_that_are_not_host_names() {
        let client = client(&[ca("Test CA").der], None).expect("client");
        for domain in [
            "example.test/evil",
            "exa mple.test",
            "user@example.test",
            "example.test:8443",
            "",
            ".",
        ] {
            let result = fetch(&client, domain).await;
            assert!(
                matches!(result, Err(StsError::BadDomain)),
                "{domain}: {result:?}"
            );
        }
    }
}
