//! THREAD (RFC 5256 §3 BASE.6.4.THREAD: the ORDEREDSUBJECT and REFERENCES algorithms) and its
//! response (§4 BASE.7.2.THREAD, formal syntax §5).
//!
//! The caller searches first (crate::search), builds one [`ThreadInfo`] per match with
//! [`thread_info`] (REFERENCES needs the raw header for the References field), then renders
//! [`thread`]'s forest with [`render_threads`].
//!
//! Reply chains can be as deep as a mailbox is long, and a hostile sender can make them so;
//! nothing here recurses over the thread tree (building, pruning, sorting, rendering and
//! dropping all walk it with explicit stacks).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;

use mailstead_store::summary::Summary;

use crate::proto::types::ThreadAlgorithm;
use crate::search::{fold, header_fields};
use crate::sort::{base_subject_ext, sent_date};

/// A References field longer than this keeps its first ID and its last ones, as MUAs trim
/// it (RFC 5322 §3.6.4); this bounds the loop checks of REFERENCES step (1) on hostile input.
const MAX_REFERENCES: usize = 256;

/// A node of a thread: a message (`id` is its sequence number or UID, whichever the caller
/// put in [`ThreadInfo::id`]) or, with `id` `None`, a dummy standing for a missing parent
/// (RFC 5256 §3 REFERENCES). Dummies appear only at the top of a thread and always have
/// children. `Debug` and `PartialEq` recurse (they are for tests); dropping does not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ThreadNode {
    pub id: Option<u32>,
    pub children: Vec<ThreadNode>,
}

impl ThreadNode {
    pub fn message(id: u32, children: Vec<ThreadNode>) -> ThreadNode {
        ThreadNode {
            id: Some(id),
            children,
        }
    }

    #[cfg(test)]
    pub fn dummy(children: Vec<ThreadNode>) -> ThreadNode {
        ThreadNode { id: None, children }
    }
}

/// Dropping a deep chain recursively would overflow the stack; unlink it node by node.
impl Drop for ThreadNode {
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.children);
        while let Some(mut node) = stack.pop() {
            stack.append(&mut node.children);
        }
    }
}

/// What THREAD needs of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadInfo {
    /// What the response names the message by: its sequence number or UID. Both follow
    /// mailbox order, so ties on the sent date break on it (RFC 5256 §2.2).
    pub id: u32,
    /// The normalised Message-ID (no angle brackets, no quoting), if it has a valid one.
    pub message_id: Option<String>,
    /// The message's references, normalised: the References field's IDs, or when it has none,
    /// the first ID of In-Reply-To (RFC 5256 §3 REFERENCES).
    pub references: Vec<String>,
    /// The base subject (RFC 5256 §2.1), case kept; THREAD folds it to compare.
    pub subject: String,
    /// Whether the subject marked a reply or forward (subj-refwd or "(fwd)", REFERENCES step
    /// (5)(B)(iv)).
    pub is_reply_or_fwd: bool,
    /// The sent date, UTC Unix seconds, falling back to the internal date (§2.2).
    pub date: i64,
}

/// Builds the thread data of one message. `raw_headers` is the message's header (or the whole
/// message): the summary keeps In-Reply-To but not References, so without it REFERENCES
/// threads by In-Reply-To alone. ORDEREDSUBJECT needs only the summary.
pub fn thread_info(
    id: u32,
    internal_date: i64,
    summary: &Summary,
    raw_headers: Option<&[u8]>,
) -> ThreadInfo {
    let env = &summary.envelope;
    let fields = raw_headers.map(header_fields).unwrap_or_default();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut references = field("references").map(msg_ids).unwrap_or_default();
    if references.is_empty() {
        let in_reply_to = field("in-reply-to").or(env.in_reply_to.as_deref());
        references = in_reply_to
            .map(msg_ids)
            .unwrap_or_default()
            .into_iter()
            .take(1)
            .collect();
    }
    let message_id = env.message_id.as_deref().and_then(message_id);
    let (subject, is_reply_or_fwd) = base_subject_ext(env.subject.as_deref().unwrap_or(""));
    ThreadInfo {
        id,
        message_id,
        references,
        subject,
        is_reply_or_fwd,
        date: sent_date(env.date.as_deref()).unwrap_or(internal_date),
    }
}

