//! The forward (noising) process q(x_t | x_0).

use burn::tensor::Tensor;

use crate::error::EmergeError;
use crate::schedule::NoiseSchedule;
use crate::tensor_util::per_sample;

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
