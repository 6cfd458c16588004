//! Every sampler's reverse step as one affine update of device tensors, its coefficients
//! computed on the host per step ([`crate::Sampler::update`]). Because the coefficients travel as
//! a tensor rather than as constants in the computation, the same few tensor operations serve
//! every step and every sampler, which is what lets a device record a step once and replay it.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::EmergeError;

/// The coefficients of one reverse step from x_t:
///
/// x̂_0 = clip(a x_t + b ε_θ)  (DDPM eq. 15: a = 1/√ᾱ_t, b = −√(1 − ᾱ_t)/√ᾱ_t)
/// x_{t−1} = c x_t + d x̂_0 + e ε_θ + f x̂_0' + σ z  (x̂_0' the step before's x̂_0, z ~ N(0, I))
///
/// DDPM: c, d the posterior mean's coefficients (eq. 7), σ² its variance; DDIM: d = √ᾱ_{t−1},
/// e the direction's coefficient (eq. 12); DPM-Solver++(2M): c the carried x_{s₀}, d and f the
/// extrapolated data prediction D₀ + ½ D₁ spelled out in x̂_0 and x̂_0'.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// a, b: x̂_0 from x_t and ε_θ.
    pub x0_from_sample: f64,
    pub x0_from_noise: f64,
    /// c, d, e, f: x_{t−1} from x_t, x̂_0, ε_θ and the previous x̂_0.
    pub sample: f64,
    pub x0: f64,
    pub noise_prediction: f64,
    pub previous_x0: f64,
    /// σ: the standard deviation of the fresh noise (0: the step draws none).
    pub std_dev: f64,
}

/// How many values one step's coefficient row holds: the guidance scale w, then a … f and σ.
pub const ROW: usize = 8;

impl Update {
    /// The step's coefficients as one row `[w, a, b, c, d, e, f, σ]`, with `guidance` the scale w
    /// the guided noise prediction of the same step uses (1 where there is no guidance).
    pub fn row(&self, guidance: f64) -> [f32; ROW] {
        [
            guidance,
            self.x0_from_sample,
            self.x0_from_noise,
            self.sample,
            self.x0,
            self.noise_prediction,
            self.previous_x0,
            self.std_dev,
        ]
        .map(|v| v as f32)
    }

    /// The row on `device`.
    pub fn to_tensor(&self, guidance: f64, device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(self.row(guidance).to_vec(), [ROW]), device)
    }
}

/// Coefficient `i` of a `[ROW]` row as a `[1, 1, 1, 1]` tensor that broadcasts over images.
pub fn coefficient(row: &Tensor<1>, i: usize) -> Tensor<4> {
    row.clone().narrow(0, i, 1).reshape([1, 1, 1, 1])
}

/// The tensors one step combines: x_t, ε_θ(x_t, t), and where the step uses them, the previous
/// x̂_0 and the fresh noise z.
pub struct StepTerms {
    pub sample: Tensor<4>,
    pub noise_prediction: Tensor<4>,
    pub previous_x0: Option<Tensor<4>>,
    pub noise: Option<Tensor<4>>,
}

/// x_{t−1} and x̂_0 of one step from its terms and coefficient `row` ([`Update::row`]); `clip`
/// clamps x̂_0 to the data range [−1, 1].
pub fn apply(
    row: &Tensor<1>,
    terms: StepTerms,
    clip: bool,
) -> Result<(Tensor<4>, Tensor<4>), EmergeError> {
    let shape = terms.sample.dims();
    for (name, tensor) in [
        ("model output", Some(&terms.noise_prediction)),
        ("previous x̂_0", terms.previous_x0.as_ref()),
        ("noise", terms.noise.as_ref()),
    ] {
        if let Some(tensor) = tensor
            && tensor.dims() != shape
        {
            return Err(EmergeError::InvalidArgument(format!(
                "{name} shape {:?} differs from sample shape {shape:?}",
                tensor.dims()
            )));
        }
    }
    let k = |i| coefficient(row, i);
    let (x, eps) = (terms.sample, terms.noise_prediction);
    // x̂_0 = a x_t + b ε_θ, clipped to the data range where the schedule says so
    let x0 = x.clone() * k(1) + eps.clone() * k(2);
    let x0 = if clip { x0.clamp(-1.0, 1.0) } else { x0 };
    // x_{t−1} = c x_t + d x̂_0 + e ε_θ (+ f x̂_0') (+ σ z)
    let mut prev = x * k(3) + x0.clone() * k(4) + eps * k(5);
    if let Some(previous) = terms.previous_x0 {
        prev = prev + previous * k(6);
    }
    if let Some(z) = terms.noise {
        prev = prev + z * k(7);
    }
    Ok((prev, x0))
}
