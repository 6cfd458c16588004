//! One sampling run as the page sees it: started from noise or from a noised real digit,
//! advanced a few steps at a time, each result read back (asynchronously) as RGBA grids.

use burn::tensor::{Device, Tensor};
use emerge_core::image::{image_tensor, rgba_grid};
use emerge_core::{
    Conditioning, Denoiser, EmergeError, ModelConfig, NoiseSchedule, Sampler, Sampling, UNet,
};

use crate::options::SamplingOptions;
use crate::readback::read_values;

/// A loaded model.
pub struct Model {
    pub config: ModelConfig,
    pub unet: UNet,
    pub schedule: NoiseSchedule,
}

impl Model {
    pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<Self, EmergeError> {
        let (config, unet) = emerge_core::weights::from_bytes(bytes, device)?;
        let schedule = config.noise_schedule()?;
        Ok(Self {
            config,
            unet,
            schedule,
        })
    }

    /// One u8 image (row-major, C×H×W) as a `[1, C, H, W]` tensor in model space.
    pub fn image(&self, pixels: &[u8], device: &Device) -> Result<Tensor<4>, EmergeError> {
        let unet = &self.config.unet;
        image_tensor(
            pixels,
            [unet.in_channels, unet.sample_size, unet.sample_size],
            device,
        )
    }

    /// x_t ~ q(x_t | x_0) for one u8 image, with noise from `seed`.
    pub fn noise_image(
        &self,
        pixels: &[u8],
        t: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor<4>, EmergeError> {
        self.schedule
            .add_seeded_noise(self.image(pixels, device)?, t, seed)
    }
}

/// What the page draws after a step.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The timestep the last step started from (or the noise level of a noised image).
    pub timestep: usize,
    /// Steps done and in all.
    pub step: usize,
    pub total: usize,
    pub width: usize,
    pub height: usize,
    /// x_t after the step (x_{t−1}), as an RGBA grid.
    pub sample: Vec<u8>,
    /// The predicted x_0, as an RGBA grid (empty for a noised-image preview).
    pub prediction: Vec<u8>,
    /// ᾱ_t and SNR(t) = ᾱ_t/(1 − ᾱ_t) of `timestep`.
    pub alpha_bar: f64,
    pub snr: f64,
}

/// Grid columns for a batch: as square as possible.
fn columns(batch: usize) -> usize {
    (batch as f64).sqrt().ceil() as usize
}

impl Frame {
    /// Reads `sample` (and `prediction`) back from the device in one asynchronous transaction.
    pub async fn read(
        sample: Tensor<4>,
        prediction: Option<Tensor<4>>,
        timestep: usize,
        (step, total): (usize, usize),
        schedule: &NoiseSchedule,
    ) -> Result<Self, EmergeError> {
        let shape = sample.dims();
        let has_prediction = prediction.is_some();
        let values =
            read_values([Some(sample), prediction].into_iter().flatten().collect()).await?;
        let mut grids = values
            .iter()
            .map(|v| rgba_grid(v, shape, columns(shape[0]), 1));
        let (sample, width, height) = grids.next().unwrap_or_default();
        let prediction = if has_prediction {
            grids.next().unwrap_or_default().0
        } else {
            Vec::new()
        };
        Ok(Self {
            timestep,
            step,
            total,
            width,
            height,
            sample,
            prediction,
            alpha_bar: schedule.alphas_cumprod[timestep],
            snr: schedule.snr(timestep),
        })
    }
}

/// A sampling run in progress.
pub struct Session {
    sampling: Sampling,
    conditioning: Conditioning,
}

impl Session {
    /// Starts from pure noise.
    pub fn start(
        model: &Model,
        options: &SamplingOptions,
        device: &Device,
    ) -> Result<Self, EmergeError> {
        let conditioning = options.conditioning(&model.config.unet)?;
        let sampler = Sampler::new(
            model.schedule.clone(),
            options.sampler_kind()?,
            options.steps,
        )?;
        let unet = &model.config.unet;
        let shape = [
            options.batch,
            unet.in_channels,
            unet.sample_size,
            unet.sample_size,
        ];
        Ok(Self {
            sampling: Sampling::from_noise(sampler, shape, options.seed, device),
            conditioning,
        })
    }

