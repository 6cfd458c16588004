//! One training example as the network meets it (DDPM Algorithm 1): a clean x_0 and a noise ε,
//! the noisy x_t built from them, the network's guess ε_θ(x_t, t), and how far off it is.
//! Training minimises exactly this; the page's "how it learns" view shows it, one image at a time.

use burn::tensor::{Int, Tensor};

use crate::error::EmergeError;
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;

/// x_t, ε and ε_θ(x_t, t) for a batch with one timestep per image.
#[derive(Debug, Clone)]
pub struct Lesson {
    pub timesteps: Vec<usize>,
    /// ε ~ N(0, I), what the network should find.
    pub noise: Tensor<4>,
    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε  (DDPM eq. 4).
    pub noisy: Tensor<4>,
    /// ε_θ(x_t, t), the network's guess.
    pub predicted_noise: Tensor<4>,
}

impl Lesson {
    /// Noises `original` (x_0) with `noise` at `timesteps` and asks `unet` for ε_θ(x_t, t, y);
    /// `labels` are the class of each image (the null class for none) for a conditional model.
    pub fn new(
        unet: &UNet,
        schedule: &NoiseSchedule,
        original: Tensor<4>,
        noise: Tensor<4>,
        timesteps: &[usize],
        labels: Option<Tensor<1, Int>>,
    ) -> Result<Self, EmergeError> {
        let noisy = schedule.add_noise(original, noise.clone(), timesteps)?;
        let device = noisy.device();
        let t: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
        let t =
            Tensor::<1>::from_data(burn::tensor::TensorData::new(t, [timesteps.len()]), &device);
        let predicted_noise = unet.forward(noisy.clone(), t, labels);
        Ok(Self {
            timesteps: timesteps.to_vec(),
            noise,
            noisy,
            predicted_noise,
        })
    }

    /// ‖ε − ε_θ(x_t, t)‖² per image, averaged over its pixels: L_simple  (DDPM eq. 14).
    pub fn noise_loss(&self) -> Tensor<1> {
        per_image_mean((self.noise.clone() - self.predicted_noise.clone()).square())
    }

    /// x̂_0, the clean image the guess implies  (DDPM eq. 15), clipped to the data range when
    /// the schedule clips (as the samplers' previews are).
    pub fn predicted_original(&self, schedule: &NoiseSchedule) -> Tensor<4> {
        let x0 = schedule.predict_original_sample(
            self.noisy.clone(),
            self.predicted_noise.clone(),
            &self.timesteps,
        );
        if schedule.config.clip_sample {
            x0.clamp(-1.0, 1.0)
        } else {
            x0
        }
    }
}

/// ‖x_0 − x̂_0‖² per image, averaged over its pixels: how far the implied clean image is from
/// the real one.
pub fn image_error(original: Tensor<4>, predicted: Tensor<4>) -> Tensor<1> {
    per_image_mean((original - predicted).square())
}

fn per_image_mean(values: Tensor<4>) -> Tensor<1> {
    values.flatten::<2>(1, 3).mean_dim(1).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::noise::GaussianNoise;
    use crate::schedule::ScheduleConfig;
    use crate::tensor_util::gaussian;
    use crate::unet::UNetConfig;

    #[test]
    fn the_loss_is_the_mean_squared_error_of_the_guess_per_image() {
        let device = Device::flex();
        let config = UNetConfig::tiny();
        let unet = UNet::new(&config, &device).unwrap();
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let shape = [
            2,
            config.in_channels,
            config.sample_size,
            config.sample_size,
        ];
        let x0 = gaussian(&mut GaussianNoise::new(1), shape, &device).clamp(-1.0, 1.0);
        let noise = gaussian(&mut GaussianNoise::new(2), shape, &device);
        let labels = config
            .num_class_embeds
            .map(|_| Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device));
        let lesson = Lesson::new(
            &unet,
            &schedule,
            x0.clone(),
            noise.clone(),
            &[5, 700],
            labels,
        )
        .unwrap();
        let loss = lesson.noise_loss().to_data().try_to_vec::<f32>().unwrap();
        let guess = lesson
            .predicted_noise
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        let truth = noise.to_data().try_to_vec::<f32>().unwrap();
        let n = guess.len() / 2;
        for (i, &l) in loss.iter().enumerate() {
            let expected = (i * n..(i + 1) * n)
                .map(|k| (truth[k] - guess[k]).powi(2))
                .sum::<f32>()
                / n as f32;
            assert!(
                (l - expected).abs() < 1e-4 * expected.max(1.0),
                "{l} vs {expected}"
            );
        }
        // A perfect guess would give back x_0 itself.
        let perfect = Lesson {
            predicted_noise: noise,
            ..lesson
        };
        let error = image_error(x0, perfect.predicted_original(&schedule))
            .max()
            .into_scalar::<f32>();
        assert!(error < 1e-6, "{error}");
    }
}
