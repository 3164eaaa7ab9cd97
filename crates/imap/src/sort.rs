//! SORT (RFC 5256 §3 BASE.6.4.SORT) with the DISPLAYFROM and DISPLAYTO keys of RFC 5957, and
//! base subject extraction (RFC 5256 §2.1), which THREAD shares.
//!
//! The caller searches first (crate::search), builds one [`SortInfo`] per match with
//! [`sort_info`], and prints the sequence numbers or UIDs in the order [`sort`] returns.

use std::cmp::Ordering;

use mailstead_store::summary::{EnvAddress, Summary};

use crate::proto::types::{SortCriterion, SortKey};
use crate::search::{decode_text, fold};

/// What SORT compares of one message. The string fields are comparison keys, already folded
/// with [`fold`] (RFC 5256 §1: collation per I18NLEVEL=1, i.e. i;unicode-casemap), so sorting
/// compares them as plain strings. A missing field is the empty string, which "always collates
/// before non-empty strings" (RFC 5256 §3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SortInfo {
    /// The sequence number: the final tie-breaker (RFC 5256 §3).
    pub seq: u32,
    /// ARRIVAL: INTERNALDATE, Unix seconds.
    pub internal_date: i64,
    /// SIZE: RFC822.SIZE.
    pub size: u64,
    /// DATE: the Date header in UTC, or the internal date when the header is missing or
    /// unparseable (RFC 5256 §2.2).
    pub sent_date: i64,
    /// SUBJECT: the base subject (§2.1).
    pub subject: String,
    /// FROM, TO, CC: the addr-mailbox (local part) of the first address (§3).
    pub from: String,
    pub to: String,
    pub cc: String,
    /// DISPLAYFROM, DISPLAYTO: the DISPLAY sort value of the first address (RFC 5957 §3, §4).
    pub display_from: String,
    pub display_to: String,
}

/// Builds the sort data of one message from its summary.
pub fn sort_info(seq: u32, internal_date: i64, size: u64, summary: &Summary) -> SortInfo {
    let env = &summary.envelope;
    SortInfo {
        seq,
        internal_date,
        size,
        sent_date: sent_date(env.date.as_deref()).unwrap_or(internal_date),
        subject: fold(&base_subject(env.subject.as_deref().unwrap_or(""))),
        from: fold(&first_mailbox(&env.from)),
        to: fold(&first_mailbox(&env.to)),
        cc: fold(&first_mailbox(&env.cc)),
        display_from: fold(&display_name(&env.from)),
        display_to: fold(&display_name(&env.to)),
    }
}

/// SORT (RFC 5256 §3): the indices of `cands` in sorted order. Criteria apply in turn, REVERSE
/// reversing only its own criterion; messages equal on all of them keep mailbox order ("sorted
/// according to the order in which they appear in the mailbox (that is, by sequence number)"),
/// ascending even when the criteria are reversed.
pub fn sort(cands: &[SortInfo], criteria: &[SortCriterion]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| match (cands.get(a), cands.get(b)) {
        (Some(x), Some(y)) => compare(x, y, criteria),
        _ => Ordering::Equal,
    });
    order
}

