//! The `compress` filter's policy: which answers are compressed and with what. Args are
//! `key=value`: `algorithms=br,gzip` (routerd's preference, among those the client accepts),
//! `min_bytes=1024` (answers of a known smaller length stay as they are) and
//! `types=text/*,application/json` (media types compressed; the default covers text, JSON,
//! JavaScript, XML and SVG). Never compressed: an answer already encoded, a range (206 or
//! `Content-Range`), one without a body (HEAD, 204, 304), or one marked `no-transform`.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::{ErrorCode, FieldError};
use crate::media::MediaType;

/// A content coding routerd can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `br`.
    Brotli,
    /// `gzip`.
    Gzip,
}

impl Encoding {
    /// The token in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// A compiled compression policy.
#[derive(Debug, Clone)]
pub struct CompressPolicy {
    algorithms: Vec<Encoding>,
    min_bytes: u64,
    types: Vec<MediaType>,
}

const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/*+json",
    "application/*+xml",
    "image/svg+xml",
];

fn invalid(i: usize, reason: impl Into<String>) -> FieldError {
    FieldError::new(format!("args[{i}]"), ErrorCode::InvalidFilter, reason)
}

impl CompressPolicy {
    /// Compiles the filter's `key=value` args, naming the one at fault.
    pub fn compile(args: &[String]) -> Result<CompressPolicy, FieldError> {
        let mut algorithms = vec![Encoding::Brotli, Encoding::Gzip];
        let mut min_bytes = 1024;
        let mut types: Vec<MediaType> = DEFAULT_TYPES
            .iter()
            .filter_map(|t| MediaType::parse(t))
            .collect();
        for (i, arg) in args.iter().enumerate() {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| invalid(i, format!("{arg:?} is not key=value")))?;
            match key {
                "algorithms" => {
                    algorithms = value
                        .split(',')
                        .map(str::trim)
                        .map(|a| match a {
                            "br" => Ok(Encoding::Brotli),
                            "gzip" => Ok(Encoding::Gzip),
                            other => Err(invalid(i, format!("{other:?}: use br and/or gzip"))),
                        })
                        .collect::<Result<_, _>>()?;
                    if algorithms.is_empty() {
                        return Err(invalid(i, "no algorithm"));
                    }
                }
                "min_bytes" => {
                    min_bytes = value
                        .parse()
                        .map_err(|_| invalid(i, "min_bytes is a number of bytes"))?;
                }
                "types" => {
                    types = value
                        .split(',')
                        .map(str::trim)
                        .map(|t| {
                            MediaType::parse(t)
                                .ok_or_else(|| invalid(i, format!("{t:?} is not a media type")))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => {
                    return Err(invalid(
                        i,
                        format!("unknown key {other:?} (algorithms, min_bytes, types)"),
                    ));
                }
            }
        }
        Ok(CompressPolicy {
            algorithms,
            min_bytes,
            types,
        })
    }

    /// The coding a client accepts that routerd prefers, from `Accept-Encoding` (`q=0`
    /// refuses a coding; `*` accepts any not named).
    pub fn choose(&self, accept: &HeaderValue) -> Option<Encoding> {
        let accept = accept.to_str().ok()?;
        let q_of = |token: &str| -> Option<f32> {
            let mut star = None;
            for item in accept.split(',') {
                let mut parts = item.split(';').map(str::trim);
                let name = parts.next().unwrap_or("");
                let q = parts
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                if name.eq_ignore_ascii_case(token) {
                    return Some(q);
                }
                if name == "*" {
                    star = Some(q);
                }
            }
            star
        };
        self.algorithms
            .iter()
            .copied()
            .filter_map(|e| q_of(e.token()).filter(|q| *q > 0.0).map(|q| (e, q)))
            // The client's highest q wins; among equals, routerd's order.
            .fold(None, |best: Option<(Encoding, f32)>, (e, q)| match best {
                Some((_, bq)) if bq >= q => best,
                _ => Some((e, q)),
            })
            .map(|(e, _)| e)
    }

    /// Whether an answer with `status` and `headers` to a `method` request may be compressed.
    pub fn applies(&self, method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
        if method == Method::HEAD
            || status != StatusCode::OK
            || headers.contains_key(header::CONTENT_ENCODING)
            || headers.contains_key(header::CONTENT_RANGE)
        {
            return false;
        }
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-transform"));
        if no_transform {
            return false;
        }
        let small = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n < self.min_bytes);
        if small {
            return false;
        }
        let Some(ct) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(MediaType::parse)
        else {
            return false;
        };
        self.types.iter().any(|t| t.covers(&ct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(args: &[&str]) -> CompressPolicy {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        CompressPolicy::compile(&args).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_client_chooses_among_what_routerd_offers() {
        let p = policy(&[]);
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(p.choose(&v("gzip, deflate, br")), Some(Encoding::Brotli));
        assert_eq!(p.choose(&v("gzip")), Some(Encoding::Gzip));
        assert_eq!(p.choose(&v("br;q=0.5, gzip")), Some(Encoding::Gzip));
        assert_eq!(p.choose(&v("br;q=0, *")), Some(Encoding::Gzip));
        assert_eq!(p.choose(&v("identity")), None);
        let gzip_only = policy(&["algorithms=gzip"]);
        assert_eq!(gzip_only.choose(&v("br, gzip")), Some(Encoding::Gzip));
    }

    #[test]
    fn only_whole_unencoded_answers_of_listed_types_are_compressed() {
        let p = policy(&["min_bytes=100"]);
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let json = headers(&[("content-type", "application/json")]);
        assert!(p.applies(&Method::GET, StatusCode::OK, &json));
        assert!(!p.applies(&Method::HEAD, StatusCode::OK, &json));
        assert!(!p.applies(&Method::GET, StatusCode::PARTIAL_CONTENT, &json));
        assert!(!p.applies(
            &Method::GET,
            StatusCode::OK,
            &headers(&[("content-type", "text/html"), ("content-encoding", "gzip")])
        ));
        assert!(!p.applies(
            &Method::GET,
            StatusCode::OK,
            &headers(&[("content-type", "image/png")])
        ));
        assert!(!p.applies(
            &Method::GET,
            StatusCode::OK,
            &headers(&[("content-type", "text/plain"), ("content-length", "10")])
        ));
        assert!(!p.applies(
            &Method::GET,
            StatusCode::OK,
            &headers(&[
                ("content-type", "text/plain"),
                ("cache-control", "no-transform")
            ])
        ));
        assert!(CompressPolicy::compile(&["algorithms=zstd".into()]).is_err());
    }
}
