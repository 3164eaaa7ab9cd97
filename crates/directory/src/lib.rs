//! Domains, mailboxes, aliases, alias domains and catch-alls: who exists, where mail for an
//! address goes, and who may log in. Persistence is the store's; this crate adds the rules.

pub mod password;
