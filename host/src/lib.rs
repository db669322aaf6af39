//! routerd: a programmable HTTP router.
//!
//! Data flows one way: a config document ([`config`]) is validated and compiled into an
//! immutable [`routing::RouteTable`], which the [`proxy`] swaps in atomically and consults for
//! every request; [`server`] runs the listeners, [`admin`] the management API, and [`app`]
//! assembles them into the daemon.

pub mod app;
pub mod check;

pub use routerd_admin as admin;
#[cfg(feature = "etcd")]
pub use routerd_control::cluster;
pub use routerd_control::{health, live, routeset, store};
pub use routerd_plugins as plugins;
pub use routerd_proxy as proxy;
pub use routerd_proxy::{access_log, metrics, server};
pub use routerd_routing as routing;
pub use routerd_routing::config;
