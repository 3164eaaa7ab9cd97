-- Outbound settings: relay hosts (mailcow's relayhosts, per sender domain or the default),
-- TLS policy maps per destination (mailcow's tls_policy_override), DKIM keys, and the
-- MTA-STS policies learned from other domains (RFC 8461 §5.1 wants them kept across restarts).

CREATE TABLE relayhost (
    id       INTEGER PRIMARY KEY,
    hostname TEXT NOT NULL,
    port     INTEGER NOT NULL DEFAULT 25,
    username TEXT NOT NULL DEFAULT '',
    password TEXT NOT NULL DEFAULT '',
    active   INTEGER NOT NULL DEFAULT 1,
    created  INTEGER NOT NULL
);

ALTER TABLE domain ADD COLUMN relayhost INTEGER NOT NULL DEFAULT 0;

CREATE TABLE tls_policy (
    dest       TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    parameters TEXT NOT NULL DEFAULT '',
    active     INTEGER NOT NULL DEFAULT 1,
    created    INTEGER NOT NULL
);

CREATE TABLE dkim_key (
    domain      TEXT PRIMARY KEY,
    selector    TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created     INTEGER NOT NULL
);

CREATE TABLE sts_policy (
    domain  TEXT PRIMARY KEY,
    id      TEXT NOT NULL,
    mode    TEXT NOT NULL,
    mx      TEXT NOT NULL,
    max_age INTEGER NOT NULL,
    fetched INTEGER NOT NULL
);
