//! The emerge command line: train, sample, evaluate, export and benchmark the DDPM of
//! `emerge-core` natively on the CPU (burn's Flex backend) or on a GPU through wgpu (`--device gpu`).

pub mod check;
pub mod classifier;
pub mod cli;
pub mod devices;
pub mod eval;
pub mod frechet;
pub mod images;
pub mod import;
pub mod manifest;
pub mod mnist;
pub mod model_file;
pub mod publish;
pub mod sample;
pub mod train;
