//! emerge-core: the whole DDPM (Ho, Jain & Abbeel 2020) on burn, backend-neutral.
//!
//! - [`schedule`]: β schedules and every per-timestep table, in f64.
//! - [`forward`]: q(x_t | x_0), [`NoiseSchedule::add_noise`].
//! - [`sampler`]: DDPM, DDIM and DPM-Solver++(2M) as step-by-step state machines, each image
//!   reproducible from (seed, index) whatever its batch.
//! - [`request`]: the loaded [`Model`] and the one [`SamplingRequest`] every boundary speaks.
//! - [`update`]: every sampler's step as one affine update with per-step coefficients.
//! - [`recorded`]: a run's step recorded once on the device and replayed for every step.
//! - [`guidance`]: classifier-free guidance around the UNet.
//! - [`training`]: DDPM training one step at a time (L_simple, AdamW, EMA, label dropout).
//! - [`lesson`]: one training example as the network sees it, and its loss.
//! - [`unet`]: the diffusers-layout UNet and its presets.
//! - [`weights`]: self-describing f16 model files.
//!
//! Nothing here knows about the browser: the same code trains natively and samples in wasm.

pub mod atomic_file;
#[cfg(feature = "gpu")]
pub(crate) mod cube_op;
pub mod error;
pub mod forward;
pub mod guidance;
pub mod image;
pub mod lesson;
pub mod model;
pub mod noise;
pub mod recorded;
pub mod request;
pub mod sampler;
pub mod schedule;
pub mod tensor_util;
#[cfg(feature = "training")]
pub mod training;
pub mod unet;
pub mod update;
#[cfg(feature = "gpu")]
mod update_kernel;
pub mod weights;

pub use error::EmergeError;
pub use guidance::{Conditioning, Denoiser, Guidance, MAX_GUIDANCE, guided_noise};
pub use lesson::Lesson;
pub use model::ModelConfig;
pub use noise::{GaussianNoise, ImageNoise};
pub use recorded::Replay;
pub use request::{Classes, Model, Run, SamplingRequest, StartImage};
pub use sampler::{NoisePredictor, Sampler, SamplerKind, Sampling, StepOutput};
pub use schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig, VarianceType};
pub use unet::{UNet, UNetConfig};
