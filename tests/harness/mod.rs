//! Shared black-box test harness: echo backends (`backends`), an HTTP client over real sockets
//! (`clients`), `routerd` processes and temporary directories (`processes`), the built plugins
//! (`plugins`), and route builders with table-driven probes (`routes`).
//!
//! Everything here talks to 127.0.0.1 only, and every wait is bounded in time. Plugins are
//! built once per test process from `plugins/` ([`plugins_dist`]) and started through
//! [`Launch`].
// Each test binary uses its own part of the harness.
#![allow(dead_code, unused_imports)]

mod backends;
mod clients;
mod in_process;
mod launch;
mod logs;
mod plugins;
mod processes;
mod routes;

pub use backends::*;
pub use clients::*;
pub use launch::*;
pub use logs::*;
pub use plugins::*;
pub use processes::*;
pub use routes::*;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// Error type used by boxed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of every request the harness sends and every response a backend sends.
pub type TestBody = BoxBody<Bytes, BoxError>;

/// Upper bound for one request/response exchange (head and body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for routerd to log both listeners.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for a hot reload to take effect.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
