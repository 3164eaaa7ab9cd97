-- mailstead schema, version 1. Times are Unix seconds; sizes and quotas are bytes.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE admin (
    id       INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    active   INTEGER NOT NULL DEFAULT 1,
    created  INTEGER NOT NULL,
    modified INTEGER NOT NULL
);

CREATE TABLE domain (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL DEFAULT '',
    max_mailboxes INTEGER NOT NULL,
    max_aliases   INTEGER NOT NULL,
    default_quota INTEGER NOT NULL,
    max_quota     INTEGER NOT NULL,
    total_quota   INTEGER NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created       INTEGER NOT NULL,
    modified      INTEGER NOT NULL
);

CREATE TABLE mailbox (
    id            INTEGER PRIMARY KEY,
    domain_id     INTEGER NOT NULL REFERENCES domain(id),
    local_part    TEXT NOT NULL,
    address       TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    password      TEXT NOT NULL,
    quota         INTEGER NOT NULL,
    used_bytes    INTEGER NOT NULL DEFAULT 0,
    used_messages INTEGER NOT NULL DEFAULT 0,
    active        INTEGER NOT NULL DEFAULT 1,
    imap_access   INTEGER NOT NULL DEFAULT 1,
    pop3_access   INTEGER NOT NULL DEFAULT 1,
    smtp_access   INTEGER NOT NULL DEFAULT 1,
    sieve_access  INTEGER NOT NULL DEFAULT 1,
    created       INTEGER NOT NULL,
    modified      INTEGER NOT NULL
);
CREATE INDEX mailbox_domain ON mailbox(domain_id);

CREATE TABLE alias (
    id        INTEGER PRIMARY KEY,
    domain_id INTEGER NOT NULL REFERENCES domain(id),
    address   TEXT NOT NULL UNIQUE,
    active    INTEGER NOT NULL DEFAULT 1,
    comment   TEXT NOT NULL DEFAULT '',
    created   INTEGER NOT NULL,
    modified  INTEGER NOT NULL
);
CREATE INDEX alias_domain_id ON alias(domain_id);

CREATE TABLE alias_target (
    alias_id INTEGER NOT NULL REFERENCES alias(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    target   TEXT NOT NULL,
    PRIMARY KEY (alias_id, position)
);
CREATE INDEX alias_target_target ON alias_target(target);

CREATE TABLE alias_domain (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    target_domain_id INTEGER NOT NULL REFERENCES domain(id),
    active           INTEGER NOT NULL DEFAULT 1,
    created          INTEGER NOT NULL,
    modified         INTEGER NOT NULL
);

CREATE TABLE folder (
    id            INTEGER PRIMARY KEY,
    mailbox_id    INTEGER NOT NULL REFERENCES mailbox(id),
    name          TEXT NOT NULL,
    special_use   TEXT,
    subscribed    INTEGER NOT NULL DEFAULT 1,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    UNIQUE (mailbox_id, name)
);

-- One row per stored blob; the summary is per content, so all recipients of a message share it.
CREATE TABLE blob (
    hash    BLOB PRIMARY KEY,
    size    INTEGER NOT NULL,
    refs    INTEGER NOT NULL,
    summary TEXT NOT NULL
) WITHOUT ROWID;

-- Small rows keyed by (folder, uid): a FLAGS fetch of a large folder is one range scan.
CREATE TABLE message (
    folder_id     INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    flags         INTEGER NOT NULL,
    keywords      TEXT NOT NULL DEFAULT '',
    internal_date INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    blob          BLOB NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX message_modseq ON message(folder_id, modseq);

-- Expunged UIDs with the MODSEQ of their expunge, for QRESYNC VANISHED (RFC 7162 §3.2.10).
CREATE TABLE expunged (
    folder_id INTEGER NOT NULL,
    uid       INTEGER NOT NULL,
    modseq    INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(folder_id, modseq);
