//! Drawing samples from a model natively: the core's [`Run`] taken to the end, a part of the
//! request at a time.

use std::ops::Range;

use anyhow::Result;
use burn::tensor::{Device, Tensor};
use emerge_core::{Classes, Model, Replay, SamplingRequest, StepOutput};

/// Host-side images in model space (values in [−1, 1]) with their `[B, C, H, W]` shape.
#[derive(Debug, Clone)]
pub struct Images {
    pub values: Vec<f32>,
    pub shape: [usize; 4],
}

impl Images {
    pub fn from_tensor(tensor: Tensor<4>) -> Result<Self> {
        let shape = tensor.dims();
        let values = tensor
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Self { values, shape })
    }
}

/// `columns` images per class, one row per class (or `columns` rows for an unconditional
/// model), with the model's recommended sampler and guidance: the training run's sample grids.
pub fn class_rows(model: &Model, columns: usize, seed: u64) -> SamplingRequest {
    let classes = model.config.unet.null_class().unwrap_or(0);
    let recommended = model.recommended();
    let (images, classes) = if classes > 0 {
        let labels = (0..classes * columns).map(|i| i / columns).collect();
        (classes * columns, Classes::Labels(labels))
    } else {
        (columns * columns, Classes::Unconditional)
    };
    SamplingRequest {
        seed,
        images,
        classes,
        start: None,
        ..recommended
    }
}

/// The parts of a request of `images` images drawn at most `batch` at a time. An image's pixels
/// do not depend on the part it is drawn in.
pub fn parts(images: usize, batch: usize) -> impl Iterator<Item = Range<usize>> {
    let batch = batch.max(1);
    (0..images)
        .step_by(batch)
        .map(move |start| start..(start + batch).min(images))
}

/// How a run on a GPU executes its steps (on the CPU every step is computed afresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepping {
    /// The step is recorded on the device once and replayed ([`emerge_core::recorded`]).
    Recorded,
    /// Every kernel is launched afresh each step.
    Plain,
}

/// Runs images `part` of `request` to the end; `on_step` sees every step's output (for
/// trajectories).
pub fn generate(
    model: &Model,
    request: &SamplingRequest,
    part: Range<usize>,
    stepping: Stepping,
    mut on_step: impl FnMut(&StepOutput),
) -> Result<Images> {
    let device = burn::module::Module::devices(&model.unet)
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    let mut run = model.start(request, part, &device)?;
    if stepping == Stepping::Recorded && device != Device::flex() {
        say_once(match pollster::block_on(run.record(model)) {
            Ok((replay, first)) => {
                on_step(&first);
                match replay {
                    Replay::Recorded => "the GPU replays one recorded step for every step".into(),
                    Replay::Plain(reason) => format!("the GPU runs every step afresh ({reason})"),
                }
            }
            Err(e) => format!("the GPU runs every step afresh ({e})"),
        });
    }
    Images::from_tensor(run.finish(model, on_step)?)
}

/// Prints how the GPU steps, once per process (the first run says it for all).
fn say_once(how: String) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("note: {how}"));
}
