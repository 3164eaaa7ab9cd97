//! The value kinds a configuration key can have: how a raw `KEY=VALUE` string becomes a typed
//! value, and the sentence that tells a user what is allowed when it does not.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A value kind. `parse` gets the key name so that a reason can point at a related key (the
/// `HTTP_PORT` error names `HTTP_BIND`).
pub trait Kind {
    type Value: Clone + fmt::Debug + PartialEq;
    /// Parses a raw value. `Err` carries a specific reason, or an empty string when the general
    /// [`Kind::allowed`] sentence says it all.
    fn parse(key: &str, raw: &str) -> Result<Self::Value, String>;
    /// What the kind accepts, as a phrase for error messages and the documentation.
    fn allowed() -> String;
}

/// Where a mail listener binds: mailcow's `PORT` or `IP:PORT` (`SMTP_PORT=1.2.3.4:25`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind {
    /// `None` means every address (IPv6 dual-stack where available, else IPv4).
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            None => write!(f, "{}", self.port),
            Some(ip) => write!(f, "{}", SocketAddr::new(ip, self.port)),
        }
    }
}

fn parse_port(raw: &str) -> Option<u16> {
    if raw.is_empty() || raw.len() > 5 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// `PORT`, `IPv4:PORT` or `[IPv6]:PORT`. Port 0 asks the kernel for a free port (tests use it).
pub struct MailBind;
impl Kind for MailBind {
    type Value = Bind;
    fn parse(_key: &str, raw: &str) -> Result<Bind, String> {
        if let Some(port) = parse_port(raw) {
            return Ok(Bind { ip: None, port });
        }
        match raw.parse::<SocketAddr>() {
            Ok(sa) => Ok(Bind {
                ip: Some(sa.ip()),
                port: sa.port(),
            }),
            Err(_) if raw.contains(':') && !raw.contains('[') && raw.matches(':').count() > 1 => {
                Err("an IPv6 address must be written in brackets, e.g. [2001:db8::1]:25".into())
            }
            Err(_) => Err(String::new()),
        }
    }
    fn allowed() -> String {
        "a port (0-65535) or IP:PORT, e.g. 25, 192.0.2.1:25 or [2001:db8::1]:25".into()
    }
}

/// A bare port, for `HTTP_PORT`/`HTTPS_PORT`, which mailcow does not let carry an address.
pub struct WebPort;
impl Kind for WebPort {
    type Value = u16;
    fn parse(key: &str, raw: &str) -> Result<u16, String> {
        if let Some(port) = parse_port(raw) {
            return Ok(port);
        }
        if let Ok(sa) = raw.parse::<SocketAddr>() {
            let bind_key = key.replace("_PORT", "_BIND");
            return Err(format!(
                "{key} takes a bare port, not IP:PORT; set {key}={} and {bind_key}={} instead",
                sa.port(),
                sa.ip()
            ));
        }
        Err(String::new())
    }
    fn allowed() -> String {
        "a port number (0-65535)".into()
    }
}

/// An IP address, or empty for every address (`HTTP_BIND`).
pub struct BindIp;
impl Kind for BindIp {
    type Value = Option<IpAddr>;
    fn parse(_key: &str, raw: &str) -> Result<Option<IpAddr>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        let unbracketed = raw.trim_start_matches('[').trim_end_matches(']');
        unbracketed.parse().map(Some).map_err(|_| String::new())
    }
    fn allowed() -> String {
        "an IPv4 or IPv6 address, or empty for every address".into()
    }
}

/// mailcow's `y`/`n` switches; `true`/`false` (as in `ENABLE_IPV6`), `yes`/`no` and `1`/`0` too.
pub struct YesNo;
impl Kind for YesNo {
    type Value = bool;
    fn parse(_key: &str, raw: &str) -> Result<bool, String> {
        match raw.to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" | "1" => Ok(true),
            "n" | "no" | "false" | "0" => Ok(false),
            _ => Err(String::new()),
        }
    }
    fn allowed() -> String {
        "y or n (also yes/no, true/false, 1/0)".into()
    }
}

/// A whole number within `MIN..=MAX`.
pub struct Uint<const MIN: u64, const MAX: u64>;
impl<const MIN: u64, const MAX: u64> Kind for Uint<MIN, MAX> {
    type Value = u64;
    fn parse(_key: &str, raw: &str) -> Result<u64, String> {
        let n: u64 = raw.parse().map_err(|_| String::new())?;
        if (MIN..=MAX).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is out of range"))
        }
    }
    fn allowed() -> String {
        format!("a whole number from {MIN} to {MAX}")
    }
}

