//! Built-in filters, compiled from their specs: header edits, `set_path`, `redirect`, `respond`,
//! `cors` and `compress` (their policies in [`crate::cors`] and [`crate::compress`]).
//! Values are templates that may name the route's path parameters as `{name}`.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};

use super::compress::CompressPolicy;
use super::cors::CorsPolicy;
use super::params::Params;
use crate::config::{ErrorCode, FieldError};

/// A string with `{param}` holes filled from the route's path parameters.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(Box<str>),
    Param(Box<str>),
}

impl Template {
    /// Parses `text`; `{name}` is a parameter when `name` is an identifier, and must then be one
    /// of `known`. Other braces (JSON bodies, say) are literal.
    pub fn parse(text: &str, known: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}');
            let name = close.map(|c| &after[..c]);
            match name {
                Some(name)
                    if !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    if !known.contains(&name) {
                        return Err(format!(
                            "unknown path parameter {{{name}}} (the route's path defines: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                    lit.push_str(&rest[..open]);
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit).into()));
                    }
                    parts.push(Part::Param(name.into()));
                    rest = &after[name.len() + 1..];
                }
                _ => {
                    lit.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Literal(lit.into()));
        }
        Ok(Template { parts })
    }

    /// Whether the template has no parameters (so it can be checked as a header value at load).
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(l)] => Some(l),
            _ => None,
        }
    }

    /// Fills the holes.
    pub fn render(&self, params: &Params<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Param(name) => out.push_str(params.get(name).unwrap_or("")),
            }
        }
        out
    }
}

/// A compiled built-in filter.
#[derive(Debug, Clone)]
pub enum BuiltinFilter {
    /// Replace a request header.
    SetRequestHeader(HeaderName, Template),
    /// Remove a request header.
    RemoveRequestHeader(HeaderName),
    /// Replace a response header.
    SetResponseHeader(HeaderName, Template),
    /// Remove a response header.
    RemoveResponseHeader(HeaderName),
    /// Replace the path sent to the backend.
    SetPath(Template),
    /// Answer with a redirect.
    Redirect(StatusCode, Template),
    /// Answer with this status, body and content type.
    Respond(StatusCode, Template, HeaderValue),
    /// Answer CORS preflights, add `Access-Control-*` headers to responses.
    Cors(Arc<CorsPolicy>),
    /// Compress answers by `Accept-Encoding`.
    Compress(Arc<CompressPolicy>),
}

/// A filter's field is wrong.
fn invalid(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError::new(field, ErrorCode::InvalidFilter, reason)
}

impl BuiltinFilter {
    /// Compiles `name(args)`; `params` are the route's path parameter names.
    pub fn compile(name: &str, args: &[String], params: &[&str]) -> Result<Self, FieldError> {
        let a = FilterArgs { name, args, params };
        Ok(match name {
            "set_request_header" => {
                a.expect(2..=2)?;
                BuiltinFilter::SetRequestHeader(a.header(0)?, a.header_value(1)?)
            }
            "remove_request_header" => {
                a.expect(1..=1)?;
                BuiltinFilter::RemoveRequestHeader(a.header(0)?)
            }
            "set_response_header" => {
                a.expect(2..=2)?;
                BuiltinFilter::SetResponseHeader(a.header(0)?, a.header_value(1)?)
            }
            "remove_response_header" => {
                a.expect(1..=1)?;
                BuiltinFilter::RemoveResponseHeader(a.header(0)?)
            }
            "set_path" => {
                a.expect(1..=1)?;
                let t = a.template(0)?;
                if !a.arg(0)?.starts_with('/') {
                    return Err(invalid(
                        "args[0]",
                        "set_path needs a path starting with '/'",
                    ));
                }
                BuiltinFilter::SetPath(t)
            }
            "redirect" => {
                a.expect(2..=2)?;
                BuiltinFilter::Redirect(
                    a.status(0, |s| (300..400).contains(&s))?,
                    a.header_value(1)?,
                )
            }
            "respond" => {
                a.expect(2..=3)?;
                let ct = match args.get(2) {
                    Some(ct) => HeaderValue::from_str(ct).map_err(|_| {
                        invalid("args[2]", format!("{ct:?} is not a valid content type"))
                    })?,
                    None => HeaderValue::from_static("text/plain; charset=utf-8"),
                };
                BuiltinFilter::Respond(
                    a.status(0, |s| (200..600).contains(&s))?,
                    a.template(1)?,
                    ct,
                )
            }
            "cors" => BuiltinFilter::Cors(Arc::new(CorsPolicy::compile(args)?)),
            "compress" => BuiltinFilter::Compress(Arc::new(CompressPolicy::compile(args)?)),
            other => {
                return Err(invalid(
                    "name",
                    format!(
                        "unknown filter {other:?} (built-ins: set_request_header, remove_request_header, \
                         set_response_header, remove_response_header, set_path, redirect, respond, cors, compress)"
                    ),
                ));
            }
        })
    }

