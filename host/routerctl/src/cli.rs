//! routerctl's command line: its flags, commands and their arguments (clap derives the parser
//! and the help from these types).

use std::path::PathBuf;

use crate::scaffold;

use clap::{Args, Parser, Subcommand};

/// Manage a running routerd through its admin API.
#[derive(Parser)]
#[command(version, propagate_version = true)]
pub(crate) struct Cli {
    /// The admin API's base URL.
    #[arg(
        long,
        global = true,
        env = "ROUTERCTL_ADMIN",
        default_value = "http://127.0.0.1:9090",
        value_name = "URL"
    )]
    pub(crate) admin: String,
    /// File holding the admin token, sent as `Authorization: Bearer TOKEN` on POST, PUT and
    /// DELETE (surrounding whitespace is ignored).
    #[arg(long, global = true, env = "ROUTERCTL_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Print the API's JSON answers (pretty) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// With a route change (add, apply, update, rename, delete, enable, disable) or a plugin
    /// load or unload: change nothing; show which recently seen requests it would move and
    /// where, and which routes it would leave unreachable.
    #[arg(long, global = true)]
    pub(crate) dry_run: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List, inspect and change routes.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Load, list, inspect and unload WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Show which route a request would get, and where every other candidate failed.
    Match(MatchArgs),
    /// Show backend health per route, from routerd's active health checks.
    Health,
    /// List the live instances sharing this one's store (etcd), with the table each serves.
    Cluster,
    /// Print a shell completion script: `routerctl completions bash > /etc/bash_completion.d/routerctl`,
    /// `routerctl completions zsh > "${fpath[1]}/_routerctl"`,
    /// `routerctl completions fish > ~/.config/fish/completions/routerctl.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub(crate) enum RouteCommand {
    /// List every route (all pages): name, source, status, priority, version, target, matchers.
    List,
    /// Show one route.
    Get {
        /// The route's name.
        name: String,
    },
    /// Create a route from a file holding one route as JSON.
    Add {
        /// The route's JSON (`-` reads standard input).
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Make the API's routes equal to a route document's routes, in one transaction.
    ///
    /// Routes of the file that the API lacks are created, the others updated, and API routes
    /// that the file lacks deleted; the answer lists which.
    Apply {
        /// A route document, `{"routes": [...]}` (`-` reads standard input).
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace a route with the route in a file.
    ///
    /// When the file carries a `version` (as `route get NAME --json` prints it), it is sent as
    /// If-Match, so the update is refused (version_mismatch) if the route changed in between.
    Update {
        /// The route to replace.
        name: String,
        /// The new route's JSON (`-` reads standard input); a different `name` renames it.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Rename a route (refused if it changes in between).
    Rename {
        /// The route's current name.
        old: String,
        /// Its new name.
        new: String,
    },
    /// Delete a route.
    Delete {
        /// The route's name.
        name: String,
    },
    /// Enable a route (refused if it changes in between).
    Enable {
        /// The route's name.
        name: String,
    },
    /// Disable a route: it stays stored but matches nothing (refused if it changes in between).
    Disable {
        /// The route's name.
        name: String,
    },
}

impl RouteCommand {
    /// Whether the command changes routes (and so can be a dry run).
    pub(crate) fn changes(&self) -> bool {
        !matches!(self, RouteCommand::List | RouteCommand::Get { .. })
    }
}

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// Write a ready-to-build plugin project (WIT, example source, build script, README) into
    /// DIR (default: ./NAME). Needs no running routerd.
    New {
        /// The plugin's name.
        name: String,
        /// The guest language.
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        /// Where to write it (must not exist, or be empty).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Upload a WebAssembly component; routerd validates and compiles it before it replaces
    /// a plugin of the same name.
    Load(LoadArgs),
    /// Make a plugin's shadow or canary version the live one (installed as `load` installs).
    Promote {
        /// The plugin's name.
        name: String,
    },
    /// Drop a plugin's shadow or canary version; the live one goes on alone.
    Discard {
        /// The plugin's name.
        name: String,
    },
    /// List the loaded plugins with their counters.
    List,
    /// Show one plugin: kind, sha256, size, settings, the routes using it, counters.
    Info {
        /// The plugin's name.
        name: String,
    },
    /// Unload a plugin.
    Unload {
        /// The plugin's name.
        name: String,
        /// Unload it even when routes use it (they are excluded until it comes back).
        #[arg(long)]
        force: bool,
    },
}

/// What `plugin load` uploads, and whether as a trial version beside the live one.
#[derive(Args)]
pub(crate) struct LoadArgs {
    /// The `.wasm` file.
    pub(crate) file: PathBuf,
    /// The plugin's name (default: the file name without `.wasm`).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Load it as a shadow of the loaded plugin of that name: the live version keeps
    /// deciding, the shadow runs on copies of its calls, after them, and routerd counts
    /// where the two agree and differ, per route (`plugin info`).
    #[arg(long, conflicts_with = "canary")]
    pub(crate) shadow: bool,
    /// The most of one core the shadow's calls may take (default 5); past it, calls are
    /// skipped (and counted) until the next second.
    #[arg(long, requires = "shadow", value_name = "PERCENT")]
    pub(crate) budget: Option<f64>,
    /// Load it as a canary: it decides for this share of calls (`5%`); if its failure
    /// rate exceeds the live version's by more than `--margin` points, routerd rolls it
    /// back by itself.
    #[arg(long, value_name = "PERCENT")]
    pub(crate) canary: Option<String>,
    /// What keeps a client on one version during a canary: `client` (its address) or
    /// `header:NAME`.
    #[arg(long, requires = "canary", value_name = "client|header:NAME")]
    pub(crate) sticky: Option<String>,
    /// How many points the canary's failure rate may exceed the live version's (default 5).
    #[arg(long, requires = "canary", value_name = "POINTS")]
    pub(crate) margin: Option<f64>,
}

/// A request to explain, written like curl's arguments.
#[derive(Args)]
pub(crate) struct MatchArgs {
    /// The request method, e.g. GET.
    pub(crate) method: String,
    /// `http://host[:port]/path?query`, or just `/path?query`.
    pub(crate) url: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// The request body (`@FILE` reads it from a file, `@-` from standard input).
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub(crate) body: Option<String>,
    /// The client's address, for `remote_addr` matchers.
    #[arg(long, value_name = "IP")]
    pub(crate) remote_addr: Option<String>,
}
