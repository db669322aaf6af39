//! `header-eq-copyall`: args `[name, value]`; the same answer as `header-eq`, but it asks the
//! host for *all* headers and searches them. routerd's plugin-call benchmark uses it to price
//! copying the whole request across the boundary on every call (what a `request` record would
//! cost) against the lazy getters `header-eq` uses.

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct HeaderEqCopyAll;

/// Whether any header called `name` (case-insensitive) has exactly `value` as its first value.
pub fn first_value_is(headers: &[(String, String)], name: &str, value: &str) -> bool {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .is_some_and(|(_, v)| v == value)
}

impl Predicate for HeaderEqCopyAll {
    fn matches(req: &Request<'_>, args: &[String]) -> bool {
        let [name, value] = args else {
            return false;
        };
        first_value_is(&req.headers(), name, value)
    }
}

routerd_sdk::export_predicate!(HeaderEqCopyAll);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_value_case_insensitively() {
        let h = vec![
            ("x-tier".to_owned(), "gold".to_owned()),
            ("x-tier".to_owned(), "silver".to_owned()),
        ];
        assert!(first_value_is(&h, "X-Tier", "gold"));
        assert!(!first_value_is(&h, "x-tier", "silver"));
        assert!(!first_value_is(&h, "x-other", "gold"));
    }
}
