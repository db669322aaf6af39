//! Changing an index one route at a time: the nodes on the route's path are copied and changed,
//! every other node is shared with the index before (which stays as it was, for the requests
//! still using it).

use std::sync::Arc;

use super::{Literals, Node, PathIndex, SCAN_LIMIT};
use crate::pattern::Segment;

/// Where a route sits in the index.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// A radix pattern's segments.
    Pattern(&'a [Segment]),
    /// A whole-segment path prefix.
    Prefix(&'a [Box<str>]),
}

/// One step down the tree.
enum Step<'a> {
    Literal(&'a str),
    Param,
}

/// Which of a node's route lists holds the route.
#[derive(Clone, Copy)]
enum Kind {
    Prefix = 0,
    End = 1,
    CatchAll = 2,
}

impl Place<'_> {
    /// The steps to the node that holds the route, and the list there.
    fn path(&self) -> (Vec<Step<'_>>, Kind) {
        match *self {
            Place::Prefix(segments) => (
                segments.iter().map(|s| Step::Literal(s)).collect(),
                Kind::Prefix,
            ),
            Place::Pattern(segments) => {
                let mut steps = Vec::with_capacity(segments.len());
                for seg in segments {
                    match seg {
                        Segment::Literal(lit) => steps.push(Step::Literal(lit)),
                        Segment::Param(_) => steps.push(Step::Param),
                        Segment::CatchAll(_) => return (steps, Kind::CatchAll),
                    }
                }
                (steps, Kind::End)
            }
        }
    }
}

impl PathIndex {
    /// This index with the route in `slot` added at `place`.
    pub fn with_route(&self, place: Place<'_>, slot: u32) -> PathIndex {
        let (steps, kind) = place.path();
        PathIndex {
            root: Arc::new(added(Some(&self.root), &steps, kind, slot)),
        }
    }

    /// This index without the route in `slot` at `place`.
    pub fn without_route(&self, place: Place<'_>, slot: u32) -> PathIndex {
        let (steps, kind) = place.path();
        let root = removed(&self.root, &steps, kind, slot).unwrap_or_else(Node::empty);
        PathIndex {
            root: Arc::new(root),
        }
    }
}