/// A byte size with an optional binary unit: `1048576`, `512K`, `100M`, `1G` (`MiB`, `GiB`, ... too).
pub struct Size<const MIN: u64, const MAX: u64>;

/// Parses a size such as `100M` into bytes (binary units; `K`, `KB`, `KiB` all mean 1024).
pub fn parse_size(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Formats bytes with the largest binary unit that divides them exactly (`104857600` -> `100M`).
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

impl<const MIN: u64, const MAX: u64> Kind for Size<MIN, MAX> {
    type Value = u64;
    fn parse(_key: &str, raw: &str) -> Result<u64, String> {
        let n = parse_size(raw).ok_or_else(String::new)?;
        if (MIN..=MAX).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} bytes is out of range"))
        }
    }
    fn allowed() -> String {
        format!(
            "a size in bytes with an optional unit K, M, G or T (binary), from {} to {}",
            format_size(MIN),
            format_size(MAX)
        )
    }
}

/// A duration: a number with `s`, `m`, `h` or `d` (a bare number means seconds).
pub struct Seconds<const MIN: u64, const MAX: u64>;

/// Parses `30s`, `5m`, `2h`, `5d` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

/// Formats a duration in the largest unit that divides it exactly.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (div, unit) in [(86400, "d"), (3600, "h"), (60, "m")] {
        if s != 0 && s.is_multiple_of(div) {
            return format!("{}{unit}", s / div);
        }
    }
    format!("{s}s")
}

impl<const MIN: u64, const MAX: u64> Kind for Seconds<MIN, MAX> {
    type Value = Duration;
    fn parse(_key: &str, raw: &str) -> Result<Duration, String> {
        let d = parse_duration(raw).ok_or_else(String::new)?;
        if (MIN..=MAX).contains(&d.as_secs()) {
            Ok(d)
        } else {
            Err(format!("{} is out of range", format_duration(d)))
        }
    }
    fn allowed() -> String {
        format!(
            "a duration such as 30s, 5m, 2h or 5d, from {} to {}",
            format_duration(Duration::from_secs(MIN)),
            format_duration(Duration::from_secs(MAX))
        )
    }
}

/// Checks an ASCII host name: dot-separated labels of letters, digits and hyphens.
pub fn is_valid_hostname(name: &str) -> bool {
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

/// The server's fully qualified host name (`mail.example.com`), lowercased. Required.
pub struct Hostname;
impl Kind for Hostname {
    type Value = String;
    fn parse(_key: &str, raw: &str) -> Result<String, String> {
        if raw.is_empty() {
            return Err("the key is required".into());
        }
        let name = raw.trim_end_matches('.').to_ascii_lowercase();
        if !is_valid_hostname(&name) {
            return Err(String::new());
        }
        if !name.contains('.') {
            return Err(format!(
                "{name} is not fully qualified; use the name of the MX host, e.g. {name}.example.com"
            ));
        }
        Ok(name)
    }
    fn allowed() -> String {
        "a fully qualified domain name such as mail.example.com".into()
    }
}

/// A comma-separated list of host names (`ADDITIONAL_SAN`); `*.` wildcards allowed.
pub struct HostList;
impl Kind for HostList {
    type Value = Vec<String>;
    fn parse(_key: &str, raw: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let name = item.to_ascii_lowercase();
            let check = name.strip_prefix("*.").unwrap_or(&name);
            if !is_valid_hostname(check) {
                return Err(format!("{item:?} is not a host name"));
            }
            out.push(name);
        }
        Ok(out)
    }
    fn allowed() -> String {
        "a comma-separated list of host names, e.g. imap.example.com,smtp.example.com".into()
    }
}

/// An IANA time zone name. When the system has a zoneinfo database, the zone must exist in it.
pub struct TimeZone;

const ZONEINFO: &str = "/usr/share/zoneinfo";

impl Kind for TimeZone {
    type Value = String;
    fn parse(_key: &str, raw: &str) -> Result<String, String> {
        let shape_ok = !raw.is_empty()
            && !raw.starts_with('/')
            && !raw
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b));
        if !shape_ok {
            return Err(String::new());
        }
        let db = Path::new(ZONEINFO);
        if db.is_dir() && !db.join(raw).is_file() {
            return Err(format!("{raw} is not a zone in {ZONEINFO}"));
        }
        Ok(raw.to_string())
    }
    fn allowed() -> String {
        "an IANA time zone name such as UTC, Europe/Berlin or America/New_York".into()
    }
}

