//! Applying a plugin's header changes to a request or response head: what is valid is applied
//! in order, what is not (a bad name or value from an untrusted guest) is logged and skipped.

use http::header::HeaderValue;
use routerd_routing::HeaderOp;
use tracing::warn;

/// Applies a plugin's header changes; invalid names or values are logged and skipped.
pub(crate) fn apply_ops(headers: &mut http::HeaderMap, ops: Vec<HeaderOp>, plugin: &str) {
    use http::header::HeaderName;
    for op in ops {
        let (name, value, append) = match op {
            HeaderOp::Remove(name) => {
                if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                    headers.remove(n);
                }
                continue;
            }
            HeaderOp::Set(n, v) => (n, v, false),
            HeaderOp::Append(n, v) => (n, v, true),
        };
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) if append => {
                headers.append(n, v);
            }
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => warn!(plugin, header = %name, "plugin produced an invalid header; skipped"),
        }
    }
}
