-- Sieve: each mailbox's scripts (ManageSieve, RFC 5804), at most one of them active; the
-- admin's global pre- and post-filters, server-wide (scope '') or for one domain; and what
-- the scripts remember between deliveries (vacation replies sent, duplicate ids seen).
CREATE TABLE sieve_script (
    mailbox_id INTEGER NOT NULL REFERENCES mailbox(id),
    name       TEXT NOT NULL,
    content    TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0,
    modified   INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, name)
) WITHOUT ROWID;
CREATE UNIQUE INDEX sieve_script_active ON sieve_script(mailbox_id) WHERE active = 1;

CREATE TABLE sieve_global (
    scope    TEXT NOT NULL,
    phase    TEXT NOT NULL CHECK (phase IN ('pre', 'post')),
    content  TEXT NOT NULL,
    modified INTEGER NOT NULL,
    PRIMARY KEY (scope, phase)
) WITHOUT ROWID;

CREATE TABLE sieve_memory (
    mailbox_id INTEGER NOT NULL REFERENCES mailbox(id),
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    expires    INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, kind, key)
) WITHOUT ROWID;
