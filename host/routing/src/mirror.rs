//! A route's mirror: a share of its requests copied to another backend, whose answers are
//! dropped. The share is exact over any run of requests (a running count, not a coin flip), so
//! 10% is every tenth request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{ErrorCode, FieldError, MirrorSpec};
use crate::route::Target;

/// A compiled mirror.
#[derive(Debug)]
pub struct Mirror {
    /// Where copies go.
    pub target: Target,
    /// The share copied, in percent.
    pub percent: f64,
    seen: AtomicU64,
    /// Copies sent.
    pub sent: AtomicU64,
    /// Copies dropped because the mirror queue was full (or the request could not be copied).
    pub dropped: AtomicU64,
    /// Copies that failed or timed out at the mirror (shared with the copies in flight).
    pub failed: Arc<AtomicU64>,
}

impl Mirror {
    /// Compiles `spec`, or names the field at fault. An `https://` mirror is reached with
    /// Mozilla's roots over HTTP/1.1: the route's backend TLS fields are its targets'.
    pub fn compile(spec: &MirrorSpec) -> Result<Mirror, FieldError> {
        let target = Target::parse(&spec.url)
            .map_err(|reason| FieldError::new("mirror.url", ErrorCode::InvalidMirror, reason))?;
        let percent = spec.percent.unwrap_or(100.0);
        if !(0.0..=100.0).contains(&percent) {
            return Err(FieldError::new(
                "mirror.percent",
                ErrorCode::InvalidMirror,
                format!("{percent} is outside 0..=100"),
            ));
        }
        Ok(Mirror {
            target,
            percent,
            seen: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: Arc::default(),
        })
    }

    /// Whether this request is one of the share copied.
    pub fn take(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.percent / 100.0).floor() > (n * self.percent / 100.0).floor()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_exact() {
        let spec = MirrorSpec {
            url: "http://m:1".into(),
            percent: Some(10.0),
        };
        let m = Mirror::compile(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((0..1000).filter(|_| m.take()).count(), 100);
        let bad = MirrorSpec {
            url: "http://m:1".into(),
            percent: Some(120.0),
        };
        assert_eq!(
            Mirror::compile(&bad).err().map(|e| e.field),
            Some("mirror.percent".into())
        );
    }
}
