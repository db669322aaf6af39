//! `noop-predicate`: always matches and reads nothing from the request.
//!
//! The cheapest possible plugin call; routerd's benchmarks use it to measure the fixed cost of
//! calling into a plugin. Args are ignored.

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct Noop;

impl Predicate for Noop {
    fn matches(_req: &Request<'_>, _args: &[String]) -> bool {
        true
    }
}

routerd_sdk::export_predicate!(Noop);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    #[test]
    fn always_matches() {
        assert!(Noop::validate(&[]).is_ok());
        assert!(Noop::matches(
            &MockRequest::new("GET", "/").as_request(),
            &[]
        ));
        let args = vec!["ignored".to_string()];
        assert!(Noop::matches(
            &MockRequest::new("POST", "/x?y").as_request(),
            &args
        ));
    }
}
