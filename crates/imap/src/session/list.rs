//! LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9) with LIST-EXTENDED (RFC 5258):
//! selection options SUBSCRIBED, RECURSIVEMATCH and SPECIAL-USE (RFC 6154), return options
//! SUBSCRIBED, CHILDREN, SPECIAL-USE and STATUS (RFC 5819).
//!
//! The names listed are the user's folders and subscriptions together: a subscription may name
//! a folder that no longer exists (listed \NonExistent), and a name with subscribed children
//! is listed with CHILDINFO under RECURSIVEMATCH.

use super::{Next, Session};
use crate::proto::types::{ListReturn, ListSelect, MailboxArg, StatusItem};
use mailstead_store::{FOLDER_SEPARATOR, Folder};
use std::collections::BTreeMap;

/// Longest LIST pattern, in characters: far beyond any mailbox name, and it keeps matching
/// (pattern length × name length) cheap.
const MAX_PATTERN: usize = 1024;

/// Whether `name` matches a LIST pattern: `*` matches anything, `%` anything but the hierarchy
/// separator (RFC 9051 §6.3.9). Dynamic programming over both, so no pattern takes more than
/// pattern × name steps.
pub(crate) fn pattern_matches(pattern: &[char], name: &[char]) -> bool {
    // row[j]: the pattern so far matches name[..j].
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            '*' | '%' => {
                next[0] = row[0];
                for j in 1..=name.len() {
                    let extend = next[j - 1] && (p == '*' || name[j - 1] != FOLDER_SEPARATOR);
                    next[j] = row[j] || extend;
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = row[j - 1] && name[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[name.len()]
}

/// One name LIST may return.
#[derive(Default)]
struct Entry<'a> {
    folder: Option<&'a Folder>,
    subscribed: bool,
    /// Not itself selected, but a child of it is subscribed (RECURSIVEMATCH, RFC 5258 §3).
    childinfo: bool,
}

/// The names above `name`: `a` and `a/b` for `a/b/c`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(FOLDER_SEPARATOR)
        .map(|(i, _)| &name[..i])
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list(
        &mut self,
        tag: &str,
        select: &[ListSelect],
        reference: &MailboxArg,
        patterns: &[MailboxArg],
        returns: &[ListReturn],
        lsub: bool,
    ) -> Next {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let reference = if reference.0.is_empty() {
            String::new()
        } else {
            match self.folder_name(reference) {
                Ok(r) => r,
                Err(e) => {
                    self.bad(tag, &e);
                    return Next::Continue;
                }
            }
        };
        let mut full_patterns: Vec<Vec<char>> = Vec::new();
        for raw in patterns {
            if raw.0.is_empty() {
                if !lsub {
                    // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter.
                    self.untagged(&format!("{verb} (\\Noselect) \"/\" \"\""));
                }
                continue;
            }
            let pattern = match self.folder_name(raw) {
                Ok(p) => p,
                Err(e) => {
                    self.bad(tag, &e);
                    return Next::Continue;
                }
            };
            let full: Vec<char> = format!("{reference}{pattern}").chars().collect();
            if full.len() > MAX_PATTERN {
                self.bad(tag, "the pattern is too long");
                return Next::Continue;
            }
            full_patterns.push(full);
        }
        if full_patterns.is_empty() {
            self.ok(tag, &format!("{verb} completed"));
            return Next::Continue;
        }
        let store = self.shared.store.clone();
        let mailbox = self.mailbox_id();
        let (folders, subscriptions) =
            match tokio::try_join!(store.folder_list(mailbox), store.subscriptions(mailbox)) {
                Ok(both) => both,
                Err(e) => {
                    self.server_error(tag, &e);
                    return Next::Continue;
                }
            };
        let subscribed_only = lsub || select.contains(&ListSelect::Subscribed);
        let recursive = select.contains(&ListSelect::RecursiveMatch);
        let special_only = select.contains(&ListSelect::SpecialUse);
        let extended = !select.is_empty() || !returns.is_empty();
        let show_subscribed =
            returns.contains(&ListReturn::Subscribed) || select.contains(&ListSelect::Subscribed);
        let status_items: Option<&Vec<StatusItem>> = returns.iter().find_map(|r| match r {
            ListReturn::Status(items) => Some(items),
            _ => None,
        });

        // Every name there is: folders, subscriptions, and the levels above both.
        let mut names: BTreeMap<&str, Entry<'_>> = BTreeMap::new();
        for f in &folders {
            names.entry(f.name.as_str()).or_default().folder = Some(f);
        }
        for s in &subscriptions {
            names.entry(s.as_str()).or_default().subscribed = true;
        }
        // LSUB returns a level above subscribed names as \Noselect when a `%` stops there
        // (RFC 3501 §6.3.9), much as RECURSIVEMATCH does.
        let lsub_levels = lsub && full_patterns.iter().any(|p| p.last() == Some(&'%'));
        let known: Vec<(&str, bool)> = names.iter().map(|(n, e)| (*n, e.subscribed)).collect();
        for (name, subscribed) in known {
            for up in ancestors(name) {
                let e = names.entry(up).or_default();
                if subscribed && (recursive || lsub_levels) {
                    e.childinfo = true;
                }
            }
        }
        let matches = |name: &str| {
            let chars: Vec<char> = name.chars().collect();
            full_patterns.iter().any(|p| {
                pattern_matches(p, &chars)
                    // INBOX matches case-insensitively (RFC 9051 §5.1).
                    || (name == "INBOX"
                        && pattern_matches(
                            &p.iter().map(|c| c.to_ascii_uppercase()).collect::<Vec<_>>(),
                            &chars,
                        ))
            })
        };

        let mut listed: Vec<(&str, &Entry<'_>)> = names
            .iter()
            .filter(|(name, e)| {
                let wanted = if subscribed_only {
                    e.subscribed || e.childinfo
                } else {
                    // A level that is no folder is listed (\Noselect) when folders are below
                    // it, as the `%` levels of RFC 9051 §6.3.9.
                    e.folder.is_some() || has_folders_below(name, &folders)
                };
                wanted && (!special_only || e.folder.is_some_and(|f| f.special_use.is_some()))
            })
            .filter(|(name, _)| matches(name))
            .map(|(n, e)| (*n, e))
            .collect();
        listed.sort_by(|a, b| (a.0 != "INBOX", a.0).cmp(&(b.0 != "INBOX", b.0)));

        for (name, e) in listed {
            let prefix = format!("{name}{FOLDER_SEPARATOR}");
            let has_children = folders.iter().any(|o| o.name.starts_with(&prefix));
            let mut attrs: Vec<&str> = Vec::new();
            match e.folder {
                Some(f) => {
                    attrs.push(if has_children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    });
                    if let Some(su) = &f.special_use {
                        attrs.push(su);
                    }
                }
                None if lsub || !extended => {
                    attrs.push("\\Noselect");
                    if has_children {
                        attrs.push("\\HasChildren");
                    }
                }
                // RFC 5258 §3.4: \NonExistent implies \Noselect.
                None => {
                    attrs.push("\\NonExistent");
                    if has_children {
                        attrs.push("\\HasChildren");
                    }
                }
            }
            if show_subscribed && e.subscribed && !lsub {
                attrs.push("\\Subscribed");
            }
            let mut line = format!("* {verb} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            line.extend_from_slice(&self.wire_name(name));
            // RFC 5258 §4: why a name that is not itself subscribed was returned.
            if subscribed_only && !lsub && e.childinfo && !e.subscribed {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
            if let (Some(items), Some(f)) = (status_items, e.folder) {
                // RFC 5819: a STATUS response after each selectable mailbox's LIST response.
                if let Ok(Some(folder)) = store.folder_by_id(f.id).await {
                    self.status_response(&folder, items).await;
                }
            }
        }
        self.ok(tag, &format!("{verb} completed"));
        Next::Continue
    }
}

/// Whether folders exist below `name`.
fn has_folders_below(name: &str, folders: &[Folder]) -> bool {
    let prefix = format!("{name}{FOLDER_SEPARATOR}");
    folders.iter().any(|f| f.name.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    fn m(p: &str, n: &str) -> bool {
        pattern_matches(
            &p.chars().collect::<Vec<_>>(),
            &n.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "a/b/c"));
        assert!(m("%", "abc"));
        assert!(!m("%", "a/b"));
        assert!(m("a/%", "a/b"));
        assert!(!m("a/%", "a/b/c"));
        assert!(m("a*c", "a/b/c"));
        assert!(m("a%c", "abc"));
        assert!(!m("a%c", "a/c"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("%/%", "a/b"));
        assert!(!m("INBOX", "inbox"));
        assert!(m("Work/*", "Work/2026/Q4"));
        assert!(m("W*4", "Work/2026/Q4"));
        assert!(!m("Work", "Work/2026"));
    }

    #[test]
    fn pathological_patterns_are_quick() {
        let pattern = "*a".repeat(500) + "b";
        let name = "a".repeat(200);
        assert!(!m(&pattern, &name));
    }
}
