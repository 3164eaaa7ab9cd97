-- The outbound queue: a message (one blob reference) and its remote recipients, each with its
-- own state, so one recipient can be delivered while another waits or bounces.

CREATE TABLE queue_message (
    id         INTEGER PRIMARY KEY,
    qid        TEXT NOT NULL UNIQUE,
    blob       BLOB NOT NULL,
    -- Bytes at the start of the blob that are not sent (the Return-Path of local delivery).
    skip       INTEGER NOT NULL DEFAULT 0,
    size       INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    envid      TEXT,
    ret_full   INTEGER,
    smtputf8   INTEGER NOT NULL DEFAULT 0,
    eight_bit  INTEGER NOT NULL DEFAULT 0,
    -- The user who submitted it (relay host per sender domain), if any.
    auth_user  TEXT,
    -- A delivery status notification: never answered with another one.
    is_dsn     INTEGER NOT NULL DEFAULT 0,
    held       INTEGER NOT NULL DEFAULT 0,
    created    INTEGER NOT NULL
);

CREATE TABLE queue_rcpt (
    id             INTEGER PRIMARY KEY,
    message_id     INTEGER NOT NULL REFERENCES queue_message(id) ON DELETE CASCADE,
    address        TEXT NOT NULL,
    domain         TEXT NOT NULL,
    orcpt          TEXT,
    notify         INTEGER NOT NULL DEFAULT 0,
    -- 0 waiting, 1 delivered, 2 failed, 3 given up after the queue lifetime
    state          INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_attempt   INTEGER NOT NULL,
    last_error     TEXT,
    -- The remote server's reply or our reason, for the DSN.
    diagnostic     TEXT,
    remote_mta     TEXT,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    -- A DSN about this recipient was queued or delivered.
    reported       INTEGER NOT NULL DEFAULT 0,
    updated        INTEGER NOT NULL
);
CREATE INDEX queue_rcpt_due ON queue_rcpt(state, next_attempt);
CREATE INDEX queue_rcpt_message ON queue_rcpt(message_id);
