//! The control plane: what routerd serves and why, kept apart from serving it. `routeset` holds
//! the live route document and the loaded plugins, builds a table for every change and
//! publishes it (refusing a change with a typed reason, never an HTTP status); `store` keeps the
//! API's routes (redb locally, etcd when shared); `cluster` follows a shared store's changes and
//! lists the instances sharing it; `dry_run` replays sampled requests through a planned
//! change's table beside the served one; `health` probes the backends the table names; `live` samples
//! the request counters for the live view.

#[cfg(feature = "etcd")]
pub mod cluster;
pub mod dry_run;
pub mod health;
pub mod live;
pub mod routeset;
pub mod store;
