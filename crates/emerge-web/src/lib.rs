//! emerge-web: the thin adapter between the page's worker and `emerge-core`. It picks a device
//! (WebGPU, else Flex on the CPU), loads model bytes, drives a sampler one step at a time and
//! hands back RGBA pixels. All reads are asynchronous and every failure is a JS `Error` with a
//! message: nothing here may panic, since a panic kills the module for the page's lifetime.

mod device;
mod layout;
mod lesson;
mod options;
mod readback;
mod session;
#[cfg(all(target_arch = "wasm32", feature = "trainer"))]
mod training;
#[cfg(target_arch = "wasm32")]
mod web;

pub use device::DeviceInfo;
pub use layout::channels_last_kernels;
pub use lesson::{LessonFrame, LessonInput, LossCurve};
pub use options::{Limits, MAX_BATCH, ScheduleCurves, page_request};
pub use session::Frame;
