//! `bad-sleep` (test plugin): a predicate that blocks in WASI.
//!
//! `matches` writes `bad-sleep: call N starts` to stderr, then sleeps `args[0]` milliseconds
//! (default 1000) with `std::thread::sleep` (a `wasi:io/poll` wait on a clock pollable) and
//! matches. No guest code runs while it waits, so an epoch deadline alone never fires: routerd
//! must end the call with a timer. The stderr line shows that each call runs once.
//!
//! With `args[1] == "in-validate"`, `validate` sleeps instead (and `matches` answers at once):
//! a slow route validation, for testing that it holds up nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct BadSleep;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// How long to sleep, from the route's args.
pub fn sleep_ms(args: &[String]) -> Result<u64, String> {
    match args.first() {
        None => Ok(1000),
        Some(s) => s
            .parse()
            .map_err(|_| format!("bad-sleep: {s:?} is not a number of milliseconds")),
    }
}

impl Predicate for BadSleep {
    fn validate(args: &[String]) -> Result<(), String> {
        let ms = sleep_ms(args)?;
        if in_validate(args) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(())
    }

    fn matches(_req: &Request<'_>, args: &[String]) -> bool {
        if in_validate(args) {
            return true;
        }
        let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!("bad-sleep: call {n} starts");
        std::thread::sleep(Duration::from_millis(sleep_ms(args).unwrap_or(1000)));
        true
    }
}

/// Whether the sleep belongs in `validate`.
fn in_validate(args: &[String]) -> bool {
    args.get(1).is_some_and(|a| a == "in-validate")
}

routerd_sdk::export_predicate!(BadSleep);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sleep() {
        assert_eq!(sleep_ms(&[]), Ok(1000));
        assert_eq!(sleep_ms(&["25".to_string()]), Ok(25));
        assert!(BadSleep::validate(&["soon".to_string()]).is_err());
    }
}
