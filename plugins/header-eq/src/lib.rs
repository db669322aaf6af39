//! `header-eq`: args `[name, value]`; matches when the first value of header `name`
//! (case-insensitive name) equals `value` exactly (case-sensitive value). A missing header does
//! not match.
//!
//! Reads exactly one header per call; routerd's benchmarks use it as a typical small predicate.

use routerd_sdk::{Predicate, Request, http};

/// The plugin.
pub struct HeaderEq;

/// Checks the route args: exactly a header name and a value.
pub fn validate_args(args: &[String]) -> Result<(), String> {
    match args {
        [name, _value] if http::is_header_name(name) => Ok(()),
        [name, _value] => Err(format!("header-eq: {name:?} is not a valid header name")),
        _ => Err(format!(
            "header-eq: expected 2 args [name, value], got {}",
            args.len()
        )),
    }
}

/// Whether the header's value (if any) is `expected`.
pub fn header_matches(actual: Option<&str>, expected: &str) -> bool {
    actual == Some(expected)
}

impl Predicate for HeaderEq {
    fn validate(args: &[String]) -> Result<(), String> {
        validate_args(args)
    }

    fn matches(req: &Request<'_>, args: &[String]) -> bool {
        let [name, expected] = args else {
            return false;
        };
        header_matches(req.header(name).as_deref(), expected)
    }
}

routerd_sdk::export_predicate!(HeaderEq);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validates() {
        assert!(validate_args(&args(&["x-env", "prod"])).is_ok());
        assert!(validate_args(&args(&["x-env", ""])).is_ok());
        assert!(validate_args(&args(&["x-env"])).is_err());
        assert!(validate_args(&args(&["x-env", "a", "b"])).is_err());
        assert!(validate_args(&args(&["bad name", "a"])).is_err());
    }

    #[test]
    fn matches_exact_value() {
        let a = args(&["X-Env", "prod"]);
        let req = MockRequest::new("GET", "/").header("x-env", "prod");
        assert!(HeaderEq::matches(&req.as_request(), &a));
        let req = MockRequest::new("GET", "/").header("x-env", "Prod");
        assert!(!HeaderEq::matches(&req.as_request(), &a));
        let req = MockRequest::new("GET", "/");
        assert!(!HeaderEq::matches(&req.as_request(), &a));
        // Only the first value counts.
        let req = MockRequest::new("GET", "/")
            .header("x-env", "dev")
            .header("x-env", "prod");
        assert!(!HeaderEq::matches(&req.as_request(), &a));
        assert!(!HeaderEq::matches(&req.as_request(), &args(&["x-env"])));
    }
}
