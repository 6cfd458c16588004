//! What the page may ask of the loaded model: its limits, and its requests read from JSON.

use emerge_core::{EmergeError, MAX_GUIDANCE, ModelConfig, SamplingRequest, UNetConfig};
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

/// The page's request (JSON, see [`SamplingRequest`]), parsed and held to the page's batch
/// limit; the rest is checked against the model where the run starts.
pub fn page_request(json: &str) -> Result<SamplingRequest, EmergeError> {
    let request: SamplingRequest = serde_json::from_str(json)
        .map_err(|e| EmergeError::InvalidArgument(format!("sampling request: {e}")))?;
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
    fn page_requests_parse_and_the_batch_limit_holds() {
        let json = |images: usize| {
            format!(
                r#"{{"sampler":{{"kind":"ddim","eta":0.5}},"steps":20,"seed":3,"images":{images},
                "classes":"each_in_turn","guidance":{{"scale":2,"interval":[100,700]}}}}"#
            )
        };
        let request = page_request(&json(4)).unwrap();
        assert_eq!(request.images, 4);
        assert_eq!(request.guidance.interval, Some((100, 700)));
        let err = page_request(&json(65)).unwrap_err().to_string();
        assert!(err.contains("images must be 1 to 64"), "{err}");
        let err = page_request("{}").unwrap_err().to_string();
        assert!(err.contains("sampling request"), "{err}");
        let unknown = json(1).replace(r#""seed":3"#, r#""seed":3,"colour":1"#);
        assert!(
            page_request(&unknown)
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
    }
}
