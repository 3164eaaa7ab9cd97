//! The limits on a user's scripts (RFC 5804 §1.5 quotas), one set of rules for HAVESPACE
//! (§2.5) and PUTSCRIPT (§2.6): a script at most `MAX_SCRIPT_SIZE`, at most `MAX_SCRIPTS`
//! scripts, at most `MAX_STORAGE` bytes of them together. A script that replaces one of the
//! same name is counted instead of it.

use crate::accounts::ScriptInfo;
use crate::response::Code;
use crate::script_name::ScriptName;
use mailstead_sieve::script::{MAX_SCRIPT_SIZE, MAX_SCRIPTS, MAX_STORAGE};

/// A refusal: the response code and the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverQuota {
    pub code: Code,
    pub text: String,
}

fn limit(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A script larger than one script may be.
pub fn script_too_large(size: u64) -> Option<OverQuota> {
    (size > limit(MAX_SCRIPT_SIZE)).then(|| OverQuota {
        code: Code::QuotaMaxSize,
        text: format!("the script is {size} bytes; a script may have at most {MAX_SCRIPT_SIZE}"),
    })
}

/// Whether a script of `size` bytes named `name` fits beside the user's `scripts`.
pub fn check(scripts: &[ScriptInfo], name: &ScriptName, size: u64) -> Result<(), OverQuota> {
    if let Some(refusal) = script_too_large(size) {
        return Err(refusal);
    }
    let replaced = scripts.iter().find(|s| s.name == name.as_str());
    if replaced.is_none() && scripts.len() >= MAX_SCRIPTS {
        return Err(OverQuota {
            code: Code::QuotaMaxScripts,
            text: format!(
                "you have {} scripts, the most allowed; delete one first",
                scripts.len()
            ),
        });
    }
    let others: u64 = scripts
        .iter()
        .filter(|s| s.name != name.as_str())
        .map(|s| s.size)
        .fold(0, u64::saturating_add);
    if others.saturating_add(size) > limit(MAX_STORAGE) {
        return Err(OverQuota {
            code: Code::QuotaMaxSize,
            text: format!(
                "your scripts would take {} bytes; all of them together may have at most \
                 {MAX_STORAGE}",
                others.saturating_add(size)
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn info(name: &str, size: usize) -> ScriptInfo {
        ScriptInfo {
            name: name.into(),
            size: limit(size),
            active: false,
        }
    }

    fn name(s: &str) -> ScriptName {
        ScriptName::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn limits() {
        assert!(check(&[], &name("a"), limit(MAX_SCRIPT_SIZE)).is_ok());
        let e = check(&[], &name("a"), limit(MAX_SCRIPT_SIZE) + 1).unwrap_err();
        assert_eq!(e.code, Code::QuotaMaxSize);

        let full: Vec<_> = (0..MAX_SCRIPTS)
            .map(|i| info(&format!("s{i}"), 10))
            .collect();
        assert_eq!(
            check(&full, &name("new"), 10).unwrap_err().code,
            Code::QuotaMaxScripts
        );
        // Replacing one is not one more.
        assert!(check(&full, &name("s3"), 10).is_ok());

        let big: Vec<_> = (0..8)
            .map(|i| info(&format!("b{i}"), MAX_SCRIPT_SIZE))
            .collect();
        assert_eq!(
            check(&big, &name("new"), 1).unwrap_err().code,
            Code::QuotaMaxSize
        );
        assert!(check(&big, &name("b0"), limit(MAX_SCRIPT_SIZE)).is_ok());
        assert!(check(&big[1..], &name("new"), limit(MAX_SCRIPT_SIZE)).is_ok());
    }
}
