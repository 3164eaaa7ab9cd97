//! The records the store keeps, as callers see them. Nothing here knows about SQL.

use crate::blob::BlobId;
use mailstead_core::event::{FolderId, MailboxId};
use serde::Serialize;

pub type DomainId = i64;

/// Limits of a new domain, mailcow's defaults: 10 mailboxes, 400 aliases, 3 GiB default and
/// 10 GiB maximum mailbox quota, 10 GiB for the whole domain. Zero means unlimited.
pub const DEFAULT_MAX_MAILBOXES: i64 = 10;
pub const DEFAULT_MAX_ALIASES: i64 = 400;
pub const DEFAULT_MAILBOX_QUOTA: i64 = 3072 << 20;
pub const DEFAULT_MAX_QUOTA: i64 = 10240 << 20;
pub const DEFAULT_TOTAL_QUOTA: i64 = 10240 << 20;

/// A mail domain and its limits (mailcow: mailboxes, aliases, defquota, maxquota, quota).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Domain {
    #[serde(skip)]
    pub id: DomainId,
    pub name: String,
    pub description: String,
    /// Most mailboxes the domain may have; 0 = unlimited.
    pub max_mailboxes: i64,
    /// Most aliases the domain may have; 0 = unlimited.
    pub max_aliases: i64,
    /// Quota a new mailbox gets when none is given, in bytes.
    pub default_quota: i64,
    /// Largest quota one mailbox may have, in bytes; 0 = unlimited.
    pub max_quota: i64,
    /// Sum of all mailbox quotas, in bytes; 0 = unlimited.
    pub total_quota: i64,
    pub active: bool,
    pub created: i64,
    pub modified: i64,
}

/// What a new domain is created with.
#[derive(Clone, Debug)]
pub struct NewDomain {
    pub name: String,
    pub description: String,
    pub max_mailboxes: i64,
    pub max_aliases: i64,
    pub default_quota: i64,
    pub max_quota: i64,
    pub total_quota: i64,
    pub active: bool,
}

impl NewDomain {
    /// A domain with mailcow's default limits.
    pub fn with_defaults(name: &str) -> NewDomain {
        NewDomain {
            name: name.to_string(),
            description: String::new(),
            max_mailboxes: DEFAULT_MAX_MAILBOXES,
            max_aliases: DEFAULT_MAX_ALIASES,
            default_quota: DEFAULT_MAILBOX_QUOTA,
            max_quota: DEFAULT_MAX_QUOTA,
            total_quota: DEFAULT_TOTAL_QUOTA,
            active: true,
        }
    }
}

/// Changes to a domain; `None` keeps a value.
#[derive(Clone, Debug, Default)]
pub struct DomainPatch {
    pub description: Option<String>,
    pub max_mailboxes: Option<i64>,
    pub max_aliases: Option<i64>,
    pub default_quota: Option<i64>,
    pub max_quota: Option<i64>,
    pub total_quota: Option<i64>,
    pub active: Option<bool>,
}

/// What a domain currently uses of its limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DomainUsage {
    pub mailboxes: i64,
    pub aliases: i64,
    /// Sum of the quotas given to its mailboxes, in bytes.
    pub quota_assigned: i64,
    /// Mailboxes with unlimited quota.
    pub unlimited_mailboxes: i64,
    /// Bytes stored in its mailboxes.
    pub bytes_used: i64,
}

/// Which protocols a mailbox may log in with (mailcow's imap_access, pop3_access, smtp_access,
/// sieve_access).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Access {
    pub imap: bool,
    pub pop3: bool,
    pub smtp: bool,
    pub sieve: bool,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            imap: true,
            pop3: true,
            smtp: true,
            sieve: true,
        }
    }
}