fn added(node: Option<&Node>, steps: &[Step<'_>], kind: Kind, slot: u32) -> Node {
    let mut copy = node.cloned().unwrap_or_else(Node::empty);
    match steps.split_first() {
        None => copy.change_slots(kind, |slots| slots.push(slot)),
        Some((Step::Literal(lit), rest)) => {
            let existing = copy.literals.get(lit).cloned();
            let child = added(existing.as_deref(), rest, kind, slot);
            copy.literals.set(lit, Arc::new(child));
        }
        Some((Step::Param, rest)) => {
            let child = added(copy.param.as_deref(), rest, kind, slot);
            copy.param = Some(Arc::new(child));
        }
    }
    copy
}

/// The node without the route; `None` when nothing is left in it (as a build would not make
/// it).
fn removed(node: &Node, steps: &[Step<'_>], kind: Kind, slot: u32) -> Option<Node> {
    let mut copy = node.clone();
    match steps.split_first() {
        None => copy.change_slots(kind, |slots| slots.retain(|&s| s != slot)),
        Some((Step::Literal(lit), rest)) => {
            if let Some(child) = copy.literals.get(lit).cloned() {
                match removed(&child, rest, kind, slot) {
                    Some(left) => copy.literals.set(lit, Arc::new(left)),
                    None => copy.literals.remove(lit),
                }
            }
        }
        Some((Step::Param, rest)) => {
            if let Some(child) = copy.param.clone() {
                copy.param = removed(&child, rest, kind, slot).map(Arc::new);
            }
        }
    }
    let empty = copy.routes.is_empty() && copy.literals.is_empty() && copy.param.is_none();
    (!empty).then_some(copy)
}

impl Node {
    /// Changes one of the node's route lists.
    fn change_slots(&mut self, kind: Kind, change: impl FnOnce(&mut Vec<u32>)) {
        let mut lists = [
            self.prefix().to_vec(),
            self.end().to_vec(),
            self.catch_all().to_vec(),
        ];
        change(&mut lists[kind as usize]);
        let [prefix, end, catch_all] = lists;
        let literals = std::mem::replace(&mut self.literals, Literals::Few(Box::default()));
        *self = Node::holding(literals, self.param.take(), &prefix, &end, &catch_all);
    }
}

impl Literals {
    /// Sets the child for `lit`, hashing the children once there are more than a scan takes.
    fn set(&mut self, lit: &str, child: Arc<Node>) {
        match self {
            Literals::Few(list) => {
                let mut items = std::mem::take(list).into_vec();
                match items.iter_mut().find(|(l, _)| **l == *lit) {
                    Some(item) => item.1 = child,
                    None => items.push((lit.into(), child)),
                }
                *self = if items.len() > SCAN_LIMIT {
                    Literals::Many(items.into_iter().collect())
                } else {
                    Literals::Few(items.into_boxed_slice())
                };
            }
            Literals::Many(map) => match map.get_mut(lit) {
                Some(existing) => *existing = child,
                None => {
                    map.insert(lit.into(), child);
                }
            },
        }
    }

    /// Removes the child for `lit`, back to a list when few are left.
    fn remove(&mut self, lit: &str) {
        match self {
            Literals::Few(list) => {
                let items: Vec<_> = std::mem::take(list)
                    .into_vec()
                    .into_iter()
                    .filter(|(l, _)| **l != *lit)
                    .collect();
                *list = items.into_boxed_slice();
            }
            Literals::Many(map) => {
                map.remove(lit);
                if map.len() <= SCAN_LIMIT {
                    *self = Literals::from_map(std::mem::take(map));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! An index changed route by route finds what an index built whole finds.
    use super::super::tests::hits;
    use super::*;
    use crate::pattern::{parse_pattern, parse_prefix};
    use crate::tree::PathIndexBuilder;
    use proptest::prelude::*;

    const PATTERNS: [&str; 12] = [
        "/users/new",
        "/users/{id}",
        "/users/{*rest}",
        "prefix:/users",
        "/",
        "/users/{u}/posts",
        "/{*all}",
        "prefix:/",
        "/a/{id}",
        "/a/",
        "/a/b/c",
        "prefix:/a/b",
    ];

    const PATHS: [&str; 12] = [
        "/users/new",
        "/users/7/posts",
        "/users",
        "/users/",
        "/",
        "/usersx",
        "/a/",
        "/a/x",
        "/a",
        "/a/b/c",
        "/a/b",
        "/a/b/c/d",
    ];

    fn segments(p: &str) -> (Vec<Segment>, Vec<Box<str>>) {
        match p.strip_prefix("prefix:") {
            Some(prefix) => (Vec::new(), parse_prefix(prefix).unwrap_or_default()),
            None => (
                parse_pattern(p).map(|p| p.segments).unwrap_or_default(),
                Vec::new(),
            ),
        }
    }

    fn place<'a>(p: &str, parts: &'a (Vec<Segment>, Vec<Box<str>>)) -> Place<'a> {
        if p.starts_with("prefix:") {
            Place::Prefix(&parts.1)
        } else {
            Place::Pattern(&parts.0)
        }
    }

    fn built(routes: &[(u32, usize)]) -> PathIndex {
        let mut b = PathIndexBuilder::new();
        for &(slot, p) in routes {
            let parts = segments(PATTERNS[p]);
            match place(PATTERNS[p], &parts) {
                Place::Pattern(s) => b.insert_pattern(s, slot),
                Place::Prefix(s) => b.insert_prefix(s, slot),
            }
        }
        b.build()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_patched_index_finds_what_a_built_one_does(
            ops in proptest::collection::vec((any::<bool>(), 0..8u32, 0..PATTERNS.len()), 1..40)
        ) {
            // Slot -> pattern; an add to a taken slot moves the route.
            let mut routes: Vec<Option<usize>> = vec![None; 8];
            let mut ix = built(&[]);
            for (add, slot, p) in ops {
                if let Some(old) = routes[slot as usize].take() {
                    let parts = segments(PATTERNS[old]);
                    ix = ix.without_route(place(PATTERNS[old], &parts), slot);
                }
                if add {
                    let parts = segments(PATTERNS[p]);
                    ix = ix.with_route(place(PATTERNS[p], &parts), slot);
                    routes[slot as usize] = Some(p);
                }
            }
            let live: Vec<(u32, usize)> = routes
                .iter()
                .enumerate()
                .filter_map(|(s, p)| Some((s as u32, (*p)?)))
                .collect();
            let fresh = built(&live);
            for path in PATHS {
                prop_assert_eq!(hits(&ix, path), hits(&fresh, path), "{}", path);
            }
        }
    }

    #[test]
    fn a_wide_node_turns_to_a_hash_and_back() {
        let patterns: Vec<String> = (0..40).map(|i| format!("/s{i}/{{id}}")).collect();
        let parts: Vec<_> = patterns.iter().map(|p| segments(p)).collect();
        let mut ix = built(&[]);
        for (i, p) in parts.iter().enumerate() {
            ix = ix.with_route(Place::Pattern(&p.0), i as u32);
        }
        assert!(matches!(ix.root.literals, Literals::Many(_)));
        assert_eq!(hits(&ix, "/s39/7"), vec![39]);
        for (i, p) in parts.iter().enumerate().skip(5) {
            ix = ix.without_route(Place::Pattern(&p.0), i as u32);
        }
        assert!(matches!(ix.root.literals, Literals::Few(_)));
        assert_eq!(hits(&ix, "/s4/7"), vec![4]);
        assert_eq!(hits(&ix, "/s39/7"), Vec::<u32>::new());
    }
}
