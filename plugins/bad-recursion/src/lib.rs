//! `bad-recursion` (test plugin): a predicate whose `matches` recurses without bound.
//!
//! Every frame keeps a 256-byte array alive across the recursive call, which is not a tail call,
//! so the stack overflows (wasm trap) instead of the optimizer turning it into a loop.
//! `validate` accepts any args.

use std::hint::black_box;

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct BadRecursion;

/// Recurses until `depth` reaches `limit` (`u64::MAX`: in practice never). Returns a value that
/// depends on every frame so no frame can be dropped.
#[inline(never)]
pub fn dive(depth: u64, limit: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) >= limit {
        return frame[0];
    }
    let below = dive(depth + 1, limit);
    black_box(&frame);
    below.wrapping_add(frame[31])
}

impl Predicate for BadRecursion {
    fn matches(_req: &Request<'_>, _args: &[String]) -> bool {
        dive(0, u64::MAX) == 0
    }
}

routerd_sdk::export_predicate!(BadRecursion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_dive_returns() {
        // 0 + 1 + ... + 100, the leaf adding its own depth once.
        assert_eq!(dive(0, 100), (0..100).sum::<u64>() + 100);
    }

    #[test]
    fn validate_accepts_anything() {
        assert!(BadRecursion::validate(&[]).is_ok());
    }
}
