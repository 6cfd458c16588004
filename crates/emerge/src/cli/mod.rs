//! The command-line interface: the arguments ([`args`]) and one module per command, each a
//! `run` function of that command's arguments.

pub mod args;
mod bench;
mod check_devices;
mod eval;
mod export;
mod import;
mod recommend;
mod repack;
mod sample;
mod train;
mod train_classifier;

use anyhow::Result;

pub use args::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
        Command::Recommend(args) => recommend::run(args),
        Command::Repack(args) => repack::run(args),
        Command::Bench(args) => bench::run(args),
        Command::TrainClassifier(args) => train_classifier::run(args),
        Command::Eval(args) => eval::run(args),
        Command::CheckDevices(args) => check_devices::run(args),
    }
}
