//! Every configuration error and warning, with the exact message a user sees.

use super::*;
use std::collections::BTreeMap;
use std::path::Path;

const BASE: &str = "MAILCOW_HOSTNAME=mail.example.test\n";

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    Config::from_text(
        text,
        Path::new("mailstead.conf"),
        Path::new("/data"),
        &no_env,
    )
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    Config::from_text(
        text,
        Path::new("mailstead.conf"),
        Path::new("/data"),
        &lookup,
    )
}

fn error(text: &str) -> String {
    load(text).expect_err("expected an error").to_string()
}

#[test]
fn every_default_is_valid_for_its_kind() {
    for key in KEYS {
        if key.name == "MAILCOW_HOSTNAME" {
            continue;
        }
        assert!(
            (key.check)(key.name, key.default).is_ok(),
            "default of {} is invalid",
            key.name
        );
        assert!(
            !key.doc.trim().is_empty(),
            "{} has no documentation",
            key.name
        );
    }
}

#[test]
fn defaults_are_mailcows() {
    let c = load(BASE).unwrap().config;
    assert_eq!(c.hostname, "mail.example.test");
    assert_eq!(c.smtp_port.port, 25);
    assert_eq!(c.smtps_port.port, 465);
    assert_eq!(c.submission_port.port, 587);
    assert_eq!(c.imap_port.port, 143);
    assert_eq!(c.imaps_port.port, 993);
    assert_eq!(c.pop_port.port, 110);
    assert_eq!(c.pops_port.port, 995);
    assert_eq!(c.sieve_port.port, 4190);
    assert_eq!((c.http_port, c.https_port), (80, 443));
    assert!(!c.skip_clamd && !c.skip_fts && !c.skip_sogo && !c.skip_lets_encrypt);
    assert_eq!(c.data_dir, Path::new("/data"));
    assert_eq!(c.tls_cert_path(), Path::new("/data/tls/cert.pem"));
}

#[test]
fn missing_hostname_is_an_error() {
    assert_eq!(
        error(""),
        "built-in default: MAILCOW_HOSTNAME=\"\": the key is required; allowed: a fully qualified \
         domain name such as mail.example.com"
    );
}

#[test]
fn hostname_must_be_fully_qualified() {
    assert_eq!(
        error("MAILCOW_HOSTNAME=mail\n"),
        "mailstead.conf line 1: MAILCOW_HOSTNAME=\"mail\": mail is not fully qualified; use the \
         name of the MX host, e.g. mail.example.com; allowed: a fully qualified domain name such \
         as mail.example.com"
    );
}

#[test]
fn bad_port_names_key_line_value_and_allowed() {
    assert_eq!(
        error(&format!("{BASE}# comment\nSMTP_PORT=smtp\n")),
        "mailstead.conf line 3: SMTP_PORT=\"smtp\": not valid; allowed: a port (0-65535) or \
         IP:PORT, e.g. 25, 192.0.2.1:25 or [2001:db8::1]:25"
    );
    assert!(error(&format!("{BASE}IMAP_PORT=70000\n")).contains("IMAP_PORT=\"70000\": not valid"));
}

