//! Running Sieve when a message is delivered to a mailbox.
//!
//! Per mailbox the scripts run as one chain, like RFC 6609 `include` from a driver script:
//! the server-wide pre-filter, the domain's pre-filter, the generated `_vacation` and
//! `_forward` scripts, the user's active script, the domain's post-filter, the server-wide
//! post-filter. `stop` anywhere ends filtering, actions add up, and the implicit keep (RFC
//! 5228 §2.10.2) files into INBOX.
//!
//! Actions are collected and only applied by the caller once the run has ended without error:
//! on a runtime error the message goes to INBOX alone and the error is reported (RFC 5228
//! §2.10.6), so a broken script never loses mail.

use crate::script;
use mailstead_core::event::MailboxId;
use mailstead_store::{SievePhase, Store, StoreError};
use sieve::compiler::grammar::Capability;
use sieve::{Envelope, Event, Input, Recipient, Runtime, Script, Sieve};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The generated scripts, run before the user's own, in this order.
pub const GENERATED: [&str; 2] = ["_vacation", "_forward"];

/// Redirects one delivery may make (Pigeonhole's sieve_max_redirects default).
pub const MAX_REDIRECTS: usize = 4;
/// Instructions one delivery may run: a bound on the cost of a looping script.
const CPU_LIMIT: usize = 50_000;

/// One delivery to filter.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The message as stored (with our Return-Path and Received on top).
    pub message: &'a [u8],
    pub mailbox: MailboxId,
    /// The mailbox's address: the user for vacation and notify.
    pub user: &'a str,
    pub user_name: &'a str,
    /// The envelope recipient (RCPT TO) and sender (MAIL FROM, empty for `<>`).
    pub rcpt: &'a str,
    pub sender: &'a str,
}

/// What the scripts decided, in order. No action at all means the message was discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// File into `folder` (keep is INBOX) with IMAP flags; `message` when editheader changed it.
    Store {
        folder: String,
        flags: Vec<String>,
        create: bool,
        message: Option<Arc<Vec<u8>>>,
    },
    /// Forward to an address with the original envelope sender.
    Redirect {
        to: String,
        message: Option<Arc<Vec<u8>>>,
    },
    /// A new message (vacation reply, mailto notification), sent from `<>`.
    Send { to: String, message: Vec<u8> },
    /// Refuse the message with this reason (reject, ereject; RFC 5429).
    Reject { reason: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// Why filtering failed; the actions are then only the keep into INBOX.
    pub error: Option<String>,
}

impl Outcome {
    fn keep_only(error: String) -> Outcome {
        Outcome {
            actions: vec![keep(Vec::new())],
            error: Some(error),
        }
    }
}

fn keep(flags: Vec<String>) -> Action {
    Action::Store {
        folder: "INBOX".into(),
        flags,
        create: false,
        message: None,
    }
}

/// The scripts of one delivery, compiled, in the order they run.
pub struct Plan {
    steps: Vec<(Script, Arc<Sieve>)>,
    /// Scripts that failed to compile (a global filter stored broken): the delivery keeps.
    broken: Option<String>,
}

/// Runs scripts at delivery. One per server; compiled scripts are cached by their text.
pub struct Filter {
    runtime: Runtime,
    store: Store,
    cache: Mutex<HashMap<String, Arc<Sieve>>>,
}

/// Cached compiled scripts at most; the cache is dropped when full.
const CACHE_SIZE: usize = 1000;