    /// Whether this filter answers the request itself (so the route needs no target).
    pub fn answers(&self) -> bool {
        matches!(
            self,
            BuiltinFilter::Redirect(..) | BuiltinFilter::Respond(..)
        )
    }
}

/// A built-in filter's arguments, each read with the error its absence or form deserves.
struct FilterArgs<'a> {
    name: &'a str,
    args: &'a [String],
    params: &'a [&'a str],
}

impl FilterArgs<'_> {
    fn arg(&self, i: usize) -> Result<&str, FieldError> {
        self.args.get(i).map(String::as_str).ok_or_else(|| {
            invalid(
                format!("args[{i}]"),
                format!("{} needs argument {}", self.name, i + 1),
            )
        })
    }

    fn expect(&self, n: std::ops::RangeInclusive<usize>) -> Result<(), FieldError> {
        if n.contains(&self.args.len()) {
            return Ok(());
        }
        Err(invalid(
            "args",
            format!(
                "{} takes {} to {} arguments, got {}",
                self.name,
                n.start(),
                n.end(),
                self.args.len()
            ),
        ))
    }

    fn header(&self, i: usize) -> Result<HeaderName, FieldError> {
        let a = self.arg(i)?;
        HeaderName::from_bytes(a.as_bytes()).map_err(|_| {
            invalid(
                format!("args[{i}]"),
                format!("{a:?} is not a valid header name"),
            )
        })
    }

    fn template(&self, i: usize) -> Result<Template, FieldError> {
        Template::parse(self.arg(i)?, self.params).map_err(|e| invalid(format!("args[{i}]"), e))
    }

    /// A template that, when it has no placeholders, is a valid header value already.
    fn header_value(&self, i: usize) -> Result<Template, FieldError> {
        let t = self.template(i)?;
        if let Some(l) = t.literal() {
            HeaderValue::from_str(l).map_err(|_| {
                invalid(
                    format!("args[{i}]"),
                    format!("{l:?} is not a valid header value"),
                )
            })?;
        }
        Ok(t)
    }

    fn status(&self, i: usize, allowed: impl Fn(u16) -> bool) -> Result<StatusCode, FieldError> {
        let a = self.arg(i)?;
        a.parse::<u16>()
            .ok()
            .filter(|s| allowed(*s))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| {
                invalid(
                    format!("args[{i}]"),
                    format!("{a:?} is not an allowed status code here"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_known_params_and_keep_json_braces() {
        let t = Template::parse("{\"user\": \"{id}\"}", &["id"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.literal().is_none());
        assert!(Template::parse("/x/{nope}", &["id"]).is_err());
        assert_eq!(
            Template::parse("plain", &[])
                .ok()
                .and_then(|t| t.literal().map(str::to_owned)),
            Some("plain".into())
        );
    }

    #[test]
    fn filters_check_their_args() {
        assert!(BuiltinFilter::compile("set_request_header", &["X-A".into()], &[]).is_err());
        assert!(BuiltinFilter::compile("redirect", &["200".into(), "/x".into()], &[]).is_err());
        assert!(BuiltinFilter::compile("set_path", &["x".into()], &[]).is_err());
        assert!(BuiltinFilter::compile("nope", &[], &[]).is_err());
        assert!(BuiltinFilter::compile("respond", &["204".into(), "".into()], &[]).is_ok());
    }
}
