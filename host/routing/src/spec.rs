//! One matcher of the route document compiled: each condition's required fields checked and
//! turned into what the route runs (a path matcher for the index, a method set, another
//! built-in matcher, or the name of a plugin predicate). Errors name the sub-field (`.pattern`,
//! `.field`, ...) so the caller can prefix the matcher's place in the rule.

use http::Method;
use ipnet::IpNet;
use regex::Regex;

use super::matchers::{HostMatch, Matcher, MethodSet, PathMatch, ValueMatch};
use super::pattern::{parse_pattern, parse_prefix};
use crate::config::{ErrorCode, FieldError, MatcherSpec};

/// A compiled matcher, by where the route keeps it.
pub(crate) enum Compiled {
    /// The path matcher (indexed unless a regex).
    Path(PathMatch),
    /// The method matcher.
    Methods(MethodSet),
    /// Any other built-in matcher.
    Other(Matcher),
    /// A plugin predicate, by name (looked up by the route).
    Plugin(String),
}

/// Compiles one matcher spec.
pub(crate) fn compile_matcher(spec: &MatcherSpec) -> Result<Compiled, FieldError> {
    let spec = Spec(spec);
    if spec.0.condition != "plugin" && (spec.0.plugin.is_some() || !spec.0.args.is_empty()) {
        return Err(invalid(
            ".plugin",
            "\"plugin\" and \"args\" belong to condition \"plugin\"".into(),
        ));
    }
    Ok(match spec.0.condition.as_str() {
        "path" if spec.0.is_regex => Compiled::Path(PathMatch::Regex(regex(spec.pattern()?)?)),
        "path" => Compiled::Path(PathMatch::Pattern(
            parse_pattern(spec.pattern()?).map_err(|e| invalid(".pattern", e))?,
        )),
        "path_prefix" => Compiled::Path(PathMatch::Prefix(
            parse_prefix(spec.pattern()?).map_err(|e| invalid(".pattern", e))?,
        )),
        "method" => Compiled::Methods(methods(spec.pattern()?)?),
        "host" => Compiled::Other(Matcher::Host(host(spec.pattern()?, spec.0.is_regex)?)),
        "header" => {
            let f = spec.field()?;
            let name = http::HeaderName::from_bytes(f.as_bytes())
                .map_err(|_| invalid(".field", format!("{f:?} is not a valid header name")))?;
            Compiled::Other(Matcher::Header(name, spec.value()?))
        }
        "query_param" => Compiled::Other(Matcher::QueryParam(spec.field()?.into(), spec.value()?)),
        "cookie" => Compiled::Other(Matcher::Cookie(spec.field()?.into(), spec.value()?)),
        "body_field" => Compiled::Other(Matcher::BodyField(
            spec.field()?.split('.').map(Into::into).collect(),
            spec.value()?,
        )),
        "body_regex" => Compiled::Other(Matcher::BodyRegex(
            regex::bytes::Regex::new(spec.pattern()?).map_err(regex_error)?,
        )),
        "remote_addr" => Compiled::Other(Matcher::RemoteAddr(networks(spec.pattern()?)?)),
        "plugin" => match spec.0.plugin.as_deref() {
            Some(name) if !name.is_empty() => Compiled::Plugin(name.to_owned()),
            _ => {
                return Err(invalid(
                    ".plugin",
                    "condition \"plugin\" needs \"plugin\": NAME".into(),
                ));
            }
        },
        other => {
            return Err(invalid(
                ".condition",
                format!(
                    "unknown condition {other:?} (expected path, path_prefix, host, method, header, \
                     query_param, cookie, body_field, body_regex, remote_addr or plugin)"
                ),
            ));
        }
    })
}

/// A matcher spec's fields, each read with the error its absence deserves.
struct Spec<'a>(&'a MatcherSpec);

impl Spec<'_> {
    fn pattern(&self) -> Result<&str, FieldError> {
        self.0.pattern.as_deref().ok_or_else(|| {
            invalid(
                ".pattern",
                format!("condition {:?} needs a pattern", self.0.condition),
            )
        })
    }

    fn field(&self) -> Result<&str, FieldError> {
        self.0
            .field
            .as_deref()
            .filter(|f| !f.is_empty())
            .ok_or_else(|| {
                invalid(
                    ".field",
                    format!("condition {:?} needs a field", self.0.condition),
                )
            })
    }

    /// The pattern as an exact value or, with `is_regex`, a regex.
    fn value(&self) -> Result<ValueMatch, FieldError> {
        let p = self.pattern()?;
        Ok(if self.0.is_regex {
            ValueMatch::Regex(regex(p)?)
        } else {
            ValueMatch::Exact(p.into())
        })
    }
}

fn invalid(sub: &str, reason: String) -> FieldError {
    FieldError::new(sub, ErrorCode::InvalidMatcher, reason)
}

fn regex_error(e: regex::Error) -> FieldError {
    FieldError::new(".pattern", ErrorCode::InvalidRegex, e.to_string())
}

fn regex(p: &str) -> Result<Regex, FieldError> {
    Regex::new(p).map_err(regex_error)
}

/// `GET|HEAD`: methods separated by `|`.
fn methods(p: &str) -> Result<MethodSet, FieldError> {
    let mut methods = p
        .split('|')
        .map(|m| {
            let m = m.trim();
            Method::from_bytes(m.as_bytes())
                .ok()
                .filter(|_| !m.is_empty())
                .ok_or_else(|| invalid(".pattern", format!("{m:?} is not an HTTP method")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Kept for as long as the route is served: without the room for four the collect left.
    methods.shrink_to_fit();
    Ok(MethodSet(methods))
}

/// An exact host (any port dropped), a `*.example.com` wildcard, or a regex.
fn host(p: &str, is_regex: bool) -> Result<HostMatch, FieldError> {
    Ok(if is_regex {
        HostMatch::Regex(regex(p)?)
    } else if let Some(suffix) = p.strip_prefix("*.") {
        HostMatch::Wildcard(format!(".{suffix}").into())
    } else if p.contains('*') {
        return Err(invalid(
            ".pattern",
            format!("{p:?}: a wildcard host is written *.example.com"),
        ));
    } else {
        HostMatch::Exact(p.split(':').next().unwrap_or(p).into())
    })
}

/// CIDRs or addresses separated by commas, spaces or `|`; at least one.
fn networks(p: &str) -> Result<Vec<IpNet>, FieldError> {
    let nets = p
        .split([',', ' ', '|'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid(".pattern", format!("{s:?} is not a CIDR or IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nets.is_empty() {
        return Err(invalid(
            ".pattern",
            "remote_addr needs at least one CIDR".into(),
        ));
    }
    Ok(nets)
}
