//! The sampling contract: a loaded [`Model`] and the one [`SamplingRequest`] every boundary speaks
//! (the page's engine, the CLI's arguments, `eval`, `check-devices`, the model file's recommendation),
//! checked once where a [`Run`] starts.

use std::ops::Range;

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::guidance::{Conditioning, Denoiser, Guidance, MAX_GUIDANCE};
use crate::image::image_tensor;
use crate::model::ModelConfig;
use crate::noise::ImageNoise;
use crate::recorded::{RecordedStep, Replay};
use crate::sampler::{Sampler, SamplerKind, Sampling, StepOutput};
use crate::schedule::NoiseSchedule;
use crate::unet::UNet;

/// What the images of a request are conditioned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classes {
    /// No class (the null class of a conditional model).
    Unconditional,
    /// Image i gets class i mod K, K the model's number of classes.
    EachInTurn,
    /// Every image the same class.
    Class(usize),
    /// One class per image.
    Labels(Vec<usize>),
}

impl Classes {
    /// Every class in turn for a class-conditional model, else unconditional.
    pub fn all_of(config: &ModelConfig) -> Self {
        match config.unet.is_conditional() {
            true => Classes::EachInTurn,
            false => Classes::Unconditional,
        }
    }
}

/// SDEdit's starting point: one u8 image (C×H×W, row-major) noised to `timestep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartImage {
    pub pixels: Vec<u8>,
    pub timestep: usize,
}

/// One sampling request. JSON (the page, the model file, eval reports):
/// `{"sampler": {"kind": "dpmpp_2m"}, "steps": 20, "seed": 1, "images": 16,
///   "classes": "each_in_turn", "guidance": {"scale": 1.25, "interval": [0, 300]}}`
/// with `interval` null for every step, and an optional `"start": {"pixels": [...], "timestep": t}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingRequest {
    pub sampler: SamplerKind,
    /// Denoising steps (from pure noise: up to T, up to T − 1 for DPM-Solver; from a start
    /// image at t, clamped to the steps left there).
    pub steps: usize,
    /// Image i's noise is its own stream of (seed, i): the same image whatever the batch.
    pub seed: u64,
    /// Images in the run.
    pub images: usize,
    pub classes: Classes,
    /// Classifier-free guidance of a conditional run (ignored when unconditional).
    pub guidance: Guidance,
    /// Start from this image noised to its timestep (SDEdit) instead of from pure noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartImage>,
}

impl SamplingRequest {
    /// What a model file without a recommendation is sampled with: DDIM, η = 1, 50 steps (all
    /// of them for a model with fewer timesteps), w = 1.25 at every step (this project's page
    /// default before models carried their own), 16 images, each class in turn.
    pub fn fallback(config: &ModelConfig) -> Self {
        let conditional = config.unet.is_conditional();
        let sampler = SamplerKind::Ddim { eta: 1.0 };
        let top = config.schedule.num_train_timesteps.saturating_sub(1);
        Self {
            sampler,
            steps: 50.min(Sampler::max_steps(sampler, top)),
            seed: 0,
            images: 16,
            classes: Classes::all_of(config),
            guidance: Guidance::everywhere(if conditional { 1.25 } else { 0.0 }),
            start: None,
        }
    }

    /// The class of image `image`, `None` when unconditional (or `classes` is 0).
    pub fn label(&self, image: usize, classes: usize) -> Option<usize> {
        match &self.classes {
            Classes::Unconditional => None,
            _ if classes == 0 => None,
            Classes::EachInTurn => Some(image % classes),
            Classes::Class(class) => Some(*class),
            Classes::Labels(labels) => labels.get(image).copied(),
        }
    }

