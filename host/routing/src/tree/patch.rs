//! Changing an index one route at a time: the nodes on the route's path are copied and changed,
//! every other node is shared with the index before (which stays as it was, for the requests
//! still using it).

use std::sync::Arc;

use super::{Literals, Node, PathIndex, SCAN_LIMIT, Shards};
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
    /// Adds the route in `slot` at `place`. A node this index shares with another (the index
    /// it was cloned from) is copied before it changes, once: a change of many routes copies
    /// each node on their paths at most once.
    pub fn add(&mut self, place: Place<'_>, slot: u32) {
        let (steps, kind) = place.path();
        add(Arc::make_mut(&mut self.root), &steps, kind, slot);
    }

    /// Takes the route in `slot` out from `place`, and the nodes left with nothing in them (as
    /// a build would not make them).
    pub fn remove(&mut self, place: Place<'_>, slot: u32) {
        let (steps, kind) = place.path();
        remove(Arc::make_mut(&mut self.root), &steps, kind, slot);
    }
}

fn add(node: &mut Node, steps: &[Step<'_>], kind: Kind, slot: u32) {
    match steps.split_first() {
        None => node.change_slots(kind, |slots| slots.push(slot)),
        Some((Step::Literal(lit), rest)) => {
            let child = node.literals.child_or_insert(lit);
            add(Arc::make_mut(child), rest, kind, slot);
        }
        Some((Step::Param, rest)) => {
            let child = node.param.get_or_insert_with(|| Arc::new(Node::empty()));
            add(Arc::make_mut(child), rest, kind, slot);
        }
    }
}

/// True when nothing is left in the node.
fn remove(node: &mut Node, steps: &[Step<'_>], kind: Kind, slot: u32) -> bool {
    match steps.split_first() {
        None => node.change_slots(kind, |slots| slots.retain(|&s| s != slot)),
        Some((Step::Literal(lit), rest)) => {
            let emptied = node
                .literals
                .child_mut(lit)
                .is_some_and(|child| remove(Arc::make_mut(child), rest, kind, slot));
            if emptied {
                node.literals.remove(lit);
            }
        }
        Some((Step::Param, rest)) => {
            let emptied = node
                .param
                .as_mut()
                .is_some_and(|child| remove(Arc::make_mut(child), rest, kind, slot));
            if emptied {
                node.param = None;
            }
        }
    }
    node.routes.is_empty() && node.literals.is_empty() && node.param.is_none()
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
    fn child_mut(&mut self, lit: &str) -> Option<&mut Arc<Node>> {
        match self {
            Literals::Few(list) => list
                .iter_mut()
                .find(|(l, _)| **l == *lit)
                .map(|(_, child)| child),
            Literals::Many(shards) => shards.shard_mut(lit).get_mut(lit),
        }
    }

    /// The child for `lit`, made empty if there is none; the children are hashed once there
    /// are more than a scan takes.
    fn child_or_insert(&mut self, lit: &str) -> &mut Arc<Node> {
        if let Literals::Few(list) = self
            && list.len() >= SCAN_LIMIT
            && !list.iter().any(|(l, _)| **l == *lit)
        {
            let map = std::mem::take(list).into_vec().into_iter().collect();
            *self = Literals::Many(Shards::from_map(map));
        }
        match self {
            Literals::Few(list) => {
                let at = match list.iter().position(|(l, _)| **l == *lit) {
                    Some(at) => at,
                    None => {
                        let mut items = std::mem::take(list).into_vec();
                        items.push((lit.into(), Arc::new(Node::empty())));
                        *list = items.into_boxed_slice();
                        list.len() - 1
                    }
                };
                &mut list[at].1
            }
            Literals::Many(shards) => shards
                .shard_mut(lit)
                .entry(lit.into())
                .or_insert_with(|| Arc::new(Node::empty())),
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
            Literals::Many(shards) => {
                shards.shard_mut(lit).remove(lit);
                if shards.len() <= SCAN_LIMIT {
                    *self = Literals::from_map(shards.to_map());
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
                // A copy of the index keeps what it found: its nodes are shared, not changed.
                let before = ix.clone();
                let found: Vec<Vec<u32>> = PATHS.iter().map(|p| hits(&before, p)).collect();
                if let Some(old) = routes[slot as usize].take() {
                    let parts = segments(PATTERNS[old]);
                    ix.remove(place(PATTERNS[old], &parts), slot);
                }
                if add {
                    let parts = segments(PATTERNS[p]);
                    ix.add(place(PATTERNS[p], &parts), slot);
                    routes[slot as usize] = Some(p);
                }
                let still: Vec<Vec<u32>> = PATHS.iter().map(|p| hits(&before, p)).collect();
                prop_assert_eq!(found, still);
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
            ix.add(Place::Pattern(&p.0), i as u32);
        }
        assert!(matches!(ix.root.literals, Literals::Many(_)));
        assert_eq!(hits(&ix, "/s39/7"), vec![39]);
        for (i, p) in parts.iter().enumerate().skip(5) {
            ix.remove(Place::Pattern(&p.0), i as u32);
        }
        assert!(matches!(ix.root.literals, Literals::Few(_)));
        assert_eq!(hits(&ix, "/s4/7"), vec![4]);
        assert_eq!(hits(&ix, "/s39/7"), Vec::<u32>::new());
    }
}
