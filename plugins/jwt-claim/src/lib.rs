//! `jwt-claim`: args `[claim_path, expected_value, ...]`.
//!
//! Reads the `Authorization: Bearer <jwt>` header, base64url-decodes the token's payload (the
//! second `.`-separated part) and matches when the claim at `claim_path` equals one of the
//! expected values.
//!
//! **The signature is NOT verified.** Use this only for routing decisions behind something that
//! does verify the token (or where a forged token gains nothing), never for authorization.
//!
//! * `claim_path` is dotted: `sub`, `org.tier`, `realm_access.roles`. A segment that is a number
//!   indexes into an array (`groups.0`).
//! * Strings, numbers and booleans are compared as text: `"admin"` matches `admin`, `42` matches
//!   `42`, `true` matches `true` (numbers as JSON writes them, so `1.0` stays `1.0`).
//! * When the claim is an array, the predicate matches if any of its scalar elements does
//!   (`roles: ["user", "admin"]` matches expected `admin`).
//! * No header, another scheme, a malformed token, a missing claim, `null` or an object: no
//!   match.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use routerd_sdk::{Predicate, Request, http};
use serde_json::Value;

/// base64url, with or without `=` padding.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The plugin.
pub struct JwtClaim;

/// Checks the route args: a non-empty dotted claim path and at least one expected value.
pub fn validate_args(args: &[String]) -> Result<(), String> {
    let [path, expected @ ..] = args else {
        return Err("jwt-claim: expected args [claim_path, expected_value...]".into());
    };
    if expected.is_empty() {
        return Err("jwt-claim: expected at least one expected value after the claim path".into());
    }
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!(
            "jwt-claim: claim path {path:?} must be dot-separated non-empty names"
        ));
    }
    Ok(())
}

/// Decodes the payload (claims set) of a compact JWT, without verifying anything.
pub fn decode_payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    let bytes = BASE64URL.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The value at dotted `path` in `claims`.
pub fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A scalar claim as text; `None` for null, arrays and objects.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `claim` equals one of `expected` (any element, for an array claim).
pub fn claim_matches(claim: &Value, expected: &[String]) -> bool {
    let eq = |v: &Value| scalar_text(v).is_some_and(|t| expected.contains(&t));
    match claim {
        Value::Array(items) => items.iter().any(eq),
        other => eq(other),
    }
}

/// The whole decision from an `Authorization` header value.
pub fn authorization_matches(authorization: Option<&str>, path: &str, expected: &[String]) -> bool {
    authorization
        .and_then(http::bearer_token)
        .and_then(decode_payload)
        .is_some_and(|claims| lookup(&claims, path).is_some_and(|c| claim_matches(c, expected)))
}

impl Predicate for JwtClaim {
    fn validate(args: &[String]) -> Result<(), String> {
        validate_args(args)
    }

    fn matches(req: &Request<'_>, args: &[String]) -> bool {
        let [path, expected @ ..] = args else {
            return false;
        };
        authorization_matches(req.header("authorization").as_deref(), path, expected)
    }
}

routerd_sdk::export_predicate!(JwtClaim);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    /// An unsigned token with this payload (padding stripped, as JWTs are).
    fn token(payload: &str) -> String {
        let enc = |s: &str| BASE64URL.encode(s).trim_end_matches('=').to_string();
        format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(payload))
    }

    #[test]
    fn validates() {
        assert!(validate_args(&args(&["sub", "alice"])).is_ok());
        assert!(validate_args(&args(&["a.b.c", "x", "y"])).is_ok());
        assert!(validate_args(&args(&["sub"])).is_err());
        assert!(validate_args(&args(&[])).is_err());
        assert!(validate_args(&args(&["", "x"])).is_err());
        assert!(validate_args(&args(&["a..b", "x"])).is_err());
        assert!(validate_args(&args(&["a.", "x"])).is_err());
    }

    #[test]
    fn decodes_payload_with_and_without_padding() {
        // payload `{"a":1}` needs padding in standard base64.
        let t = token(r#"{"a":1}"#);
        assert_eq!(decode_payload(&t), Some(serde_json::json!({"a": 1})));
        let padded = format!("x.{}.y", BASE64URL.encode(r#"{"a":1}"#));
        assert_eq!(decode_payload(&padded), Some(serde_json::json!({"a": 1})));
        // base64url alphabet: `-` and `_` appear for these bytes.
        let t = token(r#"{"s":"???>>>"}"#);
        assert!(t.contains('_') || t.contains('-'));
        assert_eq!(decode_payload(&t), Some(serde_json::json!({"s": "???>>>"})));
        assert_eq!(decode_payload("only-one-part"), None);
        assert_eq!(decode_payload("a.!!!.c"), None);
        assert_eq!(
            decode_payload(&format!("a.{}.c", BASE64URL.encode("not json"))),
            None
        );
    }

    #[test]
    fn compares_scalars_as_text() {
        let claims = serde_json::json!({
            "sub": "alice", "age": 42, "ratio": 1.5, "admin": true, "none": null,
            "org": {"tier": "gold", "ids": [7, 8]}, "roles": ["user", "admin"],
        });
        let m = |path: &str, exp: &[&str]| {
            lookup(&claims, path).is_some_and(|c| claim_matches(c, &args(exp)))
        };
        assert!(m("sub", &["bob", "alice"]));
        assert!(!m("sub", &["Alice"]));
        assert!(m("age", &["42"]));
        assert!(m("ratio", &["1.5"]));
        assert!(m("admin", &["true"]));
        assert!(!m("admin", &["false"]));
        assert!(!m("none", &["null"]));
        assert!(m("org.tier", &["gold"]));
        assert!(!m("org", &["gold"]));
        assert!(m("org.ids.1", &["8"]));
        assert!(m("org.ids", &["7"]));
        assert!(m("roles", &["admin"]));
        assert!(!m("roles", &["root"]));
        assert!(!m("missing", &["x"]));
        assert!(!m("sub.deeper", &["alice"]));
    }

    #[test]
    fn reads_the_bearer_header() {
        let a = args(&["org.tier", "gold", "platinum"]);
        let t = token(r#"{"sub":"alice","org":{"tier":"platinum"}}"#);
        let req = MockRequest::new("GET", "/").header("Authorization", format!("Bearer {t}"));
        assert!(JwtClaim::matches(&req.as_request(), &a));

        let t = token(r#"{"org":{"tier":"free"}}"#);
        let req = MockRequest::new("GET", "/").header("Authorization", format!("Bearer {t}"));
        assert!(!JwtClaim::matches(&req.as_request(), &a));

        let req = MockRequest::new("GET", "/");
        assert!(!JwtClaim::matches(&req.as_request(), &a));
        let req = MockRequest::new("GET", "/").header("Authorization", "Basic dXNlcjpwYXNz");
        assert!(!JwtClaim::matches(&req.as_request(), &a));
        let req = MockRequest::new("GET", "/").header("Authorization", "Bearer garbage");
        assert!(!JwtClaim::matches(&req.as_request(), &a));
    }
}
