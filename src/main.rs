//! The `ponder` binary.

mod cli;

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::args::{Cli, Command, LogFormat};

fn main() {
    let cli = Cli::parse();
    let level = if cli.global.quiet {
        "warn"
    } else {
        match cli.global.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("PONDER_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let quiet = cli.global.quiet;
    match cli.command {
        Command::Search(a) => cli::commands::search::run(a, quiet),
        Command::Eval(a) => cli::commands::eval::run(a, quiet),
        Command::Generate(a) => cli::commands::generate::run(a, quiet),
        Command::Bench(c) => cli::commands::bench::run(c),
        Command::CheckConfig(a) => cli::commands::check_config::run(a),
        Command::Problems(a) => cli::commands::problems::run(a),
        Command::TrainCritic(a) => cli::commands::critic::train(a, quiet),
        Command::EvalCritic(a) => cli::commands::critic::eval(a, quiet),
        Command::Dpo(a) => cli::commands::dpo::run(a, quiet),
        Command::Iterate(a) => cli::commands::iterate::run(a, quiet),
        Command::Merge(a) => cli::commands::merge::run(a, quiet),
        Command::View(a) => cli::commands::view::run(a, quiet),
        Command::Serve(a) => cli::commands::serve::run(a),
    }
}
