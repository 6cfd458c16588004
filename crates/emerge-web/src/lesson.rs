//! The "how it learns" view: one real digit, one noise ε and one t, everything the network sees
//! and answers at that training step, and its loss over a grid of t.

use burn::tensor::{Device, Int, Tensor, TensorData};
use emerge_core::image::rgba_grid;
use emerge_core::lesson::image_error;
use emerge_core::{EmergeError, Lesson, Model};
use serde::Serialize;

use crate::options::checked_class;
use crate::readback::read_values;

/// One image's training step, as RGBA images and numbers.
#[derive(Debug, Clone, Serialize)]
pub struct LessonFrame {
    pub timestep: usize,
    pub width: usize,
    pub height: usize,
    /// x_0, the real digit.
    #[serde(with = "serde_bytes")]
    pub original: Vec<u8>,
    /// ε, drawn at half scale (white = +2).
    #[serde(with = "serde_bytes")]
    pub noise: Vec<u8>,
    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
    #[serde(with = "serde_bytes")]
    pub noisy: Vec<u8>,
    /// ε_θ(x_t, t), at the same half scale as ε.
    #[serde(with = "serde_bytes")]
    pub predicted_noise: Vec<u8>,
    /// x̂_0 implied by ε_θ.
    #[serde(with = "serde_bytes")]
    pub prediction: Vec<u8>,
    /// ‖ε − ε_θ‖² averaged over pixels: L_simple (DDPM eq. 14) for this image.
    pub noise_loss: f64,
    /// ‖x_0 − x̂_0‖² averaged over pixels.
    pub image_error: f64,
    pub alpha_bar: f64,
    pub snr: f64,
}

/// Both losses at each timestep of a grid, for the same digit and the same ε.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossCurve {
    pub timesteps: Vec<usize>,
    pub noise_loss: Vec<f32>,
    pub image_error: Vec<f32>,
}

/// What a lesson needs: the model, the digit's pixels and class, and the seed of ε.
pub struct LessonInput<'a> {
    pub model: &'a Model,
    pub pixels: &'a [u8],
    /// The digit's class for a conditional model (the training pairs each image with its label).
    pub label: Option<usize>,
    pub seed: u64,
}

