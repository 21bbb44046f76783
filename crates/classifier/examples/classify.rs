//! Stand-alone `classify` for development and benchmarks:
//! `cargo run --release -p minyi-classifier --example classify -- cv --data train.csv --folds 5`.

use clap::Parser;
use minyi_classifier::cli::{ClassifyArgs, run};

#[derive(Parser)]
#[command(name = "classify")]
struct Cli {
    #[command(flatten)]
    args: ClassifyArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match run(&cli.args, &mut stdout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
