//! Route document builders and table-driven probes.

use super::*;

// ---------------------------------------------------------------------------------------------
// Config builders
// ---------------------------------------------------------------------------------------------

/// A matcher object.
pub fn matcher(condition: &str, field: Option<&str>, pattern: &str, is_regex: bool) -> Value {
    let mut m = json!({"condition": condition, "pattern": pattern});
    if let Some(field) = field {
        m["field"] = json!(field);
    }
    if is_regex {
        m["is_regex"] = json!(true);
    }
    m
}

/// `path` matcher with a radix pattern.
pub fn path(pattern: &str) -> Value {
    matcher("path", None, pattern, false)
}

/// `path` matcher with a regex.
pub fn path_re(pattern: &str) -> Value {
    matcher("path", None, pattern, true)
}

/// `path_prefix` matcher.
pub fn prefix(pattern: &str) -> Value {
    matcher("path_prefix", None, pattern, false)
}

/// `host` matcher (exact or `*.` wildcard).
pub fn host(pattern: &str) -> Value {
    matcher("host", None, pattern, false)
}

/// `method` matcher (`GET|POST`).
pub fn method(pattern: &str) -> Value {
    matcher("method", None, pattern, false)
}

/// `header` matcher, exact value.
pub fn header(name: &str, value: &str) -> Value {
    matcher("header", Some(name), value, false)
}

/// A plugin predicate matcher: `{"condition": "plugin", "plugin": plugin, "args": args}`.
pub fn plugin_pred(plugin: &str, args: &[&str]) -> Value {
    json!({"condition": "plugin", "plugin": plugin, "args": args})
}

/// A route under construction.
pub struct Route(pub Value);

impl Route {
    /// A route answering `200` with its own name as a text/plain body (`respond` filter).
    pub fn respond(name: &str) -> Route {
        Route(json!({
            "name": name,
            "matchers": [],
            "filters": [{"name": "respond", "args": ["200", name, "text/plain"]}],
        }))
    }

    /// A route proxying to `target_url`, no filters.
    pub fn proxy(name: &str, target_url: &str) -> Route {
        Route(json!({
            "name": name,
            "target_url": target_url,
            "matchers": [],
        }))
    }

    /// Add a matcher.
    pub fn m(mut self, matcher: Value) -> Route {
        self.push("matchers", matcher);
        self
    }

    /// Set the priority.
    pub fn priority(self, priority: u32) -> Route {
        self.set("priority", json!(priority))
    }

    /// Set any field.
    pub fn set(mut self, key: &str, value: Value) -> Route {
        self.0[key] = value;
        self
    }

    /// Append a filter. On a `respond` route it goes before the `respond` filter.
    pub fn filter(mut self, name: &str, args: &[&str]) -> Route {
        self.push_filter(json!({"name": name, "args": args}), name != "respond");
        self
    }

    /// Append a plugin filter (`{"plugin": plugin, "args": args}`). On a `respond` route it goes
    /// before the `respond` filter.
    pub fn plugin_filter(mut self, plugin: &str, args: &[&str]) -> Route {
        self.push_filter(json!({"plugin": plugin, "args": args}), true);
        self
    }

    fn push_filter(&mut self, filter: Value, before_respond: bool) {
        match self.0["filters"].as_array_mut() {
            Some(list) if before_respond && list.last().is_some_and(|f| f["name"] == "respond") => {
                let at = list.len() - 1;
                list.insert(at, filter);
            }
            _ => self.push("filters", filter),
        }
    }

    fn push(&mut self, key: &str, value: Value) {
        match self.0[key].as_array_mut() {
            Some(list) => list.push(value),
            None => self.0[key] = json!([value]),
        }
    }

    /// The JSON object.
    pub fn build(self) -> Value {
        self.0
    }
}

/// `{"routes": [...]}`.
pub fn config(routes: Vec<Route>) -> Value {
    json!({"routes": routes.into_iter().map(Route::build).collect::<Vec<_>>()})
}

// ---------------------------------------------------------------------------------------------
// Table-driven probes
// ---------------------------------------------------------------------------------------------

/// What a probe expects.
#[derive(Clone, Debug)]
pub enum Expect {
    /// 200 with the body equal to this route name (routes built with [`Route::respond`]).
    Route(String),
    /// Proxied to the echo backend with this name (any status).
    Backend(String),
    /// This status.
    Status(u16),
    /// This redirect status, with `Location` equal to this (path and query; an absolute URL
    /// with this as its path and query is accepted too).
    Redirect(u16, String),
    /// An error status with a JSON body naming this route (502/504).
    ErrorRoute(u16, String),
}

/// One request and its expected outcome.
#[derive(Clone, Debug)]
pub struct Probe {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    expect: Option<Expect>,
}

