//! `routerctl`: the command-line client of routerd's admin API.

use clap::Parser;

/// Manage a running routerd through its admin API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The admin API's base URL.
    #[arg(long, env = "ROUTERCTL_ADMIN", default_value = "http://127.0.0.1:9090")]
    admin: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "routerctl has no subcommands yet; the admin API at {} serves GET /healthz and GET /api/v1/routes",
        cli.admin
    )
}
