//! Administration: what `mailstead domain|mailbox|alias|alias-domain ...` (and later the API)
//! do, with input checked and normalised before it reaches the store.

use crate::{Directory, DirectoryError, password};
use mailstead_core::address::{Address, normalize_domain};
use mailstead_store::{
    Access, Admin, Alias, AliasDomain, Domain, DomainPatch, Mailbox, MailboxPatch, NewAlias,
    NewDomain, NewMailbox,
};

/// Shortest password accepted for a new mailbox or administrator (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LEN: usize = 8;

/// What a new mailbox is created with; `None` fields take the domain's defaults.
#[derive(Clone, Debug, Default)]
pub struct MailboxSpec {
    pub name: String,
    pub quota: Option<i64>,
    pub active: bool,
    pub access: Access,
}

fn check_password(password: &str) -> Result<(), DirectoryError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(DirectoryError::Invalid(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > password::MAX_PASSWORD_LEN {
        return Err(DirectoryError::Invalid(format!(
            "the password is too long: use at most {} bytes",
            password::MAX_PASSWORD_LEN
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(DirectoryError::Invalid(
            "the password contains control characters".into(),
        ));
    }
    Ok(())
}

async fn hash_password(password: &str) -> Result<String, DirectoryError> {
    check_password(password)?;
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| DirectoryError::Internal(format!("hashing task failed: {e}")))?
        .map_err(|e| DirectoryError::Internal(e.to_string()))
}

fn parse_address(s: &str) -> Result<Address, DirectoryError> {
    Address::parse(s).map_err(|e| DirectoryError::Invalid(e.to_string()))
}

fn parse_domain(s: &str) -> Result<String, DirectoryError> {
    normalize_domain(s).map_err(|e| DirectoryError::Invalid(e.to_string()))
}

impl Directory {
    pub async fn add_domain(&self, mut d: NewDomain) -> Result<Domain, DirectoryError> {
        d.name = parse_domain(&d.name)?;
        Ok(self.store.domain_create(d).await?)
    }

    pub async fn domain(&self, name: &str) -> Result<Domain, DirectoryError> {
        let name = parse_domain(name)?;
        self.store
            .domain_get(&name)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("domain {name}")))
    }

    pub async fn edit_domain(
        &self,
        name: &str,
        patch: DomainPatch,
    ) -> Result<Domain, DirectoryError> {
        Ok(self
            .store
            .domain_update(&parse_domain(name)?, patch)
            .await?)
    }

    pub async fn remove_domain(&self, name: &str) -> Result<(), DirectoryError> {
        Ok(self.store.domain_delete(&parse_domain(name)?).await?)
    }

    pub async fn add_mailbox(
        &self,
        address: &str,
        password: &str,
        spec: MailboxSpec,
    ) -> Result<Mailbox, DirectoryError> {
        let addr = parse_address(address)?;
        if self.store.domain_get(addr.domain()).await?.is_none() {
            if let Some(ad) = self.store.alias_domain_get(addr.domain()).await? {
                return Err(DirectoryError::Invalid(format!(
                    "{} is an alias domain of {}; create the mailbox in {}",
                    addr.domain(),
                    ad.target,
                    ad.target
                )));
            }
            return Err(DirectoryError::NotFound(format!(
                "domain {}",
                addr.domain()
            )));
        }
        let hash = hash_password(password).await?;
        Ok(self
            .store
            .mailbox_create(NewMailbox {
                local_part: addr.local().to_string(),
                domain: addr.domain().to_string(),
                name: spec.name,
                password: hash,
                quota: spec.quota,
                active: spec.active,
                access: spec.access,
            })
            .await?)
    }

    pub async fn mailbox(&self, address: &str) -> Result<Mailbox, DirectoryError> {
        let addr = parse_address(address)?.to_string();
        self.store
            .mailbox_get(&addr)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("mailbox {addr}")))
    }

    pub async fn edit_mailbox(
        &self,
        address: &str,
        patch: MailboxPatch,
    ) -> Result<Mailbox, DirectoryError> {
        Ok(self
            .store
            .mailbox_update(&parse_address(address)?.to_string(), patch)
            .await?)
    }

    pub async fn set_mailbox_password(
        &self,
        address: &str,
        password: &str,
    ) -> Result<(), DirectoryError> {
        let addr = parse_address(address)?.to_string();
        let hash = hash_password(password).await?;
        self.store.mailbox_set_password(&addr, &hash, None).await?;
        Ok(())
    }

    pub async fn remove_mailbox(&self, address: &str) -> Result<(), DirectoryError> {
        Ok(self
            .store
            .mailbox_delete(&parse_address(address)?.to_string())
            .await?)
    }

    /// Adds an alias. `address` is `local@domain`, or `@domain` for a catch-all; targets are
    /// addresses, local or remote.
    pub async fn add_alias(
        &self,
        address: &str,
        targets: &[String],
        comment: &str,
    ) -> Result<Alias, DirectoryError> {
        let (address, domain) = match address.trim().strip_prefix('@') {
            Some(domain) => {
                let d = parse_domain(domain)?;
                (format!("@{d}"), d)
            }
            None => {
                let a = parse_address(address)?;
                (a.to_string(), a.domain().to_string())
            }
        };
        if targets.is_empty() {
            return Err(DirectoryError::Invalid(
                "an alias needs at least one target".into(),
            ));
        }
        let mut normalized = Vec::with_capacity(targets.len());
        for t in targets {
            let t = parse_address(t)?.to_string();
            if t == address {
                return Err(DirectoryError::Invalid(format!(
                    "alias {address} cannot point at itself"
                )));
            }
            if !normalized.contains(&t) {
                normalized.push(t);
            }
        }
        if self.store.domain_get(&domain).await?.is_none() {
            return Err(DirectoryError::NotFound(format!("domain {domain}")));
        }
        Ok(self
            .store
            .alias_create(NewAlias {
                address,
                domain,
                targets: normalized,
                active: true,
                comment: comment.to_string(),
            })
            .await?)
    }

    pub async fn remove_alias(&self, address: &str) -> Result<(), DirectoryError> {
        let address = match address.trim().strip_prefix('@') {
            Some(domain) => format!("@{}", parse_domain(domain)?),
            None => parse_address(address)?.to_string(),
        };
        Ok(self.store.alias_delete(&address).await?)
    }

    pub async fn add_alias_domain(
        &self,
        alias: &str,
        target: &str,
    ) -> Result<AliasDomain, DirectoryError> {
        Ok(self
            .store
            .alias_domain_create(&parse_domain(alias)?, &parse_domain(target)?)
            .await?)
    }

    pub async fn remove_alias_domain(&self, alias: &str) -> Result<(), DirectoryError> {
        Ok(self
            .store
            .alias_domain_delete(&parse_domain(alias)?)
            .await?)
    }

    /// Sets an administrator's password.
    pub async fn set_admin_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(), DirectoryError> {
        let hash = hash_password(password).await?;
        Ok(self
            .store
            .admin_set_password(username.trim(), &hash)
            .await?)
    }

    /// Creates an administrator account.
    pub async fn add_admin(&self, username: &str, password: &str) -> Result<Admin, DirectoryError> {
        let name = username.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
        {
            return Err(DirectoryError::Invalid(format!(
                "{name:?} is not a valid administrator name: use letters, digits and . _ - @"
            )));
        }
        let hash = hash_password(password).await?;
        Ok(self.store.admin_create(name, &hash).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        assert_eq!(
            check_password("short").unwrap_err().to_string(),
            "the password is too short: use at least 8 characters"
        );
        assert!(check_password("long enough").is_ok());
        assert!(check_password("bad\ncontrol").is_err());
        assert!(check_password(&"x".repeat(2000)).is_err());
    }
}