impl Filter {
    pub fn new(store: Store, hostname: &str) -> Filter {
        let mut runtime = Runtime::new()
            .with_cpu_limit(CPU_LIMIT)
            .with_max_redirects(MAX_REDIRECTS)
            .with_max_nested_includes(6)
            .with_max_out_messages(3)
            .with_max_received_headers(50)
            .with_valid_notification_uris(script::NOTIFY_METHODS.iter().map(|m| m.to_string()))
            .with_local_hostname(hostname.to_string())
            .with_env_variable("name", "mailstead")
            .with_env_variable("version", env!("CARGO_PKG_VERSION"))
            .with_env_variable("domain", hostname.to_string())
            .with_env_variable("host", hostname.to_string())
            .with_env_variable("phase", "during");
        let allowed: Vec<Capability> = script::EXTENSIONS
            .iter()
            .map(|x| Capability::parse(x))
            .collect();
        for c in Capability::all() {
            if !allowed.contains(c) {
                runtime.unset_capability(c.clone());
            }
        }
        Filter {
            runtime,
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn compiled(&self, text: &str) -> Result<Arc<Sieve>, script::ScriptError> {
        if let Ok(cache) = self.cache.lock()
            && let Some(s) = cache.get(text)
        {
            return Ok(s.clone());
        }
        let s = script::compile(text.as_bytes())?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(text.to_string(), s.clone());
        }
        Ok(s)
    }

    /// The scripts for a delivery to `mailbox` in `domain`, or `None` when there are none
    /// (the message is then delivered as it is, without parsing it).
    pub async fn plan(&self, mailbox: MailboxId, domain: &str) -> Result<Option<Plan>, StoreError> {
        let domain = domain.to_lowercase();
        let globals = self.store.sieve_globals_for(&domain).await?;
        let global = |scope: &str, phase: SievePhase| {
            globals
                .iter()
                .find(|g| g.phase == phase && g.scope.eq_ignore_ascii_case(scope))
                .map(|g| g.content.clone())
        };
        let mut texts: Vec<(Script, String)> = Vec::new();
        if let Some(t) = global("", SievePhase::Pre) {
            texts.push((Script::Global("pre:*".into()), t));
        }
        if let Some(t) = global(&domain, SievePhase::Pre) {
            texts.push((Script::Global(format!("pre:{domain}")), t));
        }
        let scripts = self.store.sieve_for_delivery(mailbox, GENERATED).await?;
        for name in GENERATED {
            if let Some(s) = scripts.iter().find(|s| s.name == *name) {
                texts.push((Script::Personal(s.name.clone()), s.content.clone()));
            }
        }
        if let Some(s) = scripts
            .iter()
            .find(|s| s.active && !GENERATED.contains(&s.name.as_str()))
        {
            texts.push((Script::Personal(s.name.clone()), s.content.clone()));
        }
        if let Some(t) = global(&domain, SievePhase::Post) {
            texts.push((Script::Global(format!("post:{domain}")), t));
        }
        if let Some(t) = global("", SievePhase::Post) {
            texts.push((Script::Global("post:*".into()), t));
        }
        if texts.is_empty() {
            return Ok(None);
        }
        let mut steps = Vec::with_capacity(texts.len());
        let mut broken = None;
        for (name, text) in texts {
            match self.compiled(&text) {
                Ok(s) => steps.push((name, s)),
                Err(e) => {
                    broken = Some(format!("script {}: {e}", name.as_str()));
                    break;
                }
            }
        }
        Ok(Some(Plan { steps, broken }))
    }

    /// Runs the plan's scripts over one delivery.
    pub async fn run(&self, plan: &Plan, req: Request<'_>) -> Outcome {
        if let Some(broken) = &plan.broken {
            return Outcome::keep_only(broken.clone());
        }
        let driver = match driver(&plan.steps) {
            Ok(d) => d,
            Err(e) => return Outcome::keep_only(format!("cannot chain the scripts: {e}")),
        };
        let mut ctx = self
            .runtime
            .filter(req.message)
            .with_user_address(req.user)
            .with_user_full_name(req.user_name)
            .with_envelope(Envelope::From, req.sender)
            .with_envelope(Envelope::To, req.rcpt);
        let original_auto_submitted = auto_submitted(req.message);
        let original_id = header(req.message, "message-id");
        // Messages the scripts made (editheader copies, vacation replies), by message id.
        let mut created: HashMap<usize, Arc<Vec<u8>>> = HashMap::new();
        let mut actions = Vec::new();
        let mut input = Input::script("driver", driver);
        let mut guard = 0usize;
        while let Some(result) = ctx.run(input) {
            guard += 1;
            if guard > CPU_LIMIT {
                return Outcome::keep_only("the scripts did not finish".into());
            }
            let event = match result {
                Ok(event) => event,
                Err(e) => return Outcome::keep_only(format!("runtime error: {e:?}")),
            };
            input = Input::True;
            match event {
                Event::IncludeScript { name, optional } => {
                    match self.include(plan, req.mailbox, &name).await {
                        Ok(Some(script)) => input = Input::script(name, script),
                        Ok(None) if optional => input = Input::False,
                        Ok(None) => {
                            return Outcome::keep_only(format!(
                                "the included script {} does not exist",
                                name.as_str()
                            ));
                        }
                        Err(e) => return Outcome::keep_only(e),
                    }
                }
                Event::MailboxExists { mailboxes, .. } => {
                    let mut all = true;
                    for m in mailboxes {
                        let exists = match m {
                            sieve::Mailbox::Name(n) => self
                                .store
                                .folder_get(req.mailbox, &n)
                                .await
                                .map(|f| f.is_some())
                                .unwrap_or(false),
                            sieve::Mailbox::Id(_) => false,
                        };
                        all &= exists;
                    }
                    input = all.into();
                }
                Event::ListContains { .. } => input = false.into(),
                Event::DuplicateId { id, expiry, .. } => {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let until = now.saturating_add(i64::try_from(expiry).unwrap_or(i64::MAX));
                    match self
                        .store
                        .sieve_remember(req.mailbox, "id", &id, until)
                        .await
                    {
                        Ok(seen) => input = seen.into(),
                        Err(e) => return Outcome::keep_only(format!("cannot remember: {e}")),
                    }
                }
                Event::Function { .. } => input = Input::False,
                Event::Keep { flags, message_id } => actions.push(Action::Store {
                    folder: "INBOX".into(),
                    flags,
                    create: false,
                    message: created.get(&message_id).cloned(),
                }),
                Event::FileInto {
                    folder,
                    flags,
                    create,
                    message_id,
                    ..
                } => actions.push(Action::Store {
                    folder,
                    flags,
                    create,
                    message: created.get(&message_id).cloned(),
                }),
                Event::Discard => {}
                Event::Reject { reason, .. } => actions.push(Action::Reject { reason }),
                Event::CreatedMessage {
                    message_id,
                    message,
                } => {
                    created.insert(message_id, Arc::new(message));
                }
                Event::SendMessage {
                    recipient,
                    message_id,
                    ..
                } => {
                    let message = created.get(&message_id).cloned();
                    // A message the scripts wrote (vacation, notify) has a Message-ID of its
                    // own and says Auto-Submitted (RFC 5230 §5, RFC 5436 §2.7); an edited copy
                    // of the delivered one keeps its Message-ID.
                    let generated = message.as_ref().is_some_and(|m| {
                        auto_submitted(m) && header(m, "message-id") != original_id
                    });
                    if generated && original_auto_submitted {
                        // Never answer automatic mail (RFC 3834 §2, RFC 5230 §4.5).
                        tracing::debug!("no automatic reply to an automatic message");
                        continue;
                    }
                    for to in recipients(recipient) {
                        if generated {
                            let body = message.as_ref().map(|m| m.to_vec()).unwrap_or_default();
                            actions.push(Action::Send { to, message: body });
                        } else {
                            actions.push(Action::Redirect {
                                to,
                                message: message.clone(),
                            });
                        }
                    }
                }
                Event::Notify { method, .. } => {
                    tracing::debug!(method, "notification method without support");
                }
                Event::SetEnvelope { .. } => {}
            }
        }
        Outcome {
            actions,
            error: None,
        }
    }

    async fn include(
        &self,
        plan: &Plan,
        mailbox: MailboxId,
        name: &Script,
    ) -> Result<Option<Arc<Sieve>>, String> {
        if let Some((_, s)) = plan.steps.iter().find(|(n, _)| n == name) {
            return Ok(Some(s.clone()));
        }
        match name {
            Script::Global(_) => Ok(None),
            Script::Personal(n) => match self.store.sieve_get(mailbox, n).await {
                Ok(Some(s)) => self
                    .compiled(&s.content)
                    .map(Some)
                    .map_err(|e| format!("script {n}: {e}")),
                Ok(None) => Ok(None),
                Err(e) => Err(format!("cannot read script {n}: {e}")),
            },
        }
    }
}

fn recipients(r: Recipient) -> Vec<String> {
    match r {
        Recipient::Address(a) | Recipient::List(a) => vec![a],
        Recipient::Group(g) => g,
    }
}

/// Whether the top-level header says the message was automatic (RFC 3834 §5).
fn auto_submitted(message: &[u8]) -> bool {
    header(message, "auto-submitted").is_some_and(|v| !v.to_ascii_lowercase().starts_with("no"))
}

/// The first top-level field `name` (lower case), unfolded and trimmed.
fn header(message: &[u8], name: &str) -> Option<String> {
    let end = memchr_find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = String::from_utf8_lossy(message.get(..end).unwrap_or_default())
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The script that includes every step in order (RFC 6609).
fn driver(steps: &[(Script, Arc<Sieve>)]) -> Result<Arc<Sieve>, script::ScriptError> {
    let mut text = String::from("require \"include\";\n");
    for (name, _) in steps {
        let location = match name {
            Script::Global(_) => ":global",
            Script::Personal(_) => ":personal",
        };
        let quoted = name.as_str().replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("include {location} \"{quoted}\";\n"));
    }
    script::compile(text.as_bytes())
}
