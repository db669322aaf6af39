//! `routerctl`: the command-line client of routerd's admin API.
//!
//! Human tables by default, the API's JSON with `--json`. Any failure (an API error, a refused
//! connection, a bad file) prints `routerctl: ...` to stderr and exits 1.

mod cli;
mod client;
mod plugin_cmd;
mod render;
mod request;
mod scaffold;

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser};
use serde_json::Value;
use ureq::http::Method;

use cli::{Cli, Command, MatchArgs, PluginCommand, RouteCommand};
use client::{Body, Client, encode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(out) => {
            let mut stdout = io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                // `routerctl route list | head` is not an error.
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    eprintln!("routerctl: writing output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("routerctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command; the text to print on success.
fn run(cli: Cli) -> Result<String> {
    let command = match cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "routerctl", &mut script);
            return String::from_utf8(script).context("the completion script is not UTF-8");
        }
        other => other,
    };
    let token = match &cli.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let client = Client::new(&cli.admin, token)?;
    let plans = match &command {
        Command::Route(c) => c.changes(),
        Command::Plugin(c) => {
            matches!(c, PluginCommand::Load(_) | PluginCommand::Unload { .. })
        }
        _ => false,
    };
    if cli.dry_run && !plans {
        bail!(
            "--dry-run goes with a route change (add, apply, update, rename, delete, enable, disable) or a plugin load or unload"
        );
    }
    let ctl = Ctl {
        client,
        json: cli.json,
        dry_run: cli.dry_run,
    };
    match command {
        Command::Route(cmd) => ctl.route(cmd),
        Command::Plugin(cmd) => ctl.plugin(cmd),
        Command::Match(args) => ctl.explain(args),
        Command::Completions { .. } => Ok(String::new()),
        Command::Cluster => {
            let doc = ctl.client.get("/api/v1/cluster")?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Ok(ctl.show(&doc, |d| render::cluster_table(d, now)))
        }
        Command::Health => {
            let doc = ctl.client.get("/api/v1/health")?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Ok(ctl.show(&doc, |d| render::health_table(d, now)))
        }
    }
}

