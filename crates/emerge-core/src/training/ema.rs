//! Exponential moving average of the weights (DDPM §4 samples from an EMA copy, decay 0.9999):
//! θ_ema ← d·θ_ema + (1 − d)·θ.

use crate::unet::UNet;
use crate::weights::parameters;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

/// Blends each parameter with the collected one at the same position.
struct Blend {
    sources: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let source = self
            .sources
            .next()
            .expect("the EMA copy has the model's structure");
        let decay = self.decay;
        param.map(|ema| {
            let shape = ema.shape();
            ema.mul_scalar(decay) + source.reshape(shape).mul_scalar(1.0 - decay)
        })
    }
}

/// The decay at `step`: warms up as (1 + step)/(10 + step) so early averages are not dominated
/// by the random initialisation, capped at `max_decay`.
pub fn decay_at(step: usize, max_decay: f64) -> f64 {
    ((1.0 + step as f64) / (10.0 + step as f64)).min(max_decay)
}

/// θ_ema ← d·θ_ema + (1 − d)·θ, with `model` already detached from autodiff (`model.valid()`).
pub fn update(ema: UNet, model: &UNet, decay: f64) -> UNet {
    ema.map(&mut Blend {
        sources: parameters::flattened(model).into_iter(),
        decay,
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use crate::unet::UNetConfig;

    use super::*;

    fn first_weight(unet: &UNet) -> Vec<f32> {
        unet.conv_in
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn ema_moves_toward_the_model_by_one_minus_decay() {
        let device = Device::flex();
        let model = UNet::new(&UNetConfig::tiny(), &device).unwrap();
        let ema = UNet::new(&UNetConfig::tiny(), &device).unwrap();
        let (m, e) = (first_weight(&model), first_weight(&ema));
        let updated = first_weight(&update(ema, &model, 0.9));
        for i in 0..m.len() {
            assert!((updated[i] - (0.9 * e[i] + 0.1 * m[i])).abs() < 1e-6);
        }
        assert_eq!(decay_at(0, 0.999), 0.1);
        assert_eq!(decay_at(1_000_000, 0.999), 0.999);
    }
}