    /// Checks the request against the model; the error names the field at fault.
    pub fn validate(&self, config: &ModelConfig) -> Result<(), EmergeError> {
        let invalid = |message: String| Err(EmergeError::InvalidArgument(message));
        if self.images == 0 {
            return invalid("a request must ask for at least 1 image".into());
        }
        self.sampler.validate()?;
        let timesteps = config.schedule.num_train_timesteps;
        let top = match &self.start {
            Some(start) => {
                if start.timestep >= timesteps {
                    return invalid(format!(
                        "start timestep {} is out of range 0..{}",
                        start.timestep,
                        timesteps - 1
                    ));
                }
                let unet = &config.unet;
                let expected = unet.in_channels * unet.sample_size * unet.sample_size;
                if start.pixels.len() != expected {
                    return invalid(format!(
                        "the start image has {} values; this model takes {}×{}×{} = {expected}",
                        start.pixels.len(),
                        unet.in_channels,
                        unet.sample_size,
                        unet.sample_size
                    ));
                }
                start.timestep
            }
            None => timesteps - 1,
        };
        let most = Sampler::max_steps(self.sampler, top);
        if self.steps == 0 || (self.start.is_none() && self.steps > most) {
            return invalid(format!(
                "the number of sampling steps must be between 1 and {most}, got {}",
                self.steps
            ));
        }
        let known = config.unet.null_class();
        match (&self.classes, known) {
            (Classes::Unconditional, _) => return Ok(()),
            (_, None) => {
                return invalid("this model is unconditional: it takes no class".into());
            }
            (Classes::Class(class), Some(k)) if *class >= k => {
                return invalid(format!("class {class} is out of range 0..{}", k - 1));
            }
            (Classes::Labels(labels), Some(k)) => {
                if labels.len() != self.images {
                    return invalid(format!(
                        "{} class labels for {} images",
                        labels.len(),
                        self.images
                    ));
                }
                if let Some(bad) = labels.iter().find(|&&l| l >= k) {
                    return invalid(format!("class {bad} is out of range 0..{}", k - 1));
                }
            }
            _ => {}
        }
        self.guidance.validate()?;
        if self.guidance.scale > MAX_GUIDANCE {
            return invalid(format!(
                "guidance must be 0 to {MAX_GUIDANCE}, got {}",
                self.guidance.scale
            ));
        }
        if let Some((_, high)) = self.guidance.interval
            && high >= timesteps
        {
            return invalid(format!(
                "the guidance interval ends at {high}, past the model's last timestep {}",
                timesteps - 1
            ));
        }
        Ok(())
    }

    /// The sampler this request runs: from the top of the schedule, or from the start image's
    /// timestep with at most the steps left there.
    pub fn sampler(&self, schedule: &NoiseSchedule) -> Result<Sampler, EmergeError> {
        match &self.start {
            None => Sampler::new(schedule.clone(), self.sampler, self.steps),
            Some(start) => {
                let most = Sampler::max_steps(self.sampler, start.timestep);
                Sampler::from_timestep(
                    schedule.clone(),
                    self.sampler,
                    self.steps.min(most),
                    start.timestep,
                )
            }
        }
    }

    /// The conditioning of images `images` (checked by [`Self::validate`] first).
    pub(crate) fn conditioning(&self, images: Range<usize>, config: &ModelConfig) -> Conditioning {
        let classes = config.unet.null_class().unwrap_or(0);
        match &self.classes {
            Classes::Unconditional => Conditioning::Unconditional,
            _ => Conditioning::Classes {
                labels: images
                    .map(|i| self.label(i, classes).unwrap_or(classes))
                    .collect(),
                guidance: self.guidance,
            },
        }
    }
}

/// A loaded model: what a weight file holds, ready to sample.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub unet: UNet,
    pub schedule: NoiseSchedule,
}

impl Model {
    pub fn new(config: ModelConfig, unet: UNet) -> Result<Self, EmergeError> {
        let schedule = config.noise_schedule()?;
        Ok(Self {
            config,
            unet,
            schedule,
        })
    }

    /// Reads a model file's bytes (see [`crate::weights`]).
    pub fn from_bytes(bytes: Vec<u8>, device: &Device) -> Result<Self, EmergeError> {
        let (config, unet) = crate::weights::from_bytes(bytes, device)?;
        Self::new(config, unet)
    }

