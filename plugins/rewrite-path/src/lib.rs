//! `rewrite-path`: args `[regex, replacement]`.
//!
//! Replaces the first match of `regex` in the request path with `replacement` before the request
//! is proxied; the query string is kept. A path the regex does not match is left alone.
//!
//! * `regex` uses the [`regex`] crate's syntax and is matched against the raw path
//!   (percent-encoding kept, no query). Anchor it (`^...$`) to rewrite whole paths.
//! * `replacement` may refer to groups as `$1`, `$name`, `${1}` or `${name}` (use `${1}x` when
//!   a letter, digit or `_` follows); `$$` is a literal `$`.
//! * If the result does not start with `/`, one is prepended.
//!
//! ```json
//! {"plugin": "rewrite-path", "args": ["^/api/v1/(.*)$", "/v1/$1"]}
//! ```
//!
//! validate: exactly two args, the regex compiles, every group the replacement names exists,
//! and the replacement has no `?` or `#` (only the path is rewritten).
//!
//! Compiled regexes are cached per instance, keyed by the pattern.

use std::cell::RefCell;
use std::rc::Rc;

use regex::Regex;
use routerd_sdk::{Filter, Request, RequestAction, RequestEdits};

/// The plugin.
pub struct RewritePath;

/// Most distinct patterns kept compiled in one instance.
const CACHE_LIMIT: usize = 16;

thread_local! {
    // A short list rather than a HashMap: HashMap's random seed would make the component import
    // `wasi:random`, and a linear scan of a few patterns is as fast.
    static CACHE: RefCell<Vec<(String, Rc<Regex>)>> = const { RefCell::new(Vec::new()) };
}

/// Compiles `pattern`, or returns the cached compilation.
fn compiled(pattern: &str) -> Result<Rc<Regex>, String> {
    let cached = CACHE.with_borrow(|c| {
        c.iter()
            .find_map(|(p, re)| (p == pattern).then(|| Rc::clone(re)))
    });
    if let Some(re) = cached {
        return Ok(re);
    }
    let re = Rc::new(Regex::new(pattern).map_err(|e| format!("rewrite-path: bad regex: {e}"))?);
    CACHE.with_borrow_mut(|c| {
        if c.len() >= CACHE_LIMIT {
            c.remove(0);
        }
        c.push((pattern.to_owned(), Rc::clone(&re)));
    });
    Ok(re)
}

/// The group references in a replacement string, following the `regex` crate's rules.
fn group_refs(replacement: &str) -> Vec<&str> {
    let mut refs = Vec::new();
    let mut rest = replacement;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => {
                    refs.push(&braced[..end]);
                    rest = &braced[end + 1..];
                }
                // An unclosed `${` is kept literally by the regex crate.
                None => rest = braced,
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                refs.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    refs
}

/// Checks the route args.
pub fn validate_args(args: &[String]) -> Result<(), String> {
    let [pattern, replacement] = args else {
        return Err(format!(
            "rewrite-path: expected 2 args [regex, replacement], got {}",
            args.len()
        ));
    };
    let re = Regex::new(pattern).map_err(|e| format!("rewrite-path: bad regex: {e}"))?;
    if replacement.contains(['?', '#']) {
        return Err("rewrite-path: the replacement must not contain `?` or `#`".into());
    }
    for name in group_refs(replacement) {
        let exists = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => re.capture_names().flatten().any(|n| n == name),
        };
        if !exists {
            return Err(format!(
                "rewrite-path: the replacement refers to group `{name}`, which the regex does not have"
            ));
        }
    }
    Ok(())
}

/// The new path, or `None` when `re` does not match `path` or nothing changes.
pub fn rewrite(re: &Regex, path: &str, replacement: &str) -> Option<String> {
    let out = re.replace(path, replacement);
    if out == path {
        return None;
    }
    let out = out.into_owned();
    Some(if out.starts_with('/') {
        out
    } else {
        format!("/{out}")
    })
}

impl Filter for RewritePath {
    fn validate(args: &[String]) -> Result<(), String> {
        validate_args(args)
    }

    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        let [pattern, replacement] = args else {
            return RequestAction::proceed();
        };
        let Ok(re) = compiled(pattern) else {
            return RequestAction::proceed();
        };
        match rewrite(&re, &req.path(), replacement) {
            Some(path) => RequestEdits::new().path(path).into(),
            None => RequestAction::proceed(),
        }
    }
}

routerd_sdk::export_filter!(RewritePath);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn rw(pattern: &str, path: &str, replacement: &str) -> Option<String> {
        let re = Regex::new(pattern).ok()?;
        rewrite(&re, path, replacement)
    }

    #[test]
    fn validates() {
        assert!(validate_args(&args(&["^/a/(.*)$", "/b/$1"])).is_ok());
        assert!(validate_args(&args(&["^/u/(?P<id>\\d+)$", "/users/${id}/$0"])).is_ok());
        assert!(validate_args(&args(&["/old", "/new$$"])).is_ok());
        assert!(validate_args(&args(&["(", "/x"])).is_err());
        assert!(validate_args(&args(&["^/a/(.*)$", "/b/$2"])).is_err());
        assert!(validate_args(&args(&["^/a/(.*)$", "/b/$name"])).is_err());
        // `$1x` is the group named `1x`, as in the regex crate.
        assert!(validate_args(&args(&["^/a/(.*)$", "/b/$1x"])).is_err());
        assert!(validate_args(&args(&["^/a/(.*)$", "/b/${1}x"])).is_ok());
        assert!(validate_args(&args(&["^/a$", "/b?x=1"])).is_err());
        assert!(validate_args(&args(&["^/a$"])).is_err());
        assert!(validate_args(&args(&["^/a$", "/b", "c"])).is_err());
    }

    #[test]
    fn group_refs_follow_regex_rules() {
        assert_eq!(
            group_refs("/a/$1/${name}/$$/$x_y-z/${"),
            ["1", "name", "x_y"]
        );
        assert_eq!(group_refs("no refs $"), Vec::<&str>::new());
    }

    #[test]
    fn rewrites() {
        assert_eq!(
            rw("^/api/v1/(.*)$", "/api/v1/users/42", "/v1/$1").as_deref(),
            Some("/v1/users/42")
        );
        assert_eq!(
            rw("^/u/(?P<id>\\d+)", "/u/7/x", "/users/${id}").as_deref(),
            Some("/users/7/x")
        );
        assert_eq!(rw("^/api", "/other", "/x"), None);
        assert_eq!(rw("^/api/", "/api/x", "").as_deref(), Some("/x"));
        assert_eq!(rw("^/same$", "/same", "/same"), None);
        // Only the first match is replaced.
        assert_eq!(rw("a", "/aaa", "b").as_deref(), Some("/baa"));
    }

    #[test]
    fn edits_only_the_path() {
        let a = args(&["^/old/(.*)$", "/new/$1"]);
        let req = MockRequest::new("GET", "/old/page?x=1");
        assert_eq!(
            RewritePath::on_request(&req.as_request(), &a),
            RequestAction::Proceed(RequestEdits::new().path("/new/page"))
        );
        let req = MockRequest::new("GET", "/elsewhere");
        assert_eq!(
            RewritePath::on_request(&req.as_request(), &a),
            RequestAction::proceed()
        );
        // Cached compilation gives the same answer.
        let req = MockRequest::new("GET", "/old/again");
        assert_eq!(
            RewritePath::on_request(&req.as_request(), &a),
            RequestAction::Proceed(RequestEdits::new().path("/new/again"))
        );
    }
}
