//! The path index: a segment trie over every route's path pattern that yields, for a request
//! path, *all* routes whose pattern matches (not only the most specific one), so that a route
//! failing on another matcher falls through to the next pattern. Lookups walk the path in place
//! and allocate nothing unless a path has more candidates than fit on the stack.
//!
//! Like matchit it prefers literal over parameter over catch-all at every segment, but unlike
//! matchit it accepts every combination (`/a/{id}` beside `/a/{*rest}`, one pattern in many
//! routes, different parameter names at the same position), because the winner among the
//! candidates is decided by the table, not by the tree.
//!
//! The tree holds route *slots*, numbers that stay with a route while the table around it
//! changes (the table maps them to ranks). Its nodes are shared: a table built whole freezes a
//! [`PathIndexBuilder`] (`build`), and a change to one route copies only the nodes on that
//! route's path and shares the rest with the index before (`patch`), so a change to a table of
//! 100,000 routes does not rebuild 100,000 routes' worth of nodes.

mod build;
mod patch;

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

pub use build::PathIndexBuilder;
pub use patch::Place;

/// The candidate route slots of one lookup; 16 fit without allocating.
pub type Candidates = SmallVec<[u32; 16]>;

/// Literal children by segment, hashed.
type LiteralMap = HashMap<Arc<str>, Arc<Node>, rustc_hash::FxBuildHasher>;

/// A node's literal children: a short list is scanned, a wide fan-out (an API with thousands of
/// resources under one prefix) is hashed.
#[derive(Debug, Clone)]
enum Literals {
    Few(Box<[(Arc<str>, Arc<Node>)]>),
    Many(Shards),
}

/// A wide node's children, hashed into shards that indexes share: a change to one child copies
/// one shard, not a map of 100,000 children.
#[derive(Debug, Clone)]
struct Shards(Box<[Arc<LiteralMap>]>);

/// Shards of a wide node.
const SHARDS: usize = 64;

impl Shards {
    /// The shard that holds `seg`.
    fn of(seg: &str) -> usize {
        // The bytes alone (`hash_one` on a `str` also hashes a terminator): this is on every
        // lookup through a wide node.
        use std::hash::Hasher;
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(seg.as_bytes());
        (hasher.finish() >> 40) as usize % SHARDS
    }

    fn get(&self, seg: &str) -> Option<&Arc<Node>> {
        self.0.get(Self::of(seg))?.get(seg)
    }

    fn from_map(map: LiteralMap) -> Self {
        let mut shards = vec![LiteralMap::default(); SHARDS];
        for (lit, child) in map {
            shards[Self::of(&lit)].insert(lit, child);
        }
        Shards(shards.into_iter().map(Arc::new).collect())
    }

    fn len(&self) -> usize {
        self.0.iter().map(|s| s.len()).sum()
    }

    /// The children in one map (sharing every child).
    fn to_map(&self) -> LiteralMap {
        self.0
            .iter()
            .flat_map(|s| s.iter().map(|(l, c)| (Arc::clone(l), Arc::clone(c))))
            .collect()
    }

    /// The shard that holds `seg`, copied first if another index shares it.
    fn shard_mut(&mut self, seg: &str) -> &mut LiteralMap {
        // `of` is below SHARDS, and there are SHARDS shards.
        Arc::make_mut(&mut self.0[Self::of(seg)])
    }
}

/// Above this many children a node hashes its literals.
const SCAN_LIMIT: usize = 32;

impl Literals {
    fn get(&self, seg: &str) -> Option<&Arc<Node>> {
        match self {
            // Lengths and first bytes differ for most siblings: compare those before the bytes.
            Literals::Few(v) => v
                .iter()
                .find(|(lit, _)| {
                    lit.len() == seg.len()
                        && lit.as_bytes().first() == seg.as_bytes().first()
                        && **lit == *seg
                })
                .map(|(_, node)| node),
            Literals::Many(shards) => shards.get(seg),
        }
    }

    /// The children as a short list or a hash, by their number (as a build makes them).
    fn from_map(map: LiteralMap) -> Self {
        if map.len() > SCAN_LIMIT {
            Literals::Many(Shards::from_map(map))
        } else {
            Literals::Few(map.into_iter().collect())
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Literals::Few(v) => v.is_empty(),
            Literals::Many(shards) => shards.len() == 0,
        }
    }
}

/// A node, kept small: a table of 100,000 routes has twice as many.
#[derive(Debug, Clone)]
struct Node {
    /// Literal children.
    literals: Literals,
    /// The route slots held here, in one allocation (most nodes hold none, few more than one):
    /// the `path_prefix` routes whose prefix ends here (they match at a segment boundary), then
    /// the routes whose pattern ends here, then those with a `{*rest}` right after this node
    /// (it needs at least one character).
    routes: Box<[u32]>,
    /// Where the pattern ends start in `routes`.
    end_at: u32,
    /// Where the catch-alls start in `routes`.
    catch_all_at: u32,
    /// The child for a `{param}` segment.
    param: Option<Arc<Node>>,
}

