//! `bad-loop` (test plugin): a predicate whose `matches` never returns.
//!
//! routerd must stop it at the call deadline, apply the route's failure policy and throw the
//! instance away. `validate` accepts any args so that routes using it load.
//!
//! With `args[0]` a number of milliseconds, `matches` instead spins for that long of its own
//! running time (time it spends suspended by the host, waiting for a slot or for its turn on
//! the thread, does not count) and then matches: a slow but well-behaved guest.

use std::hint::black_box;
use std::time::{Duration, Instant};

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

/// Spins for `ms` milliseconds of running time: in 100 µs steps, where a step that took over
/// 2 ms of wall-clock time was suspended and counts for nothing.
pub fn spin_for(ms: u64) {
    let want = Duration::from_millis(ms);
    let step = Duration::from_micros(100);
    let mut ran = Duration::ZERO;
    while ran < want {
        let started = Instant::now();
        let mut n: u64 = 0;
        while started.elapsed() < step {
            n = black_box(n.wrapping_add(1));
        }
        let took = started.elapsed();
        if took < Duration::from_millis(2) {
            ran += took;
        }
    }
}

impl Predicate for BadLoop {
    fn matches(_req: &Request<'_>, args: &[String]) -> bool {
        match args.first().and_then(|a| a.parse::<u64>().ok()) {
            Some(ms) => {
                spin_for(ms);
                true
            }
            None => spin_forever(),
        }
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