    /// The request this model is meant to be sampled with: its file's recommendation, or
    /// [`SamplingRequest::fallback`] for a file that has none.
    pub fn recommended(&self) -> SamplingRequest {
        self.config
            .recommended
            .clone()
            .unwrap_or_else(|| SamplingRequest::fallback(&self.config))
    }

    /// One u8 image (row-major, C×H×W) as a `[1, C, H, W]` tensor in model space.
    pub fn image(&self, pixels: &[u8], device: &Device) -> Result<Tensor<4>, EmergeError> {
        let unet = &self.config.unet;
        image_tensor(
            pixels,
            [unet.in_channels, unet.sample_size, unet.sample_size],
            device,
        )
    }

    /// x_t ~ q(x_t | x_0) for one u8 image, ε the first draw of image 0's stream of `seed`: the
    /// x_t an SDEdit run of that seed starts its first image from (the forward view).
    pub fn noise_image(
        &self,
        pixels: &[u8],
        t: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor<4>, EmergeError> {
        self.schedule.check_timestep(t)?;
        self.schedule.add_seeded_noise(
            self.image(pixels, device)?,
            t,
            &mut ImageNoise::new(seed, 0..1),
        )
    }

    /// Starts images `images` (a range within `0..request.images`) of `request`: checks the
    /// request, then draws each image's x_T, or noises the start image, from its own stream.
    pub fn start(
        &self,
        request: &SamplingRequest,
        images: Range<usize>,
        device: &Device,
    ) -> Result<Run, EmergeError> {
        request.validate(&self.config)?;
        if images.is_empty() || images.end > request.images {
            return Err(EmergeError::InvalidArgument(format!(
                "images {images:?} are not a part of a request of {}",
                request.images
            )));
        }
        let noise = ImageNoise::new(request.seed, images.clone());
        let unet = &self.config.unet;
        let sampler = request.sampler(&self.schedule)?;
        let sampling = match &request.start {
            None => {
                let (size, channels) = (unet.sample_size, unet.in_channels);
                Sampling::from_noise(sampler, [images.len(), channels, size, size], noise, device)?
            }
            Some(start) => {
                let original = self.image(&start.pixels, device)?;
                Sampling::from_image(sampler, original.repeat_dim(0, images.len()), noise)?
            }
        };
        Ok(Run {
            sampling,
            recorded: None,
            conditioning: request.conditioning(images.clone(), &self.config),
            images,
            of: request.images,
        })
    }
}

/// A sampling run in progress: the sampler's state and what the images are conditioned on.
#[derive(Debug)]
pub struct Run {
    sampling: Sampling,
    /// The step recorded on the device, once [`Run::record`] has made it.
    recorded: Option<RecordedStep>,
    conditioning: Conditioning,
    /// The images of the request this run draws, and the request's number of images.
    images: Range<usize>,
    of: usize,
}

impl Run {
    /// The images of the request this run draws (all of them, or one worker's slice), and how
    /// many the request has.
    pub fn images(&self) -> (Range<usize>, usize) {
        (self.images.clone(), self.of)
    }

    pub fn is_finished(&self) -> bool {
        self.sampling.is_finished()
    }

    /// Steps done and steps in all.
    pub fn progress(&self) -> (usize, usize) {
        self.sampling.progress()
    }

    /// The current x_t (the final images once finished).
    pub fn sample(&self) -> &Tensor<4> {
        self.sampling.sample()
    }

    /// Takes the run's next step while recording the step on its device for the rest of the
    /// run ([`crate::recorded`]); every later step replays it. `model` must be the one the run
    /// steps with, unchanged for the run. Says whether the device recorded (where it could not,
    /// the run steps plainly), with the step's output.
    pub async fn record(&mut self, model: &Model) -> Result<(Replay, StepOutput), EmergeError> {
        let (output, recorded, replay) = self
            .sampling
            .step_recording(&model.unet, &model.config.unet, &self.conditioning)
            .await?;
        self.recorded = (replay == Replay::Recorded).then_some(recorded);
        Ok((replay, output))
    }

