//! The `routerd` command: reads its flags into [`Settings`] and runs the daemon the library
//! assembles ([`routerd::app::run`]).

use clap::Parser;
use routerd::app::Settings;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    routerd::app::run(Settings::parse())
}