fn compare(x: &SortInfo, y: &SortInfo, criteria: &[SortCriterion]) -> Ordering {
    for c in criteria {
        let o = match c.key {
            SortKey::Arrival => x.internal_date.cmp(&y.internal_date),
            SortKey::Date => x.sent_date.cmp(&y.sent_date),
            SortKey::Size => x.size.cmp(&y.size),
            SortKey::Subject => x.subject.cmp(&y.subject),
            SortKey::From => x.from.cmp(&y.from),
            SortKey::To => x.to.cmp(&y.to),
            SortKey::Cc => x.cc.cmp(&y.cc),
            SortKey::DisplayFrom => x.display_from.cmp(&y.display_from),
            SortKey::DisplayTo => x.display_to.cmp(&y.display_to),
        };
        let o = if c.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    x.seq.cmp(&y.seq)
}

/// The sent date of a message in UTC Unix seconds: its Date header, when present and
/// parseable (RFC 5256 §2.2; the caller falls back to the internal date).
pub fn sent_date(date_header: Option<&str>) -> Option<i64> {
    let dt = mail_parser::DateTime::parse_rfc822(date_header?)?;
    dt.is_valid().then(|| dt.to_timestamp())
}

/// The [IMAP] addr-mailbox of the first address (RFC 5256 §3 FROM/TO/CC). A group's start is
/// an address whose addr-mailbox is the group name (RFC 9051 §7.5.2), so a list that starts
/// with a group sorts by the group name.
fn first_mailbox(list: &[EnvAddress]) -> String {
    match list.first() {
        Some(EnvAddress::Mailbox { local, .. }) => local.clone(),
        Some(EnvAddress::GroupStart(name)) => name.clone(),
        _ => String::new(),
    }
}

/// The DISPLAY sort value of the first address of the envelope (RFC 5957 §4), per §3: the
/// addr-name, decoded, when not empty; else addr-mailbox@addr-host when both exist; else the
/// addr-mailbox; else the empty string. A group's start is an address with the group name as
/// addr-mailbox and no host, so a list that starts with a group sorts by the group name.
fn display_name(list: &[EnvAddress]) -> String {
    match list.first() {
        Some(EnvAddress::Mailbox {
            name,
            local,
            domain,
        }) => match name.as_deref().map(decode_text) {
            Some(n) if !n.trim().is_empty() => n.trim().to_string(),
            _ => match domain {
                Some(d) => format!("{local}@{d}"),
                None => local.clone(),
            },
        },
        Some(EnvAddress::GroupStart(name)) => name.clone(),
        _ => String::new(),
    }
}

/// The base subject (RFC 5256 §2.1) of a Subject header value: encoded words decoded,
/// white space collapsed, reply and forward markers, list tags and `(fwd)` trailers removed.
/// Case is kept; comparisons fold it.
pub fn base_subject(subject: &str) -> String {
    base_subject_ext(subject).0
}

/// [`base_subject`], and whether the subject marks a reply or forward: RFC 5256 §3
/// REFERENCES step (5)(B)(iv) counts a subject as one when "its original subject contains a
/// subj-refwd part and/or a "(fwd)" subj-trailer". A `[fwd: ...]` wrapper alone does not
/// count: the RFC names only those two.
pub fn base_subject_ext(subject: &str) -> (String, bool) {
    extract(&decode_text(subject))
}

/// Steps (1, after decoding) to (7) of RFC 5256 §2.1 on already decoded text. Idempotent:
/// the result has no leading or trailing white space, no trailer, no leader and no
/// removable blob, so a second pass finds nothing to remove.
pub fn extract(decoded: &str) -> (String, bool) {
    // (1) Tabs and continuations become spaces; runs of spaces become one.
    let mut s = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        s.push(c);
    }
    let mut refwd = false;
    loop {
        // (2) Remove subj-trailer ("(fwd)" / WSP) from the end, as often as it matches.
        loop {
            if s.ends_with(' ') {
                s.pop();
            } else if s.len() >= 5 && s.is_char_boundary(s.len() - 5) && {
                let tail = &s[s.len() - 5..];
                tail.eq_ignore_ascii_case("(fwd)")
            } {
                s.truncate(s.len() - 5);
                refwd = true;
            } else {
                break;
            }
        }
        // (5) Repeat (3) and (4) until nothing changes.
        loop {
            let before = s.len();
            // (3) Remove subj-leader (WSP, or blobs followed by subj-refwd), repeatedly.
            loop {
                if s.starts_with(' ') {
                    s.remove(0);
                } else if let Some(n) = leader_refwd(&s) {
                    s.drain(..n);
                    refwd = true;
                } else {
                    break;
                }
            }
            // (4) Remove a leading subj-blob if what remains is a non-empty subj-base.
            if let Some(n) = blob(&s, 0)
                && n < s.len()
            {
                s.drain(..n);
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd:" ... "]" around the whole subject: unwrap and start again at (2).
        if s.len() >= 6 && s.ends_with(']') && s.is_char_boundary(5) && {
            let head = &s[..5];
            head.eq_ignore_ascii_case("[fwd:")
        } {
            s.truncate(s.len() - 1);
            s.drain(..5);
            continue;
        }
        break;
    }
    (s, refwd)
}

/// The length of `*subj-blob subj-refwd` at the start of `s`, if it is there.
fn leader_refwd(s: &str) -> Option<usize> {
    let mut pos = 0;
    while let Some(end) = blob(s, pos) {
        pos = end;
    }
    refwd(s, pos)
}

/// subj-blob = "[" *BLOBCHAR "]" *WSP at byte `pos`; returns where it ends. BLOBCHAR is any
/// character but "[" and "]".
fn blob(s: &str, pos: usize) -> Option<usize> {
    let rest = s.get(pos..)?;
    let inner = rest.strip_prefix('[')?;
    let close = inner.find(['[', ']'])?;
    if !inner[close..].starts_with(']') {
        return None;
    }
    let mut end = pos + 1 + close + 1;
    end += s[end..].len() - s[end..].trim_start_matches([' ', '\t']).len();
    Some(end)
}

/// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at byte `pos`, case-insensitive;
/// returns where it ends.
fn refwd(s: &str, pos: usize) -> Option<usize> {
    let rest = s.get(pos..)?.as_bytes();
    let mut i = if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"re") {
        2
    } else if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"fw") {
        if rest.get(2).is_some_and(|b| b.eq_ignore_ascii_case(&b'd')) {
            3
        } else {
            2
        }
    } else {
        return None;
    };
    while rest.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
        i += 1;
    }
    if rest.get(i) == Some(&b'[')
        && let Some(end) = blob(s, pos + i)
        && s.as_bytes().get(end) == Some(&b':')
    {
        return Some(end + 1);
    }
    (rest.get(i) == Some(&b':')).then_some(pos + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailstead_store::summary::summarize;

    fn crit(key: SortKey) -> SortCriterion {
        SortCriterion {
            reverse: false,
            key,
        }
    }

    fn rev(key: SortKey) -> SortCriterion {
        SortCriterion { reverse: true, key }
    }

    /// Sorts messages given as (header text, internal date, size) and returns their
    /// sequence numbers (1-based positions) in order.
    fn sorted(msgs: &[(&str, i64, u64)], criteria: &[SortCriterion]) -> Vec<u32> {
        let infos: Vec<SortInfo> = msgs
            .iter()
            .enumerate()
            .map(|(i, (headers, date, size))| {
                let raw = format!("{headers}\r\n\r\nbody\r\n");
                sort_info(i as u32 + 1, *date, *size, &summarize(raw.as_bytes()))
            })
            .collect();
        sort(&infos, criteria)
            .into_iter()
            .map(|i| infos[i].seq)
            .collect()
    }

    #[test]
    fn base_subjects() {
        let cases = [
            ("Hello", "Hello"),
            ("Re: hello", "hello"),
            ("RE: Re: re:hello", "hello"),
            ("Fwd: hello", "hello"),
            ("FW: hello", "hello"),
            ("fwd:fw:re: hello", "hello"),
            ("Re : spaced", "spaced"),
            ("Re[2]: numbered", "numbered"),
            ("Re [list]: tagged reply", "tagged reply"),
            ("[PATCH] Re: x", "x"),
            ("[list] [tag] x", "x"),
            ("[only]", "[only]"),
            ("[a] [b]", "[b]"),
            ("x (fwd)", "x"),
            ("x (FWD) (fwd)  ", "x"),
            ("[fwd: hello]", "hello"),
            ("[Fwd: Re: hello (fwd)]", "hello"),
            ("Re: [fwd: [list] Re: deep] (fwd)", "deep"),
            ("Re: [fwd: a] b", "b"),
            ("Re:  multiple   spaces\there ", "multiple spaces here"),
            ("Re:", ""),
            ("", ""),
            ("   ", ""),
            ("Ref: not a reply", "Ref: not a reply"),
            ("Fwd no colon", "Fwd no colon"),
            ("Réponse: é", "Réponse: é"),
            ("=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=", "Grüße"),
            ("Re: =?iso-8859-1?q?K=F6ln?= (fwd)", "Köln"),
        ];
        for (subject, base) in cases {
            assert_eq!(base_subject(subject), base, "{subject:?}");
        }
        assert!(base_subject_ext("Re: x").1);
        assert!(base_subject_ext("x (fwd)").1);
        assert!(base_subject_ext("[list] Fwd: x").1);
        assert!(!base_subject_ext("x").1);
        assert!(!base_subject_ext("[list] x").1);
        // Only subj-refwd and "(fwd)" mark a forward (RFC 5256 REFERENCES step (5)).
        assert!(!base_subject_ext("[fwd: x]").1);
    }

    #[test]
    fn sent_dates() {
        assert_eq!(
            sent_date(Some("Mon, 02 Feb 2026 23:30:00 -0500")),
            Some(1_770_093_000)
        );
        assert_eq!(sent_date(Some("garbage")), None);
        assert_eq!(sent_date(None), None);
    }

    #[test]
    fn each_key() {
        let msgs = [
            (
                "From: Zed <zed@example.test>\r\nTo: \"Bob B\" <bob@example.test>\r\n\
                 Cc: carol@example.test\r\nSubject: Re: beta\r\n\
                 Date: Mon, 02 Feb 2026 10:00:00 +0000",
                300,
                50,
            ),
            (
                "From: alice@example.test\r\nTo: Zoe <ann@example.test>\r\n\
                 Subject: alpha\r\nDate: Mon, 02 Feb 2026 09:00:00 -0200",
                100,
                70,
            ),
            (
                "From: =?utf-8?q?=C3=89mile?= <BOB@example.test>\r\n\
                 To: undisclosed-recipients:;\r\nCc: Al <al@example.test>\r\n\
                 Subject: [list] Gamma",
                200,
                60,
            ),
        ];
        use SortKey as K;
        assert_eq!(sorted(&msgs, &[crit(K::Arrival)]), [2, 3, 1]);
        assert_eq!(sorted(&msgs, &[rev(K::Arrival)]), [1, 3, 2]);
        // DATE: 10:00Z, 11:00Z, and no Date header (internal date 200, 1970).
        assert_eq!(sorted(&msgs, &[crit(K::Date)]), [3, 1, 2]);
        assert_eq!(sorted(&msgs, &[crit(K::Size)]), [1, 3, 2]);
        assert_eq!(sorted(&msgs, &[crit(K::Subject)]), [2, 1, 3]);
        // FROM: addr-mailbox only, case-insensitive: alice, BOB, zed.
        assert_eq!(sorted(&msgs, &[crit(K::From)]), [2, 3, 1]);
        // TO: ann, bob, and a group name.
        assert_eq!(sorted(&msgs, &[crit(K::To)]), [2, 1, 3]);
        // CC: empty before non-empty: (none), al, carol.
        assert_eq!(sorted(&msgs, &[crit(K::Cc)]), [2, 3, 1]);
        // DISPLAYFROM: "alice@example.test", "Zed", "Émile" (É after Z in code points).
        assert_eq!(sorted(&msgs, &[crit(K::DisplayFrom)]), [2, 1, 3]);
        // DISPLAYTO: "Bob B", "undisclosed-recipients", "Zoe".
        assert_eq!(sorted(&msgs, &[crit(K::DisplayTo)]), [1, 3, 2]);
        assert_eq!(sorted(&msgs, &[rev(K::DisplayTo)]), [2, 3, 1]);
    }

    #[test]
    fn ties_keep_sequence_order_even_reversed() {
        let msgs = [
            ("Subject: same", 5, 10),
            ("Subject: same", 5, 10),
            ("Subject: other", 4, 10),
            ("Subject: Re: same", 6, 10),
        ];
        use SortKey as K;
        assert_eq!(sorted(&msgs, &[crit(K::Size)]), [1, 2, 3, 4]);
        assert_eq!(sorted(&msgs, &[rev(K::Size)]), [1, 2, 3, 4]);
        assert_eq!(sorted(&msgs, &[crit(K::Subject)]), [3, 1, 2, 4]);
        assert_eq!(sorted(&msgs, &[rev(K::Subject)]), [1, 2, 4, 3]);
        assert_eq!(
            sorted(&msgs, &[crit(K::Subject), rev(K::Arrival)]),
            [3, 4, 1, 2]
        );
        assert_eq!(sorted(&msgs, &[]), [1, 2, 3, 4]);
    }

    #[test]
    fn rfc5256_examples() {
        // "A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL" answers "* SORT 5 3 4 1 2": a
        // mailbox of that shape (two subjects; within each, newest first).
        let msgs = [
            ("Subject: b\r\nDate: Tue, 1 Feb 1994 10:00:00 +0000", 0, 1),
            (
                "Subject: Re: b\r\nDate: Tue, 1 Feb 1994 09:00:00 +0000",
                0,
                1,
            ),
            ("Subject: a\r\nDate: Tue, 1 Feb 1994 11:00:00 +0000", 0, 1),
            (
                "Subject: Fwd: a\r\nDate: Tue, 1 Feb 1994 10:30:00 +0000",
                0,
                1,
            ),
            (
                "Subject: A (fwd)\r\nDate: Tue, 1 Feb 1994 12:00:00 +0000",
                0,
                1,
            ),
        ];
        let criteria = [crit(SortKey::Subject), rev(SortKey::Date)];
        assert_eq!(sorted(&msgs, &criteria), [5, 3, 4, 1, 2]);
        // "A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"" answers "* SORT": nothing
        // searched, nothing sorted.
        assert!(sort(&[], &[crit(SortKey::Subject)]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn base_subject_is_idempotent(s in "(?s).{0,40}") {
            let once = base_subject(&s);
            // Decoding goes one level: text that decodes to another encoded word is decoded
            // again on a second pass, as RFC 2047 demands of the header, not of its result.
            proptest::prop_assume!(!once.contains("=?"));
            proptest::prop_assert_eq!(base_subject(&once), once);
        }

        #[test]
        fn extract_is_idempotent(
            s in "([ \\t\\[\\]():]|re|RE|fw|Fwd|fwd|\\[fwd:|\\(fwd\\)|x|é|ß){0,16}",
        ) {
            let (once, _) = extract(&s);
            proptest::prop_assert_eq!(extract(&once).0, once);
        }

        #[test]
        fn sort_is_a_permutation(
            keys in proptest::collection::vec((0i64..3, 0u64..3, "[ab]{0,2}"), 0..20),
        ) {
            let infos: Vec<SortInfo> = keys.iter().enumerate().map(|(i, (d, s, subj))| SortInfo {
                seq: i as u32 + 1,
                internal_date: *d,
                sent_date: *d,
                size: *s,
                subject: subj.clone(),
                ..SortInfo::default()
            }).collect();
            let order = sort(&infos, &[rev(SortKey::Size), crit(SortKey::Subject)]);
            let mut seen = order.clone();
            seen.sort_unstable();
            proptest::prop_assert_eq!(seen, (0..infos.len()).collect::<Vec<_>>());
            for w in order.windows(2) {
                let (a, b) = (&infos[w[0]], &infos[w[1]]);
                proptest::prop_assert!((b.size, &a.subject, a.seq) <= (a.size, &b.subject, b.seq));
            }
        }
    }
}