/// The msg-ids of a References or In-Reply-To value, normalised as RFC 5256 §3 REFERENCES
/// requires ("<"01KF8JCEOCBS0045PS"@xxx.yyy.com> and <01KF8JCEOCBS0045PS@xxx.yyy.com> MUST be
/// interpreted as being the same Message ID"): angle brackets, quotes, escapes, white space
/// and comments dropped. Text outside angle brackets (phrases of old In-Reply-To fields) is
/// skipped. Comparison stays case-sensitive ("Message ID comparisons are case-sensitive").
pub fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars();
    let mut comment = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' if comment > 0 => {
                chars.next();
            }
            '(' => comment += 1,
            ')' if comment > 0 => comment -= 1,
            '<' if comment == 0 => {
                let mut id = String::new();
                let mut closed = false;
                let mut inner_comment = 0usize;
                while let Some(c) = chars.next() {
                    match c {
                        '>' if inner_comment == 0 => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            if let Some(e) = chars.next()
                                && inner_comment == 0
                            {
                                id.push(e);
                            }
                        }
                        '(' => inner_comment += 1,
                        ')' if inner_comment > 0 => inner_comment -= 1,
                        _ if inner_comment > 0 => {}
                        '"' => {}
                        c if c.is_whitespace() => {}
                        c => id.push(c),
                    }
                }
                if closed && !id.is_empty() {
                    out.push(id);
                }
            }
            _ => {}
        }
    }
    out
}

/// A Message-ID value: its msg-id, or for a broken client's bare `id@host` the token itself.
fn message_id(value: &str) -> Option<String> {
    if let Some(id) = msg_ids(value).into_iter().next() {
        return Some(id);
    }
    let v = value.trim();
    (!v.is_empty()
        && !v.contains(['<', '>'])
        && !v.contains(char::is_whitespace)
        && v.contains('@'))
    .then(|| v.to_string())
}

/// Threads `msgs` (RFC 5256 §3 BASE.6.4.THREAD). `msgs` are the searched messages, in mailbox
/// order.
pub fn thread(msgs: &[ThreadInfo], algorithm: ThreadAlgorithm) -> Vec<ThreadNode> {
    match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(msgs),
        ThreadAlgorithm::References => references(msgs),
    }
}

/// The THREAD response data (RFC 5256 §4 BASE.7.2.THREAD; §5 formal syntax:
/// `thread-list = "(" (thread-members / thread-nested) ")"`, `thread-members = nz-number
/// *(SP nz-number) [SP thread-nested]`, `thread-nested = 2*thread-list`): a chain of only
/// children is a run of numbers, a node with several children is followed by one list per
/// child, and a dummy is its children's lists alone, e.g. `(1)(2 3 4)(5 (6)(7))((8)(9))`.
pub fn render_threads(out: &mut String, threads: &[ThreadNode]) {
    enum Task<'a> {
        /// "(" members ")"
        List(&'a ThreadNode),
        /// The node and what hangs below it.
        Members(&'a ThreadNode),
        Text(&'static str),
    }
    /// Children worth printing: a childless dummy stands for nothing.
    fn kids(n: &ThreadNode) -> impl DoubleEndedIterator<Item = &ThreadNode> {
        n.children
            .iter()
            .filter(|c| c.id.is_some() || !c.children.is_empty())
    }
    let mut stack: Vec<Task<'_>> = threads
        .iter()
        .rev()
        .filter(|t| t.id.is_some() || !t.children.is_empty())
        .map(Task::List)
        .collect();
    while let Some(task) = stack.pop() {
        match task {
            Task::Text(t) => out.push_str(t),
            Task::List(n) => {
                out.push('(');
                stack.push(Task::Text(")"));
                stack.push(Task::Members(n));
            }
            Task::Members(n) => {
                let count = kids(n).count();
                if let Some(id) = n.id {
                    let _ = write!(out, "{id}");
                    if count > 0 {
                        out.push(' ');
                    }
                }
                if count == 1 {
                    stack.extend(kids(n).map(Task::Members));
                } else {
                    stack.extend(kids(n).rev().map(Task::List));
                }
            }
        }
    }
}

/// ORDEREDSUBJECT (RFC 5256 §3): sort by base subject, then sent date; each run of equal base
/// subjects is a thread whose first message is the parent of all the others (siblings, in
/// date order); threads in the order of their first message's date. Messages with an empty
/// base subject form one thread like any other subject: ORDEREDSUBJECT sets no exception
/// (REFERENCES step (5) does).
fn ordered_subject(msgs: &[ThreadInfo]) -> Vec<ThreadNode> {
    let keys: Vec<String> = msgs.iter().map(|m| fold(&m.subject)).collect();
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        keys[a]
            .cmp(&keys[b])
            .then_with(|| by_date(&msgs[a], &msgs[b]))
    });
    let mut threads: Vec<(&ThreadInfo, ThreadNode)> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let first = order[i];
        let mut j = i + 1;
        while j < order.len() && keys[order[j]] == keys[first] {
            j += 1;
        }
        let children = order[i + 1..j]
            .iter()
            .map(|&k| ThreadNode::message(msgs[k].id, Vec::new()))
            .collect();
        threads.push((&msgs[first], ThreadNode::message(msgs[first].id, children)));
        i = j;
    }
    threads.sort_by(|a, b| by_date(a.0, b.0));
    threads.into_iter().map(|(_, node)| node).collect()
}

