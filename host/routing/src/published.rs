//! The table being served, shared by the control plane, which publishes each new one, and the
//! request path, which reads it: an atomic swap (arc-swap), so a request keeps the table it
//! started with and a change never waits for requests in flight.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::external::External;
use super::table::RouteTable;

/// The published route table.
pub struct PublishedTable<X: External>(ArcSwap<RouteTable<X>>);

impl<X: External> PublishedTable<X> {
    /// Starts publishing `table`.
    pub fn new(table: RouteTable<X>) -> Arc<PublishedTable<X>> {
        Arc::new(PublishedTable(ArcSwap::from_pointee(table)))
    }

    /// Replaces the table; requests in flight finish on the old one.
    pub fn publish(&self, table: RouteTable<X>) {
        self.0.store(Arc::new(table));
    }

    /// The table being served now.
    pub fn current(&self) -> Arc<RouteTable<X>> {
        self.0.load_full()
    }
}

impl<X: External> std::fmt::Debug for PublishedTable<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishedTable")
    }
}
