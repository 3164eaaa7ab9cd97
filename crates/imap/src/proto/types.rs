//! IMAP commands as the parser gives them (RFC 9051 and RFC 3501, with the extensions the
//! server offers). Values are already unquoted and literals inlined; mailbox names are kept as
//! the client sent them (modified UTF-7 or UTF-8), the session decodes them.

/// A tagged command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// A mailbox name as sent (after unquoting): modified UTF-7 (RFC 3501 §5.1.3) unless the
/// client enabled UTF-8, then UTF-8 (RFC 9051 §5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxArg(pub Vec<u8>);

/// A sequence number or UID in a set; `*` is the largest in use (RFC 9051 §9 seq-number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqNum {
    Value(u32),
    Star,
}

/// `a` or `a:b` (either order; RFC 9051 §9 seq-range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNum,
    pub end: SeqNum,
}

/// A sequence set: one or more ranges (RFC 9051 §9 sequence-set). `$` (SEARCHRES) is
/// `saved = true` with no ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceSet {
    pub ranges: Vec<SeqRange>,
    pub saved: bool,
}

/// A message flag in STORE and APPEND.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent`: not settable; kept so the session can answer with BAD/NO precisely.
    Recent,
    /// A keyword atom (`$Forwarded`, `NonJunk`, ...), as given.
    Keyword(String),
    /// Another `\Something`: an extension flag the server does not know.
    Extension(String),
}

/// Date of SEARCH keys: `d-Mon-yyyy` (RFC 9051 §9 date).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

/// SEARCH criteria (RFC 9051 §6.4.4, RFC 7162 §3.1.5 MODSEQ, RFC 5032 OLDER/YOUNGER).
/// String values are raw bytes (the charset is the client's; UTF-8 with rev2 or CHARSET UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(Vec<u8>),
    Before(Date),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    Deleted,
    Draft,
    Flagged,
    From(Vec<u8>),
    /// HEADER field-name string.
    Header(String, Vec<u8>),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    SequenceSet(SequenceSet),
    /// A parenthesised list, or the top level: all must match.
    And(Vec<SearchKey>),
    /// MODSEQ [entry-name entry-type] value (RFC 7162 §3.1.5); the entry is ignored.
    ModSeq(u64),
    /// OLDER n: internal date more than n seconds ago (RFC 5032).
    Older(u64),
    /// YOUNGER n.
    Younger(u64),
}

/// ESEARCH return options (RFC 4731, RFC 9051 §6.4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    /// SAVE (RFC 5182): remember the result as `$`.
    Save,
}

/// A body section (RFC 9051 §6.4.5 BODY[section]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Section {
    /// Part numbers, `1.2.3`; empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// HEADER.FIELDS (names), names as given.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// MIME: the part's own header (only with a part number).
    Mime,
}

/// One FETCH data item (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAttr {
    Envelope,
    Flags,
    InternalDate,
    Rfc822Size,
    Uid,
    /// BODYSTRUCTURE (with extension data).
    BodyStructure,
    /// BODY without a section: the non-extensible structure.
    Body,
    /// BODY[section]<partial> or BODY.PEEK[...]; `partial` is (offset, length).
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// BINARY[part]<partial> or BINARY.PEEK.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize {
        part: Vec<u32>,
    },
    /// RFC822 (= BODY[]), RFC822.HEADER (= BODY.PEEK[HEADER]), RFC822.TEXT (= BODY[TEXT]).
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    ModSeq,
}

/// FETCH's items: the macros ALL, FAST, FULL expand to lists (RFC 9051 §6.4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchItems {
    All,
    Fast,
    Full,
    List(Vec<FetchAttr>),
}

impl FetchItems {
    /// The attributes of a macro or list.
    pub fn attrs(&self) -> Vec<FetchAttr> {
        match self {
            FetchItems::All => vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
            ],
            FetchItems::Fast => vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
            ],
            FetchItems::Full => vec![
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ],
            FetchItems::List(l) => l.clone(),
        }
    }
}

/// How STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Replace,
    Add,
    Remove,
}

/// STATUS items (RFC 9051 §6.3.11, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 7889
/// APPENDLIMIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
}

/// LIST selection options (RFC 5258, RFC 6154).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
}

/// LIST return options (RFC 5258, RFC 6154, RFC 5819 LIST-STATUS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
}

/// QRESYNC parameters of SELECT/EXAMINE (RFC 7162 §3.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// (known sequence numbers, their UIDs)
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// One message of APPEND (MULTIAPPEND allows several, RFC 3502).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    /// INTERNALDATE as Unix seconds.
    pub date: Option<i64>,
    pub data: Vec<u8>,
    /// Sent as a literal8 `~{n}` (RFC 3516 §4.4).
    pub binary: bool,
}

/// SORT keys (RFC 5256 §3, RFC 5957 DISPLAY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// Every command the server understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    /// ID (RFC 2971): NIL or field/value pairs.
    Id(Option<Vec<(String, Option<String>)>>),
    StartTls,
    /// AUTHENTICATE mechanism [initial-response] (SASL-IR, RFC 4959: `=` is an empty response).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Enable(Vec<String>),
    Select {
        mailbox: MailboxArg,
        examine: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    },
    /// CREATE, with RFC 6154 §3 USE (...) special-use attributes.
    Create {
        mailbox: MailboxArg,
        special_use: Vec<String>,
    },
    Delete(MailboxArg),
    Rename {
        from: MailboxArg,
        to: MailboxArg,
    },
    Subscribe(MailboxArg),
    Unsubscribe(MailboxArg),
    List {
        select: Vec<ListSelect>,
        reference: MailboxArg,
        patterns: Vec<MailboxArg>,
        returns: Vec<ListReturn>,
    },
    Lsub {
        reference: MailboxArg,
        pattern: MailboxArg,
    },
    Namespace,
    Status {
        mailbox: MailboxArg,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: MailboxArg,
        messages: Vec<AppendMessage>,
    },
    Idle,
    GetQuota(String),
    GetQuotaRoot(MailboxArg),
    /// SETQUOTA root (resource limit ...): refused for users (RFC 9208 §4.3).
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    /// COMPRESS mechanism (RFC 4978).
    Compress(String),
    Check,
    Close,
    Unselect,
    /// EXPUNGE, or UID EXPUNGE set (RFC 4315).
    Expunge {
        uids: Option<SequenceSet>,
    },
    Search {
        uid: bool,
        charset: Option<String>,
        criteria: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    },
    /// FETCH set items [(CHANGEDSINCE n [VANISHED])] (RFC 7162 §3.1.4, §3.2.6).
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: FetchItems,
        changed_since: Option<u64>,
        vanished: bool,
    },
    /// STORE set [(UNCHANGEDSINCE n)] op[.SILENT] flags (RFC 7162 §3.1.3).
    Store {
        uid: bool,
        set: SequenceSet,
        unchanged_since: Option<u64>,
        op: StoreOp,
        silent: bool,
        flags: Vec<Flag>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: MailboxArg,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: MailboxArg,
    },
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: String,
        search: SearchKey,
        returns: Option<Vec<SearchReturn>>,
    },
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        search: SearchKey,
    },
}

/// Why a command could not be parsed; the server answers `tag BAD message` (or untagged BAD
/// when no tag could be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub message: String,
}
