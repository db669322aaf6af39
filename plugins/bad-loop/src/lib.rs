//! `bad-loop` (test plugin): a predicate whose `matches` never returns.
//!
//! routerd must stop it at the call deadline, apply the route's failure policy and throw the
//! instance away. `validate` accepts any args so that routes using it load.

use std::hint::black_box;

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct BadLoop;

/// Spins forever. `black_box` keeps the optimizer from proving anything about the loop.
pub fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

impl Predicate for BadLoop {
    fn matches(_req: &Request<'_>, _args: &[String]) -> bool {
        spin_forever()
    }
}

routerd_sdk::export_predicate!(BadLoop);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_accepts_anything() {
        assert!(BadLoop::validate(&[]).is_ok());
        assert!(BadLoop::validate(&["x".to_string()]).is_ok());
    }

    #[test]
    fn really_spins() {
        // Run it on a thread we never join and check it is still going.
        let handle = std::thread::spawn(|| spin_forever());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!handle.is_finished());
    }
}
