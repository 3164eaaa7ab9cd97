-- IMAP subscriptions by name, apart from folders: a subscription outlives the folder it names
-- (RFC 9051 §6.3.7: a server must not remove a subscribed name on its own) and can be listed as
-- \NonExistent.
CREATE TABLE subscription (
    mailbox_id INTEGER NOT NULL REFERENCES mailbox(id),
    name       TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, name)
) WITHOUT ROWID;
INSERT INTO subscription (mailbox_id, name) SELECT mailbox_id, name FROM folder WHERE subscribed = 1;
ALTER TABLE folder DROP COLUMN subscribed;
