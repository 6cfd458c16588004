use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match emerge::cli::run(emerge::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
