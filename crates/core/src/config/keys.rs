//! The key table. Each entry is written once here and becomes a field of [`Config`], a row of
//! [`KEYS`] (docs, generated file, checks) and a step of the parser, so they cannot drift.

use super::kinds::*;
use super::{ConfigError, KeyDef, RawValues};
use std::path::{Path, PathBuf};

macro_rules! config_table {
    (
        $(
            section $section:literal {
                $(
                    $(#[doc = $doc:literal])+
                    $key:ident => $field:ident : $kind:ty = $default:literal $(, $secret:ident)? ;
                )+
            }
        )+
    ) => {
        /// The loaded configuration. Field docs are the key's documentation.
        #[derive(Clone, Debug)]
        pub struct Config {
            $($(
                $(#[doc = $doc])+
                pub $field: <$kind as Kind>::Value,
            )+)+
            /// Where the data lives: `DATA_DIR`, or the directory of the configuration file.
            pub data_dir: PathBuf,
            /// The file the configuration was read from.
            pub config_path: PathBuf,
        }

        /// Every key, in the order of the generated file and documentation.
        pub static KEYS: &[KeyDef] = &[
            $($(
                KeyDef {
                    name: stringify!($key),
                    section: $section,
                    default: $default,
                    doc: concat!($($doc, "\n"),+),
                    allowed: <$kind as Kind>::allowed,
                    secret: config_table!(@secret $($secret)?),
                    check: |k, v| <$kind as Kind>::parse(k, v).map(|_| ()),
                },
            )+)+
        ];

        impl Config {
            pub(crate) fn build(
                raw: &RawValues,
                path: &Path,
                data_dir: &Path,
            ) -> Result<Config, Vec<ConfigError>> {
                let mut errors = Vec::new();
                $($(
                    let $field = {
                        let (value, origin) = raw.get(stringify!($key));
                        match <$kind as Kind>::parse(stringify!($key), value) {
                            Ok(v) => Some(v),
                            Err(reason) => {
                                errors.push(ConfigError::bad_value(
                                    origin.clone(),
                                    stringify!($key),
                                    value,
                                    reason,
                                    <$kind as Kind>::allowed(),
                                ));
                                None
                            }
                        }
                    };
                )+)+
                match ($($($field,)+)+) {
                    ($($(Some($field),)+)+) if errors.is_empty() => {
                        let mut config = Config {
                            $($($field,)+)+
                            data_dir: data_dir.to_path_buf(),
                            config_path: path.to_path_buf(),
                        };
                        if let Some(dir) = &config.data_dir_key {
                            config.data_dir = dir.clone();
                        }
                        Ok(config)
                    }
                    _ => Err(errors),
                }
            }
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

config_table! {
    section "General" {
        /// The server's fully qualified host name, as the MX and A records name it
        /// (mail.example.com). It is the SMTP greeting name and the TLS certificate's name.
        MAILCOW_HOSTNAME => hostname: Hostname = "";
        /// Time zone of the dates the server writes into messages (bounces, vacation replies)
        /// and reports. Log lines carry UTC times.
        TZ => tz: TimeZone = "UTC";
        /// Where mailboxes, the database and certificates live. Empty means the directory that
        /// holds this file.
        DATA_DIR => data_dir_key: OptPath = "";
        /// How much the server logs.
        LOG_LEVEL => log_level: LogLevelChoice = "info";
        /// Log lines as readable text or as one JSON object per line.
        LOG_FORMAT => log_format: LogFormatChoice = "text";
        /// Key for signing web sessions and tokens. `mailstead init` generates it; keep it secret.
        SESSION_KEY => session_key: Secret = "", secret;
    }
    section "Listeners" {
        /// SMTP for mail from other servers (MX). A port, or IP:PORT to bind one address.
        SMTP_PORT => smtp_port: MailBind = "25";
        /// SMTP submission with implicit TLS (RFC 8314) for mail clients.
        SMTPS_PORT => smtps_port: MailBind = "465";
        /// SMTP submission with STARTTLS for mail clients.
        SUBMISSION_PORT => submission_port: MailBind = "587";
        /// IMAP with STARTTLS.
        IMAP_PORT => imap_port: MailBind = "143";
        /// IMAP with implicit TLS.
        IMAPS_PORT => imaps_port: MailBind = "993";
        /// POP3 with STLS.
        POP_PORT => pop_port: MailBind = "110";
        /// POP3 with implicit TLS.
        POPS_PORT => pops_port: MailBind = "995";
        /// ManageSieve (RFC 5804) with STARTTLS.
        SIEVE_PORT => sieve_port: MailBind = "4190";
        /// HTTP port of the web interface, API and ACME challenges. A bare port: use HTTP_BIND for
        /// the address.
        HTTP_PORT => http_port: WebPort = "80";
        /// Address HTTP_PORT binds; empty for every address.
        HTTP_BIND => http_bind: BindIp = "";
        /// HTTPS port of the web interface and API. A bare port: use HTTPS_BIND for the address.
        HTTPS_PORT => https_port: WebPort = "443";
        /// Address HTTPS_PORT binds; empty for every address.
        HTTPS_BIND => https_bind: BindIp = "";
        /// Listen on IPv6 as well as IPv4 when a listener has no address of its own.
        ENABLE_IPV6 => enable_ipv6: YesNo = "true";
        /// Connections the server holds at once, over all listeners; more wait for a free place.
        MAX_CONNECTIONS => max_connections: Uint<1, 1000000> = "2000";
        /// Connections one client address may hold on one listener (Postfix's
        /// smtpd_client_connection_count_limit is 50). Raise it for offices behind one NAT address.
        MAX_CONNECTIONS_PER_IP => max_connections_per_ip: Uint<1, 100000> = "50";
        /// On shutdown, how long open sessions get to finish before they are closed.
        SHUTDOWN_TIMEOUT => shutdown_timeout: Seconds<0, 3600> = "10s";
    }
    section "SMTP" {
        /// Largest message accepted, as mailcow's Postfix message_size_limit (100 MiB).
        MESSAGE_SIZE_LIMIT => message_size_limit: Size<1024, 2147483648> = "100M";
        /// Most recipients of one message (Postfix's smtpd_recipient_limit).
        SMTP_MAX_RECIPIENTS => smtp_max_recipients: Uint<1, 100000> = "1000";
        /// Failed commands after which a session is closed with 421 (Postfix's
        /// smtpd_hard_error_limit).
        SMTP_MAX_ERRORS => smtp_max_errors: Uint<1, 10000> = "20";
        /// Longest command line accepted, in bytes (Postfix's line_length_limit; RFC 5321
        /// requires at least 512).
        SMTP_LINE_LIMIT => smtp_line_limit: Uint<512, 1048576> = "2048";
        /// Time a client has to send one complete command (Postfix's smtpd_timeout). A client
        /// that trickles bytes is cut off when it runs out.
        SMTP_COMMAND_TIMEOUT => smtp_command_timeout: Seconds<1, 3600> = "5m";
        /// Time a client has to send a whole message body.
        SMTP_DATA_TIMEOUT => smtp_data_timeout: Seconds<1, 86400> = "10m";
        /// Pause after a failed login, in every protocol (Dovecot's auth_failure_delay).
        AUTH_FAILURE_DELAY => auth_failure_delay: Seconds<0, 60> = "2s";
    }
    section "Outbound" {
        /// First retry of a deferred message after this long; each retry waits twice as long
        /// as the one before (Postfix's minimal_backoff_time).
        QUEUE_MIN_BACKOFF => queue_min_backoff: Seconds<1, 86400> = "5m";
        /// The longest wait between two attempts (Postfix's maximal_backoff_time).
        QUEUE_MAX_BACKOFF => queue_max_backoff: Seconds<1, 86400> = "4000s";
        /// How long a message may wait in the queue before it is returned to its sender
        /// (Postfix's maximal_queue_lifetime).
        QUEUE_LIFETIME => queue_lifetime: Seconds<60, 31536000> = "5d";
        /// Tell the sender that a message is delayed once it has waited this long; 0 never.
        QUEUE_DELAY_WARNING => queue_delay_warning: Seconds<0, 31536000> = "4h";
        /// Outbound deliveries at once, over all destinations.
        QUEUE_CONCURRENCY => queue_concurrency: Uint<1, 10000> = "100";
        /// Connections at once to one destination (Postfix's
        /// default_destination_concurrency_limit).
        QUEUE_DESTINATION_CONCURRENCY => queue_destination_concurrency: Uint<1, 1000> = "20";
        /// Time to open a connection to another server (Postfix's smtp_connect_timeout).
        SMTP_CLIENT_CONNECT_TIMEOUT => smtp_client_connect_timeout: Seconds<1, 600> = "30s";
        /// Time another server may take for each reply (Postfix's smtp_*_timeout).
        SMTP_CLIENT_TIMEOUT => smtp_client_timeout: Seconds<1, 3600> = "5m";
        /// Time to send a message and get the final reply (Postfix's smtp_data_done_timeout).
        SMTP_CLIENT_DATA_TIMEOUT => smtp_client_data_timeout: Seconds<1, 7200> = "10m";
        /// Testing aid: a file of DNS answers that take precedence over real DNS, one per line:
        /// `NAME MX PREF HOST[:PORT]`, `NAME A ADDR[:PORT]`, `NAME AAAA ADDR`, `NAME TXT "TEXT"`,
        /// `NAME TLSA USAGE SELECTOR MATCHING HEX`. A listed name (or one below it) is answered
        /// only from the file. The ports are a test-only extension.
        DNS_STATIC_MAP => dns_static_map: OptPath = "";
        /// More certificate authorities (PEM) trusted for outbound TLS and MTA-STS, besides the
        /// system's.
        TLS_EXTRA_CA => tls_extra_ca: OptPath = "";
    }
    section "TLS" {
        /// Certificate chain (PEM) for every TLS listener. Empty: DATA_DIR/tls/cert.pem, which
        /// `mailstead init` creates self-signed for MAILCOW_HOSTNAME.
        TLS_CERT => tls_cert: OptPath = "";
        /// Private key (PEM) of TLS_CERT. Empty: DATA_DIR/tls/key.pem.
        TLS_KEY => tls_key: OptPath = "";
        /// More names the certificate must cover besides MAILCOW_HOSTNAME, comma-separated.
        ADDITIONAL_SAN => additional_san: HostList = "";
        /// y: IMAP, POP3 and ManageSieve take passwords on connections without TLS from any
        /// address, as Dovecot's disable_plaintext_auth=no. n: a password needs TLS (STARTTLS,
        /// STLS or the implicit-TLS port) unless the client is on the server's own address.
        ALLOW_PLAINTEXT_AUTH => allow_plaintext_auth: YesNo = "n";
    }
    section "Storage" {
        /// Where metadata (domains, mailboxes, message index) lives: the embedded SQLite database
        /// DATA_DIR/mailstead.db. Message bodies are files under DATA_DIR/blobs.
        STORE => store: StoreChoice = "sqlite";
    }
    section "Services" {
        /// y: no virus scanning (mailcow's switch for ClamAV, which needs about 1 GiB of memory).
        SKIP_CLAMD => skip_clamd: YesNo = "n";
        /// y: no full-text search index. SKIP_SOLR, its older name, is read as this key.
        SKIP_FTS => skip_fts: YesNo = "n";
        /// y: no webmail, calendars or contacts (mailcow's SOGo).
        SKIP_SOGO => skip_sogo: YesNo = "n";
        /// y: no Let's Encrypt certificates; keep using TLS_CERT/TLS_KEY or the self-signed one.
        SKIP_LETS_ENCRYPT => skip_lets_encrypt: YesNo = "n";
    }
}
