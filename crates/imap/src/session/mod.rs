//! The IMAP session: one client's state and the handling of each command (RFC 9051, RFC 3501
//! and the extensions in [`capabilities`]). Commands come in parsed; responses go out as bytes
//! into a buffer the shell sends. The session talks to the store and directory but never to the
//! socket: the shell does literals, IDLE, STARTTLS and COMPRESS.

mod auth;
mod list;
mod mailboxes;
mod messages;
mod updates;

use crate::ImapConfig;
use crate::proto::encode;
use crate::proto::types::{Command, CommandBody};
use crate::view::View;
use mailstead_core::event::{Change, Event};
use mailstead_directory::Directory;
use mailstead_store::{Folder, Mailbox, Store};
use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};

/// Which optional behaviours the client switched on (RFC 9051 §6.3.1 ENABLE, RFC 7162).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enabled {
    pub imap4rev2: bool,
    pub utf8: bool,
    pub condstore: bool,
    pub qresync: bool,
}

/// The selected mailbox.
#[derive(Debug)]
pub struct Selected {
    pub folder: Folder,
    pub read_only: bool,
    pub view: View,
    /// SEARCHRES (RFC 5182): UIDs of the last SEARCH ... RETURN (SAVE).
    pub saved: Option<Vec<u32>>,
    /// The store's events since the selection: a command asks the store what changed only
    /// when one of them concerns this folder, instead of at every command.
    pub news: broadcast::Receiver<Event>,
    /// An event concerned the folder and the store was not asked yet.
    pub stale: bool,
    /// When the store was last asked.
    pub looked_at: Instant,
}

/// How often a selected folder is looked at even without events: changes made by another
/// process (an admin command removing a mailbox) reach no event bus.
const LOOK_ANYWAY: Duration = Duration::from_secs(1);

impl Selected {
    pub fn new(
        folder: Folder,
        read_only: bool,
        view: View,
        news: broadcast::Receiver<Event>,
    ) -> Self {
        Selected {
            folder,
            read_only,
            view,
            saved: None,
            news,
            stale: false,
            looked_at: Instant::now(),
        }
    }

    /// Whether an event means the view may be behind: one newer than the view, or a rename or
    /// deletion, of this folder.
    fn concerns(&self, e: &Event) -> bool {
        e.folder == self.folder.id
            && (matches!(e.change, Change::Folder) || e.modseq > self.view.modseq)
    }