    /// Starts from a real image or a sketch noised to timestep `t` (SDEdit): the first image's
    /// x_t is the one the forward-process view shows for this seed; the others get their own ε.
    pub fn from_image(
        model: &Model,
        pixels: &[u8],
        t: usize,
        options: &SamplingOptions,
        device: &Device,
    ) -> Result<Self, EmergeError> {
        let conditioning = options.conditioning(&model.config.unet)?;
        let original = model.image(pixels, device)?.repeat_dim(0, options.batch);
        Ok(Self {
            sampling: Sampling::from_image(
                model.schedule.clone(),
                options.sampler_kind()?,
                options.steps,
                t,
                original,
                options.seed,
            )?,
            conditioning,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.sampling.is_finished()
    }

    pub fn progress(&self) -> (usize, usize) {
        self.sampling.progress()
    }

    /// Runs up to `count` steps; returns the last step's output (x_{t−1}, x̂_0, t).
    pub fn advance(
        &mut self,
        model: &Model,
        count: usize,
    ) -> Result<emerge_core::StepOutput, EmergeError> {
        let denoiser = Denoiser::new(&model.unet, &model.config.unet, self.conditioning.clone())?;
        let mut last = self.sampling.step_with(&denoiser)?;
        for _ in 1..count.max(1) {
            if self.sampling.is_finished() {
                break;
            }
            last = self.sampling.step_with(&denoiser)?;
        }
        Ok(last)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use emerge_core::UNetConfig;
    use emerge_core::weights::{self, Precision};

    use super::*;

    pub fn tiny_model() -> Model {
        let device = Device::flex();
        let config = ModelConfig {
            unet: UNetConfig::tiny(),
            schedule: Default::default(),
        };
        let unet = UNet::new(&config.unet, &device).unwrap();
        Model::from_bytes(
            weights::to_bytes(&unet, &config, Precision::Half).unwrap(),
            &device,
        )
        .unwrap()
    }

    fn options(batch: usize, steps: usize) -> SamplingOptions {
        SamplingOptions {
            sampler: "ddim".into(),
            steps,
            eta: 0.0,
            seed: 5,
            batch,
            class: None,
            guidance: 2.0,
            guidance_interval: None,
        }
    }

    #[test]
    fn a_session_steps_to_the_end_and_frames_are_rgba_grids() {
        let device = Device::flex();
        let model = tiny_model();
        let mut session = Session::start(&model, &options(4, 6), &device).unwrap();
        let mut frames = Vec::new();
        while !session.is_finished() {
            let out = session.advance(&model, 4).unwrap();
            let frame = pollster::block_on(Frame::read(
                out.prev_sample,
                Some(out.pred_original_sample),
                out.timestep,
                session.progress(),
                &model.schedule,
            ))
            .unwrap();
            frames.push(frame);
        }
        assert_eq!(frames.len(), 2, "6 steps, 4 per draw");
        let last = frames.last().unwrap();
        assert_eq!((last.step, last.total, last.timestep), (6, 6, 0));
        // 4 images of 8×8 in a 2×2 grid with 1-pixel gaps: 19×19.
        assert_eq!((last.width, last.height), (19, 19));
        assert_eq!(last.sample.len(), 19 * 19 * 4);
        assert_eq!(last.prediction.len(), last.sample.len());
        assert_ne!(frames[0].sample, last.sample);
        assert!(
            session
                .advance(&model, 1)
                .unwrap_err()
                .to_string()
                .contains("finished")
        );
    }

    #[test]
    fn denoising_from_a_noised_image_starts_at_its_timestep() {
        let device = Device::flex();
        let model = tiny_model();
        let pixels = vec![200u8; 64];
        let x_t = model.noise_image(&pixels, 300, 9, &device).unwrap();
        let mut session =
            Session::from_image(&model, &pixels, 300, &options(2, 10), &device).unwrap();
        let out = session.advance(&model, 1).unwrap();
        assert_eq!(out.timestep, 300);
        assert_eq!(session.progress(), (1, 10));
        assert_eq!(x_t.dims(), [1, 1, 8, 8]);
        let err = model
            .noise_image(&pixels[..10], 300, 9, &device)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10 values"), "{err}");
        assert!(Session::from_image(&model, &pixels, 1000, &options(2, 10), &device).is_err());
    }
}