/// Sent date order; equal dates keep mailbox order (RFC 5256 §2.2).
fn by_date(a: &ThreadInfo, b: &ThreadInfo) -> Ordering {
    a.date.cmp(&b.date).then(a.id.cmp(&b.id))
}

/// A container of REFERENCES (RFC 5256 §3): a message or a dummy, with its place in the tree.
#[derive(Debug, Default)]
struct Container {
    /// Index into the messages; `None` for a dummy.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Forest<'m> {
    msgs: &'m [ThreadInfo],
    cs: Vec<Container>,
}

impl Forest<'_> {
    fn add(&mut self, msg: Option<usize>) -> usize {
        self.cs.push(Container {
            msg,
            ..Container::default()
        });
        self.cs.len() - 1
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.cs[child].parent = Some(parent);
        self.cs[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.cs[child].parent.take() {
            self.cs[p].children.retain(|&c| c != child);
        }
    }

    /// Whether `anc` is `node` or one of its ancestors: making `node` the parent of `anc`
    /// would then close a loop (step (1)(A): "make sure that A is not a descendent of B").
    fn is_ancestor(&self, anc: usize, node: usize) -> bool {
        if anc == node {
            return true;
        }
        // A childless container is nobody's ancestor: the common case costs nothing.
        if self.cs[anc].children.is_empty() {
            return false;
        }
        let mut cur = self.cs[node].parent;
        // The tree never has a loop, so this ends; the bound is belt and braces.
        for _ in 0..self.cs.len() {
            match cur {
                None => return false,
                Some(c) if c == anc => return true,
                Some(c) => cur = self.cs[c].parent,
            }
        }
        true
    }

    /// The message a container sorts and gathers by: its own, or a dummy's first child's
    /// (steps (4), (5)(B)(i), (6)).
    fn rep(&self, mut c: usize) -> Option<usize> {
        for _ in 0..self.cs.len() {
            match self.cs[c].msg {
                Some(m) => return Some(m),
                None => c = *self.cs[c].children.first()?,
            }
        }
        None
    }

    fn cmp_date(&self, a: usize, b: usize) -> Ordering {
        match (self.rep(a), self.rep(b)) {
            (Some(x), Some(y)) => by_date(&self.msgs[x], &self.msgs[y]),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }

    fn sort_children(&mut self, c: usize) {
        let mut kids = std::mem::take(&mut self.cs[c].children);
        kids.sort_by(|&a, &b| self.cmp_date(a, b));
        self.cs[c].children = kids;
    }

    /// The containers below `root`, each after all of its descendants.
    fn post_order(&self, root: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(c) = stack.pop() {
            out.push(c);
            stack.extend(self.cs[c].children.iter().copied());
        }
        out.reverse();
        out
    }
}

/// REFERENCES (RFC 5256 §3 BASE.6.4.THREAD), steps (1) to (6).
fn references(msgs: &[ThreadInfo]) -> Vec<ThreadNode> {
    let mut f = Forest {
        msgs,
        cs: Vec::with_capacity(msgs.len() * 2 + 1),
    };
    // (1) The ID table: Message ID to container.
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(msgs.len() * 2);
    for (i, m) in msgs.iter().enumerate() {
        // The message's own container. Without a valid Message-ID, or with one an earlier
        // message already has, the message gets "a unique Message ID": a container no
        // reference can name.
        let own = match m.message_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => match ids.get(id) {
                Some(&c) if f.cs[c].msg.is_none() => {
                    f.cs[c].msg = Some(i);
                    c
                }
                Some(_) => f.add(Some(i)),
                None => {
                    let c = f.add(Some(i));
                    ids.insert(id, c);
                    c
                }
            },
            None => f.add(Some(i)),
        };
        // (1)(A) Link the references in order, each the parent of the next: a reference
        // with no message becomes a dummy; a container that has a parent keeps it (the
        // field may have been truncated); no link may close a loop.
        let refs: Vec<&str> = if m.references.len() > MAX_REFERENCES {
            m.references[..1]
                .iter()
                .chain(&m.references[m.references.len() - (MAX_REFERENCES - 1)..])
                .map(String::as_str)
                .collect()
        } else {
            m.references.iter().map(String::as_str).collect()
        };
        let mut prev: Option<usize> = None;
        for r in refs.into_iter().filter(|r| !r.is_empty()) {
            let c = match ids.get(r) {
                Some(&c) => c,
                None => {
                    let c = f.add(None);
                    ids.insert(r, c);
                    c
                }
            };
            if let Some(p) = prev
                && f.cs[c].parent.is_none()
                && !f.is_ancestor(c, p)
            {
                f.link(p, c);
            }
            prev = Some(c);
        }
        // (1)(B) The last reference is the parent: break any parent the message had (a
        // truncated References field of another message guessed it), then link unless that
        // closes a loop. A message without references ends up without a parent.
        f.unlink(own);
        if let Some(p) = prev
            && !f.is_ancestor(own, p)
        {
            f.link(p, own);
        }
    }
    drop(ids);

    // (2) Every container without a parent goes under a dummy root.
    let root = f.add(None);
    for c in 0..root {
        if f.cs[c].parent.is_none() {
            f.link(root, c);
        }
    }

    // (3) Prune dummies: a childless dummy goes; a dummy with children is replaced by them,
    // except that several children are not promoted to the root. Bottom-up, so a dummy's
    // children are already pruned when it is looked at.
    for x in f.post_order(root) {
        let kids = std::mem::take(&mut f.cs[x].children);
        let mut kept = Vec::with_capacity(kids.len());
        for c in kids {
            if f.cs[c].msg.is_some() {
                kept.push(c);
                continue;
            }
            let n = f.cs[c].children.len();
            if n == 0 {
                f.cs[c].parent = None;
            } else if x == root && n > 1 {
                kept.push(c);
            } else {
                for g in std::mem::take(&mut f.cs[c].children) {
                    f.cs[g].parent = Some(x);
                    kept.push(g);
                }
                f.cs[c].parent = None;
            }
        }
        f.cs[x].children = kept;
    }

    // (4) Sort the top level by sent date; a dummy sorts its children first and goes by
    // the first.
    for c in f.cs[root].children.clone() {
        if f.cs[c].msg.is_none() {
            f.sort_children(c);
        }
    }
    f.sort_children(root);

    // (5) Gather the top level by base subject.
    let keys: Vec<String> = msgs.iter().map(|m| fold(&m.subject)).collect();
    let subject_of = |f: &Forest<'_>, c: usize| -> Option<usize> {
        // (i) The subject of the message, or of a dummy's first child; (ii) skip if empty.
        f.rep(c).filter(|&m| !keys[m].is_empty())
    };
    let is_dummy = |f: &Forest<'_>, c: usize| f.cs[c].msg.is_none();
    let is_refwd = |f: &Forest<'_>, c: usize| f.cs[c].msg.is_some_and(|m| msgs[m].is_reply_or_fwd);
    // (A), (B) One container per subject: the first seen, replaced by a later one when the
    // one in the table is not a dummy and the later one is a dummy, or the one in the table
    // is a reply or forward and the later one is not.
    let mut table: HashMap<&str, usize> = HashMap::new();
    for c in f.cs[root].children.clone() {
        let Some(m) = subject_of(&f, c) else { continue };
        match table.get(keys[m].as_str()) {
            None => {
                table.insert(&keys[m], c);
            }
            Some(&t) => {
                if !is_dummy(&f, t) && (is_dummy(&f, c) || (is_refwd(&f, t) && !is_refwd(&f, c))) {
                    table.insert(&keys[m], c);
                }
            }
        }
    }
    // (C) Merge each top-level container into the one the table holds for its subject.
    // Merged containers leave the top level in one pass at the end: removing each from the
    // list as it goes would cost the list's length per merge, quadratic for a mailbox of
    // same-subject notifications.
    let mut top = std::mem::take(&mut f.cs[root].children);
    let slot: HashMap<usize, usize> = top.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    for i in 0..top.len() {
        let c = top[i];
        if f.cs[c].parent != Some(root) {
            continue; // Moved below another by an earlier merge.
        }
        let Some(m) = subject_of(&f, c) else { continue };
        let Some(&t) = table.get(keys[m].as_str()) else {
            continue;
        };
        if t == c {
            continue;
        }
        if is_dummy(&f, t) && is_dummy(&f, c) {
            // Both dummies: c's children join t's; c goes.
            f.cs[c].parent = None;
            for g in std::mem::take(&mut f.cs[c].children) {
                f.link(t, g);
            }
        } else if is_dummy(&f, t) || (is_refwd(&f, c) && !is_refwd(&f, t)) {
            // Into the dummy, or a reply under the original: c becomes a child of t.
            f.cs[c].parent = None;
            f.link(t, c);
        } else {
            // Otherwise a new dummy takes t's place with t and c as its children. (t is not
            // a dummy here, so it is one of the original top-level containers.)
            let d = f.add(None);
            if let Some(&pos) = slot.get(&t) {
                top[pos] = d;
            }
            f.cs[d].parent = Some(root);
            f.cs[t].parent = None;
            f.link(d, t);
            f.cs[c].parent = None;
            f.link(d, c);
            table.insert(&keys[m], d);
        }
    }
    top.retain(|&c| f.cs[c].parent == Some(root));
    f.cs[root].children = top;

    // (6) Sort every set of siblings by sent date, the deepest first, so a dummy can go by
    // its first child.
    for x in f.post_order(root) {
        f.sort_children(x);
    }

    into_nodes(&f, root)
}

