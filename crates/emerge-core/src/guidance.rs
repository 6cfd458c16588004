//! The UNet as a sampler sees it, with classifier-free guidance (Ho & Salimans 2022).

use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::sampler::NoisePredictor;
use crate::unet::{UNet, UNetConfig};

/// ε̃ = ε_uncond + w (ε_cond − ε_uncond)  (Ho & Salimans 2022, eq. 6 with w here = 1 + their w):
/// w = 0 is the unconditional prediction, w = 1 the conditional one, w > 1 sharpens the class.
/// `guidance_scale` broadcasts over the images (`[1, 1, 1, 1]`: one w for the batch), so a
/// recorded step can take a different w each step.
pub fn guided_noise(
    eps_uncond: Tensor<4>,
    eps_cond: Tensor<4>,
    guidance_scale: Tensor<4>,
) -> Tensor<4> {
    eps_uncond.clone() + (eps_cond - eps_uncond) * guidance_scale
}

/// The largest guidance scale the page and the exported defaults accept (beyond it samples are
/// saturated strokes).
pub const MAX_GUIDANCE: f64 = 10.0;

/// The guidance of a conditional run: the scale w, and optionally the band of timesteps where it
/// applies. Outside the band the plain conditional prediction is used (w = 1), as in
/// Kynkäänniemi et al. 2024, "Applying guidance in a limited interval improves sample and
/// distribution quality in diffusion models", §3. JSON: `{"scale": w, "interval": [low, high]}`
/// (`null`: every step), the one spelling of an interval wherever JSON carries it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guidance {
    pub scale: f64,
    /// Inclusive timesteps `(low, high)`: w applies where low ≤ t ≤ high; `None`: at every t.
    pub interval: Option<(usize, usize)>,
}

impl Guidance {
    /// Guidance w at every timestep.
    pub fn everywhere(scale: f64) -> Self {
        Self {
            scale,
            interval: None,
        }
    }

    /// w_t = w for t in [low, high], else 1  (Kynkäänniemi et al. 2024, eq. 3).
    pub fn scale_at(&self, timestep: usize) -> f64 {
        match self.interval {
            Some((low, high)) if !(low..=high).contains(&timestep) => 1.0,
            _ => self.scale,
        }
    }

    /// Checks w ≥ 0 and an ordered band.
    pub fn validate(&self) -> Result<(), EmergeError> {
        if !self.scale.is_finite() || self.scale < 0.0 {
            return Err(EmergeError::InvalidArgument(format!(
                "guidance scale must be ≥ 0, got {}",
                self.scale
            )));
        }
        if let Some((low, high)) = self.interval
            && low > high
        {
            return Err(EmergeError::InvalidArgument(format!(
                "the guidance interval {low}..{high} is empty: its start must not exceed its end"
            )));
        }
        Ok(())
    }
}

/// What the samples are conditioned on.
#[derive(Debug, Clone, PartialEq)]
pub enum Conditioning {
    /// No class: the null class of a conditional model, or no label for an unconditional one.
    Unconditional,
    /// One class per sample (the model's null class index means "any" for that sample), and the
    /// guidance.
    Classes {
        labels: Vec<usize>,
        guidance: Guidance,
    },
}

/// The UNet plus its conditioning, as a [`NoisePredictor`] for the samplers.
pub struct Denoiser<'a> {
    unet: &'a UNet,
    config: &'a UNetConfig,
    conditioning: Conditioning,
}

impl<'a> Denoiser<'a> {
    /// Checks the conditioning against the model: classes need a class-conditional model, and
    /// each label must be a class the model knows (or its null class).
    pub fn new(
        unet: &'a UNet,
        config: &'a UNetConfig,
        conditioning: Conditioning,
    ) -> Result<Self, EmergeError> {
        if let Conditioning::Classes { labels, guidance } = &conditioning {
            let Some(classes) = config.num_class_embeds else {
                return Err(EmergeError::InvalidArgument(
                    "this model is unconditional: it takes no class labels".into(),
                ));
            };
            if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
                return Err(EmergeError::InvalidArgument(format!(
                    "class {bad} is out of range: this model knows classes 0..{} (and {} for none)",
                    classes - 1,
                    classes - 1
                )));
            }
            guidance.validate()?;
        }
        Ok(Self {
            unet,
            config,
            conditioning,
        })
    }

    fn labels(&self, labels: &[usize], device: &burn::tensor::Device) -> Tensor<1, Int> {
        let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        Tensor::from_data(TensorData::new(values, [labels.len()]), device)
    }

    fn run(&self, sample: Tensor<4>, timestep: usize, labels: Option<&[usize]>) -> Tensor<4> {
        let [batch, ..] = sample.dims();
        let device = sample.device();
        let timesteps = Tensor::<1>::full([batch], timestep as f64, &device);
        self.unet
            .forward(sample, timesteps, labels.map(|l| self.labels(l, &device)))
    }
}

