//! The path index: a segment trie over every route's path pattern that yields, for a request
//! path, *all* routes whose pattern matches (not only the most specific one), so that a route
//! failing on another matcher falls through to the next pattern. Lookups walk the path in place
//! and allocate nothing unless a path has more candidates than fit on the stack.
//!
//! Like matchit it prefers literal over parameter over catch-all at every segment, but unlike
//! matchit it accepts every combination (`/a/{id}` beside `/a/{*rest}`, one pattern in many
//! routes, different parameter names at the same position), because the winner among the
//! candidates is decided by the table, not by the tree.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::pattern::Segment;

/// The candidate route ids of one lookup; 16 fit without allocating.
pub type Candidates = SmallVec<[u32; 16]>;

/// A node's literal children: a short list is scanned, a wide fan-out (an API with thousands of
/// resources under one prefix) is hashed.
#[derive(Debug)]
enum Literals {
    Few(Box<[(Box<str>, u32)]>),
    Many(HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>),
}

/// Above this many children a node hashes its literals.
const SCAN_LIMIT: usize = 32;

impl Literals {
    fn get(&self, seg: &str) -> Option<u32> {
        match self {
            // Lengths and first bytes differ for most siblings: compare those before the bytes.
            Literals::Few(v) => v
                .iter()
                .find(|(lit, _)| {
                    lit.len() == seg.len()
                        && lit.as_bytes().first() == seg.as_bytes().first()
                        && **lit == *seg
                })
                .map(|(_, id)| *id),
            Literals::Many(m) => m.get(seg).copied(),
        }
    }
}

/// A node being built.
#[derive(Debug, Default)]
struct BuildNode {
    /// Literal children.
    literals: HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>,
    /// The child for a `{param}` segment.
    param: Option<u32>,
    /// Routes whose pattern ends at this node.
    end: Vec<u32>,
    /// Routes with a `{*rest}` right after this node (needs at least one character).
    catch_all: Vec<u32>,
    /// `path_prefix` routes whose prefix ends at this node (matches at a segment boundary).
    prefix: Vec<u32>,
}

/// A node of the built index, kept small: a table of 100,000 routes has twice as many nodes.
#[derive(Debug)]
struct Node {
    /// Literal children.
    literals: Literals,
    /// The routes held here, in one allocation (most nodes hold none, few more than one): the
    /// `path_prefix` routes whose prefix ends here (they match at a segment boundary), then the
    /// routes whose pattern ends here, then those with a `{*rest}` right after this node (it
    /// needs at least one character).
    routes: Box<[u32]>,
    /// Where the pattern ends start in `routes`.
    end_at: u32,
    /// Where the catch-alls start in `routes`.
    catch_all_at: u32,
    /// The child for a `{param}` segment (`NO_CHILD`: none).
    param: u32,
}

const NO_CHILD: u32 = u32::MAX;

impl Node {
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

/// Builds a [`PathIndex`].
#[derive(Debug, Default)]
pub struct PathIndexBuilder {
    nodes: Vec<BuildNode>,
}

impl PathIndexBuilder {
    /// An empty index with its root.
    pub fn new() -> Self {
        Self::with_capacity(1)
    }

    /// An empty index with room for `nodes` nodes (about a node per path segment): a table of
    /// 10,000 routes grew its node list a dozen times over, copying it each time.
    pub fn with_capacity(nodes: usize) -> Self {
        let mut all = Vec::with_capacity(nodes.max(1));
        all.push(BuildNode::default());
        PathIndexBuilder { nodes: all }
    }

    fn child(&mut self, node: u32, seg: Option<&str>) -> u32 {
        let existing = match seg {
            Some(lit) => self.nodes[node as usize].literals.get(lit).copied(),
            None => self.nodes[node as usize].param,
        };
        if let Some(id) = existing {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(BuildNode::default());
        match seg {
            Some(lit) => {
                self.nodes[node as usize].literals.insert(lit.into(), id);
            }
            None => self.nodes[node as usize].param = Some(id),
        }
        id
    }

    /// Adds a radix pattern for `route`.
    pub fn insert_pattern(&mut self, segments: &[Segment], route: u32) {
        let mut node = 0;
        for seg in segments {
            match seg {
                Segment::Literal(lit) => node = self.child(node, Some(lit)),
                Segment::Param(_) => node = self.child(node, None),
                Segment::CatchAll(_) => {
                    self.nodes[node as usize].catch_all.push(route);
                    return;
                }
            }
        }
        self.nodes[node as usize].end.push(route);
    }

    /// Adds a whole-segment path prefix for `route`.
    pub fn insert_prefix(&mut self, segments: &[Box<str>], route: u32) {
        let mut node = 0;
        for seg in segments {
            node = self.child(node, Some(seg));
        }
        self.nodes[node as usize].prefix.push(route);
    }

    /// Freezes the index for lookups.
    pub fn build(self) -> PathIndex {
        // Collected into a new allocation of the exact size (a Vec reusing the builder's would
        // keep its larger nodes' room).
        let nodes: Vec<Node> = self.nodes.into_iter().map(freeze).collect();
        PathIndex {
            nodes: nodes.into_boxed_slice(),
        }
    }
}

fn freeze(node: BuildNode) -> Node {
    let literals = if node.literals.len() > SCAN_LIMIT {
        Literals::Many(node.literals)
    } else {
        Literals::Few(node.literals.into_iter().collect())
    };
    // A table's route ids fit in u32 (they are u32): so do these counts.
    let end_at = node.prefix.len() as u32;
    let catch_all_at = end_at + node.end.len() as u32;
    let mut routes = node.prefix;
    routes.extend_from_slice(&node.end);
    routes.extend_from_slice(&node.catch_all);
    Node {
        literals,
        routes: routes.into_boxed_slice(),
        end_at,
        catch_all_at,
        param: node.param.unwrap_or(NO_CHILD),
    }
}

/// An immutable path index; see the module docs.
#[derive(Debug)]
pub struct PathIndex {
    nodes: Box<[Node]>,
}

impl PathIndex {
    /// Appends to `out` every route whose path pattern matches `path` (which starts with `/`).
    /// The order is unspecified; the table sorts candidates by rank.
    pub fn candidates(&self, path: &str, out: &mut Candidates) {
        let rest = path.strip_prefix('/').unwrap_or(path);
        self.walk(0, Some(rest), out);
    }

    /// `rest` is the unconsumed path after a `/`, or `None` when the path has been consumed.
    fn walk(&self, node: u32, rest: Option<&str>, out: &mut Candidates) {
        let node = &self.nodes[node as usize];
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
            self.walk(child, next, out);
        }
        if node.param != NO_CHILD && !seg.is_empty() {
            self.walk(node.param, next, out);
        }
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

    fn hits(ix: &PathIndex, path: &str) -> Vec<u32> {
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
        // Two nodes a route in a table of `/svcN/{id}` routes; 120 bytes and a Vec each before.
        let size = std::mem::size_of::<Node>();
        assert!(size <= 64, "a node is {size} bytes");
    }

    #[test]
    fn empty_segments_never_fill_params() {
        let ix = index(&["/a/{id}", "/a/"]);
        assert_eq!(hits(&ix, "/a/"), vec![1]);
        assert_eq!(hits(&ix, "/a/x"), vec![0]);
        assert_eq!(hits(&ix, "/a"), Vec::<u32>::new());
    }
}