#[test]
fn mail_port_may_carry_an_address() {
    let c = load(&format!("{BASE}SMTP_PORT=127.0.0.1:2525\n"))
        .unwrap()
        .config;
    assert_eq!(c.smtp_port.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(c.smtp_port.port, 2525);
}

#[test]
fn http_port_with_address_points_at_http_bind() {
    assert_eq!(
        error(&format!("{BASE}HTTP_PORT=127.0.0.1:8080\n")),
        "mailstead.conf line 2: HTTP_PORT=\"127.0.0.1:8080\": HTTP_PORT takes a bare port, not \
         IP:PORT; set HTTP_PORT=8080 and HTTP_BIND=127.0.0.1 instead; allowed: a port number (0-65535)"
    );
    assert!(
        error(&format!("{BASE}HTTPS_PORT=1.2.3.4:443\n"))
            .contains("set HTTPS_PORT=443 and HTTPS_BIND=1.2.3.4 instead")
    );
}

#[test]
fn bad_bind_address() {
    assert_eq!(
        error(&format!("{BASE}HTTP_BIND=localhost\n")),
        "mailstead.conf line 2: HTTP_BIND=\"localhost\": not valid; allowed: an IPv4 or IPv6 \
         address, or empty for every address"
    );
}

#[test]
fn ipv6_mail_bind_needs_brackets() {
    assert!(
        error(&format!("{BASE}SMTP_PORT=::1:25\n"))
            .contains("an IPv6 address must be written in brackets, e.g. [2001:db8::1]:25")
    );
}

#[test]
fn bad_switch() {
    assert_eq!(
        error(&format!("{BASE}SKIP_CLAMD=maybe\n")),
        "mailstead.conf line 2: SKIP_CLAMD=\"maybe\": not valid; allowed: y or n (also yes/no, \
         true/false, 1/0)"
    );
}

#[test]
fn out_of_range_number_and_duration() {
    assert_eq!(
        error(&format!("{BASE}MAX_CONNECTIONS=0\n")),
        "mailstead.conf line 2: MAX_CONNECTIONS=\"0\": 0 is out of range; allowed: a whole number \
         from 1 to 1000000"
    );
    assert_eq!(
        error(&format!("{BASE}SHUTDOWN_TIMEOUT=2d\n")),
        "mailstead.conf line 2: SHUTDOWN_TIMEOUT=\"2d\": 2d is out of range; allowed: a duration \
         such as 30s, 5m, 2h or 5d, from 0s to 1h"
    );
    assert!(error(&format!("{BASE}SHUTDOWN_TIMEOUT=soon\n")).contains("not valid"));
}

#[test]
fn bad_time_zone() {
    assert!(
        error(&format!("{BASE}TZ=../etc/passwd\n"))
            .contains("TZ=\"../etc/passwd\": not valid; allowed: an IANA time zone name")
    );
    if Path::new("/usr/share/zoneinfo/UTC").exists() {
        assert!(
            error(&format!("{BASE}TZ=Mars/Olympus\n"))
                .contains("Mars/Olympus is not a zone in /usr/share/zoneinfo")
        );
        assert_eq!(
            load(&format!("{BASE}TZ=Europe/Berlin\n"))
                .unwrap()
                .config
                .tz,
            "Europe/Berlin"
        );
    }
}

#[test]
fn bad_choice() {
    assert_eq!(
        error(&format!("{BASE}STORE=mysql\n")),
        "mailstead.conf line 2: STORE=\"mysql\": not valid; allowed: sqlite (the only choice in \
         this version)"
    );
    assert!(
        error(&format!("{BASE}LOG_LEVEL=loud\n"))
            .contains("allowed: one of error, warn, info, debug, trace")
    );
}

#[test]
fn short_secret() {
    assert_eq!(
        error(&format!("{BASE}SESSION_KEY=abc\n")),
        "mailstead.conf line 2: SESSION_KEY=\"abc\": it is 3 characters long; use at least 32; \
         allowed: at least 32 printable ASCII characters (`mailstead init` generates one)"
    );
}

#[test]
fn bad_san() {
    assert!(
        error(&format!("{BASE}ADDITIONAL_SAN=ok.example.test,bad_name\n"))
            .contains("\"bad_name\" is not a host name")
    );
    let c = load(&format!(
        "{BASE}ADDITIONAL_SAN=imap.example.test, *.example.test\n"
    ))
    .unwrap()
    .config;
    assert_eq!(
        c.certificate_names(),
        vec!["mail.example.test", "imap.example.test", "*.example.test"]
    );
}

#[test]
fn two_listeners_on_one_port() {
    assert_eq!(
        error(&format!("{BASE}IMAP_PORT=2525\nSMTP_PORT=2525\n")),
        "mailstead.conf line 2: IMAP_PORT=\"2525\": the same address as SMTP_PORT; every \
         listener needs its own port"
    );
    // Different addresses on one port are fine, and so are ports chosen by the kernel.
    load(&format!(
        "{BASE}SMTP_PORT=127.0.0.1:2525\nIMAP_PORT=127.0.0.2:2525\n"
    ))
    .unwrap();
    load(&format!(
        "{BASE}SMTP_PORT=0\nIMAP_PORT=0\nPOP_PORT=127.0.0.1:0\n"
    ))
    .unwrap();
}

#[test]
fn all_errors_are_reported_together() {
    let e = load("SMTP_PORT=x\nIMAP_PORT=y\ngarbage\n").unwrap_err();
    let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("mailstead.conf line 3: expected KEY=VALUE"));
    assert!(lines.iter().any(|l| l.contains("MAILCOW_HOSTNAME")));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("mailstead.conf line 1: SMTP_PORT=\"x\""))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("mailstead.conf line 2: IMAP_PORT=\"y\""))
    );
}

#[test]
fn unknown_key_is_a_warning_with_its_line_and_a_suggestion() {
    let l = load(&format!("{BASE}SMTP_PROT=25\nWHATEVER=1\n")).unwrap();
    let w: Vec<String> = l.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        vec![
            "mailstead.conf line 2: unknown key SMTP_PROT is ignored; did you mean SMTP_PORT?",
            "mailstead.conf line 3: unknown key WHATEVER is ignored",
        ]
    );
}

