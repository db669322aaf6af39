//! `api-key`: args `[header_name, key1, key2, ...]`.
//!
//! Lets a request through only when header `header_name` (first value) equals one of the keys.
//! Otherwise answers `401` with body `{"error":"invalid api key"}`,
//! `Content-Type: application/json` and `WWW-Authenticate: ApiKey header="<header_name>"`.
//! On success the key header is removed before the request is proxied, so the backend never sees
//! the key.
//!
//! The comparison is constant-time per key and always checks every key, so timing reveals
//! neither which key nor how much of one matched (only, at most, a key's length).
//!
//! validate: a valid header name and at least one non-empty key without control characters.

use routerd_sdk::{Filter, Reply, Request, RequestAction, RequestEdits, http};
use subtle::{Choice, ConstantTimeEq};

/// The plugin.
pub struct ApiKey;

/// The body of the 401 reply.
pub const UNAUTHORIZED_BODY: &str = r#"{"error":"invalid api key"}"#;

/// Checks the route args.
pub fn validate_args(args: &[String]) -> Result<(), String> {
    let [header, keys @ ..] = args else {
        return Err("api-key: expected args [header_name, key...]".into());
    };
    if !http::is_header_name(header) {
        return Err(format!("api-key: {header:?} is not a valid header name"));
    }
    if keys.is_empty() {
        return Err("api-key: expected at least one key after the header name".into());
    }
    if let Some(i) = keys
        .iter()
        .position(|k| k.is_empty() || !http::is_header_value(k))
    {
        return Err(format!(
            "api-key: key #{} is empty or contains control characters",
            i + 1
        ));
    }
    Ok(())
}

/// Whether `provided` equals one of `keys`, in constant time with respect to the contents.
pub fn key_is_valid(provided: &str, keys: &[String]) -> bool {
    let found = keys.iter().fold(Choice::from(0), |found, key| {
        found | provided.as_bytes().ct_eq(key.as_bytes())
    });
    bool::from(found)
}

/// The decision, from the header's value.
pub fn decide(header: &str, provided: Option<&str>, keys: &[String]) -> RequestAction {
    match provided {
        Some(p) if key_is_valid(p, keys) => RequestEdits::new().remove_header(header).into(),
        _ => Reply::json(401, UNAUTHORIZED_BODY)
            .header(
                "www-authenticate",
                format!("ApiKey header=\"{}\"", header.to_ascii_lowercase()),
            )
            .into(),
    }
}

impl Filter for ApiKey {
    fn validate(args: &[String]) -> Result<(), String> {
        validate_args(args)
    }

    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        // Without a usable config, refuse rather than let everything through.
        if validate_args(args).is_err() {
            return Reply::json(500, r#"{"error":"api-key misconfigured"}"#).into();
        }
        let [header, keys @ ..] = args else {
            return Reply::new(500).into();
        };
        decide(header, req.header(header).as_deref(), keys)
    }
}

routerd_sdk::export_filter!(ApiKey);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validates() {
        assert!(validate_args(&args(&["X-Api-Key", "k1"])).is_ok());
        assert!(validate_args(&args(&["X-Api-Key", "k1", "k2"])).is_ok());
        assert!(validate_args(&args(&["X-Api-Key"])).is_err());
        assert!(validate_args(&args(&[])).is_err());
        assert!(validate_args(&args(&["bad header", "k"])).is_err());
        assert!(validate_args(&args(&["X-Api-Key", ""])).is_err());
        assert!(validate_args(&args(&["X-Api-Key", "k\n"])).is_err());
    }

    #[test]
    fn compares_keys() {
        let keys = args(&["alpha-123", "beta-456"]);
        assert!(key_is_valid("alpha-123", &keys));
        assert!(key_is_valid("beta-456", &keys));
        assert!(!key_is_valid("alpha-12", &keys));
        assert!(!key_is_valid("alpha-1234", &keys));
        assert!(!key_is_valid("ALPHA-123", &keys));
        assert!(!key_is_valid("", &keys));
        assert!(!key_is_valid("x", &[]));
    }

    #[test]
    fn accepts_and_strips_the_key() {
        let a = args(&["X-Api-Key", "s3cret", "other"]);
        let req = MockRequest::new("GET", "/").header("x-api-key", "other");
        assert_eq!(
            ApiKey::on_request(&req.as_request(), &a),
            RequestAction::Proceed(RequestEdits::new().remove_header("x-api-key"))
        );
    }

    #[test]
    fn rejects_with_401_json() {
        let a = args(&["X-Api-Key", "s3cret"]);
        for req in [
            MockRequest::new("GET", "/"),
            MockRequest::new("GET", "/").header("x-api-key", "wrong"),
            MockRequest::new("GET", "/").header("authorization", "s3cret"),
        ] {
            let RequestAction::Respond(reply) = ApiKey::on_request(&req.as_request(), &a) else {
                panic!("expected a reply");
            };
            assert_eq!(reply.status, 401);
            assert_eq!(reply.body, UNAUTHORIZED_BODY.as_bytes());
            assert!(
                reply
                    .headers
                    .contains(&("content-type".into(), "application/json".into()))
            );
            assert!(reply.headers.contains(&(
                "www-authenticate".into(),
                "ApiKey header=\"x-api-key\"".into()
            )));
        }
    }

    #[test]
    fn misconfigured_fails_closed() {
        let req = MockRequest::new("GET", "/").header("x-api-key", "k");
        assert!(matches!(
            ApiKey::on_request(&req.as_request(), &args(&["x-api-key"])),
            RequestAction::Respond(Reply { status: 500, .. })
        ));
    }
}
