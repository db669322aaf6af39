//! Building an index whole: a mutable trie of numbered nodes, frozen into shared nodes once
//! every route is in.

use std::collections::HashMap;
use std::sync::Arc;

use super::{LiteralMap, Literals, Node, PathIndex};
use crate::pattern::Segment;

/// A node being built.
#[derive(Debug, Default)]
struct BuildNode {
    /// Literal children, by number.
    literals: HashMap<Arc<str>, u32, rustc_hash::FxBuildHasher>,
    /// The child for a `{param}` segment.
    param: Option<u32>,
    /// Routes whose pattern ends at this node.
    end: Vec<u32>,
    /// Routes with a `{*rest}` right after this node (needs at least one character).
    catch_all: Vec<u32>,
    /// `path_prefix` routes whose prefix ends at this node (matches at a segment boundary).
    prefix: Vec<u32>,
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

    /// Adds a radix pattern for the route in `slot`.
    pub fn insert_pattern(&mut self, segments: &[Segment], slot: u32) {
        let mut node = 0;
        for seg in segments {
            match seg {
                Segment::Literal(lit) => node = self.child(node, Some(lit)),
                Segment::Param(_) => node = self.child(node, None),
                Segment::CatchAll(_) => {
                    self.nodes[node as usize].catch_all.push(slot);
                    return;
                }
            }
        }
        self.nodes[node as usize].end.push(slot);
    }

    /// Adds a whole-segment path prefix for the route in `slot`.
    pub fn insert_prefix(&mut self, segments: &[Box<str>], slot: u32) {
        let mut node = 0;
        for seg in segments {
            node = self.child(node, Some(seg));
        }
        self.nodes[node as usize].prefix.push(slot);
    }

    /// Freezes the index for lookups.
    pub fn build(self) -> PathIndex {
        // A child is numbered after its parent: freezing from the last node back finds every
        // child frozen already.
        let mut frozen: Vec<Option<Arc<Node>>> = Vec::with_capacity(self.nodes.len());
        frozen.resize_with(self.nodes.len(), || None);
        for (id, node) in self.nodes.into_iter().enumerate().rev() {
            let literals: LiteralMap = node
                .literals
                .into_iter()
                .filter_map(|(lit, child)| Some((lit, frozen.get_mut(child as usize)?.take()?)))
                .collect();
            let param = node
                .param
                .and_then(|child| frozen.get_mut(child as usize)?.take());
            frozen[id] = Some(Arc::new(Node::holding(
                Literals::from_map(literals),
                param,
                &node.prefix,
                &node.end,
                &node.catch_all,
            )));
        }
        let root = frozen
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_else(|| Arc::new(Node::empty()));
        PathIndex { root }
    }
}

impl Node {
    /// A node with these children and routes.
    pub(super) fn holding(
        literals: Literals,
        param: Option<Arc<Node>>,
        prefix: &[u32],
        end: &[u32],
        catch_all: &[u32],
    ) -> Node {
        // A table's slots are u32: so are these counts.
        let end_at = prefix.len() as u32;
        let catch_all_at = end_at + end.len() as u32;
        let mut routes = Vec::with_capacity(prefix.len() + end.len() + catch_all.len());
        routes.extend_from_slice(prefix);
        routes.extend_from_slice(end);
        routes.extend_from_slice(catch_all);
        Node {
            literals,
            routes: routes.into_boxed_slice(),
            end_at,
            catch_all_at,
            param,
        }
    }
}