    /// One step: the recorded one where there is a recording, else a plain UNet pass.
    fn step(&mut self, model: &Model, denoiser: &Denoiser) -> Result<StepOutput, EmergeError> {
        match &mut self.recorded {
            Some(recorded) => self.sampling.step_recorded(recorded, &model.unet),
            None => self.sampling.step_with(denoiser),
        }
    }

    /// Runs up to `count` steps (at least one); returns the last step's output. After
    /// [`Run::record`] its tensors are the recording's buffers, valid until the next step.
    pub fn advance(&mut self, model: &Model, count: usize) -> Result<StepOutput, EmergeError> {
        let denoiser = Denoiser::new(&model.unet, &model.config.unet, self.conditioning.clone())?;
        let mut last = self.step(model, &denoiser)?;
        for _ in 1..count.max(1) {
            if self.sampling.is_finished() {
                break;
            }
            last = self.step(model, &denoiser)?;
        }
        Ok(last)
    }

    /// Runs to the end; `on_step` sees every step's output (for trajectories). Returns x_0.
    pub fn finish(
        mut self,
        model: &Model,
        mut on_step: impl FnMut(&StepOutput),
    ) -> Result<Tensor<4>, EmergeError> {
        let denoiser = Denoiser::new(&model.unet, &model.config.unet, self.conditioning.clone())?;
        while !self.sampling.is_finished() {
            on_step(&self.step(model, &denoiser)?);
        }
        Ok(self.sampling.sample().clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::unet::UNetConfig;

    /// The tiny preset with fresh weights, on Flex.
    pub(crate) fn tiny() -> Model {
        let config = ModelConfig::preset("tiny").unwrap();
        let unet = UNet::new(&config.unet, &Device::flex()).unwrap();
        Model::new(config, unet).unwrap()
    }

    fn request(sampler: SamplerKind, images: usize) -> SamplingRequest {
        SamplingRequest {
            sampler,
            steps: 6,
            seed: 5,
            images,
            classes: Classes::EachInTurn,
            guidance: Guidance::everywhere(2.0),
            start: None,
        }
    }

    fn values(tensor: Tensor<4>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_json_form_round_trips_and_names_what_is_wrong() {
        let json = r#"{"sampler":{"kind":"dpmpp_2m"},"steps":20,"seed":1,"images":4,
            "classes":{"class":3},"guidance":{"scale":1.25,"interval":[0,300]}}"#;
        let parsed: SamplingRequest = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.sampler, SamplerKind::DpmSolver2M);
        assert_eq!(parsed.guidance.interval, Some((0, 300)));
        assert_eq!(parsed.label(2, 10), Some(3));
        let again: SamplingRequest =
            serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
        let eta: SamplingRequest = serde_json::from_str(
            r#"{"sampler":{"kind":"ddim","eta":0.5},"steps":2,"seed":1,"images":1,
            "classes":"each_in_turn","guidance":{"scale":1,"interval":null}}"#,
        )
        .unwrap();
        assert_eq!(eta.sampler, SamplerKind::Ddim { eta: 0.5 });
        let err = serde_json::from_str::<SamplingRequest>(
            r#"{"sampler":{"kind":"euler"},"steps":2,"seed":1,"images":1,
            "classes":"unconditional","guidance":{"scale":1,"interval":null}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("euler"), "{err}");
    }

    #[test]
    fn the_fallback_request_fits_a_model_with_few_timesteps() {
        for timesteps in [20, 1000] {
            let mut config = ModelConfig::preset("tiny").unwrap();
            config.schedule.num_train_timesteps = timesteps;
            let fallback = SamplingRequest::fallback(&config);
            fallback.validate(&config).unwrap();
            assert_eq!(fallback.steps, timesteps.min(50));
        }
    }