    /// Whether the store must be asked about the folder: an event concerns it, events were
    /// missed, or it is a while since the last look.
    pub fn has_news(&mut self) -> bool {
        loop {
            match self.news.try_recv() {
                Ok(e) => self.stale |= self.concerns(&e),
                Err(TryRecvError::Lagged(_)) => self.stale = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        self.stale || self.looked_at.elapsed() >= LOOK_ANYWAY
    }

    /// Waits for an event that concerns the folder (or a gap in them), for IDLE. Never ends
    /// once the bus is closed: the server is stopping, which IDLE hears of otherwise.
    pub async fn changed(&mut self) {
        loop {
            match self.news.recv().await {
                Ok(e) if self.concerns(&e) => break,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
        self.stale = true;
    }

    /// The store was asked: the view is current.
    pub fn looked(&mut self) {
        self.stale = false;
        self.looked_at = Instant::now();
    }
}

/// Where the session is (RFC 9051 §3).
#[derive(Debug)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<Selected>),
    Logout,
}

/// What the shell must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Start TLS after sending the output.
    StartTls,
    /// Start COMPRESS=DEFLATE after sending the output.
    Compress,
    /// Enter IDLE: send the output (a continuation request) and wait for DONE.
    Idle,
    /// AUTHENTICATE needs the client's response line after the output (`+ `).
    AuthContinue,
    /// Close the connection after sending the output.
    Close,
    /// Send the output, then call [`Session::resume`]: the command is not finished.
    Resume,
}

/// Per-folder state shared by every session of this server: which UIDs were already announced
/// as \Recent to some session (RFC 3501 §2.3.2: a message is recent in one session only).
/// Kept in memory: after a restart, messages that arrived before it are no longer recent.
#[derive(Default)]
pub struct RecentTracker {
    /// The first UID not yet claimed, per folder claimed since start.
    next: Mutex<HashMap<i64, u32>>,
    /// UIDNEXT of every folder when the server started: what arrived after it is recent until
    /// a session claims it. A folder created since then is recent from UID 1.
    at_start: HashMap<i64, u32>,
}

impl RecentTracker {
    pub fn new(at_start: HashMap<i64, u32>) -> RecentTracker {
        RecentTracker {
            next: Mutex::default(),
            at_start,
        }
    }

    fn first_unclaimed(&self, map: &HashMap<i64, u32>, folder: i64) -> u32 {
        map.get(&folder)
            .or_else(|| self.at_start.get(&folder))
            .copied()
            .unwrap_or(1)
    }

    /// The first recent UID, without claiming (EXAMINE, STATUS RECENT).
    pub fn peek(&self, folder: i64) -> u32 {
        let map = self.next.lock().unwrap_or_else(|p| p.into_inner());
        self.first_unclaimed(&map, folder)
    }

    /// Claims the messages from the last claim up to `uidnext`: returns the first UID that is
    /// recent for the caller.
    pub fn claim(&self, folder: i64, uidnext: u32) -> u32 {
        let mut map = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let from = self.first_unclaimed(&map, folder);
        map.insert(folder, uidnext.max(from));
        from
    }
}

/// Everything sessions share.
pub struct Shared {
    pub cfg: ImapConfig,
    pub store: Store,
    pub directory: Directory,
    pub recent: RecentTracker,
    /// Logged-in sessions per user and client address, for
    /// [`ImapConfig::max_user_connections`].
    pub user_sessions: Mutex<HashMap<(String, IpAddr), u32>>,
}

/// One client.
pub struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: State,
    pub(crate) user: Option<Mailbox>,
    pub(crate) enabled: Enabled,
    pub(crate) tls: bool,
    /// STARTTLS can be offered (a certificate exists and TLS is not on yet).
    pub(crate) starttls: bool,
    /// The client connects from the server's own address: its traffic never leaves the host,
    /// so passwords may go without TLS (Dovecot's rule for local connections). Also set when
    /// ALLOW_PLAINTEXT_AUTH says passwords may go without TLS from anywhere.
    pub(crate) local: bool,
    pub(crate) peer: IpAddr,
    pub(crate) compressed: bool,
    /// Output waiting to be sent.
    pub out: Vec<u8>,
    /// AUTHENTICATE PLAIN waiting for its response: the tag.
    pub(crate) auth_tag: Option<String>,
    /// The tag of a running IDLE.
    pub(crate) idle_tag: Option<String>,
    /// A FETCH paused to let its output be sent.
    pub(crate) pending_fetch: Option<Box<messages::PendingFetch>>,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        tls: bool,
        starttls: bool,
        peer: IpAddr,
        local: bool,
    ) -> Session {
        Session {
            shared,
            state: State::NotAuthenticated,
            user: None,
            enabled: Enabled::default(),
            tls,
            starttls,
            local,
            peer,
            compressed: false,
            out: Vec::new(),
            auth_tag: None,
            idle_tag: None,
            pending_fetch: None,
        }
    }

    /// The greeting (RFC 9051 §7.1.1), with the capabilities so clients need not ask.
    pub fn greeting(&mut self) {
        let caps = self.capabilities();
        let _ = write!(
            self.out,
            "* OK [CAPABILITY {caps}] {} IMAP ready\r\n",
            self.shared.cfg.hostname
        );
    }

