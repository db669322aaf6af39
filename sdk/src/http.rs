//! Pure HTTP helpers: query strings, cookies, bearer tokens and header syntax.
//!
//! Nothing here calls routerd, so these functions work anywhere, including in native unit tests.
//! [`Request`](crate::Request) uses them for [`query_param`](crate::Request::query_param),
//! [`cookie`](crate::Request::cookie) and [`bearer_token`](crate::Request::bearer_token).
//!
//! ```
//! use routerd_sdk::http;
//!
//! assert_eq!(http::query_param("a=1&name=J%C3%BCrgen+B", "name").as_deref(), Some("Jürgen B"));
//! assert_eq!(http::cookie_value("theme=dark; session=abc123", "session"), Some("abc123"));
//! assert_eq!(http::bearer_token("Bearer eyJhbGciOi"), Some("eyJhbGciOi"));
//! assert!(http::is_header_name("x-request-id"));
//! assert!(!http::is_header_value("evil\r\nset-cookie: x"));
//! ```

/// Decodes `%XX` escapes. Malformed escapes are kept as they are; bytes that do not form UTF-8
/// become U+FFFD.
///
/// ```
/// assert_eq!(routerd_sdk::http::percent_decode("a%20b%2Fc%zz+d"), "a b/c%zz+d");
/// ```
pub fn percent_decode(s: &str) -> String {
    decode(s, false)
}

/// Decodes an `application/x-www-form-urlencoded` component: like [`percent_decode`], and `+`
/// means a space.
///
/// ```
/// assert_eq!(routerd_sdk::http::form_decode("a+b%2Bc"), "a b+c");
/// ```
pub fn form_decode(s: &str) -> String {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let needs_work = bytes.contains(&b'%') || (plus_is_space && bytes.contains(&b'+'));
    if !needs_work {
        return s.to_owned();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    let hi = (h[0] as char).to_digit(16)?;
                    let lo = (h[1] as char).to_digit(16)?;
                    u8::try_from(hi * 16 + lo).ok()
                });
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a raw query string (without the leading `?`) into decoded `(key, value)` pairs, in
/// order. Pairs are separated by `&` (empty ones are skipped); a pair without `=` has an empty
/// value. Keys and values are [`form_decode`]d.
///
/// ```
/// let pairs = routerd_sdk::http::parse_query("a=1&b&c=x%3Dy&a=2");
/// assert_eq!(
///     pairs,
///     [("a", "1"), ("b", ""), ("c", "x=y"), ("a", "2")]
///         .map(|(k, v)| (k.to_string(), v.to_string()))
/// );
/// ```
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// The decoded value of the first query parameter named `key` (compared after decoding).
///
/// ```
/// use routerd_sdk::http::query_param;
/// assert_eq!(query_param("page=2&q=rust+wasm", "q").as_deref(), Some("rust wasm"));
/// assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
/// assert_eq!(query_param("page=2", "q"), None);
/// ```
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key || form_decode(k) == key).then(|| form_decode(v))
        })
}

/// Splits one `Cookie` header value into `(name, value)` pairs, in order. Pairs are separated
/// by `;`, surrounding whitespace is trimmed, a value in double quotes loses them, and pieces
/// without `=` are skipped. Values are returned as sent (cookies have no standard encoding).
///
/// ```
/// let pairs = routerd_sdk::http::parse_cookies(r#"a=1; b="two" ;junk; c="#);
/// assert_eq!(pairs, [("a", "1"), ("b", "two"), ("c", "")]);
/// ```
pub fn parse_cookies(header: &str) -> Vec<(&str, &str)> {
    header
        .split(';')
        .filter_map(|piece| {
            let (name, value) = piece.split_once('=')?;
            let name = name.trim();
            if name.is_empty() {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some((name, value))
        })
        .collect()
}

/// The value of the first cookie called `name` (case-sensitive) in one `Cookie` header value.
///
/// ```
/// use routerd_sdk::http::cookie_value;
/// assert_eq!(cookie_value("a=1; variant=b", "variant"), Some("b"));
/// assert_eq!(cookie_value("a=1", "variant"), None);
/// ```
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    parse_cookies(header)
        .into_iter()
        .find_map(|(n, v)| (n == name).then_some(v))
}

/// The token of an `Authorization: Bearer <token>` value (scheme compared case-insensitively),
/// or `None` for another scheme or an empty token.
///
/// ```
/// use routerd_sdk::http::bearer_token;
/// assert_eq!(bearer_token("bearer  abc.def.ghi "), Some("abc.def.ghi"));
/// assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
/// assert_eq!(bearer_token("Bearer "), None);
/// ```
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let value = authorization.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Whether `name` is a valid HTTP header name (a non-empty RFC 9110 token).
///
/// ```
/// use routerd_sdk::http::is_header_name;
/// assert!(is_header_name("X-Api-Key"));
/// assert!(!is_header_name("bad name"));
/// assert!(!is_header_name(""));
/// ```
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `value` can be sent as an HTTP header value: no control characters other than
/// horizontal tab (so no CR, LF or NUL), and no DEL.
///
/// ```
/// use routerd_sdk::http::is_header_value;
/// assert!(is_header_value("text/html; charset=utf-8"));
/// assert!(!is_header_value("a\nb"));
/// ```
pub fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_edge_cases() {
        assert_eq!(percent_decode(""), "");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(form_decode("a+b"), "a b");
    }

    #[test]
    fn query_keys_are_decoded() {
        assert_eq!(query_param("a%5B%5D=1", "a[]").as_deref(), Some("1"));
        assert_eq!(query_param("&&x=1&&", "x").as_deref(), Some("1"));
        assert_eq!(query_param("", "x"), None);
        assert_eq!(parse_query(""), Vec::new());
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("", "a"), None);
        assert_eq!(cookie_value("a=1;a=2", "a"), Some("1"));
        assert_eq!(cookie_value(" =x; b = 2 ", "b"), Some("2"));
        assert_eq!(cookie_value("b=x=y", "b"), Some("x=y"));
    }

    #[test]
    fn bearer() {
        assert_eq!(bearer_token("BEARER\tt"), Some("t"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token(""), None);
    }
}