impl Node {
    fn empty() -> Self {
        Node {
            literals: Literals::Few(Box::default()),
            routes: Box::default(),
            end_at: 0,
            catch_all_at: 0,
            param: None,
        }
    }

    fn prefix(&self) -> &[u32] {
        self.routes.get(..self.end_at as usize).unwrap_or_default()
    }

    fn end(&self) -> &[u32] {
        let range = self.end_at as usize..self.catch_all_at as usize;
        self.routes.get(range).unwrap_or_default()
    }

    fn catch_all(&self) -> &[u32] {
        self.routes
            .get(self.catch_all_at as usize..)
            .unwrap_or_default()
    }
}

/// An immutable path index; see the module docs.
#[derive(Debug, Clone)]
pub struct PathIndex {
    root: Arc<Node>,
}

impl PathIndex {
    /// Appends to `out` the slot of every route whose path pattern matches `path` (which starts
    /// with `/`). The order is unspecified; the table sorts candidates by rank.
    pub fn candidates(&self, path: &str, out: &mut Candidates) {
        let rest = path.strip_prefix('/').unwrap_or(path);
        walk(&self.root, Some(rest), out);
    }
}

/// `rest` is the unconsumed path after a `/`, or `None` when the path has been consumed.
fn walk(node: &Node, rest: Option<&str>, out: &mut Candidates) {
    // Most nodes hold no route: an empty extend still costs a capacity check and a call.
    if !node.routes.is_empty() {
        let prefix = node.prefix();
        if !prefix.is_empty() {
            out.extend_from_slice(prefix);
        }
        match rest {
            None => out.extend_from_slice(node.end()),
            Some(text) if !text.is_empty() => out.extend_from_slice(node.catch_all()),
            Some(_) => {}
        }
    }
    let Some(text) = rest else {
        return;
    };
    // Segments are short: a plain byte scan beats the generic char searcher.
    let (seg, next) = match text.bytes().position(|b| b == b'/') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    if let Some(child) = node.literals.get(seg) {
        walk(child, next, out);
    }
    if let Some(param) = &node.param
        && !seg.is_empty()
    {
        walk(param, next, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{parse_pattern, parse_prefix};

    fn index(patterns: &[&str]) -> PathIndex {
        let mut b = PathIndexBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            if let Some(prefix) = p.strip_prefix("prefix:") {
                b.insert_prefix(&parse_prefix(prefix).unwrap_or_default(), i as u32);
            } else {
                let pat = parse_pattern(p).unwrap_or_else(|e| panic!("{e}"));
                b.insert_pattern(&pat.segments, i as u32);
            }
        }
        b.build()
    }

    pub(super) fn hits(ix: &PathIndex, path: &str) -> Vec<u32> {
        let mut out = Candidates::new();
        ix.candidates(path, &mut out);
        let mut v = out.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn finds_every_matching_pattern() {
        let ix = index(&[
            "/users/new",       // 0
            "/users/{id}",      // 1
            "/users/{*rest}",   // 2
            "prefix:/users",    // 3
            "/",                // 4
            "/users/{u}/posts", // 5
            "/{*all}",          // 6
            "prefix:/",         // 7
        ]);
        assert_eq!(hits(&ix, "/users/new"), vec![0, 1, 2, 3, 6, 7]);
        assert_eq!(hits(&ix, "/users/7/posts"), vec![2, 3, 5, 6, 7]);
        assert_eq!(hits(&ix, "/users"), vec![3, 6, 7]);
        assert_eq!(hits(&ix, "/users/"), vec![3, 6, 7]);
        assert_eq!(hits(&ix, "/"), vec![4, 7]);
        assert_eq!(hits(&ix, "/usersx"), vec![6, 7]);
    }

    #[test]
    fn a_node_stays_small() {
        // Two nodes a route in a table of `/svcN/{id}` routes; 120 bytes and a Vec each before
        // they were made small.
        let size = std::mem::size_of::<Node>();
        assert!(size <= 72, "a node is {size} bytes");
    }

    #[test]
    fn empty_segments_never_fill_params() {
        let ix = index(&["/a/{id}", "/a/"]);
        assert_eq!(hits(&ix, "/a/"), vec![1]);
        assert_eq!(hits(&ix, "/a/x"), vec![0]);
        assert_eq!(hits(&ix, "/a"), Vec::<u32>::new());
    }
}
