//! What the page may ask of the loaded model: its limits, its schedule's curves, and its
//! requests held to the page's limits.

use emerge_core::{
    BetaSchedule, EmergeError, MAX_GUIDANCE, Model, ModelConfig, SamplingRequest, UNetConfig,
};
use serde::Serialize;

/// Largest batch the page may ask for.
pub const MAX_BATCH: usize = 64;

/// What the loaded model and the engine accept: the page builds its controls from these.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// T: the model's training timesteps (DDPM runs all of them; t lies in 0..T).
    pub timesteps: usize,
    pub max_batch: usize,
    /// Guidance scales run from 0 to this (0 for an unconditional model).
    pub max_guidance: f64,
    /// Digit classes, 0 for an unconditional model.
    pub classes: usize,
}

impl Limits {
    pub fn of(config: &ModelConfig) -> Self {
        let classes = config.unet.null_class().unwrap_or(0);
        Self {
            timesteps: config.schedule.num_train_timesteps,
            max_batch: MAX_BATCH,
            max_guidance: if classes > 0 { MAX_GUIDANCE } else { 0.0 },
            classes,
        }
    }
}

/// The model's noise schedule over t = 0..T, for the page's plots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleCurves {
    /// As the model file names it, e.g. `{"kind": "cosine", "s": 0.008}`.
    pub beta_schedule: BetaSchedule,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    /// log SNR(t) = ln(ᾱ_t/(1 − ᾱ_t)).
    pub log_snr: Vec<f64>,
}

impl ScheduleCurves {
    pub fn of(model: &Model) -> Self {
        let schedule = &model.schedule;
        Self {
            beta_schedule: model.config.schedule.beta_schedule,
            betas: schedule.betas.clone(),
            alphas_cumprod: schedule.alphas_cumprod.clone(),
            log_snr: (0..schedule.num_train_timesteps())
                .map(|t| schedule.snr(t).ln())
                .collect(),
        }
    }
}

/// The page's request held to the page's batch limit; the rest is checked against the model
/// where the run starts.
pub fn page_request(request: SamplingRequest) -> Result<SamplingRequest, EmergeError> {
    if !(1..=MAX_BATCH).contains(&request.images) {
        return Err(EmergeError::InvalidArgument(format!(
            "images must be 1 to {MAX_BATCH}, got {}",
            request.images
        )));
    }
    Ok(request)
}

/// A requested class checked against the model: `None` for an unconditional model (which takes
/// none), else the model's number of classes (also the index of its null class) and the class.
pub fn checked_class(
    config: &UNetConfig,
    class: Option<usize>,
) -> Result<Option<(usize, Option<usize>)>, EmergeError> {
    let Some(classes) = config.null_class() else {
        return match class {
            Some(_) => Err(EmergeError::InvalidArgument(
                "this model is unconditional: it takes no class".into(),
            )),
            None => Ok(None),
        };
    };
    if let Some(c) = class.filter(|&c| c >= classes) {
        return Err(EmergeError::InvalidArgument(format!(
            "class {c} is out of range 0..{}",
            classes - 1
        )));
    }
    Ok(Some((classes, class)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_model() {
        let mut config = ModelConfig::preset("tiny").unwrap();
        config.schedule.num_train_timesteps = 500;
        assert_eq!(
            Limits::of(&config),
            Limits {
                timesteps: 500,
                max_batch: 64,
                max_guidance: 10.0,
                classes: 10
            }
        );
        config.unet.num_class_embeds = None;
        let unconditional = Limits::of(&config);
        assert_eq!(
            (unconditional.classes, unconditional.max_guidance),
            (0, 0.0)
        );
    }

    #[test]
    fn the_batch_limit_holds() {
        let config = ModelConfig::preset("tiny").unwrap();
        let request = |images| SamplingRequest {
            images,
            ..SamplingRequest::fallback(&config)
        };
        assert_eq!(page_request(request(64)).unwrap().images, 64);
        for images in [0, 65] {
            let err = page_request(request(images)).unwrap_err().to_string();
            assert!(err.contains("images must be 1 to 64"), "{err}");
        }
    }

    #[test]
    fn the_schedule_curves_are_the_models() {
        let model = crate::session::tests::tiny_model();
        let curves = ScheduleCurves::of(&model);
        let t = model.schedule.num_train_timesteps();
        assert_eq!((curves.betas.len(), curves.log_snr.len()), (t, t));
        assert_eq!(curves.alphas_cumprod, model.schedule.alphas_cumprod);
        let snr = curves.alphas_cumprod[10] / (1.0 - curves.alphas_cumprod[10]);
        assert!((curves.log_snr[10] - snr.ln()).abs() < 1e-12);
        assert!(curves.log_snr.windows(2).all(|w| w[1] < w[0]));
    }
}
