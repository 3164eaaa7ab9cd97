//! The commands of the authenticated state (RFC 5804 §2.5 to §2.12): checking, storing,
//! listing, activating, reading, deleting and renaming scripts. A script is compiled before
//! it is stored or activated, so a broken one is refused with its line and the reason.

use super::Session;
use crate::accounts::{AccountError, Accounts, User};
use crate::command::Command;
use crate::quota;
use crate::response::{self, Code};
use crate::script_name::ScriptName;
use mailstead_sieve::script::{ScriptError, compile};

/// Scripts larger than this are compiled on the blocking pool, not on the session's task.
const COMPILE_INLINE: usize = 64 * 1024;

fn size_of(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// Why a script is refused, as Pigeonhole words it: `line N: reason`. The compiler's own
/// " at line N, column M." is dropped, since the line comes first.
fn reason(e: &ScriptError) -> String {
    let message = match e.message.rsplit_once(" at line ") {
        Some((before, place))
            if place
                .strip_suffix('.')
                .and_then(|p| p.split_once(", column "))
                .is_some_and(|(l, c)| {
                    !l.is_empty()
                        && !c.is_empty()
                        && l.bytes().chain(c.bytes()).all(|b| b.is_ascii_digit())
                }) =>
        {
            before
        }
        _ => &e.message,
    };
    if e.line > 0 {
        format!("line {}: {message}", e.line)
    } else {
        message.to_string()
    }
}

/// Compiles a script; the text when it is good, the reason (`line N: ...`) when not.
async fn checked(script: Vec<u8>) -> Result<String, String> {
    fn check(script: Vec<u8>) -> Result<String, String> {
        compile(&script).map_err(|e| reason(&e))?;
        // compile refuses what is not UTF-8 (RFC 5228 §2.2).
        String::from_utf8(script).map_err(|_| "the script is not UTF-8".to_string())
    }
    if script.len() <= COMPILE_INLINE {
        return check(script);
    }
    tokio::task::spawn_blocking(move || check(script))
        .await
        .unwrap_or_else(|e| Err(format!("the script could not be checked: {e}")))
}

impl<A: Accounts> Session<A> {
    pub(super) async fn script_command(&mut self, user: &User, cmd: Command) {
        match cmd {
            Command::HaveSpace { name, size } => self.havespace(user, &name, size.into()).await,
            Command::PutScript { name, script } => self.putscript(user, &name, script).await,
            Command::ListScripts => self.listscripts(user).await,
            Command::SetActive { name } => self.setactive(user, name.as_ref()).await,
            Command::GetScript { name } => self.getscript(user, &name).await,
            Command::DeleteScript { name } => self.deletescript(user, &name).await,
            Command::RenameScript { from, to } => self.renamescript(user, &from, &to).await,
            Command::CheckScript { script } => self.checkscript(script).await,
            // Handled in every state by `command`.
            Command::Authenticate { .. }
            | Command::StartTls
            | Command::Logout
            | Command::Capability
            | Command::Noop { .. }
            | Command::Unauthenticate => {}
        }
    }

    /// The store failed: the client may try again.
    fn unavailable(&mut self, e: &AccountError) {
        tracing::error!(error = %e, "sieve script operation failed");
        self.no(Some(&Code::TryLater), "temporary failure, try again later");
    }

    /// A failure of an operation on `name`.
    fn refused(&mut self, e: &AccountError, name: &ScriptName) {
        match e {
            AccountError::NotFound => self.no(
                Some(&Code::NonExistent),
                &format!("there is no script named {name}"),
            ),
            // §2.10: the active script cannot be deleted.
            AccountError::Active => self.no(
                Some(&Code::Active),
                "the active script cannot be deleted; deactivate it first",
            ),
            AccountError::Exists => self.no(
                Some(&Code::AlreadyExists),
                &format!("a script named {name} exists already"),
            ),
            AccountError::Unavailable(_) => self.unavailable(e),
        }
    }

    /// §2.5: whether PUTSCRIPT of that size would be within the limits.
    async fn havespace(&mut self, user: &User, name: &ScriptName, size: u64) {
        if let Some(over) = quota::script_too_large(size) {
            return self.no(Some(&over.code), &over.text);
        }
        match self.accounts.list(user).await {
            Ok(scripts) => match quota::check(&scripts, name, size) {
                Ok(()) => self.ok(None, "Putscript would succeed."),
                Err(over) => self.no(Some(&over.code), &over.text),
            },
            Err(e) => self.unavailable(&e),
        }
    }

    /// §2.6: within the limits and compiling, the script is stored; one of the same name is
    /// replaced and stays active if it was.
    async fn putscript(&mut self, user: &User, name: &ScriptName, script: Vec<u8>) {
        if let Some(over) = quota::script_too_large(size_of(&script)) {
            return self.no(Some(&over.code), &over.text);
        }
        let scripts = match self.accounts.list(user).await {
            Ok(scripts) => scripts,
            Err(e) => return self.unavailable(&e),
        };
        if let Err(over) = quota::check(&scripts, name, size_of(&script)) {
            return self.no(Some(&over.code), &over.text);
        }
        let text = match checked(script).await {
            Ok(text) => text,
            // §2.6: NO with the reason; Pigeonhole's form is "line N: ...".
            Err(why) => return self.no(None, &why),
        };
        match self.accounts.put(user, name, text).await {
            Ok(()) => self.ok(None, "Putscript completed."),
            Err(e) => self.unavailable(&e),
        }
    }

    /// §2.7: every script, the active one marked ACTIVE.
    async fn listscripts(&mut self, user: &User) {
        match self.accounts.list(user).await {
            Ok(scripts) => {
                for script in scripts {
                    response::string(&mut self.out, script.name.as_bytes());
                    if script.active {
                        self.out.extend_from_slice(b" ACTIVE");
                    }
                    self.out.extend_from_slice(b"\r\n");
                }
                self.ok(None, "Listscripts completed.");
            }
            Err(e) => self.unavailable(&e),
        }
    }

    /// §2.8: makes a script the active one (checked again: the extensions this server runs
    /// may have changed since it was stored), or with the empty name leaves none active.
    async fn setactive(&mut self, user: &User, name: Option<&ScriptName>) {
        if let Some(name) = name {
            let text = match self.accounts.get(user, name).await {
                Ok(text) => text,
                Err(e) => return self.refused(&e, name),
            };
            if let Err(why) = checked(text.into_bytes()).await {
                return self.no(None, &why);
            }
        }
        match self.accounts.activate(user, name).await {
            Ok(()) => self.ok(None, "Setactive completed."),
            Err(e) => match name {
                Some(name) => self.refused(&e, name),
                None => self.unavailable(&e),
            },
        }
    }

    /// §2.9: the script as a literal, then OK.
    async fn getscript(&mut self, user: &User, name: &ScriptName) {
        match self.accounts.get(user, name).await {
            Ok(text) => {
                response::literal(&mut self.out, text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
                self.ok(None, "Getscript completed.");
            }
            Err(e) => self.refused(&e, name),
        }
    }

    /// §2.10: the active script is refused with ACTIVE.
    async fn deletescript(&mut self, user: &User, name: &ScriptName) {
        match self.accounts.delete(user, name).await {
            Ok(()) => self.ok(None, "Deletescript completed."),
            Err(e) => self.refused(&e, name),
        }
    }

    /// §2.11.1: NONEXISTENT for a missing script, ALREADYEXISTS for a taken name; the active
    /// script stays active under its new name.
    async fn renamescript(&mut self, user: &User, from: &ScriptName, to: &ScriptName) {
        match self.accounts.rename(user, from, to).await {
            Ok(()) => self.ok(None, "Renamescript completed."),
            Err(e @ AccountError::Exists) => self.refused(&e, to),
            Err(e) => self.refused(&e, from),
        }
    }

    /// §2.12: compiles without storing.
    async fn checkscript(&mut self, script: Vec<u8>) {
        if let Some(over) = quota::script_too_large(size_of(&script)) {
            return self.no(Some(&over.code), &over.text);
        }
        match checked(script).await {
            Ok(_) => self.ok(None, "Script is valid."),
            Err(why) => self.no(None, &why),
        }
    }
}