/// The tree below `root` as nested [`ThreadNode`]s, built bottom-up without recursion.
fn into_nodes(f: &Forest<'_>, root: usize) -> Vec<ThreadNode> {
    let mut built: Vec<Option<ThreadNode>> = Vec::new();
    built.resize_with(f.cs.len(), || None);
    let take = |built: &mut Vec<Option<ThreadNode>>, kids: &[usize]| -> Vec<ThreadNode> {
        kids.iter()
            .filter_map(|&k| built.get_mut(k).and_then(Option::take))
            .collect()
    };
    for x in f.post_order(root) {
        if x == root {
            continue;
        }
        let children = take(&mut built, &f.cs[x].children);
        built[x] = Some(ThreadNode {
            id: f.cs[x].msg.map(|m| f.msgs[m].id),
            children,
        });
    }
    take(&mut built, &f.cs[root].children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailstead_store::summary::summarize;

    /// A message: id, Message-ID, references, subject, date.
    fn msg(id: u32, mid: Option<&str>, refs: &[&str], subject: &str, date: i64) -> ThreadInfo {
        let (subject, is_reply_or_fwd) = base_subject_ext(subject);
        ThreadInfo {
            id,
            message_id: mid.map(str::to_string),
            references: refs.iter().map(|r| r.to_string()).collect(),
            subject,
            is_reply_or_fwd,
            date,
        }
    }

    fn render(msgs: &[ThreadInfo], algorithm: ThreadAlgorithm) -> String {
        let mut out = String::new();
        render_threads(&mut out, &thread(msgs, algorithm));
        out
    }

    fn refs(msgs: &[ThreadInfo]) -> String {
        render(msgs, ThreadAlgorithm::References)
    }

    #[test]
    fn rendering() {
        let m = |id| ThreadNode::message(id, Vec::new());
        let forest = vec![
            m(1),
            ThreadNode::message(2, vec![ThreadNode::message(3, vec![m(4)])]),
            ThreadNode::message(5, vec![m(6), m(7)]),
            ThreadNode::dummy(vec![m(8), ThreadNode::message(9, vec![m(10), m(11)])]),
            // A dummy with one child is its child; an empty dummy is nothing.
            ThreadNode::dummy(vec![m(12)]),
            ThreadNode::dummy(Vec::new()),
            ThreadNode::message(13, vec![ThreadNode::dummy(Vec::new())]),
        ];
        let mut out = String::new();
        render_threads(&mut out, &forest);
        assert_eq!(out, "(1)(2 3 4)(5 (6)(7))((8)(9 (10)(11)))(12)(13)");
        let mut empty = String::new();
        render_threads(&mut empty, &[]);
        assert_eq!(empty, "");
    }

    #[test]
    fn rfc5256_orderedsubject_shape() {
        // From "A283 THREAD ORDEREDSUBJECT": "(166)(167)...(174 (175)(176)(178)(181)(180))...
        // (194 195)(196 (197)(198))...": a subject's first message is the parent, the rest its
        // children in date order, even where sequence numbers disagree (181 before 180).
        let msgs = [
            msg(174, None, &[], "topic", 10),
            msg(175, None, &[], "Re: topic", 11),
            msg(176, None, &[], "Re: topic", 12),
            msg(178, None, &[], "RE: Topic", 13),
            msg(180, None, &[], "Re: topic", 15),
            msg(181, None, &[], "Re: topic", 14),
            msg(194, None, &[], "single", 20),
            msg(195, None, &[], "Re: single", 21),
            msg(199, None, &[], "alone", 5),
        ];
        assert_eq!(
            render(&msgs, ThreadAlgorithm::OrderedSubject),
            "(199)(174 (175)(176)(178)(181)(180))(194 195)"
        );
        // "A284 THREAD ORDEREDSUBJECT US-ASCII TEXT "gewp"" answers "* THREAD".
        assert_eq!(render(&[], ThreadAlgorithm::OrderedSubject), "");
    }

    #[test]
    fn orderedsubject() {
        let msgs = [
            msg(1, Some("a"), &[], "a", 3),
            msg(2, Some("b"), &["a"], "Re: a", 1),
            msg(3, None, &[], "b", 2),
            msg(4, None, &[], "[list] A", 4),
            msg(5, None, &[], "", 0),
            msg(6, None, &[], "Re:", 9),
        ];
        // References are ignored; empty subjects form a thread of their own.
        assert_eq!(
            render(&msgs, ThreadAlgorithm::OrderedSubject),
            "(5 6)(2 (1)(4))(3)"
        );
    }

    #[test]
    fn rfc5256_references_shapes() {
        // From "A285 THREAD REFERENCES": "((170)(179))": two messages replying to one that is
        // not in the mailbox stay under a dummy; "(177 (183)(182)(188 (184)(185)...))": a
        // reply chain with branches; "(205 206 207)": a chain.
        let msgs = [
            msg(170, Some("170"), &["gone"], "x170", 1),
            msg(177, Some("177"), &[], "t177", 2),
            msg(179, Some("179"), &["gone"], "y179", 3),
            msg(182, Some("182"), &["177"], "Re: t177", 5),
            msg(183, Some("183"), &["177"], "Re: t177", 4),
            msg(184, Some("184"), &["177", "188"], "Re: t177", 7),
            msg(185, Some("185"), &["177", "188"], "Re: t177", 8),
            msg(188, Some("188"), &["177"], "Re: t177", 6),
            msg(205, Some("205"), &[], "c", 9),
            msg(206, Some("206"), &["205"], "Re: c", 10),
            msg(207, Some("207"), &["205", "206"], "Re: c", 11),
        ];
        assert_eq!(
            refs(&msgs),
            "((170)(179))(177 (183)(182)(188 (184)(185)))(205 206 207)"
        );
    }

    #[test]
    fn missing_parents_become_dummies() {
        // A missing parent below a present one is pruned away: its children move up.
        let msgs = [
            msg(1, Some("a"), &[], "one", 1),
            msg(2, Some("b"), &["a", "x"], "Re: one", 2),
            msg(3, Some("c"), &["a", "x"], "Re: one", 3),
        ];
        assert_eq!(refs(&msgs), "(1 (2)(3))");
        // A missing root with one child: the child is promoted to the root.
        assert_eq!(refs(&[msg(1, Some("a"), &["x"], "s", 1)]), "(1)");
        // With two, the dummy stays.
        let msgs = [
            msg(1, Some("a"), &["x"], "s1", 1),
            msg(2, Some("b"), &["x"], "s2", 2),
        ];
        assert_eq!(refs(&msgs), "((1)(2))");
        // A chain of missing messages collapses.
        let msgs = [
            msg(1, Some("a"), &[], "s", 1),
            msg(2, Some("d"), &["a", "b", "c"], "s2", 2),
        ];
        assert_eq!(refs(&msgs), "(1 2)");
    }

    #[test]
    fn reference_loops_terminate() {
        // a says its parent is b, b says its parent is a.
        let msgs = [
            msg(1, Some("a"), &["b"], "s1", 1),
            msg(2, Some("b"), &["a"], "s2", 2),
        ];
        assert_eq!(refs(&msgs), "(2 1)");
        // A message referencing itself, alone and in a chain.
        assert_eq!(refs(&[msg(1, Some("a"), &["a"], "s", 1)]), "(1)");
        let msgs = [
            msg(1, Some("a"), &["a", "b", "a", "b"], "s1", 1),
            msg(2, Some("b"), &["b", "a", "b"], "s2", 2),
        ];
        // 1 makes a the parent of b; 2's last reference is itself, so step (1)(B) breaks
        // its parent link and cannot make a new one.
        assert_eq!(refs(&msgs), "(1)(2)");
        // A three-way cycle.
        let msgs = [
            msg(1, Some("a"), &["c"], "s1", 1),
            msg(2, Some("b"), &["a"], "s2", 2),
            msg(3, Some("c"), &["b"], "s3", 3),
        ];
        assert_eq!(refs(&msgs), "(3 1 2)");
    }

    #[test]
    fn duplicate_and_missing_message_ids() {
        // The second "a" gets a unique ID: replies go to the first.
        let msgs = [
            msg(1, Some("a"), &[], "s", 1),
            msg(2, Some("a"), &[], "t", 2),
            msg(3, Some("c"), &["a"], "u", 3),
            msg(4, None, &["c"], "v", 4),
            msg(5, None, &[], "w", 5),
        ];
        assert_eq!(refs(&msgs), "(1 3 4)(2)(5)");
    }

    #[test]
    fn truncated_references_keep_earlier_links() {
        // 3's References were truncated ("b" missing), so it guessed a as its parent; 2 then
        // arrives with the full chain and the existing link a -> c is kept for c... until c's
        // own message says b is its parent.
        let msgs = [
            msg(1, Some("a"), &[], "s", 1),
            msg(3, Some("c"), &["a"], "Re: s", 3),
            msg(2, Some("b"), &["a"], "Re: s", 2),
            msg(4, Some("d"), &["a", "b", "c"], "Re: s", 4),
        ];
        assert_eq!(refs(&msgs), "(1 (2)(3 4))");
        // Step (1)(B): the message's own References win over another's guess.
        let msgs = [
            msg(1, Some("d"), &["a", "c"], "s", 1),
            msg(2, Some("c"), &["b"], "s", 2),
            msg(3, Some("b"), &[], "s", 3),
        ];
        assert_eq!(refs(&msgs), "(3 2 1)");
    }

    #[test]
    fn subject_gathering() {
        // "Re: x" without references joins "x".
        let msgs = [
            msg(1, Some("a"), &[], "x", 1),
            msg(2, Some("b"), &[], "Re: x", 2),
        ];
        assert_eq!(refs(&msgs), "(1 2)");
        // The original goes to the table even when the reply is older.
        let msgs = [
            msg(1, Some("a"), &[], "Re: x", 1),
            msg(2, Some("b"), &[], "x", 2),
        ];
        assert_eq!(refs(&msgs), "(2 1)");
        // Two originals with one subject: a new dummy holds both.
        let msgs = [
            msg(1, Some("a"), &[], "x", 1),
            msg(2, Some("b"), &[], "X", 2),
            msg(3, Some("c"), &[], "Fwd: x", 3),
        ];
        assert_eq!(refs(&msgs), "((1)(2)(3))");
        // Two replies: a dummy as well.
        let msgs = [
            msg(1, Some("a"), &[], "Re: x", 1),
            msg(2, Some("b"), &[], "Re: x", 2),
        ];
        assert_eq!(refs(&msgs), "((1)(2))");
        // A dummy thread and a message with its subject: the message joins the dummy.
        let msgs = [
            msg(1, Some("a"), &["gone"], "Re: y", 1),
            msg(2, Some("b"), &["gone"], "Re: y", 3),
            msg(3, Some("c"), &[], "y", 2),
        ];
        assert_eq!(refs(&msgs), "((1)(3)(2))");
        // Two dummy threads with one subject merge their children.
        let msgs = [
            msg(1, Some("a"), &["p"], "Re: z", 1),
            msg(2, Some("b"), &["p"], "Re: z", 2),
            msg(3, Some("c"), &["q"], "Re: z", 3),
            msg(4, Some("d"), &["q"], "Re: z", 4),
        ];
        assert_eq!(refs(&msgs), "((1)(2)(3)(4))");
        // Empty subjects are never gathered.
        let msgs = [
            msg(1, Some("a"), &[], "", 1),
            msg(2, Some("b"), &[], "Re:", 2),
        ];
        assert_eq!(refs(&msgs), "(1)(2)");
        // Gathering applies to the top level only: a reply deep in a thread stays there.
        let msgs = [
            msg(1, Some("a"), &[], "w", 1),
            msg(2, Some("b"), &["a"], "other", 2),
            msg(3, Some("c"), &[], "other", 3),
        ];
        assert_eq!(refs(&msgs), "(1 2)(3)");
    }

    #[test]
    fn siblings_sort_by_date_then_id() {
        let msgs = [
            msg(1, Some("a"), &[], "s", 5),
            msg(2, Some("b"), &["a"], "s2", 9),
            msg(3, Some("c"), &["a"], "s3", 7),
            msg(4, Some("d"), &["a"], "s4", 7),
            msg(5, Some("e"), &[], "t", 1),
        ];
        assert_eq!(refs(&msgs), "(5)(1 (3)(4)(2))");
    }

    #[test]
    fn message_ids_are_normalised() {
        assert_eq!(
            msg_ids("<\"01KF8JCEOCBS0045PS\"@xxx.yyy.com> (comment <no@no>) <b@c>"),
            ["01KF8JCEOCBS0045PS@xxx.yyy.com", "b@c"]
        );
        assert_eq!(msg_ids("Your message of <x@y> \"text\""), ["x@y"]);
        assert_eq!(msg_ids("<a@b\r\n >< c @ d >"), ["a@b", "c@d"]);
        assert_eq!(msg_ids("<> <unclosed@x"), Vec::<String>::new());
        assert_eq!(message_id(" bare@host "), Some("bare@host".into()));
        assert_eq!(message_id("not an id"), None);
    }

    #[test]
    fn thread_info_from_messages() {
        let raw = b"Message-ID: <\"m\"@x>\r\n\
Subject: =?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?= (fwd)\r\n\
Date: Mon, 02 Feb 2026 23:30:00 -0500\r\n\
In-Reply-To: <irt@x>\r\n\
References: <r1@x>\r\n\x20<r2@x>\r\n\
\r\n\
body\r\n";
        let summary = summarize(raw);
        let info = thread_info(7, 99, &summary, Some(raw));
        assert_eq!(info.id, 7);
        assert_eq!(info.message_id.as_deref(), Some("m@x"));
        assert_eq!(info.references, ["r1@x", "r2@x"]);
        assert_eq!(info.subject, "Grüße");
        assert!(info.is_reply_or_fwd);
        assert_eq!(info.date, 1_770_093_000);
        // Without the raw header, In-Reply-To from the summary.
        let info = thread_info(7, 99, &summary, None);
        assert_eq!(info.references, ["irt@x"]);
        // No References and no Date: In-Reply-To's first ID, the internal date.
        let raw = b"In-Reply-To: <a@x> <b@x>\r\nReferences: junk\r\n\r\n";
        let info = thread_info(1, 99, &summarize(raw), Some(raw));
        assert_eq!(info.references, ["a@x"]);
        assert_eq!(info.date, 99);
        assert_eq!(info.message_id, None);
    }

    #[test]
    fn deep_chains_do_not_overflow_the_stack() {
        let n = 200_000u32;
        let msgs: Vec<ThreadInfo> = (1..=n)
            .map(|i| ThreadInfo {
                id: i,
                message_id: Some(i.to_string()),
                references: if i > 1 {
                    vec![(i - 1).to_string()]
                } else {
                    Vec::new()
                },
                subject: "s".into(),
                is_reply_or_fwd: i > 1,
                date: i64::from(i),
            })
            .collect();
        let threads = thread(&msgs, ThreadAlgorithm::References);
        let mut out = String::new();
        render_threads(&mut out, &threads);
        assert!(out.starts_with("(1 2 3 "));
        assert!(out.ends_with(&format!(" {n})")));
        drop(threads);
    }

    #[test]
    fn many_messages_with_one_subject() {
        // Notifications: one subject, no references. Step (5) must not be quadratic.
        let n = 100_000u32;
        let msgs: Vec<ThreadInfo> = (1..=n)
            .map(|i| msg(i, Some(&i.to_string()), &[], "Daily report", i64::from(i)))
            .collect();
        let threads = thread(&msgs, ThreadAlgorithm::References);
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].id, None);
        assert_eq!(threads[0].children.len(), n as usize);
        let threads = thread(&msgs, ThreadAlgorithm::OrderedSubject);
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].children.len(), n as usize - 1);
    }

    /// Every id in `threads`, and whether the tree is well formed: dummies only at the top,
    /// each with at least two children, never empty.
    fn collect(threads: &[ThreadNode]) -> Result<Vec<u32>, String> {
        let mut ids = Vec::new();
        let mut stack: Vec<(&ThreadNode, usize)> = threads.iter().map(|t| (t, 0)).collect();
        while let Some((node, depth)) = stack.pop() {
            match node.id {
                Some(id) => ids.push(id),
                None if depth > 0 => return Err("dummy below the top".into()),
                None if node.children.len() < 2 => return Err("dummy with < 2 children".into()),
                None => {}
            }
            stack.extend(node.children.iter().map(|c| (c, depth + 1)));
        }
        Ok(ids)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn every_message_appears_once(
            raw in proptest::collection::vec(
                (
                    proptest::option::of(0u8..8),
                    proptest::collection::vec(0u8..10, 0..5),
                    proptest::sample::select(
                        vec!["", "a", "Re: a", "A", "Fwd: b", "b", "[x] b", "Re:"],
                    ),
                    0i64..5,
                ),
                0..30,
            ),
        ) {
            let msgs: Vec<ThreadInfo> = raw
                .iter()
                .enumerate()
                .map(|(i, (mid, refs, subject, date))| {
                    let mut m = msg(i as u32 + 1, None, &[], subject, *date);
                    m.message_id = mid.map(|x| format!("id{x}"));
                    m.references = refs.iter().map(|x| format!("id{x}")).collect();
                    m
                })
                .collect();
            for algorithm in [ThreadAlgorithm::References, ThreadAlgorithm::OrderedSubject] {
                let threads = thread(&msgs, algorithm);
                let mut ids =
                    collect(&threads).map_err(proptest::test_runner::TestCaseError::fail)?;
                ids.sort_unstable();
                proptest::prop_assert_eq!(ids, (1..=msgs.len() as u32).collect::<Vec<_>>());
                let mut out = String::new();
                render_threads(&mut out, &threads);
                proptest::prop_assert!(
                    !out.contains("()") && !out.contains("( ") && !out.contains(" )")
                );
                proptest::prop_assert_eq!(out.matches('(').count(), out.matches(')').count());
            }
        }
    }
}