/// A mailbox: an account that receives mail and logs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub id: MailboxId,
    #[serde(skip)]
    pub domain_id: DomainId,
    /// Normalised `local@domain`.
    pub address: String,
    pub local_part: String,
    pub domain: String,
    /// Display name.
    pub name: String,
    /// `{SCHEME}hash`; never shown.
    #[serde(skip)]
    pub password: String,
    /// Bytes the mailbox may hold; 0 = unlimited.
    pub quota: i64,
    pub used_bytes: i64,
    pub used_messages: i64,
    pub active: bool,
    pub access: Access,
    pub created: i64,
    pub modified: i64,
}

#[derive(Clone, Debug)]
pub struct NewMailbox {
    pub local_part: String,
    pub domain: String,
    pub name: String,
    pub password: String,
    /// `None`: the domain's default quota.
    pub quota: Option<i64>,
    pub active: bool,
    pub access: Access,
}

#[derive(Clone, Debug, Default)]
pub struct MailboxPatch {
    pub name: Option<String>,
    pub quota: Option<i64>,
    pub active: Option<bool>,
    pub imap: Option<bool>,
    pub pop3: Option<bool>,
    pub smtp: Option<bool>,
    pub sieve: Option<bool>,
}

/// An alias: an address (or `@domain`, a catch-all) that delivers to one or more targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alias {
    #[serde(skip)]
    pub id: i64,
    pub address: String,
    pub domain: String,
    pub targets: Vec<String>,
    pub active: bool,
    pub comment: String,
    pub created: i64,
    pub modified: i64,
}

#[derive(Clone, Debug)]
pub struct NewAlias {
    /// `local@domain`, or `@domain` for a catch-all.
    pub address: String,
    pub domain: String,
    pub targets: Vec<String>,
    pub active: bool,
    pub comment: String,
}

/// An alias domain: mail for `x@alias` goes to `x@target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AliasDomain {
    pub name: String,
    pub target: String,
    pub active: bool,
    pub created: i64,
}

/// An administrator of the whole server (mailcow's `admin` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Admin {
    pub username: String,
    #[serde(skip)]
    pub password: String,
    pub active: bool,
    pub created: i64,
}

/// RFC 6154 special-use attributes of the folders every mailbox starts with.
pub const DEFAULT_FOLDERS: &[(&str, Option<&str>)] = &[
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Junk", Some("\\Junk")),
    ("Trash", Some("\\Trash")),
    ("Archive", Some("\\Archive")),
];

/// The hierarchy separator of folder names.
pub const FOLDER_SEPARATOR: char = '/';

/// A folder (an IMAP mailbox) with the counters IMAP needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Folder {
    pub id: FolderId,
    pub mailbox_id: MailboxId,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
}

/// System flags of a message (RFC 9051 §2.3.2), as bits. `\Recent` is per session, not stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Flags(pub u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    const ALL: [(Flags, &'static str); 5] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ];

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The flag for an IMAP name such as `\Seen` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Flags> {
        Flags::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::ALL
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

/// A message's place in a folder and its mutable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// Unix seconds.
    pub internal_date: i64,
    pub size: u64,
    pub blob: BlobId,
}

/// A message to add to a folder: a durable blob plus initial state.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub blob: crate::blob::BlobRef,
    /// JSON of [`crate::summary::Summary`]; computed once per blob.
    pub summary: String,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub internal_date: i64,
}

/// Where an added message landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub folder: FolderId,
    pub uidvalidity: u32,
    pub uid: u32,
    pub modseq: u64,
}

/// How STORE changes flags (RFC 9051 §6.4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// A flag change applied to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagChange {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Flags,
    pub keywords: Vec<String>,
}

/// Result of a STORE with UNCHANGEDSINCE: what changed and what was refused (RFC 7162 §3.1.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagsResult {
    pub changed: Vec<FlagChange>,
    pub modified: Vec<u32>,
}

/// Counts of a folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub size: u64,
    pub first_unseen_uid: Option<u32>,
    /// Messages with a UID at or above the `recent_from` asked for.
    pub recent: u32,
}

/// Changes in a folder since a MODSEQ (for CONDSTORE/QRESYNC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesSince {
    pub changed: Vec<MessageMeta>,
    pub expunged: Vec<u32>,
}
