//! Configuration: the route document format (the Cube router's, plus our extensions) and loading
//! it from a file. Watching the file, so valid changes replace the table and invalid ones are
//! reported while the last good table keeps serving, is the daemon's (`routerd::app`).

mod error;
mod model;

use std::path::Path;

pub use error::{ConfigError, ErrorCode, FieldError, RouteError, RouteSetError};
pub use model::{
    BalanceSpec, ConfigFile, DocumentRef, FilterSpec, MatcherSpec, MirrorSpec, OutlierSpec,
    RateLimitSpec, RetrySpec, RouteRule, TargetSpec,
};

/// The route set served when no `--config` is given: a landing page and a templated greeting.
pub const EMBEDDED_DEFAULT: &str = r#"{
  "routes": [
    {
      "name": "welcome",
      "matchers": [{"condition": "path", "pattern": "/"}],
      "filters": [{"name": "respond", "args": ["200", "routerd is running: this is the embedded default route set.\nTry /hello/you, or start routerd with --config routes.json.\n"]}]
    },
    {
      "name": "hello",
      "matchers": [{"condition": "path", "pattern": "/hello/{name}"}, {"condition": "method", "pattern": "GET|HEAD"}],
      "filters": [
        {"name": "set_response_header", "args": ["X-Routerd-Route", "hello"]},
        {"name": "respond", "args": ["200", "hello, {name}\n"]}
      ]
    }
  ]
}"#;

/// Parses a config document.
pub fn parse(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
    serde_json::from_str(text).map_err(|cause| ConfigError::Parse {
        path: origin.to_owned(),
        cause,
    })
}

/// Reads and parses a config file (validation happens when it is compiled into a table).
pub fn load_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: origin.clone(),
        cause,
    })?;
    parse(&text, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NoExternal, RouteTable};

    #[test]
    fn embedded_default_is_valid() {
        let cfg = parse(EMBEDDED_DEFAULT, "embedded").unwrap_or_else(|e| panic!("{e}"));
        RouteTable::<NoExternal>::build(&cfg).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn errors_name_route_field_and_reason() {
        let cfg = parse(
            r#"{"routes": [{"name": "bad", "target_url": "http://x", "matchers": [
                {"condition": "header", "field": "X-A", "pattern": "(", "is_regex": true}]}]}"#,
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = RouteTable::<NoExternal>::build(&cfg)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("\"bad\"") && err.contains("matchers[0].pattern"),
            "{err}"
        );
    }
}
