//! Drawing samples from a model natively: the same core sampler the page drives, run to the end.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use emerge_core::image::image_tensor;
use emerge_core::{
    Conditioning, Denoiser, Guidance, ModelConfig, Sampler, SamplerKind, Sampling, StepOutput,
    UNet, UNetConfig,
};

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

/// What to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    pub count: usize,
    pub seed: u64,
    pub sampler: SamplerKind,
    pub steps: usize,
    /// One class per sample for a conditional model; `None` samples unconditionally.
    pub labels: Option<Vec<usize>>,
    pub guidance: Guidance,
    /// Start from this image noised to a timestep (SDEdit) instead of from pure noise.
    pub start: Option<StartImage>,
}

/// SDEdit's starting point: one u8 image (C×H×W) to be noised to `timestep`.
#[derive(Debug, Clone, PartialEq)]
pub struct StartImage {
    pub pixels: Vec<u8>,
    pub timestep: usize,
}

impl SampleRequest {
    /// One row of `columns` samples per class (DDIM η = 1, 50 steps, the default guidance), or `columns` rows of
    /// unconditional samples for an unconditional model.
    pub fn class_rows(config: &UNetConfig, columns: usize, seed: u64) -> Self {
        let classes = config.null_class().unwrap_or(0);
        let labels = (classes > 0).then(|| {
            (0..classes)
                .flat_map(|c| std::iter::repeat_n(c, columns))
                .collect::<Vec<_>>()
        });
        let count = labels.as_ref().map_or(columns * columns, Vec::len);
        Self {
            count,
            seed,
            sampler: SamplerKind::Ddim { eta: 1.0 },
            steps: 50,
            labels,
            guidance: crate::manifest::DEFAULT_GUIDANCE,
            start: None,
        }
    }

    fn conditioning(&self) -> Conditioning {
        match &self.labels {
            Some(labels) => Conditioning::Classes {
                labels: labels.clone(),
                guidance: self.guidance,
            },
            None => Conditioning::Unconditional,
        }
    }
}

impl SampleRequest {
    /// The requests of a run split into batches of at most `batch` images: batch k draws its
    /// noise from seed + k, so a run that fits one batch is the unsplit run.
    pub fn batches(&self, batch: usize) -> impl Iterator<Item = SampleRequest> + '_ {
        let batch = batch.max(1);
        (0..self.count)
            .step_by(batch)
            .enumerate()
            .map(move |(k, start)| {
                let n = (self.count - start).min(batch);
                SampleRequest {
                    count: n,
                    seed: self.seed.wrapping_add(k as u64),
                    labels: self.labels.as_ref().map(|l| l[start..start + n].to_vec()),
                    ..self.clone()
                }
            })
    }
}

/// Runs the sampler to the end; `on_step` sees every step's output (for trajectories).
pub fn generate(
    unet: &UNet,
    config: &ModelConfig,
    request: &SampleRequest,
    mut on_step: impl FnMut(&StepOutput),
) -> Result<Images> {
    let device = unet
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    let denoiser = Denoiser::new(unet, &config.unet, request.conditioning())?;
    let schedule = config.noise_schedule()?;
    let size = config.unet.sample_size;
    let mut run = match &request.start {
        None => Sampling::from_noise(
            Sampler::new(schedule, request.sampler, request.steps)?,
            [request.count, config.unet.in_channels, size, size],
            request.seed,
            &device,
        ),
        Some(start) => {
            let image = image_tensor(
                &start.pixels,
                [config.unet.in_channels, size, size],
                &device,
            )?;
            Sampling::from_image(
                schedule,
                request.sampler,
                request.steps,
                start.timestep,
                image.repeat_dim(0, request.count),
                request.seed,
            )?
        }
    };
    while !run.is_finished() {
        let output = run.step_with(&denoiser)?;
        on_step(&output);
    }
    Images::from_tensor(run.sample().clone())
}