#[test]
fn repeated_key_warns_and_the_last_wins() {
    let l = load(&format!("{BASE}SMTP_PORT=2525\nSMTP_PORT=2526\n")).unwrap();
    assert_eq!(l.config.smtp_port.port, 2526);
    assert_eq!(
        l.warnings[0].to_string(),
        "mailstead.conf line 3: SMTP_PORT is set again (first at mailstead.conf line 2); this \
         line wins"
    );
}

#[test]
fn mailcow_keys_without_meaning_are_notes() {
    let l = load(&format!("{BASE}DBPASS=secret\nREDISPASS=x\n")).unwrap();
    assert!(l.warnings.is_empty());
    assert_eq!(
        l.notes[0].to_string(),
        "mailstead.conf line 2: DBPASS is a mailcow key with no effect here: there is no MariaDB; \
         metadata lives in DATA_DIR (see STORE)"
    );
}

#[test]
fn skip_solr_is_skip_fts() {
    let l = load(&format!("{BASE}SKIP_SOLR=y\n")).unwrap();
    assert!(l.config.skip_fts);
    assert_eq!(
        l.notes[0].to_string(),
        "mailstead.conf line 2: SKIP_SOLR is read as SKIP_FTS, its current name"
    );
}

#[test]
fn environment_overrides_the_file() {
    let l = load_env(
        &format!("{BASE}SMTP_PORT=2525\n"),
        &[("SMTP_PORT", "127.0.0.1:0")],
    )
    .unwrap();
    assert_eq!(l.config.smtp_port.port, 0);
    let e = load_env(BASE, &[("IMAP_PORT", "nope")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment: IMAP_PORT=\"nope\": not valid; allowed: a port (0-65535) or IP:PORT, e.g. \
         25, 192.0.2.1:25 or [2001:db8::1]:25"
    );
}

#[test]
fn data_dir_key_overrides_the_file_location() {
    let c = load(&format!("{BASE}DATA_DIR=/srv/mail\n")).unwrap().config;
    assert_eq!(c.data_dir, Path::new("/srv/mail"));
    assert_eq!(c.tls_key_path(), Path::new("/srv/mail/tls/key.pem"));
}

#[test]
fn unreadable_file() {
    let e = Config::load(
        Path::new("/nonexistent/mailstead.conf"),
        Path::new("/x"),
        &no_env,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/mailstead.conf line 0: cannot read the configuration file:")
    );
}

#[test]
fn generated_file_loads_back_with_the_same_values() {
    let mut values = BTreeMap::new();
    values.insert("MAILCOW_HOSTNAME", "mail.example.test".to_string());
    values.insert("SMTP_PORT", "2525".to_string());
    values.insert("SESSION_KEY", "k".repeat(48));
    let text = render_conf_file("mailstead configuration\n\nsecond line", &values);
    assert!(text.starts_with("# mailstead configuration\n#\n# second line\n"));
    let l = load(&text).unwrap();
    assert!(l.warnings.is_empty() && l.notes.is_empty());
    assert_eq!(l.config.smtp_port.port, 2525);
    assert_eq!(l.config.session_key.len(), 48);
    for key in KEYS {
        assert!(
            text.contains(&format!("\n{}=", key.name)),
            "{} missing",
            key.name
        );
    }
}

/// docs/configuration.md is generated from the key table; it must not drift from the code.
/// `UPDATE_DOCS=1 cargo test -p mailstead-core` rewrites it.
#[test]
fn configuration_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let current = render_reference();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != current {
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &current).unwrap();
        } else {
            panic!(
                "docs/configuration.md differs from the key table; regenerate it with \
                 `UPDATE_DOCS=1 cargo test -p mailstead-core configuration_reference`"
            );
        }
    }
}

#[test]
fn a_posix_tz_in_the_environment_gives_way_to_the_file() {
    let l = load_env(&format!("{BASE}TZ=UTC\n"), &[("TZ", ":/etc/localtime")]).unwrap();
    assert_eq!(l.config.tz, "UTC");
    assert!(l.notes[0].to_string().starts_with(
        "environment: TZ=\":/etc/localtime\" from the environment is not an IANA time zone name"
    ));
    if Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        let l = load_env(BASE, &[("TZ", "Europe/Berlin")]).unwrap();
        assert_eq!(l.config.tz, "Europe/Berlin");
    }
}