/// A probe for `method path`; finish with one of the `expect_*` methods.
pub fn probe(method: &str, path: &str) -> Probe {
    Probe {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Bytes::new(),
        expect: None,
    }
}

impl Probe {
    /// Add a request header.
    pub fn header(mut self, name: &str, value: &str) -> Probe {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Probe {
        self.body = body.into();
        self
    }

    /// Expect [`Expect::Route`].
    pub fn route(mut self, name: &str) -> Probe {
        self.expect = Some(Expect::Route(name.to_owned()));
        self
    }

    /// Expect [`Expect::Backend`].
    pub fn backend(mut self, name: &str) -> Probe {
        self.expect = Some(Expect::Backend(name.to_owned()));
        self
    }

    /// Expect [`Expect::Status`].
    pub fn status(mut self, status: u16) -> Probe {
        self.expect = Some(Expect::Status(status));
        self
    }

    /// Expect [`Expect::Redirect`].
    pub fn redirect(mut self, status: u16, location: &str) -> Probe {
        self.expect = Some(Expect::Redirect(status, location.to_owned()));
        self
    }

    /// Expect [`Expect::ErrorRoute`].
    pub fn error_route(mut self, status: u16, route: &str) -> Probe {
        self.expect = Some(Expect::ErrorRoute(status, route.to_owned()));
        self
    }

    fn label(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        for (k, v) in &self.headers {
            s.push_str(&format!(" [{k}: {v}]"));
        }
        if !self.body.is_empty() {
            let body = String::from_utf8_lossy(&self.body);
            let shown: String = body.chars().take(60).collect();
            s.push_str(&format!(" body {shown:?}"));
        }
        s
    }
}

/// Strip `http://authority` from an absolute URL, keeping path and query.
pub fn location_path(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None => location.to_owned(),
    }
}

/// Check one response against an expectation; `Err` describes the mismatch.
pub fn check_expect(expect: &Expect, resp: &Resp) -> Result<(), String> {
    match expect {
        Expect::Route(name) => {
            if resp.status == 200 && resp.text() == *name {
                Ok(())
            } else {
                Err(format!(
                    "expected route `{name}` (200), got {}",
                    resp.describe()
                ))
            }
        }
        Expect::Backend(name) => match resp.backend() {
            Some(b) if b == *name => Ok(()),
            _ => Err(format!(
                "expected backend `{name}`, got {}",
                resp.describe()
            )),
        },
        Expect::Status(status) => {
            if resp.status == *status {
                Ok(())
            } else {
                Err(format!("expected status {status}, got {}", resp.describe()))
            }
        }
        Expect::Redirect(status, location) => {
            let got = resp.header("location");
            let ok = resp.status == *status
                && got.as_deref().map(location_path).as_deref() == Some(location.as_str());
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "expected {status} to {location:?}, got {} with Location {got:?}",
                    resp.describe()
                ))
            }
        }
        Expect::ErrorRoute(status, route) => {
            let json = resp.try_json();
            let got_route = json
                .as_ref()
                .and_then(|j| j.get("route"))
                .and_then(Value::as_str);
            if resp.status == *status && got_route == Some(route.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "expected {status} with \"route\": {route:?}, got {}",
                    resp.describe()
                ))
            }
        }
    }
}

/// Run every probe against `rd`; returns one line per mismatch, prefixed with `label`.
pub async fn run_probes(rd: &Routerd, label: &str, probes: &[Probe]) -> Vec<String> {
    let mut failures = Vec::new();
    for p in probes {
        let headers: Vec<(&str, &str)> = p
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let expect = p.expect.as_ref().expect("probe without expectation");
        match rd
            .try_request(&p.method, &p.path, &headers, p.body.clone())
            .await
        {
            Ok(resp) => {
                if let Err(e) = check_expect(expect, &resp) {
                    failures.push(format!("[{label}] {}: {e}", p.label()));
                }
            }
            Err(e) => failures.push(format!("[{label}] {}: transport error: {e}", p.label())),
        }
    }
    failures
}

/// Panic with every failure, one per line, if there are any.
pub fn assert_no_failures(failures: &[String]) {
    let count = failures
        .iter()
        .filter(|f| !f.contains("routerd log tail:"))
        .count();
    assert!(
        failures.is_empty(),
        "{count} failure(s):\n{}",
        failures.join("\n")
    );
}

/// Start routerd on `config`, run `probes`, and return the mismatches (routerd logs are appended
/// to the first failure of the case).
pub async fn run_case(label: &str, config: &Value, probes: &[Probe]) -> Vec<String> {
    let rd = Routerd::start(config).await;
    let mut failures = run_probes(&rd, label, probes).await;
    if !failures.is_empty() {
        let logs = rd.logs();
        let tail: Vec<&String> = logs.iter().rev().take(20).rev().collect();
        failures.push(format!(
            "[{label}] routerd log tail:\n    {}",
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    failures
}