    /// The user that logged in, for logs.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.address.as_str())
    }

    /// Whether plaintext LOGIN/AUTHENTICATE is allowed now (RFC 9051 §6.2.3, LOGINDISABLED).
    pub(crate) fn plaintext_ok(&self) -> bool {
        self.tls || self.local
    }

    /// The capability list for the current state.
    pub fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "LITERAL+",
        ];
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        if !authenticated {
            if !self.tls && self.starttls {
                caps.push("STARTTLS");
            }
            if self.plaintext_ok() {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        } else {
            caps.extend([
                "NAMESPACE",
                "UNSELECT",
                "UIDPLUS",
                "MOVE",
                "CHILDREN",
                "LIST-EXTENDED",
                "LIST-STATUS",
                "SPECIAL-USE",
                "CREATE-SPECIAL-USE",
                "CONDSTORE",
                "QRESYNC",
                "ESEARCH",
                "SEARCHRES",
                "SORT",
                "SORT=DISPLAY",
                "ESORT",
                "THREAD=ORDEREDSUBJECT",
                "THREAD=REFERENCES",
                "WITHIN",
                "QUOTA",
                "QUOTA=RES-STORAGE",
                "STATUS=SIZE",
                "UTF8=ACCEPT",
                "MULTIAPPEND",
                "BINARY",
            ]);
            if !self.compressed {
                caps.push("COMPRESS=DEFLATE");
            }
        }
        let mut s = caps.join(" ");
        if authenticated {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(" APPENDLIMIT={}", self.shared.cfg.append_limit),
            );
        }
        s
    }

    /// Whether responses follow IMAP4rev2 (after ENABLE IMAP4rev2).
    pub(crate) fn rev2(&self) -> bool {
        self.enabled.imap4rev2
    }

    /// Whether strings may carry UTF-8 (RFC 9051 rev2, or ENABLE UTF8=ACCEPT).
    pub(crate) fn utf8(&self) -> bool {
        self.enabled.utf8 || self.enabled.imap4rev2
    }

    pub(crate) fn untagged(&mut self, text: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn ok(&mut self, tag: &str, text: &str) {
        let _ = write!(self.out, "{tag} OK {text}\r\n");
    }

    pub(crate) fn no(&mut self, tag: &str, text: &str) {
        let _ = write!(self.out, "{tag} NO {text}\r\n");
    }

    pub(crate) fn bad(&mut self, tag: &str, text: &str) {
        let _ = write!(self.out, "{tag} BAD {text}\r\n");
    }

    /// A string in the client's encoding rules.
    pub(crate) fn string(&self, out: &mut Vec<u8>, s: &[u8]) {
        encode::string(out, s, self.utf8());
    }

    /// Goes on with a command that returned [`Next::Resume`].
    pub async fn resume(&mut self) -> Next {
        self.fetch_more().await
    }

    /// Handles one command; the responses are in [`Session::out`].
    pub async fn handle(&mut self, cmd: Command) -> Next {
        let Command { tag, body } = cmd;
        // Any command may carry news of the selected mailbox (RFC 9051 §7), sent before its own
        // responses: flag changes and new messages always, expunges unless the command forbids
        // them (§7.5.1). Commands that leave the mailbox do not get news of it.
        if matches!(self.state, State::Selected(_)) && !updates::changes_selection(&body) {
            let may_expunge = updates::may_announce_expunges(&body);
            self.announce(may_expunge).await;
        }
        match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                self.ok(&tag, "CAPABILITY completed");
                Next::Continue
            }
            CommandBody::Noop => {
                self.ok(&tag, "NOOP completed");
                Next::Continue
            }
            CommandBody::Logout => {
                self.untagged("BYE logging out");
                self.ok(&tag, "LOGOUT completed");
                self.state = State::Logout;
                Next::Close
            }
            CommandBody::Id(_) => {
                self.untagged(&format!(
                    "ID (\"name\" \"mailstead\" \"version\" \"{}\")",
                    env!("CARGO_PKG_VERSION")
                ));
                self.ok(&tag, "ID completed");
                Next::Continue
            }
            CommandBody::StartTls => self.starttls(&tag),
            CommandBody::Login { user, password } => self.login(&tag, &user, &password).await,
            CommandBody::Authenticate { mechanism, initial } => {
                self.authenticate(&tag, &mechanism, initial).await
            }
            other => {
                if matches!(self.state, State::NotAuthenticated) {
                    self.bad(&tag, "log in first");
                    return Next::Continue;
                }
                self.authenticated_command(&tag, other).await
            }
        }
    }

    async fn authenticated_command(&mut self, tag: &str, body: CommandBody) -> Next {
        use CommandBody as C;
        match body {
            C::Enable(caps) => self.enable(tag, caps),
            C::Select {
                mailbox,
                examine,
                condstore,
                qresync,
            } => {
                self.select(tag, &mailbox, examine, condstore, qresync)
                    .await
            }
            C::Create {
                mailbox,
                special_use,
            } => self.create(tag, &mailbox, &special_use).await,
            C::Delete(mailbox) => self.delete(tag, &mailbox).await,
            C::Rename { from, to } => self.rename(tag, &from, &to).await,
            C::Subscribe(m) => self.subscribe(tag, &m, true).await,
            C::Unsubscribe(m) => self.subscribe(tag, &m, false).await,
            C::List {
                select,
                reference,
                patterns,
                returns,
            } => {
                self.list(tag, &select, &reference, &patterns, &returns, false)
                    .await
            }
            C::Lsub { reference, pattern } => {
                self.list(tag, &[], &reference, &[pattern], &[], true).await
            }
            C::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.ok(tag, "NAMESPACE completed");
                Next::Continue
            }
            C::Status { mailbox, items } => self.status(tag, &mailbox, &items).await,
            C::Append { mailbox, messages } => self.append(tag, &mailbox, messages).await,
            C::Idle => {
                self.idle_tag = Some(tag.to_string());
                self.out.extend_from_slice(b"+ idling\r\n");
                Next::Idle
            }
            C::GetQuota(root) => self.get_quota(tag, &root, None).await,
            C::GetQuotaRoot(mailbox) => {
                let name = mailbox.0.clone();
                self.get_quota(tag, "", Some(name)).await
            }
            C::SetQuota { .. } => {
                self.no(tag, "[NOPERM] quotas are set by the administrator");
                Next::Continue
            }
            C::Compress(mechanism) => {
                if self.compressed {
                    self.no(tag, "[COMPRESSIONACTIVE] compression is already on");
                    Next::Continue
                } else if !mechanism.eq_ignore_ascii_case("DEFLATE") {
                    self.bad(tag, "only DEFLATE is supported");
                    Next::Continue
                } else {
                    self.ok(tag, "DEFLATE active");
                    self.compressed = true;
                    Next::Compress
                }
            }
            selected => self.selected_command(tag, selected).await,
        }
    }

    async fn selected_command(&mut self, tag: &str, body: CommandBody) -> Next {
        use CommandBody as C;
        if !matches!(self.state, State::Selected(_)) {
            self.bad(tag, "no mailbox is selected");
            return Next::Continue;
        }
        match body {
            C::Check | C::Noop => self.ok(tag, "CHECK completed"),
            C::Close => self.close(tag, true).await,
            C::Unselect => self.close(tag, false).await,
            C::Expunge { uids } => self.expunge(tag, uids.as_ref()).await,
            C::Search {
                uid,
                charset,
                criteria,
                returns,
            } => self.search(tag, uid, charset, &criteria, returns).await,
            C::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                return self
                    .fetch(tag, uid, &set, &items, changed_since, vanished)
                    .await;
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                op,
                silent,
                flags,
            } => {
                self.store(tag, uid, &set, unchanged_since, op, silent, &flags)
                    .await
            }
            C::Copy { uid, set, mailbox } => {
                self.copy_or_move(tag, uid, &set, &mailbox, false).await
            }
            C::Move { uid, set, mailbox } => {
                self.copy_or_move(tag, uid, &set, &mailbox, true).await
            }
            C::Sort {
                uid,
                criteria,
                charset: _,
                search,
                returns,
            } => self.sort(tag, uid, &criteria, &search, returns).await,
            C::Thread {
                uid,
                algorithm,
                charset: _,
                search,
            } => self.thread(tag, uid, algorithm, &search).await,
            other => {
                self.bad(
                    tag,
                    &format!("{} is not allowed here", command_name(&other)),
                );
            }
        }
        Next::Continue
    }

    fn enable(&mut self, tag: &str, caps: Vec<String>) -> Next {
        let mut enabled = Vec::new();
        for c in caps {
            let upper = c.to_ascii_uppercase();
            let newly = match upper.as_str() {
                "IMAP4REV2" => !std::mem::replace(&mut self.enabled.imap4rev2, true),
                "UTF8=ACCEPT" => !std::mem::replace(&mut self.enabled.utf8, true),
                "CONDSTORE" => !std::mem::replace(&mut self.enabled.condstore, true),
                // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                "QRESYNC" => {
                    self.enabled.condstore = true;
                    !std::mem::replace(&mut self.enabled.qresync, true)
                }
                _ => false,
            };
            if newly {
                enabled.push(match upper.as_str() {
                    "IMAP4REV2" => "IMAP4rev2".to_string(),
                    _ => upper,
                });
            }
        }
        let list: String = enabled.iter().map(|c| format!(" {c}")).collect();
        self.untagged(&format!("ENABLED{list}"));
        self.ok(tag, "ENABLE completed");
        Next::Continue
    }

    /// Leaves the selected mailbox, after expunging \Deleted messages for CLOSE (RFC 9051
    /// §6.4.1) but not for UNSELECT (§6.4.2).
    async fn close(&mut self, tag: &str, expunge: bool) {
        if let State::Selected(sel) = &self.state
            && expunge
            && !sel.read_only
        {
            let folder = sel.folder.id;
            if let Err(e) = self.shared.store.expunge(folder, None).await {
                tracing::warn!(error = %e, "expunge on CLOSE failed");
            }
        }
        self.state = State::Authenticated;
        self.ok(
            tag,
            if expunge {
                "CLOSE completed"
            } else {
                "UNSELECT completed"
            },
        );
    }
}

