//! Sealing secrets before a head is kept: a keyed hash (`sealed:` and 16 hex digits, a key per
//! process) stands for the value, enough to compare it with a matcher's value sealed the same
//! way, never enough to read it back.

use std::hash::BuildHasher;
use std::io::Write as _;

use http::HeaderName;
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};

use super::SampleOptions;

/// What a sealed value starts with.
pub const SEALED_PREFIX: &str = "sealed:";

/// The sealing key and which headers it seals.
#[derive(Debug)]
pub struct Seal {
    key: std::hash::RandomState,
    headers: Vec<HeaderName>,
    in_clear: bool,
}

impl Seal {
    pub(super) fn new(options: &SampleOptions) -> Self {
        let mut headers = vec![AUTHORIZATION, PROXY_AUTHORIZATION];
        headers.extend(options.secret_headers.iter().cloned());
        Seal {
            key: std::hash::RandomState::new(),
            headers,
            in_clear: options.secrets_in_clear,
        }
    }

    /// The sealed form of `value`.
    pub fn seal(&self, value: &[u8]) -> String {
        format!("{SEALED_PREFIX}{:016x}", self.key.hash_one(value))
    }

    /// Whether a header's values are sealed (cookies: each value, not the names).
    pub fn covers(&self, name: &HeaderName) -> bool {
        !self.in_clear && (*name == COOKIE || self.headers.contains(name))
    }

    /// Writes `value` of header `name` as kept: as it is, sealed, or (a cookie header) with
    /// each cookie's value sealed and the names kept.
    pub(super) fn write_value(&self, name: &HeaderName, value: &[u8], out: &mut Vec<u8>) {
        if !self.covers(name) {
            out.extend_from_slice(value);
            return;
        }
        let text = match std::str::from_utf8(value) {
            Ok(text) if *name == COOKIE => text,
            _ => return self.write_sealed(value, out),
        };
        for (i, pair) in text.split(';').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            match pair.split_once('=') {
                Some((k, v)) => {
                    out.extend_from_slice(k.trim().as_bytes());
                    out.push(b'=');
                    self.write_sealed(v.trim().as_bytes(), out);
                }
                None => out.extend_from_slice(pair.trim().as_bytes()),
            }
        }
    }

    fn write_sealed(&self, value: &[u8], out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{SEALED_PREFIX}{:016x}", self.key.hash_one(value));
    }
}