impl NoisePredictor for Denoiser<'_> {
    fn predict_noise(&self, sample: Tensor<4>, timestep: usize) -> Result<Tensor<4>, EmergeError> {
        let [batch, channels, height, width] = sample.dims();
        let size = self.config.sample_size;
        if channels != self.config.in_channels || height != size || width != size {
            return Err(EmergeError::InvalidArgument(format!(
                "the model takes [B, {}, {size}, {size}] images, got [{batch}, {channels}, {height}, {width}]",
                self.config.in_channels
            )));
        }
        let null = self.config.null_class();
        Ok(match (&self.conditioning, null) {
            (Conditioning::Unconditional, None) => self.run(sample, timestep, None),
            (Conditioning::Unconditional, Some(null)) => {
                self.run(sample, timestep, Some(&vec![null; batch]))
            }
            (Conditioning::Classes { .. }, None) => unreachable!("checked in Denoiser::new"),
            (Conditioning::Classes { labels, guidance }, Some(null)) => {
                if labels.len() != batch {
                    return Err(EmergeError::InvalidArgument(format!(
                        "{} class labels for a batch of {batch}",
                        labels.len()
                    )));
                }
                let guidance_scale = guidance.scale_at(timestep);
                if guidance_scale == 1.0 {
                    self.run(sample, timestep, Some(labels))
                } else if guidance_scale == 0.0 {
                    self.run(sample, timestep, Some(&vec![null; batch]))
                } else {
                    // One forward pass over [conditional; unconditional] halves.
                    let both_labels: Vec<usize> = labels
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(null, batch))
                        .collect();
                    let both = self.run(
                        Tensor::cat(vec![sample.clone(), sample], 0),
                        timestep,
                        Some(&both_labels),
                    );
                    let mut halves = both.chunk(2, 0);
                    let eps_uncond = halves.pop().expect("two halves");
                    let eps_cond = halves.pop().expect("two halves");
                    let w = Tensor::full([1, 1, 1, 1], guidance_scale, &eps_cond.device());
                    guided_noise(eps_uncond, eps_cond, w)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::noise::GaussianNoise;
    use crate::tensor_util::gaussian;

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn guided_noise_interpolates_and_extrapolates() {
        let device = Device::flex();
        // ε_∅ = 1 and ε_c = 3 everywhere: ε̃ = 1 + w · 2.
        let u = Tensor::<4>::ones([2, 1, 3, 3], &device);
        let c = u.clone().mul_scalar(3.0);
        for (w, expected) in [(0.0, 1.0), (1.0, 3.0), (0.5, 2.0), (3.0, 7.0)] {
            let scale = Tensor::full([1, 1, 1, 1], w, &device);
            let guided = guided_noise(u.clone(), c.clone(), scale);
            let expected = Tensor::<4>::full([2, 1, 3, 3], expected, &device);
            assert!(max_abs_diff(guided, expected) < 1e-6, "w = {w}");
        }
    }

    #[test]
    fn guidance_applies_only_inside_its_interval() {
        let banded = Guidance {
            scale: 3.0,
            interval: Some((200, 600)),
        };
        assert_eq!(banded.scale_at(199), 1.0);
        assert_eq!(banded.scale_at(200), 3.0);
        assert_eq!(banded.scale_at(600), 3.0);
        assert_eq!(banded.scale_at(601), 1.0);
        assert_eq!(Guidance::everywhere(3.0).scale_at(999), 3.0);
        let err = Guidance {
            scale: 2.0,
            interval: Some((700, 100)),
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("700..100 is empty"), "{err}");
        let err = Guidance::everywhere(-1.0).validate().unwrap_err();
        assert!(err.to_string().contains("must be ≥ 0"), "{err}");
    }

    #[test]
    fn outside_the_interval_the_prediction_is_the_conditional_one() {
        let device = Device::flex();
        let config = UNetConfig::tiny();
        let unet = UNet::new(&config, &device).unwrap();
        let x = gaussian(&mut GaussianNoise::new(5), [2, 1, 8, 8], &device);
        let predict = |guidance: Guidance, t: usize| {
            Denoiser::new(
                &unet,
                &config,
                Conditioning::Classes {
                    labels: vec![2, 9],
                    guidance,
                },
            )
            .unwrap()
            .predict_noise(x.clone(), t)
            .unwrap()
        };
        let banded = Guidance {
            scale: 3.0,
            interval: Some((100, 300)),
        };
        let everywhere = Guidance::everywhere(3.0);
        let conditional = Guidance::everywhere(1.0);
        assert!(max_abs_diff(predict(banded, 200), predict(everywhere, 200)) < 1e-6);
        assert!(max_abs_diff(predict(banded, 500), predict(conditional, 500)) < 1e-6);
        assert!(
            max_abs_diff(predict(everywhere, 500), predict(conditional, 500)) > 1e-4,
            "w = 3 must differ from w = 1 at t = 500"
        );
    }

    #[test]
    fn guidance_zero_is_unconditional_and_one_is_conditional_through_the_unet() {
        let device = Device::flex();
        let config = UNetConfig::tiny();
        let unet = UNet::new(&config, &device).unwrap();
        let x = gaussian(&mut GaussianNoise::new(4), [2, 1, 8, 8], &device);
        let labels = vec![3, 7];
        let predict = |conditioning: Conditioning| {
            Denoiser::new(&unet, &config, conditioning)
                .unwrap()
                .predict_noise(x.clone(), 500)
                .unwrap()
        };
        let uncond = predict(Conditioning::Unconditional);
        let cond = predict(Conditioning::Classes {
            labels: labels.clone(),
            guidance: Guidance::everywhere(1.0),
        });
        let w0 = predict(Conditioning::Classes {
            labels: labels.clone(),
            guidance: Guidance::everywhere(0.0),
        });
        // The batched cond+uncond pass must agree with the separate passes.
        let w2 = predict(Conditioning::Classes {
            labels: labels.clone(),
            guidance: Guidance::everywhere(2.0),
        });
        assert!(max_abs_diff(w0, uncond.clone()) < 1e-6);
        assert!(
            max_abs_diff(cond.clone(), uncond.clone()) > 1e-4,
            "the class must change the prediction"
        );
        assert!(
            max_abs_diff(
                w2,
                guided_noise(uncond, cond, Tensor::full([1, 1, 1, 1], 2.0, &device))
            ) < 1e-4
        );
    }

    #[test]
    fn bad_conditioning_is_an_error() {
        let device = Device::flex();
        let config = UNetConfig::tiny();
        let unet = UNet::new(&config, &device).unwrap();
        let err = Denoiser::new(
            &unet,
            &config,
            Conditioning::Classes {
                labels: vec![11],
                guidance: Guidance::everywhere(1.0),
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("class 11 is out of range"));
        let denoiser = Denoiser::new(
            &unet,
            &config,
            Conditioning::Classes {
                labels: vec![1],
                guidance: Guidance::everywhere(2.0),
            },
        )
        .unwrap();
        let x = Tensor::<4>::zeros([2, 1, 8, 8], &device);
        assert!(
            denoiser
                .predict_noise(x, 3)
                .unwrap_err()
                .to_string()
                .contains("1 class labels for a batch of 2")
        );
        let wrong_size = Tensor::<4>::zeros([1, 1, 9, 9], &device);
        assert!(
            denoiser
                .predict_noise(wrong_size, 3)
                .unwrap_err()
                .to_string()
                .contains("[B, 1, 8, 8]")
        );
        let mut uncond_config = UNetConfig::tiny();
        uncond_config.num_class_embeds = None;
        let uncond = UNet::new(&uncond_config, &device).unwrap();
        let err = Denoiser::new(
            &uncond,
            &uncond_config,
            Conditioning::Classes {
                labels: vec![1],
                guidance: Guidance::everywhere(1.0),
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("unconditional"));
    }
}
