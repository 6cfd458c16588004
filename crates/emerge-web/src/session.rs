//! What the page draws of a run: each step's x_t and x̂_0 read back (asynchronously) as RGBA
//! grids.

use burn::tensor::Tensor;
use emerge_core::image::rgba_grid_part;
use emerge_core::{EmergeError, NoiseSchedule};
use serde::Serialize;

use crate::readback::read_values;

/// What the page draws after a step (to the page: an object with these fields, the pixels as
/// `Uint8Array`s).
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// The timestep the last step started from (or the noise level of a noised image).
    pub timestep: usize,
    /// Steps done and in all.
    pub step: usize,
    pub total: usize,
    pub width: usize,
    pub height: usize,
    /// x_t after the step (x_{t−1}), as an RGBA grid.
    #[serde(with = "serde_bytes")]
    pub sample: Vec<u8>,
    /// The predicted x_0, as an RGBA grid (empty for a noised-image preview).
    #[serde(with = "serde_bytes")]
    pub prediction: Vec<u8>,
    /// ᾱ_t and SNR(t) = ᾱ_t/(1 − ᾱ_t) of `timestep`.
    pub alpha_bar: f64,
    pub snr: f64,
}

/// Pixels between the grid's images (and around them).
pub const GRID_GAP: usize = 1;

/// Grid columns for a batch: as square as possible.
fn columns(batch: usize) -> usize {
    (batch as f64).sqrt().ceil() as usize
}

impl Frame {
    /// Reads `sample` (and `prediction`) back from the device in one asynchronous transaction.
    /// `slice`: the first image and the number of images of the run the batch is a slice of
    /// (None: the batch is all of it); the grids are the run's, with the other images' cells
    /// transparent.
    pub async fn read(
        sample: Tensor<4>,
        prediction: Option<Tensor<4>>,
        timestep: usize,
        (step, total): (usize, usize),
        slice: Option<(usize, usize)>,
        schedule: &NoiseSchedule,
    ) -> Result<Self, EmergeError> {
        let shape = sample.dims();
        let (first, images) = slice.unwrap_or((0, shape[0]));
        let has_prediction = prediction.is_some();
        let values =
            read_values([Some(sample), prediction].into_iter().flatten().collect()).await?;
        let mut grids = values
            .iter()
            .map(|v| rgba_grid_part(v, shape, first, images, columns(images), GRID_GAP));
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

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::Device;
    use emerge_core::weights::{self, Precision};
    use emerge_core::{Classes, Guidance, Model, ModelConfig, SamplerKind, SamplingRequest, UNet};

    use super::*;

    pub fn tiny_model() -> Model {
        let device = Device::flex();
        let config = ModelConfig::preset("tiny").unwrap();
        let unet = UNet::new(&config.unet, &device).unwrap();
        Model::from_bytes(
            weights::to_bytes(&unet, &config, Precision::F16).unwrap(),
            &device,
        )
        .unwrap()
    }

    #[test]
    fn a_run_steps_to_the_end_and_frames_are_rgba_grids() {
        let device = Device::flex();
        let model = tiny_model();
        let request = SamplingRequest {
            sampler: SamplerKind::Ddim { eta: 0.0 },
            steps: 6,
            seed: 5,
            images: 4,
            classes: Classes::EachInTurn,
            guidance: Guidance::everywhere(2.0),
            start: None,
        };
        let mut run = model.start(&request, 0..4, &device).unwrap();
        let mut frames = Vec::new();
        while !run.is_finished() {
            let out = run.advance(&model, 4).unwrap();
            let frame = pollster::block_on(Frame::read(
                out.prev_sample,
                Some(out.pred_original_sample),
                out.timestep,
                run.progress(),
                None,
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
            run.advance(&model, 1)
                .unwrap_err()
                .to_string()
                .contains("finished")
        );
    }
}
