//! What both sides of routerd share and nothing more: the body of every response it sends
//! ([`ResponseBody`]), who sent a request ([`Peer`]), routerd's own small JSON error answer,
//! PEM certificate reading, and an error with its causes on one line. The routing crate and the
//! proxy both use it; it uses neither.

pub mod answer;
pub mod pem;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

pub use answer::{empty, error, error_chain, full, json_response};

/// The body of every response routerd sends.
pub type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// Who sent a request, and over what.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Peer {
    /// The request's scheme: `https` on a TLS listener.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}