fn command_name(body: &CommandBody) -> &'static str {
    use CommandBody as C;
    match body {
        C::Capability => "CAPABILITY",
        C::Noop => "NOOP",
        C::Logout => "LOGOUT",
        C::Id(_) => "ID",
        C::StartTls => "STARTTLS",
        C::Authenticate { .. } => "AUTHENTICATE",
        C::Login { .. } => "LOGIN",
        C::Enable(_) => "ENABLE",
        C::Select { .. } => "SELECT",
        C::Create { .. } => "CREATE",
        C::Delete(_) => "DELETE",
        C::Rename { .. } => "RENAME",
        C::Subscribe(_) => "SUBSCRIBE",
        C::Unsubscribe(_) => "UNSUBSCRIBE",
        C::List { .. } => "LIST",
        C::Lsub { .. } => "LSUB",
        C::Namespace => "NAMESPACE",
        C::Status { .. } => "STATUS",
        C::Append { .. } => "APPEND",
        C::Idle => "IDLE",
        C::GetQuota(_) => "GETQUOTA",
        C::GetQuotaRoot(_) => "GETQUOTAROOT",
        C::SetQuota { .. } => "SETQUOTA",
        C::Compress(_) => "COMPRESS",
        C::Check => "CHECK",
        C::Close => "CLOSE",
        C::Unselect => "UNSELECT",
        C::Expunge { .. } => "EXPUNGE",
        C::Search { .. } => "SEARCH",
        C::Fetch { .. } => "FETCH",
        C::Store { .. } => "STORE",
        C::Copy { .. } => "COPY",
        C::Move { .. } => "MOVE",
        C::Sort { .. } => "SORT",
        C::Thread { .. } => "THREAD",
    }
}
