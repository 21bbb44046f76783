//! `minyi-handler`: the dispatch client for street-office and department handlers.

use std::process::ExitCode;

use clap::Parser;
use minyi::handler::Cli;

fn main() -> ExitCode {
    // Usage errors end here, with clap's message and exit code 2.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(minyi::handler::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
