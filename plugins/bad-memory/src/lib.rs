//! `bad-memory` (test plugin): a predicate whose `matches` allocates without bound.
//!
//! It keeps pushing 1 MiB chunks into a `Vec` and never frees them, so the instance's linear
//! memory grows until routerd's memory cap refuses to grow it (the allocation then fails and the
//! instance traps). Each chunk is touched once per 64 KiB page, so the growth is real but cheap:
//! the cap, not the deadline, should be what stops it. `validate` accepts any args.

use std::hint::black_box;

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct BadMemory;

/// Size of each leaked chunk.
pub const CHUNK: usize = 1 << 20;

/// Allocates `CHUNK`-sized, touched buffers and keeps them, `limit` times (`None`: forever).
/// Returns how many bytes it holds (only reachable with a limit).
pub fn hoard(limit: Option<usize>) -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    while limit.is_none_or(|n| hoard.len() < n) {
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
        for page in chunk.spare_capacity_mut().iter_mut().step_by(64 * 1024) {
            page.write(0xAB);
        }
        hoard.push(black_box(chunk));
        black_box(&hoard);
    }
    hoard.iter().map(Vec::capacity).sum()
}

impl Predicate for BadMemory {
    fn matches(_req: &Request<'_>, _args: &[String]) -> bool {
        hoard(None);
        false
    }
}

routerd_sdk::export_predicate!(BadMemory);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_allocates() {
        assert_eq!(hoard(Some(8)), 8 * CHUNK);
    }

    #[test]
    fn validate_accepts_anything() {
        assert!(BadMemory::validate(&[]).is_ok());
    }
}
