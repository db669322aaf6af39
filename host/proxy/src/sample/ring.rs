//! The kept heads, encoded as bytes in one buffer that is written round and round, the oldest
//! heads giving way. One buffer, allocated once, rather than a header map per head: thousands of
//! small allocations kept alive among the request path's short-lived ones made every request
//! slower (6-11% fewer requests per second at one head in 100, in `tests/bench/e2e.sh`).
//!
//! A head is encoded as: the method and the target (a length byte or two, then the bytes), the
//! version, the header count, each header's name and value (lengths first), then the body (a
//! flag: none, whole, cut; its length and bytes). Integers are little-endian.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri, Version};

use super::seal::Seal;
use routerd_routing::BufferedBody;

/// Where one head is, and what is kept beside its bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    start: usize,
    len: usize,
    pub(super) remote: SocketAddr,
    pub(super) scheme: &'static str,
    pub(super) unix_ms: u64,
}

/// See the module docs.
pub(super) struct Ring {
    buf: Vec<u8>,
    entries: VecDeque<Entry>,
    write: usize,
    held: usize,
    max_heads: usize,
    max_bytes: usize,
}

impl Ring {
    pub(super) fn new(max_heads: usize, max_bytes: usize) -> Ring {
        Ring {
            buf: Vec::new(),
            entries: VecDeque::new(),
            write: 0,
            held: 0,
            max_heads,
            max_bytes,
        }
    }

    /// Keeps `head` (encoded), pushing out the oldest heads it needs room from; false when it
    /// is larger than the whole buffer.
    pub(super) fn push(
        &mut self,
        head: &[u8],
        remote: SocketAddr,
        scheme: &'static str,
        unix_ms: u64,
    ) -> bool {
        let len = head.len();
        if len == 0 || len > self.max_bytes {
            return false;
        }
        if self.buf.is_empty() {
            // Zeroed memory comes from the system untouched: pages count once written.
            self.buf = vec![0; self.max_bytes];
        }
        if self.write + len > self.max_bytes {
            // The tail past `write` holds the oldest heads; writing starts over at 0.
            while self.entries.front().is_some_and(|e| e.start >= self.write) {
                self.pop();
            }
            self.write = 0;
        }
        let (start, end) = (self.write, self.write + len);
        while let Some(front) = self.entries.front() {
            let overlaps = front.start < end && front.start + front.len > start;
            if !overlaps && self.entries.len() < self.max_heads {
                break;
            }
            self.pop();
        }
        self.buf[start..end].copy_from_slice(head);
        self.entries.push_back(Entry {
            start,
            len,
            remote,
            scheme,
            unix_ms,
        });
        self.held += len;
        self.write = end;
        true
    }

    fn pop(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.held -= e.len;
        }
    }

    /// Heads held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Their bytes.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// A copy of every head, oldest first.
    pub(super) fn copy(&self) -> Vec<(Entry, Vec<u8>)> {
        self.entries
            .iter()
            .map(|e| (*e, self.buf[e.start..e.start + e.len].to_vec()))
            .collect()
    }
}

/// Encodes a head (secrets sealed) and the body a matcher read (up to `max_body` bytes) into
/// `out`; false when a part is longer than its length field holds.
pub(super) fn encode(
    parts: &http::request::Parts,
    body: Option<&BufferedBody>,
    max_body: usize,
    seal: &Seal,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let method = parts.method.as_str().as_bytes();
    let Ok(method_len) = u8::try_from(method.len()) else {
        return false;
    };
    out.push(method_len);
    out.extend_from_slice(method);
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}", parts.uri);
    let Ok(uri_len) = u32::try_from(out.len() - at - 4) else {
        return false;
    };
    out[at..at + 4].copy_from_slice(&uri_len.to_le_bytes());
    out.push(version_code(parts.version));
    let Ok(count) = u16::try_from(parts.headers.len()) else {
        return false;
    };
    out.extend_from_slice(&count.to_le_bytes());
    for (name, value) in &parts.headers {
        let name = name.as_str().as_bytes();
        let Ok(name_len) = u16::try_from(name.len()) else {
            return false;
        };
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(name);
        let at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        // `name` came from a valid header name.
        if let Ok(header) = HeaderName::from_bytes(name) {
            seal.write_value(&header, value.as_bytes(), out);
        }
        let Ok(value_len) = u32::try_from(out.len() - at - 4) else {
            return false;
        };
        out[at..at + 4].copy_from_slice(&value_len.to_le_bytes());
    }
    match body {
        None => out.push(0),
        Some(b) => {
            let kept = &b.bytes[..b.bytes.len().min(max_body)];
            let cut = b.too_large || kept.len() < b.bytes.len();
            out.push(if cut { 2 } else { 1 });
            let Ok(len) = u32::try_from(kept.len()) else {
                return false;
            };
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(kept);
        }
    }
    true
}

