//! What the session needs from the rest of the server: checking a login, and a user's
//! scripts. [`DirectoryAccounts`] is the real one (the directory and the store);
//! [`MemoryAccounts`] keeps everything in memory for tests and fuzzing, so that the session's
//! rules are checked without a database.

use crate::script_name::ScriptName;
use mailstead_directory::{Directory, Protocol};
use mailstead_store::{MailboxId, Store, StoreError};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;

/// A logged-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: MailboxId,
    /// The mailbox address, for logs and the OWNER capability.
    pub address: String,
}

/// A script's name, size and whether it is the active one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptInfo {
    pub name: String,
    pub size: u64,
    pub active: bool,
}

/// Why a login failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password: the client learns no more than that.
    #[error("bad credentials")]
    BadCredentials,
    /// The mailbox or its domain is disabled.
    #[error("disabled")]
    Disabled,
    /// The mailbox may not use ManageSieve (mailcow's sieve_access).
    #[error("sieve access denied")]
    NoSieveAccess,
    #[error("{0}")]
    Unavailable(String),
}

/// Why a script operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("no such script")]
    NotFound,
    #[error("the script is active")]
    Active,
    #[error("a script of that name exists")]
    Exists,
    #[error("{0}")]
    Unavailable(String),
}

/// Logins and scripts.
pub trait Accounts: Send + Sync + 'static {
    fn login(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> impl Future<Output = Result<User, LoginError>> + Send;

    /// The user's scripts by name.
    fn list(
        &self,
        user: &User,
    ) -> impl Future<Output = Result<Vec<ScriptInfo>, AccountError>> + Send;

    /// A script's text; `NotFound` when there is none of that name.
    fn get(
        &self,
        user: &User,
        name: &ScriptName,
    ) -> impl Future<Output = Result<String, AccountError>> + Send;

    /// Stores a script, replacing one of the same name; the active one stays active.
    fn put(
        &self,
        user: &User,
        name: &ScriptName,
        script: String,
    ) -> impl Future<Output = Result<(), AccountError>> + Send;

    /// Deletes a script: `NotFound`, or `Active` for the active one.
    fn delete(
        &self,
        user: &User,
        name: &ScriptName,
    ) -> impl Future<Output = Result<(), AccountError>> + Send;

    /// Renames a script: `NotFound`, or `Exists` when `to` is taken.
    fn rename(
        &self,
        user: &User,
        from: &ScriptName,
        to: &ScriptName,
    ) -> impl Future<Output = Result<(), AccountError>> + Send;

    /// Makes a script the active one, or none with `None`: `NotFound`.
    fn activate(
        &self,
        user: &User,
        name: Option<&ScriptName>,
    ) -> impl Future<Output = Result<(), AccountError>> + Send;
}

/// The directory for logins, the store for scripts.
#[derive(Clone)]
pub struct DirectoryAccounts {
    pub directory: Directory,
    pub store: Store,
}

fn store_error(e: StoreError) -> AccountError {
    match e {
        StoreError::NotFound(_) => AccountError::NotFound,
        StoreError::Exists(_) => AccountError::Exists,
        // sieve_delete refuses the active script with Invalid.
        StoreError::Invalid(_) => AccountError::Active,
        other => AccountError::Unavailable(other.to_string()),
    }
}

impl Accounts for DirectoryAccounts {
    async fn login(&self, user: &str, password: &str, client: IpAddr) -> Result<User, LoginError> {
        match self
            .directory
            .login(user, password, Protocol::Sieve, client)
            .await
        {
            Ok(Ok(mailbox)) => Ok(User {
                id: mailbox.id,
                address: mailbox.address,
            }),
            Ok(Err(why)) => Err(match why {
                mailstead_directory::LoginError::BadCredentials => LoginError::BadCredentials,
                mailstead_directory::LoginError::Disabled => LoginError::Disabled,
                mailstead_directory::LoginError::ProtocolDenied(_) => LoginError::NoSieveAccess,
            }),
            Err(e) => Err(LoginError::Unavailable(e.to_string())),
        }
    }

    async fn list(&self, user: &User) -> Result<Vec<ScriptInfo>, AccountError> {
        let infos = self.store.sieve_infos(user.id).await.map_err(store_error)?;
        Ok(infos
            .into_iter()
            .map(|i| ScriptInfo {
                name: i.name,
                size: i.size,
                active: i.active,
            })
            .collect())
    }

