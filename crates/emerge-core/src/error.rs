//! The one error type of the core library: every failure a user can cause is one of these,
//! with a message that names the problem (a panic in wasm would kill the page's module).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EmergeError {
    /// A configuration that cannot describe a working model or schedule.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An argument outside what the call accepts (a timestep past T, a class the model lacks, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A weight file that cannot be read: truncated, corrupted, or not made for this model.
    #[error("bad weight file: {0}")]
    BadWeights(String),
    /// The device failed to run or record work (a lost GPU, a graph it cannot record).
    #[error("device: {0}")]
    Device(String),
    /// A sampling run that has already produced its final image.
    #[error("sampling is finished: all {0} steps have run")]
    Finished(usize),
    /// Reading or writing a file failed (the OS's reason is the error's source, so that a chain
    /// printed with its sources says it once).
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}