/// A head as [`encode`] wrote it: its parts, and the body with whether it was cut.
pub(super) type Decoded = (http::request::Parts, Option<(Bytes, bool)>);

/// Decodes what [`encode`] wrote; `None` for bytes it did not write.
pub(super) fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut r = Reader(bytes);
    let method_len = usize::from(r.u8()?);
    let method = Method::from_bytes(r.take(method_len)?).ok()?;
    let uri_len = r.u32()? as usize;
    let uri = Uri::try_from(r.take(uri_len)?).ok()?;
    let version = version_of(r.u8()?);
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    let count = r.u16()?;
    parts.headers.reserve(usize::from(count));
    for _ in 0..count {
        let name_len = usize::from(r.u16()?);
        let name = HeaderName::from_bytes(r.take(name_len)?).ok()?;
        let value_len = r.u32()? as usize;
        let value = HeaderValue::from_bytes(r.take(value_len)?).ok()?;
        parts.headers.append(name, value);
    }
    let body = match r.u8()? {
        0 => None,
        flag => {
            let len = r.u32()? as usize;
            Some((Bytes::copy_from_slice(r.take(len)?), flag == 2))
        }
    };
    Some((parts, body))
}

fn version_code(v: Version) -> u8 {
    match v {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

fn version_of(code: u8) -> Version {
    match code {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => Version::HTTP_11,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn the_oldest_heads_give_way_round_the_buffer() {
        let mut ring = Ring::new(100, 25);
        for i in 0..12u8 {
            assert!(ring.push(&[i; 7], addr(), "http", u64::from(i)));
            let kept: Vec<u64> = ring.copy().iter().map(|(e, _)| e.unix_ms).collect();
            // Three heads of 7 bytes fit in 25; the newest three are kept, oldest first.
            let first = u64::from(i.saturating_sub(2));
            assert_eq!(
                kept,
                (first..=u64::from(i)).collect::<Vec<_>>(),
                "after {i}"
            );
            for (e, bytes) in ring.copy() {
                assert_eq!(bytes, vec![e.unix_ms as u8; 7]);
            }
        }
        assert_eq!(ring.held(), 21);
        assert!(!ring.push(&[0; 26], addr(), "http", 99));
    }

    #[test]
    fn the_head_count_is_bounded_too() {
        let mut ring = Ring::new(2, 1000);
        for i in 0..5 {
            ring.push(&[1, 2, 3], addr(), "http", i);
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.held(), 6);
    }

    #[test]
    fn a_head_and_its_body_come_back_as_encoded() {
        let seal = Seal::new(&super::super::SampleOptions {
            secrets_in_clear: true,
            ..Default::default()
        });
        let (parts, ()) = http::Request::builder()
            .method("PATCH")
            .uri("https://a.test:8443/x/y?z=1&w")
            .version(Version::HTTP_2)
            .header("x-a", "1")
            .header("x-a", "2")
            .header("cookie", "k=v")
            .body(())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_parts();
        let body = BufferedBody::new(Bytes::from_static(b"0123456789"), false);
        let mut out = Vec::new();
        assert!(encode(&parts, Some(&body), 4, &seal, &mut out));
        let (back, kept) = decode(&out).unwrap_or_else(|| panic!("decodes"));
        assert_eq!(back.method, parts.method);
        assert_eq!(back.uri, parts.uri);
        assert_eq!(back.version, Version::HTTP_2);
        assert_eq!(back.headers, parts.headers);
        assert_eq!(kept, Some((Bytes::from_static(b"0123"), true)));
        assert!(decode(&out[..out.len() - 1]).is_none());
    }
}
