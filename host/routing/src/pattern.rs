//! Path patterns: parsing `/users/{id}/files/{*rest}` (and the `:id` / `*rest` spelling), and the
//! static specificity key that orders routes whose patterns match the same path.

use std::cmp::Ordering;

/// One segment of a radix path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(Box<str>),
    /// `{name}`: one non-empty segment.
    Param(Box<str>),
    /// `{*name}`: the rest of the path, one or more characters. Always last.
    CatchAll(Box<str>),
}

/// A parsed radix pattern. Segments follow the leading `/`: `/` is `[""]`, `/a/` is `["a", ""]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The segments in order.
    pub segments: Vec<Segment>,
}

/// Parses a radix path pattern; the error says what is wrong.
pub fn parse_pattern(pattern: &str) -> Result<PathPattern, String> {
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err(format!("path pattern {pattern:?} must start with '/'"));
    };
    let raw: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        let last = i + 1 == raw.len();
        let parsed = if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            match inner.strip_prefix('*') {
                Some(name) => Segment::CatchAll(param_name(pattern, name)?),
                None => Segment::Param(param_name(pattern, inner)?),
            }
        } else if let Some(name) = seg.strip_prefix(':') {
            Segment::Param(param_name(pattern, name)?)
        } else if let Some(name) = seg.strip_prefix('*') {
            Segment::CatchAll(param_name(pattern, name)?)
        } else if seg.contains(['{', '}']) {
            return Err(format!(
                "path pattern {pattern:?}: a parameter must be a whole segment, like /{{name}}/"
            ));
        } else {
            Segment::Literal((*seg).into())
        };
        if matches!(parsed, Segment::CatchAll(_)) && !last {
            return Err(format!(
                "path pattern {pattern:?}: a catch-all parameter must be the last segment"
            ));
        }
        segments.push(parsed);
    }
    let mut names: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(&**n),
            Segment::Literal(_) => None,
        })
        .collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "path pattern {pattern:?} uses parameter {:?} twice",
            w[0]
        ));
    }
    Ok(PathPattern { segments })
}

fn param_name(pattern: &str, name: &str) -> Result<Box<str>, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "path pattern {pattern:?}: parameter name {name:?} must be non-empty letters, digits or '_'"
        ));
    }
    Ok(name.into())
}

/// Parses a `path_prefix` value into its literal segments (`/static/` is `["static"]`, `/` is `[]`).
pub fn parse_prefix(prefix: &str) -> Result<Vec<Box<str>>, String> {
    let Some(rest) = prefix.strip_prefix('/') else {
        return Err(format!("path prefix {prefix:?} must start with '/'"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|s| {
            if s.is_empty() {
                Err(format!("path prefix {prefix:?} has an empty segment"))
            } else if s.contains(['{', '}']) || s.starts_with([':', '*']) {
                Err(format!(
                    "path prefix {prefix:?} is literal; use a path matcher for parameters"
                ))
            } else {
                Ok(s.into())
            }
        })
        .collect()
}

/// How specific a route's path matcher is; smaller is more specific. Two patterns that match the
/// same request path compare segment by segment: literal < param < catch-all, and a pattern that
/// has ended < one that still has a catch-all. Any radix pattern < regex path < no path matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specificity {
    class: u8,
    kinds: Vec<u8>,
}

const END: u8 = 0;
const LITERAL: u8 = 1;
const PARAM: u8 = 2;
const CATCH_ALL: u8 = 3;

impl Specificity {
    /// A radix pattern.
    pub fn of_pattern(p: &PathPattern) -> Self {
        let mut kinds: Vec<u8> = p
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => LITERAL,
                Segment::Param(_) => PARAM,
                Segment::CatchAll(_) => CATCH_ALL,
            })
            .collect();
        if kinds.last() != Some(&CATCH_ALL) {
            kinds.push(END);
        }
        Specificity { class: 0, kinds }
    }

    /// A path prefix: its literal segments followed by a catch-all.
    pub fn of_prefix(segments: usize) -> Self {
        let mut kinds = vec![LITERAL; segments];
        kinds.push(CATCH_ALL);
        Specificity { class: 0, kinds }
    }

    /// A regex path.
    pub fn regex() -> Self {
        Specificity {
            class: 1,
            kinds: Vec::new(),
        }
    }

    /// No path matcher.
    pub fn none() -> Self {
        Specificity {
            class: 2,
            kinds: Vec::new(),
        }
    }
}

impl Ord for Specificity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.class
            .cmp(&other.class)
            .then_with(|| self.kinds.cmp(&other.kinds))
    }
}

impl PartialOrd for Specificity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: &str) -> Specificity {
        Specificity::of_pattern(&parse_pattern(p).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn both_spellings_parse_alike() {
        assert_eq!(
            parse_pattern("/a/:id/*rest"),
            parse_pattern("/a/{id}/{*rest}")
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "a",
            "/a/{*r}/b",
            "/x{id}",
            "/{}",
            "/{a}/{a}",
            "/*",
            "/{a-b}",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn specificity_orders_as_documented() {
        // literal beats param beats catch-all
        assert!(spec("/users/new") < spec("/users/{id}"));
        assert!(spec("/users/{id}") < spec("/users/{*rest}"));
        // an ended pattern beats a prefix on the prefix itself
        assert!(spec("/a") < Specificity::of_prefix(1));
        // prefix /a/b beats /a/{*rest}
        assert!(Specificity::of_prefix(2) < spec("/a/{*rest}"));
        // radix < regex < none
        assert!(spec("/{*all}") < Specificity::regex());
        assert!(Specificity::regex() < Specificity::none());
    }

    #[test]
    fn prefixes_normalise() {
        assert_eq!(parse_prefix("/static/"), Ok(vec!["static".into()]));
        assert_eq!(parse_prefix("/"), Ok(vec![]));
        assert!(parse_prefix("/a//b").is_err());
        assert!(parse_prefix("static").is_err());
    }
}
