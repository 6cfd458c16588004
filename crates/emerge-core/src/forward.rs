//! The forward (noising) process q(x_t | x_0), and its inversion given the noise.

use burn::tensor::Tensor;

use crate::error::EmergeError;
use crate::noise::ImageNoise;
use crate::schedule::NoiseSchedule;
use crate::tensor_util::{image_gaussian, per_sample};

impl NoiseSchedule {
    /// Samples x_t ~ q(x_t | x_0) for a batch with one timestep per sample:
    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε  (DDPM eq. 4, Algorithm 1).
    ///
    /// Shapes: `original_samples` and `noise` are `[B, C, H, W]`, `timesteps` has B entries.
    pub fn add_noise(
        &self,
        original_samples: Tensor<4>,
        noise: Tensor<4>,
        timesteps: &[usize],
    ) -> Result<Tensor<4>, EmergeError> {
        let [batch, ..] = original_samples.dims();
        if timesteps.len() != batch {
            return Err(EmergeError::InvalidArgument(format!(
                "add_noise got {} timesteps for a batch of {batch}",
                timesteps.len()
            )));
        }
        if noise.dims() != original_samples.dims() {
            return Err(EmergeError::InvalidArgument(format!(
                "noise shape {:?} differs from sample shape {:?}",
                noise.dims(),
                original_samples.dims()
            )));
        }
        for &t in timesteps {
            self.check_timestep(t)?;
        }
        let device = original_samples.device();
        let gather = |table: &[f64]| timesteps.iter().map(|&t| table[t] as f32).collect();
        let sqrt_alpha_prod = per_sample(gather(&self.sqrt_alphas_cumprod), &device); // [B, 1, 1, 1]
        let sqrt_one_minus_alpha_prod =
            per_sample(gather(&self.sqrt_one_minus_alphas_cumprod), &device);
        Ok(original_samples * sqrt_alpha_prod + noise * sqrt_one_minus_alpha_prod)
    }

    /// x_t ~ q(x_t | x_0) for every image of `original_samples` at one timestep, image i's ε
    /// the first draw of its stream in `noise`: the same x_t for the same seed and image
    /// everywhere (the forward view, "denoise from here", SDEdit).
    pub fn add_seeded_noise(
        &self,
        original_samples: Tensor<4>,
        timestep: usize,
        noise: &mut ImageNoise,
    ) -> Result<Tensor<4>, EmergeError> {
        let shape = original_samples.dims();
        let epsilon = image_gaussian(noise, shape, &original_samples.device())?;
        self.add_noise(original_samples, epsilon, &vec![timestep; shape[0]])
    }

    /// x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t, one timestep per sample  (DDPM eq. 15): the clean image
    /// a noise estimate ε implies, unclipped.
    pub fn predict_original_sample(
        &self,
        sample: Tensor<4>,
        noise: Tensor<4>,
        timesteps: &[usize],
    ) -> Tensor<4> {
        let device = sample.device();
        let gather = |table: &[f64]| timesteps.iter().map(|&t| table[t] as f32).collect();
        let sqrt_alpha_prod = per_sample(gather(&self.sqrt_alphas_cumprod), &device);
        let sqrt_one_minus_alpha_prod =
            per_sample(gather(&self.sqrt_one_minus_alphas_cumprod), &device);
        (sample - noise * sqrt_one_minus_alpha_prod) / sqrt_alpha_prod
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use crate::noise::GaussianNoise;
    use crate::schedule::{NoiseSchedule, ScheduleConfig};
    use crate::tensor_util::gaussian;

    use super::*;

    #[test]
    fn samples_of_x_t_have_the_forward_mean_and_variance() {
        let device = Device::flex();
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let (batch, pixels) = (4, 4096);
        // Fixed x_0: every pixel of sample i equals x0[i]; one timestep per sample.
        let x0 = [0.8f32, -0.5, 0.1, -1.0];
        let timesteps = [0usize, 150, 600, 999];
        let x0_data: Vec<f32> = x0
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, pixels))
            .collect();
        let original =
            Tensor::<4>::from_data(TensorData::new(x0_data, [batch, 1, 64, 64]), &device);
        let noise = gaussian(&mut GaussianNoise::new(3), [batch, 1, 64, 64], &device);
        let x_t = schedule.add_noise(original, noise, &timesteps).unwrap();
        let values = x_t.into_data().try_into_vec::<f32>().unwrap();
        for (i, &t) in timesteps.iter().enumerate() {
            let chunk = &values[i * pixels..(i + 1) * pixels];
            let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / pixels as f64;
            let var = chunk
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / pixels as f64;
            let expected_mean = schedule.sqrt_alphas_cumprod[t] * x0[i] as f64;
            let expected_var = 1.0 - schedule.alphas_cumprod[t];
            // Standard errors: √(var/n) for the mean, var·√(2/n) for the variance; allow 4 of each.
            assert!(
                (mean - expected_mean).abs() < 4.0 * (expected_var / pixels as f64).sqrt() + 1e-6,
                "t={t} mean {mean} vs {expected_mean}"
            );
            assert!(
                (var - expected_var).abs() < 4.0 * expected_var * (2.0 / pixels as f64).sqrt(),
                "t={t} var {var} vs {expected_var}"
            );
        }
    }

    #[test]
    fn the_noise_that_made_x_t_gives_back_x_0() {
        let device = Device::flex();
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let x0 = gaussian(&mut GaussianNoise::new(1), [3, 1, 8, 8], &device).clamp(-1.0, 1.0);
        let noise = gaussian(&mut GaussianNoise::new(2), [3, 1, 8, 8], &device);
        let timesteps = [10, 400, 900];
        let x_t = schedule
            .add_noise(x0.clone(), noise.clone(), &timesteps)
            .unwrap();
        let back = schedule.predict_original_sample(x_t, noise, &timesteps);
        let error = (back - x0).abs().max().into_scalar::<f32>();
        assert!(error < 1e-3, "x̂_0 off by {error}");
    }

    #[test]
    fn seeded_noise_is_the_same_for_the_same_seed_and_differs_across_seeds() {
        let device = Device::flex();
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let x0 = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        let noised = |seed| {
            schedule
                .add_seeded_noise(x0.clone(), 500, &mut ImageNoise::new(seed, 0..1))
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(noised(7), noised(7));
        assert_ne!(noised(7), noised(8));
        // At t = 500 the image is √(1 − ᾱ_t) ε: its scale follows the schedule.
        let expected = (1.0 - schedule.alphas_cumprod[500]).sqrt() as f32;
        let first = GaussianNoise::for_image(7, 0).normals(1)[0];
        assert!((noised(7)[0] - expected * first).abs() < 1e-5);
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let device = Device::flex();
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let x = Tensor::<4>::zeros([2, 1, 4, 4], &device);
        let err = schedule.add_noise(x.clone(), x.clone(), &[1]).unwrap_err();
        assert!(err.to_string().contains("1 timesteps for a batch of 2"));
        let err = schedule.add_noise(x.clone(), x, &[1, 5000]).unwrap_err();
        assert!(err.to_string().contains("5000"));
    }
}