    #[test]
    fn a_bad_request_is_refused_with_the_field_named() {
        let model = tiny();
        let config = &model.config;
        let good = request(SamplerKind::Ddim { eta: 1.0 }, 4);
        good.validate(config).unwrap();
        let check = |bad: SamplingRequest, expected: &str| {
            let err = bad.validate(config).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        };
        check(
            SamplingRequest {
                images: 0,
                ..good.clone()
            },
            "at least 1 image",
        );
        check(
            SamplingRequest {
                steps: 1001,
                ..good.clone()
            },
            "between 1 and 1000",
        );
        let dpm = request(SamplerKind::DpmSolver2M, 4);
        check(SamplingRequest { steps: 1000, ..dpm }, "between 1 and 999");
        check(
            SamplingRequest {
                sampler: SamplerKind::Ddim { eta: 2.0 },
                ..good.clone()
            },
            "eta",
        );
        check(
            SamplingRequest {
                classes: Classes::Class(10),
                ..good.clone()
            },
            "class 10",
        );
        check(
            SamplingRequest {
                classes: Classes::Labels(vec![1, 2]),
                ..good.clone()
            },
            "2 class labels for 4 images",
        );
        check(
            SamplingRequest {
                guidance: Guidance::everywhere(10.5),
                ..good.clone()
            },
            "guidance must be 0 to 10",
        );
        let late = Guidance {
            scale: 2.0,
            interval: Some((0, 1000)),
        };
        check(
            SamplingRequest {
                guidance: late,
                ..good.clone()
            },
            "interval ends at 1000",
        );
        let start = StartImage {
            pixels: vec![0; 10],
            timestep: 300,
        };
        check(
            SamplingRequest {
                start: Some(start),
                ..good.clone()
            },
            "10 values",
        );
        let mut recommending = model.config.clone();
        let start = StartImage {
            pixels: vec![0; 64],
            timestep: 10,
        };
        recommending.recommended = Some(SamplingRequest {
            start: Some(start),
            ..good.clone()
        });
        let err = recommending.validate().unwrap_err().to_string();
        assert!(err.contains("may not carry a start image"), "{err}");
        let mut unconditional = model.config.clone();
        unconditional.unet = UNetConfig {
            num_class_embeds: None,
            ..UNetConfig::tiny()
        };
        let err = good.validate(&unconditional).unwrap_err().to_string();
        assert!(err.contains("unconditional"), "{err}");
        let err = model
            .start(&good, 2..5, &Device::flex())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a part of a request of 4"), "{err}");
    }

    #[test]
    fn an_image_is_the_same_at_batch_1_7_and_16_and_however_split() {
        let model = tiny();
        let device = Device::flex();
        for sampler in [
            SamplerKind::Ddim { eta: 0.0 },
            SamplerKind::Ddim { eta: 1.0 },
            SamplerKind::SdeDpmSolver2M,
        ] {
            let draw = |images: usize, part: Range<usize>| {
                let run = model
                    .start(&request(sampler, images), part, &device)
                    .unwrap();
                values(run.finish(&model, |_| {}).unwrap())
            };
            let sixteen = draw(16, 0..16);
            let per_image = sixteen.len() / 16;
            let seven = draw(7, 0..7);
            assert_eq!(seven, sixteen[..7 * per_image], "{sampler:?}: 7 vs 16");
            assert_eq!(draw(1, 0..1), sixteen[..per_image], "{sampler:?}: 1 vs 16");
            let mut split = draw(16, 0..5);
            split.extend(draw(16, 5..16));
            assert_eq!(split, sixteen, "{sampler:?}: 16 split 5 + 11");
            assert_eq!(draw(16, 9..10), sixteen[9 * per_image..10 * per_image]);
        }
    }

    #[test]
    fn sdedit_image_0_starts_from_the_forward_views_x_t() {
        let model = tiny();
        let device = Device::flex();
        let pixels = vec![200u8; 64];
        let start = StartImage {
            pixels: pixels.clone(),
            timestep: 300,
        };
        let request = SamplingRequest {
            start: Some(start),
            ..request(SamplerKind::Ddim { eta: 0.0 }, 2)
        };
        let run = model.start(&request, 0..2, &device).unwrap();
        assert_eq!(run.progress(), (0, 6));
        let forward = model.noise_image(&pixels, 300, 5, &device).unwrap();
        let started = values(run.sample().clone());
        assert_eq!(values(forward), started[..64]);
        assert_ne!(started[..64], started[64..], "image 1 has its own ε");
    }
}
