//! mailcow.conf keys that have no meaning in mailstead, and why. A mailcow.conf copied over
//! loads with a note for each of these instead of a wall of "unknown key" warnings.

pub(crate) const REASONS: &[(&[&str], &str)] = &[
    (
        &["DBNAME", "DBUSER", "DBPASS", "DBROOT", "SQL_PORT"],
        "there is no MariaDB; metadata lives in DATA_DIR (see STORE)",
    ),
    (
        &[
            "REDISPASS",
            "REDIS_PORT",
            "REDISHOST",
            "REDISMASTERPASS",
            "REDIS_SLAVEOF_IP",
            "REDIS_SLAVEOF_PORT",
        ],
        "there is no Redis; state lives in the store",
    ),
    (
        &[
            "COMPOSE_PROJECT_NAME",
            "DOCKER_COMPOSE_VERSION",
            "IPV4_NETWORK",
            "IPV6_NETWORK",
            "DISABLE_NETFILTER_ISOLATION_RULE",
            "SNAT_TO_SOURCE",
            "SNAT6_TO_SOURCE",
            "IP_BY_DOCKER_API",
            "PHPFPMHOST",
            "SOGOHOST",
            "RSPAMDHOST",
            "MAILCOW_REPLICA_IP",
            "DOVEADM_REPLICA_PORT",
        ],
        "mailstead is one process, not a Docker Compose stack",
    ),
    (
        &["DOVEADM_PORT", "DOVECOT_MASTER_USER", "DOVECOT_MASTER_PASS"],
        "there is no doveadm; use the mailstead command",
    ),
    (
        &["MAILCOW_PASS_SCHEME"],
        "new passwords are always argon2id; BLF-CRYPT, SHA512-CRYPT, SSHA256 and the other mailcow schemes are verified and upgraded at login",
    ),
    (
        &["MAILDIR_SUB", "MAILDIR_GC_TIME"],
        "messages are stored as content-addressed blobs, not maildirs",
    ),
    (
        &[
            "SOLR_HEAP",
            "SOLR_PORT",
            "FTS_HEAP",
            "FTS_PROCS",
            "FLATCURVE_EXPERIMENTAL",
        ],
        "the search index runs inside the one process",
    ),
    (
        &["SKIP_OLEFY", "SKIP_UNBOUND_HEALTHCHECK", "SKIP_RSPAMD"],
        "that component does not exist as a separate service",
    ),
    (
        &[
            "USE_WATCHDOG",
            "WATCHDOG_NOTIFY_BAN",
            "WATCHDOG_NOTIFY_START",
            "WATCHDOG_EXTERNAL_CHECKS",
            "WATCHDOG_VERBOSE",
            "WATCHDOG_NOTIFY_EMAIL",
            "WATCHDOG_NOTIFY_WEBHOOK",
            "WATCHDOG_NOTIFY_WEBHOOK_BODY",
            "WATCHDOG_SUBJECT",
            "WATCHDOG_MYSQL_REPLICATION_CHECKS",
            "ACME_THRESHOLD",
            "CHECK_UNBOUND",
            "CLAMD_THRESHOLD",
            "DOVECOT_REPL_THRESHOLD",
            "DOVECOT_THRESHOLD",
            "EXTERNAL_CHECKS_THRESHOLD",
            "FAIL2BAN_THRESHOLD",
            "MAILQ_CRIT",
            "MAILQ_THRESHOLD",
            "MYSQL_REPLICATION_THRESHOLD",
            "MYSQL_THRESHOLD",
            "NGINX_THRESHOLD",
            "OLEFY_THRESHOLD",
            "PHPFPM_THRESHOLD",
            "POSTFIX_THRESHOLD",
            "POSTFIX_TLSPOL_THRESHOLD",
            "RATELIMIT_THRESHOLD",
            "REDIS_THRESHOLD",
            "RSPAMD_THRESHOLD",
            "SOGO_THRESHOLD",
            "UNBOUND_THRESHOLD",
        ],
        "there are no containers to watch; `mailstead doctor` checks the host",
    ),
    (
        &["CLUSTERMODE", "MASTER", "DEV_MODE", "DEMO_MODE"],
        "mailcow deployment switch without an equivalent",
    ),
];

/// Why a mailcow key has no effect here, if it is one of them.
pub fn reason(key: &str) -> Option<&'static str> {
    REASONS
        .iter()
        .find(|(keys, _)| keys.contains(&key))
        .map(|(_, why)| *why)
}