/// One line of printable text.
pub struct Text;
impl Kind for Text {
    type Value = String;
    fn parse(_key: &str, raw: &str) -> Result<String, String> {
        if raw.chars().any(char::is_control) {
            return Err("control characters are not allowed".into());
        }
        Ok(raw.to_string())
    }
    fn allowed() -> String {
        "one line of text".into()
    }
}

/// A generated secret: empty, or at least 32 printable ASCII characters without spaces.
pub struct Secret;
impl Kind for Secret {
    type Value = String;
    fn parse(_key: &str, raw: &str) -> Result<String, String> {
        if raw.is_empty() {
            return Ok(String::new());
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("only printable ASCII without spaces is allowed".into());
        }
        if raw.len() < 32 {
            return Err(format!(
                "it is {} characters long; use at least 32",
                raw.len()
            ));
        }
        Ok(raw.to_string())
    }
    fn allowed() -> String {
        "at least 32 printable ASCII characters (`mailstead init` generates one)".into()
    }
}

/// A file system path, or empty for the documented default.
pub struct OptPath;
impl Kind for OptPath {
    type Value = Option<PathBuf>;
    fn parse(_key: &str, raw: &str) -> Result<Option<PathBuf>, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().any(char::is_control) {
            return Err("control characters are not allowed".into());
        }
        Ok(Some(PathBuf::from(raw)))
    }
    fn allowed() -> String {
        "a file system path, or empty for the default".into()
    }
}

/// Declares a kind whose value is one of a few words.
macro_rules! choice_kind {
    ($(#[$meta:meta])* $kind:ident => $value:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $value { $($variant),+ }

        impl $value {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),+ }
            }
        }

        pub struct $kind;
        impl Kind for $kind {
            type Value = $value;
            fn parse(_key: &str, raw: &str) -> Result<$value, String> {
                match raw.to_ascii_lowercase().as_str() {
                    $($word => Ok($value::$variant),)+
                    _ => Err(String::new()),
                }
            }
            fn allowed() -> String {
                let words: &[&str] = &[$($word),+];
                if words.len() == 1 {
                    format!("{} (the only choice in this version)", words[0])
                } else {
                    format!("one of {}", words.join(", "))
                }
            }
        }
    };
}

choice_kind!(
    /// Where metadata lives.
    StoreChoice => StoreBackend { Sqlite = "sqlite" }
);
choice_kind!(
    /// How much the server logs.
    LogLevelChoice => LogLevel { Error = "error", Warn = "warn", Info = "info", Debug = "debug", Trace = "trace" }
);
choice_kind!(
    /// The shape of log lines.
    LogFormatChoice => LogFormat { Text = "text", Json = "json" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("100M"), Some(100 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("1X"), None);
        assert_eq!(parse_size("99999999999999T"), None);
        assert_eq!(format_size(100 << 20), "100M");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(432000)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5 m"), None);
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn mail_bind_forms() {
        assert_eq!(
            MailBind::parse("SMTP_PORT", "25"),
            Ok(Bind { ip: None, port: 25 })
        );
        assert_eq!(
            MailBind::parse("SMTP_PORT", "1.2.3.4:25"),
            Ok(Bind {
                ip: Some("1.2.3.4".parse().unwrap()),
                port: 25
            })
        );
        assert_eq!(
            MailBind::parse("SMTP_PORT", "[::1]:2525"),
            Ok(Bind {
                ip: Some("::1".parse().unwrap()),
                port: 2525
            })
        );
        assert!(
            MailBind::parse("SMTP_PORT", "::1:25")
                .unwrap_err()
                .contains("brackets")
        );
        assert!(MailBind::parse("SMTP_PORT", "65536").is_err());
        assert!(MailBind::parse("SMTP_PORT", "smtp").is_err());
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            Hostname::parse("H", "Mail.Example.COM."),
            Ok("mail.example.com".into())
        );
        assert!(
            Hostname::parse("H", "mail")
                .unwrap_err()
                .contains("not fully qualified")
        );
        assert!(Hostname::parse("H", "-a.example.com").is_err());
        assert!(Hostname::parse("H", "a..b").is_err());
        assert!(Hostname::parse("H", "").unwrap_err().contains("required"));
    }
}