impl LessonInput<'_> {
    /// The lesson at each of `timesteps`, one image per timestep, all with the same x_0 and ε.
    fn lesson(
        &self,
        timesteps: &[usize],
        device: &Device,
    ) -> Result<(Tensor<4>, Lesson), EmergeError> {
        let schedule = &self.model.schedule;
        for &t in timesteps {
            schedule.check_timestep(t)?;
        }
        let batch = timesteps.len();
        let original = self.model.image(self.pixels, device)?;
        // image 0's stream of the seed: the ε the forward view and SDEdit draw for it
        let noise = emerge_core::tensor_util::image_gaussian(
            &mut emerge_core::ImageNoise::new(self.seed, 0..1),
            original.dims(),
            device,
        )?;
        let labels = self.labels(batch, device)?;
        let original = original.repeat_dim(0, batch);
        let lesson = Lesson::new(
            &self.model.unet,
            schedule,
            original.clone(),
            noise.repeat_dim(0, batch),
            timesteps,
            labels,
        )?;
        Ok((original, lesson))
    }

    fn labels(&self, batch: usize, device: &Device) -> Result<Option<Tensor<1, Int>>, EmergeError> {
        let Some((null, label)) = checked_class(&self.model.config.unet, self.label)? else {
            return Ok(None);
        };
        let label = label.unwrap_or(null);
        Ok(Some(Tensor::from_data(
            TensorData::new(vec![label as i64; batch], [batch]),
            device,
        )))
    }

    /// Everything the network sees and answers at timestep `t`.
    pub async fn frame(&self, t: usize, device: &Device) -> Result<LessonFrame, EmergeError> {
        let schedule = &self.model.schedule;
        let (original, lesson) = self.lesson(&[t], device)?;
        let prediction = lesson.predicted_original(schedule);
        let shape = original.dims();
        // One transaction: the five images, then the two losses.
        let mut values = read_values(vec![
            original.clone(),
            lesson.noise.clone().div_scalar(2.0),
            lesson.noisy.clone(),
            lesson.predicted_noise.clone().div_scalar(2.0),
            prediction.clone(),
            lesson.noise_loss().reshape([1, 1, 1, 1]),
            image_error(original, prediction).reshape([1, 1, 1, 1]),
        ])
        .await?;
        let losses = values.split_off(5);
        let loss = |i: usize| losses[i].first().copied().unwrap_or(f32::NAN) as f64;
        let mut images = values.iter().map(|v| rgba_grid(v, shape, 1, 0));
        let mut next = || images.next().map(|(rgba, _, _)| rgba).unwrap_or_default();
        Ok(LessonFrame {
            timestep: t,
            width: shape[3],
            height: shape[2],
            original: next(),
            noise: next(),
            noisy: next(),
            predicted_noise: next(),
            prediction: next(),
            noise_loss: loss(0),
            image_error: loss(1),
            alpha_bar: schedule.alphas_cumprod[t],
            snr: schedule.snr(t),
        })
    }

    /// Both losses at `points` timesteps spread evenly over 0..T, in one batch.
    pub async fn curve(&self, points: usize, device: &Device) -> Result<LossCurve, EmergeError> {
        let last = self.model.schedule.num_train_timesteps() - 1;
        if !(2..=64).contains(&points) {
            return Err(EmergeError::InvalidArgument(format!(
                "a loss curve takes 2 to 64 points, got {points}"
            )));
        }
        let timesteps: Vec<usize> = (0..points)
            .map(|i| (i * last + (points - 1) / 2) / (points - 1))
            .collect();
        let (original, lesson) = self.lesson(&timesteps, device)?;
        let prediction = lesson.predicted_original(&self.model.schedule);
        let n = timesteps.len();
        let mut values = read_values(vec![
            lesson.noise_loss().reshape([n, 1, 1, 1]),
            image_error(original, prediction).reshape([n, 1, 1, 1]),
        ])
        .await?
        .into_iter();
        Ok(LossCurve {
            timesteps,
            noise_loss: values.next().unwrap_or_default(),
            image_error: values.next().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::tiny_model;

    fn input(model: &Model, label: Option<usize>) -> LessonInput<'_> {
        LessonInput {
            model,
            pixels: &[0u8; 64],
            label,
            seed: 3,
        }
    }

    #[test]
    fn a_lesson_frame_holds_five_images_and_finite_losses() {
        let device = Device::flex();
        let model = tiny_model();
        let frame = pollster::block_on(input(&model, Some(2)).frame(400, &device)).unwrap();
        for image in [
            &frame.original,
            &frame.noise,
            &frame.noisy,
            &frame.predicted_noise,
            &frame.prediction,
        ] {
            assert_eq!(image.len(), 8 * 8 * 4);
        }
        assert!(frame.original.chunks(4).all(|p| p == [0, 0, 0, 255]));
        assert_ne!(frame.noisy, frame.original);
        assert!(frame.noise_loss.is_finite() && frame.noise_loss > 0.0);
        assert!(frame.image_error.is_finite());
        assert_eq!(frame.alpha_bar, model.schedule.alphas_cumprod[400]);
    }

    #[test]
    fn the_curve_spans_every_timestep_and_matches_single_frames() {
        let device = Device::flex();
        let model = tiny_model();
        let lesson = input(&model, None);
        let curve = pollster::block_on(lesson.curve(5, &device)).unwrap();
        assert_eq!(curve.timesteps, vec![0, 250, 500, 749, 999]);
        let single = pollster::block_on(lesson.frame(500, &device)).unwrap();
        assert!((curve.noise_loss[2] as f64 - single.noise_loss).abs() < 1e-4);
        assert!((curve.image_error[2] as f64 - single.image_error).abs() < 1e-4);
        assert!(
            pollster::block_on(lesson.curve(1, &device))
                .unwrap_err()
                .to_string()
                .contains("2 to 64 points")
        );
    }

    #[test]
    fn new_noise_gives_a_new_loss() {
        let device = Device::flex();
        let model = tiny_model();
        let loss = |seed| {
            let lesson = LessonInput {
                seed,
                ..input(&model, None)
            };
            pollster::block_on(lesson.frame(900, &device))
                .unwrap()
                .noise_loss
        };
        assert_eq!(loss(3), loss(3));
        assert_ne!(loss(3), loss(4));
    }

    #[test]
    fn bad_classes_and_timesteps_are_named() {
        let device = Device::flex();
        let model = tiny_model();
        let err = |label, t| {
            pollster::block_on(input(&model, label).frame(t, &device))
                .unwrap_err()
                .to_string()
        };
        assert!(err(Some(10), 5).contains("class 10 is out of range"));
        assert!(err(None, 1000).contains("timestep 1000"));
    }
}
