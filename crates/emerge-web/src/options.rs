//! The settings of a sampling run as the page sends them (JSON), checked before anything runs.

use emerge_core::{
    Conditioning, EmergeError, Guidance, MAX_GUIDANCE, ModelConfig, SamplerKind, UNetConfig,
};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingOptions {
    /// `"ddpm"` or `"ddim"`.
    pub sampler: String,
    /// Denoising steps (DDPM: up to T; DDIM: any count up to T).
    pub steps: usize,
    /// DDIM's η in [0, 1].
    #[serde(default)]
    pub eta: f64,
    pub seed: u64,
    /// Images in the grid, 1 to 64.
    pub batch: usize,
    /// The digit to draw; `None` draws every class in turn (sample i gets class i mod classes).
    #[serde(default)]
    pub class: Option<usize>,
    /// Classifier-free guidance scale w (0 = unconditional).
    #[serde(default)]
    pub guidance: f64,
    /// Inclusive timesteps `[low, high]` where w applies (the conditional prediction elsewhere);
    /// absent: at every step.
    #[serde(default)]
    pub guidance_interval: Option<[usize; 2]>,
}

impl SamplingOptions {
    pub fn from_json(json: &str) -> Result<Self, EmergeError> {
        serde_json::from_str(json)
            .map_err(|e| EmergeError::InvalidArgument(format!("sampling options: {e}")))
    }

    pub fn sampler_kind(&self) -> Result<SamplerKind, EmergeError> {
        match self.sampler.as_str() {
            "ddpm" => Ok(SamplerKind::Ddpm),
            "ddim" => Ok(SamplerKind::Ddim { eta: self.eta }),
            other => Err(EmergeError::InvalidArgument(format!(
                "unknown sampler '{other}' (ddpm or ddim)"
            ))),
        }
    }

    /// The conditioning these options ask of `config`'s model.
    pub fn conditioning(&self, config: &UNetConfig) -> Result<Conditioning, EmergeError> {
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(EmergeError::InvalidArgument(format!(
                "batch must be 1 to {MAX_BATCH}, got {}",
                self.batch
            )));
        }
        let Some((classes, class)) = checked_class(config, self.class)? else {
            return Ok(Conditioning::Unconditional);
        };
        if !(0.0..=MAX_GUIDANCE).contains(&self.guidance) {
            return Err(EmergeError::InvalidArgument(format!(
                "guidance must be 0 to {MAX_GUIDANCE}, got {}",
                self.guidance
            )));
        }
        let labels = (0..self.batch)
            .map(|i| class.unwrap_or(i % classes))
            .collect();
        Ok(Conditioning::Classes {
            labels,
            guidance: Guidance {
                scale: self.guidance,
                interval: self.guidance_interval.map(|[low, high]| (low, high)),
            },
        })
    }
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
    fn parses_and_checks_options() {
        let o = SamplingOptions::from_json(
            r#"{"sampler":"ddim","steps":20,"eta":0.5,"seed":3,"batch":4,"guidance":2,"guidance_interval":[100,700]}"#,
        )
        .unwrap();
        assert_eq!(o.sampler_kind().unwrap(), SamplerKind::Ddim { eta: 0.5 });
        let tiny = UNetConfig::tiny();
        assert_eq!(
            o.conditioning(&tiny).unwrap(),
            Conditioning::Classes {
                labels: vec![0, 1, 2, 3],
                guidance: Guidance {
                    scale: 2.0,
                    interval: Some((100, 700))
                }
            }
        );
        let bad = SamplingOptions {
            batch: 65,
            ..o.clone()
        };
        assert!(
            bad.conditioning(&tiny)
                .unwrap_err()
                .to_string()
                .contains("batch must be 1 to 64")
        );
        let bad = SamplingOptions {
            guidance: 10.5,
            ..o.clone()
        };
        assert!(
            bad.conditioning(&tiny)
                .unwrap_err()
                .to_string()
                .contains("guidance must be 0 to 10")
        );
        let bad = SamplingOptions {
            class: Some(10),
            ..o.clone()
        };
        assert!(
            bad.conditioning(&tiny)
                .unwrap_err()
                .to_string()
                .contains("class 10")
        );
        let bad = SamplingOptions {
            sampler: "euler".into(),
            ..o
        };
        assert!(
            bad.sampler_kind()
                .unwrap_err()
                .to_string()
                .contains("unknown sampler 'euler'")
        );
        assert!(
            SamplingOptions::from_json("{}")
                .unwrap_err()
                .to_string()
                .contains("sampling options")
        );
        assert!(
            SamplingOptions::from_json(
                r#"{"sampler":"ddim","steps":2,"seed":1,"batch":1,"colour":1}"#
            )
            .is_err()
        );
    }
}