    async fn get(&self, user: &User, name: &ScriptName) -> Result<String, AccountError> {
        match self.store.sieve_get(user.id, name.as_str()).await {
            Ok(Some(script)) => Ok(script.content),
            Ok(None) => Err(AccountError::NotFound),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn put(
        &self,
        user: &User,
        name: &ScriptName,
        script: String,
    ) -> Result<(), AccountError> {
        self.store
            .sieve_put(user.id, name.as_str(), &script)
            .await
            .map_err(|e| AccountError::Unavailable(e.to_string()))
    }

    async fn delete(&self, user: &User, name: &ScriptName) -> Result<(), AccountError> {
        self.store
            .sieve_delete(user.id, name.as_str())
            .await
            .map_err(store_error)
    }

    async fn rename(
        &self,
        user: &User,
        from: &ScriptName,
        to: &ScriptName,
    ) -> Result<(), AccountError> {
        self.store
            .sieve_rename(user.id, from.as_str(), to.as_str())
            .await
            .map_err(|e| match e {
                StoreError::Invalid(e) => AccountError::Unavailable(e),
                e => store_error(e),
            })
    }

    async fn activate(&self, user: &User, name: Option<&ScriptName>) -> Result<(), AccountError> {
        self.store
            .sieve_activate(user.id, name.map(ScriptName::as_str))
            .await
            .map_err(|e| match e {
                StoreError::Invalid(e) => AccountError::Unavailable(e),
                e => store_error(e),
            })
    }
}

/// One user's scripts in memory.
#[derive(Clone, Debug, Default)]
struct Scripts {
    texts: BTreeMap<String, String>,
    active: Option<String>,
}

/// Users and scripts in memory: `(address, password, sieve access)` per user.
#[derive(Debug, Default)]
pub struct MemoryAccounts {
    users: Vec<(String, String, bool)>,
    scripts: Mutex<BTreeMap<MailboxId, Scripts>>,
}

impl MemoryAccounts {
    pub fn new(users: &[(&str, &str, bool)]) -> MemoryAccounts {
        MemoryAccounts {
            users: users
                .iter()
                .map(|(u, p, a)| (u.to_string(), p.to_string(), *a))
                .collect(),
            scripts: Mutex::default(),
        }
    }

    fn with<T>(&self, user: &User, f: impl FnOnce(&mut Scripts) -> T) -> T {
        let mut all = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(user.id).or_default())
    }
}

impl Accounts for MemoryAccounts {
    async fn login(&self, user: &str, password: &str, _client: IpAddr) -> Result<User, LoginError> {
        let found = self
            .users
            .iter()
            .zip(1..)
            .find(|((u, _, _), _)| u.eq_ignore_ascii_case(user.trim()));
        match found {
            Some(((u, p, access), id)) if p == password => {
                if *access {
                    Ok(User {
                        id,
                        address: u.to_lowercase(),
                    })
                } else {
                    Err(LoginError::NoSieveAccess)
                }
            }
            _ => Err(LoginError::BadCredentials),
        }
    }

    async fn list(&self, user: &User) -> Result<Vec<ScriptInfo>, AccountError> {
        Ok(self.with(user, |s| {
            s.texts
                .iter()
                .map(|(name, text)| ScriptInfo {
                    name: name.clone(),
                    size: u64::try_from(text.len()).unwrap_or(u64::MAX),
                    active: s.active.as_ref() == Some(name),
                })
                .collect()
        }))
    }

    async fn get(&self, user: &User, name: &ScriptName) -> Result<String, AccountError> {
        self.with(user, |s| s.texts.get(name.as_str()).cloned())
            .ok_or(AccountError::NotFound)
    }

    async fn put(
        &self,
        user: &User,
        name: &ScriptName,
        script: String,
    ) -> Result<(), AccountError> {
        self.with(user, |s| s.texts.insert(name.to_string(), script));
        Ok(())
    }

    async fn delete(&self, user: &User, name: &ScriptName) -> Result<(), AccountError> {
        self.with(user, |s| {
            if s.active.as_deref() == Some(name.as_str()) {
                Err(AccountError::Active)
            } else {
                s.texts
                    .remove(name.as_str())
                    .map(drop)
                    .ok_or(AccountError::NotFound)
            }
        })
    }

    async fn rename(
        &self,
        user: &User,
        from: &ScriptName,
        to: &ScriptName,
    ) -> Result<(), AccountError> {
        self.with(user, |s| {
            if s.texts.contains_key(to.as_str()) {
                return Err(AccountError::Exists);
            }
            let text = s
                .texts
                .remove(from.as_str())
                .ok_or(AccountError::NotFound)?;
            s.texts.insert(to.to_string(), text);
            if s.active.as_deref() == Some(from.as_str()) {
                s.active = Some(to.to_string());
            }
            Ok(())
        })
    }

    async fn activate(&self, user: &User, name: Option<&ScriptName>) -> Result<(), AccountError> {
        self.with(user, |s| match name {
            None => {
                s.active = None;
                Ok(())
            }
            Some(name) if s.texts.contains_key(name.as_str()) => {
                s.active = Some(name.to_string());
                Ok(())
            }
            Some(_) => Err(AccountError::NotFound),
        })
    }
}