fn read_token(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = raw.trim();
    if token.is_empty() {
        bail!("the token file {} holds no token", path.display());
    }
    Ok(token.to_owned())
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// A file's name in messages.
fn shown(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Reads a JSON object from a file (or standard input for `-`).
fn read_json_object(path: &Path) -> Result<serde_json::Map<String, Value>> {
    let bytes = read_input(path)?;
    let doc: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not valid JSON", shown(path)))?;
    match doc {
        Value::Object(map) => Ok(map),
        _ => bail!("{}: expected a JSON object", shown(path)),
    }
}

/// The fields a stored route has beyond the route document's; not sent back.
const STORED_ONLY: [&str; 4] = ["version", "source", "status", "reason"];

/// A route's `version`, as sent in If-Match.
fn version_of(route: &serde_json::Map<String, Value>) -> Option<String> {
    match route.get("version")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The body for POST or PUT: the route without its stored-only fields.
fn route_body(mut route: serde_json::Map<String, Value>) -> Result<Vec<u8>> {
    for key in STORED_ONLY {
        route.remove(key);
    }
    Ok(serde_json::to_vec(&Value::Object(route))?)
}

fn route_path(name: &str) -> String {
    format!("/api/v1/routes/{}", encode(name))
}

fn plugin_path(name: &str) -> String {
    format!("/api/v1/plugins/{}", encode(name))
}

/// A client and the output mode.
struct Ctl {
    client: Client,
    json: bool,
    /// Route changes are dry runs.
    dry_run: bool,
}

impl Ctl {
    /// `doc` as pretty JSON, or through `human`.
    /// A change's path, asking for a dry run when one was asked for.
    fn changing(&self, path: &str) -> String {
        match self.dry_run {
            true => format!("{path}?dry_run=true"),
            false => path.to_owned(),
        }
    }

    fn show(&self, doc: &Value, human: impl Fn(&Value) -> String) -> String {
        if self.json { pretty(doc) } else { human(doc) }
    }

    /// The answer of a mutation: pretty JSON, or a one-line `message`.
    fn done(&self, doc: Option<&Value>, message: impl FnOnce(Option<&Value>) -> String) -> String {
        if let (true, Some(report)) = (self.dry_run, doc) {
            return self.show(report, render::dry_run);
        }
        match (self.json, doc) {
            (true, Some(doc)) => pretty(doc),
            (true, None) => String::new(),
            (false, doc) => format!("{}\n", message(doc)),
        }
    }

    fn route(&self, cmd: RouteCommand) -> Result<String> {
        match cmd {
            RouteCommand::List => {
                let routes = self.all_routes()?;
                if self.json {
                    let total = routes.len();
                    let doc = serde_json::json!({"routes": routes, "total": total});
                    Ok(pretty(&doc))
                } else {
                    Ok(render::routes_table(&routes))
                }
            }
            RouteCommand::Get { name } => {
                let route = self.client.get(&route_path(&name))?;
                Ok(self.show(&route, |r| render::details(r, render::ROUTE_ORDER)))
            }
            RouteCommand::Add { file } => {
                let body = route_body(read_json_object(&file)?)?;
                let stored = self.client.call(
                    Method::POST,
                    &self.changing("/api/v1/routes"),
                    Some(Body::json(&body)),
                    None,
                )?;
                Ok(self.done(stored.as_ref(), |r| {
                    let name = r.map_or_else(|| "?".into(), |r| render::text(r.get("name")));
                    format!("created route {name}{}", version_note(r))
                }))
            }
            RouteCommand::Apply { file } => {
                let bytes = read_input(&file)?;
                let doc: Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: not valid JSON", shown(&file)))?;
                if !doc.get("routes").is_some_and(Value::is_array) {
                    bail!(
                        "{}: expected a route document, {{\"routes\": [...]}}",
                        shown(&file)
                    );
                }
                let summary = self.client.call(
                    Method::POST,
                    &self.changing("/api/v1/routes/apply"),
                    Some(Body::json(&bytes)),
                    None,
                )?;
                let summary = summary.unwrap_or(Value::Null);
                Ok(match self.dry_run {
                    true => self.show(&summary, render::dry_run),
                    false => self.show(&summary, render::apply_summary),
                })
            }
            RouteCommand::Update { name, file } => {
                let route = read_json_object(&file)?;
                let version = version_of(&route);
                self.put_route(&name, route, version.as_deref(), |r| {
                    format!("updated route {name}{}", version_note(r))
                })
            }
            RouteCommand::Rename { old, new } => {
                let (mut route, version) = self.get_route(&old)?;
                route.insert("name".into(), Value::String(new.clone()));
                self.put_route(&old, route, version.as_deref(), |r| {
                    format!("renamed route {old} to {new}{}", version_note(r))
                })
            }
            RouteCommand::Delete { name } => {
                let answer = self.client.call(
                    Method::DELETE,
                    &self.changing(&route_path(&name)),
                    None,
                    None,
                )?;
                Ok(self.done(answer.as_ref(), |_| format!("deleted route {name}")))
            }
            RouteCommand::Enable { name } => self.set_enabled(&name, true),
            RouteCommand::Disable { name } => self.set_enabled(&name, false),
        }
    }

    /// Every route, page by page (the API's largest page is 1000).
    fn all_routes(&self) -> Result<Vec<Value>> {
        const LIMIT: usize = 1000;
        let mut routes: Vec<Value> = Vec::new();
        loop {
            let path = format!("/api/v1/routes?offset={}&limit={LIMIT}", routes.len());
            let mut page = self.client.get(&path)?;
            let Some(Value::Array(batch)) = page.get_mut("routes").map(Value::take) else {
                bail!("GET {path}: the answer has no \"routes\" list");
            };
            let total = page
                .get("total")
                .and_then(Value::as_u64)
                .and_then(|t| usize::try_from(t).ok());
            let got = batch.len();
            routes.extend(batch);
            let done = match total {
                Some(total) => routes.len() >= total,
                None => got < LIMIT,
            };
            if got == 0 || done {
                return Ok(routes);
            }
        }
    }

    /// A stored route and its version.
    fn get_route(&self, name: &str) -> Result<(serde_json::Map<String, Value>, Option<String>)> {
        match self.client.get(&route_path(name))? {
            Value::Object(route) => {
                let version = version_of(&route);
                Ok((route, version))
            }
            _ => bail!("GET {}: the answer is not a route", route_path(name)),
        }
    }

    /// PUT a route under `name`, with If-Match when `version` is known.
    fn put_route(
        &self,
        name: &str,
        route: serde_json::Map<String, Value>,
        version: Option<&str>,
        message: impl FnOnce(Option<&Value>) -> String,
    ) -> Result<String> {
        let body = route_body(route)?;
        let stored = self.client.call(
            Method::PUT,
            &self.changing(&route_path(name)),
            Some(Body::json(&body)),
            version,
        )?;
        Ok(self.done(stored.as_ref(), message))
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<String> {
        let word = if enabled { "enabled" } else { "disabled" };
        let (mut route, version) = self.get_route(name)?;
        if route
            .get("enabled")
            .and_then(Value::as_bool)
            .unwrap_or(true)
            == enabled
        {
            if self.dry_run {
                return Ok(format!(
                    "route {name} is already {word}: nothing would change\n"
                ));
            }
            let route = Value::Object(route);
            return Ok(self.done(Some(&route), |_| format!("route {name} is already {word}")));
        }
        route.insert("enabled".into(), Value::Bool(enabled));
        self.put_route(name, route, version.as_deref(), |r| {
            format!("{word} route {name}{}", version_note(r))
        })
    }

    fn explain(&self, args: MatchArgs) -> Result<String> {
        let body =
            match args.body {
                Some(data) => match data.strip_prefix('@') {
                    Some(file) => {
                        let file = Path::new(file);
                        let bytes = read_input(file)?;
                        Some(String::from_utf8(bytes).with_context(|| {
                            format!("{}: the body must be UTF-8 text", shown(file))
                        })?)
                    }
                    None => Some(data),
                },
                None => None,
            };
        let request = request::match_body(
            &args.method,
            &args.url,
            &args.headers,
            body,
            args.remote_addr.as_deref(),
        )?;
        let bytes = serde_json::to_vec(&request)?;
        let answer = self
            .client
            .call(
                Method::POST,
                "/api/v1/match",
                Some(Body::json(&bytes)),
                None,
            )?
            .context("POST /api/v1/match answered with an empty body")?;
        Ok(self.show(&answer, render::explain))
    }
}

/// ` (version N)` when the answer carries one.
fn version_note(route: Option<&Value>) -> String {
    match route.and_then(|r| r.get("version")) {
        Some(v) if !v.is_null() => format!(" (version {})", render::text(Some(v))),
        _ => String::new(),
    }
}

fn pretty(doc: &Value) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use serde_json::json;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_global_flags_after_subcommands() {
        let cli = Cli::try_parse_from([
            "routerctl",
            "route",
            "list",
            "--json",
            "--admin",
            "http://127.0.0.1:1",
        ]);
        assert!(
            cli.as_ref()
                .is_ok_and(|c| c.json && c.admin == "http://127.0.0.1:1")
        );
        let cli = Cli::try_parse_from([
            "routerctl",
            "match",
            "GET",
            "/a",
            "-H",
            "X-A: 1",
            "-H",
            "X-B: 2",
            "-d",
            "x",
        ]);
        let Ok(Cli {
            command: Command::Match(m),
            ..
        }) = cli
        else {
            panic!("match did not parse");
        };
        assert_eq!(m.headers, ["X-A: 1", "X-B: 2"]);
        assert_eq!(m.body.as_deref(), Some("x"));
    }

    #[test]
    fn route_body_drops_stored_only_fields() {
        let Value::Object(route) = json!({
            "name": "a", "version": 3, "source": "api", "status": "excluded", "reason": "r",
            "enabled": false
        }) else {
            panic!("not an object");
        };
        assert_eq!(version_of(&route).as_deref(), Some("3"));
        let body: Option<Value> = route_body(route)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        assert_eq!(body, Some(json!({"name": "a", "enabled": false})));
    }
}
