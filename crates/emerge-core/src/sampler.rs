//! Reverse-process samplers as step-by-step state machines: DDPM ancestral sampling
//! (Ho et al. 2020, Algorithm 2; respaced as in Nichol & Dhariwal 2021 §4), DDIM
//! (Song et al. 2021, eq. 12) and DPM-Solver++(2M) with its SDE variant (Lu et al. 2022,
//! "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models", Algorithm 2
//! and §5). The page drives the same objects one step at a time.
//!
//! Glossary (diffusers' names ↔ paper symbols): `alpha_prod_t` ᾱ_t, `alpha_prod_t_prev` ᾱ_{t−1}
//! (of the respaced sequence; 1 after the last step), `beta_prod_t` 1 − ᾱ_t,
//! `current_alpha_t` α_t = ᾱ_t/ᾱ_{t−1}, `current_beta_t` β_t = 1 − α_t, `pred_original_sample` x̂_0,
//! `pred_epsilon` ε_θ(x_t, t), `std_dev_t` σ_t, `prev_sample` x_{t−1}. DPM-Solver++ writes the
//! marginal as x_t = α_t x_0 + σ_t ε with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) and λ_t = ln(α_t/σ_t).

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::guidance::Conditioning;
use crate::noise::ImageNoise;
use crate::recorded::{RecordedStep, Replay};
use crate::schedule::NoiseSchedule;
use crate::tensor_util::{image_gaussian, image_normals};
use crate::unet::{UNet, UNetConfig};
use crate::update::{self, StepTerms, Update};

/// The Gaussian q(x_{t−1} | x_t, x_0) of one DDPM step: mean c₀ x_0 + c_t x_t, variance σ².
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Posterior {
    pub x0_coefficient: f64,
    pub sample_coefficient: f64,
    pub variance: f64,
}

/// Which reverse process to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum SamplerKind {
    /// Ancestral sampling with the schedule's fixed variance (DDPM Algorithm 2).
    Ddpm,
    /// DDIM with stochasticity η ∈ [0, 1]: η = 0 is deterministic, η = 1 matches DDPM's β̃.
    Ddim { eta: f64 },
    /// DPM-Solver++(2M): the multistep second-order solver of the diffusion ODE in x̂_0
    /// (Lu et al. 2022, Algorithm 2), deterministic; diffusers' `DPMSolverMultistepScheduler`.
    #[serde(rename = "dpmpp_2m")]
    DpmSolver2M,
    /// SDE-DPM-Solver++(2M): the same multistep solver of the diffusion SDE, which adds fresh
    /// noise every step (Lu et al. 2022, §5; diffusers' `algorithm_type="sde-dpmsolver++"`).
    #[serde(rename = "sde_dpmpp_2m")]
    SdeDpmSolver2M,
}

impl SamplerKind {
    /// Checks the parameters (η ∈ [0, 1]).
    pub fn validate(&self) -> Result<(), EmergeError> {
        match *self {
            SamplerKind::Ddim { eta } if !(0.0..=1.0).contains(&eta) => Err(
                EmergeError::InvalidArgument(format!("DDIM eta must lie in [0, 1], got {eta}")),
            ),
            _ => Ok(()),
        }
    }

    /// Whether this sampler is a multistep solver (DPM-Solver++(2M)): each step also uses the
    /// x̂_0 of the step before.
    pub fn is_multistep(&self) -> bool {
        matches!(self, SamplerKind::DpmSolver2M | SamplerKind::SdeDpmSolver2M)
    }

    /// How the timesteps of a run of fewer steps than T are chosen: diffusers' default for each
    /// scheduler ("leading" for DDPM and DDIM, "linspace" for DPM-Solver).
    fn spacing(&self) -> Spacing {
        if self.is_multistep() {
            Spacing::Linspace
        } else {
            Spacing::Leading
        }
    }
}

impl std::fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SamplerKind::Ddpm => f.write_str("DDPM"),
            SamplerKind::Ddim { eta } => write!(f, "DDIM (η = {eta})"),
            SamplerKind::DpmSolver2M => f.write_str("DPM-Solver++(2M)"),
            SamplerKind::SdeDpmSolver2M => f.write_str("SDE-DPM-Solver++(2M)"),
        }
    }
}

/// Timestep spacings of a respaced run (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spacing {
    /// t_i = i·⌊n/steps⌋ (+ offset): starts below the top for few steps (980 for 50 of 1000).
    Leading,
    /// t_i = round(i·(n − 1)/steps) for i = steps … 1: starts at the top, ends above 0 (the
    /// solver's last step goes to σ = 0).
    Linspace,
}

/// What one reverse step produces: x_{t−1} and the model's current guess of x_0.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The timestep this step started from.
    pub timestep: usize,
    /// x_{t−1}, the input of the next step (the final image after the last step).
    pub prev_sample: Tensor<4>,
    /// x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t, clipped to [−1, 1] when the schedule says so;
    /// meant for progress previews.
    pub pred_original_sample: Tensor<4>,
}

/// A sampler: a schedule, a reverse process, and the descending timesteps it visits.
#[derive(Debug, Clone)]
pub struct Sampler {
    schedule: NoiseSchedule,
    kind: SamplerKind,
    timesteps: Vec<usize>,
}

impl Sampler {
    /// A sampler that starts from pure noise at the top of the schedule. With `steps < T` the
    /// timesteps are respaced as diffusers does for the same scheduler: DDPM and DDIM with the
    /// "leading" spacing t_i = i·⌊T/steps⌋, descending (for T = 1000 and 50 steps: 980, 960, …,
    /// 0); DPM-Solver with "linspace", round(i·(T − 1)/steps) for i = steps … 1 (for 20 steps:
    /// 999, 949, …, 50, then σ = 0).
    pub fn new(
        schedule: NoiseSchedule,
        kind: SamplerKind,
        steps: usize,
    ) -> Result<Self, EmergeError> {
        let top = schedule.num_train_timesteps() - 1;
        let timesteps = match kind.spacing() {
            Spacing::Leading => leading_timesteps(top + 1, steps, 0)?,
            Spacing::Linspace => linspace_timesteps(top, steps)?,
        };
        Self::with_timesteps(schedule, kind, timesteps)
    }

    /// A sampler that starts from an x_t at timestep `start` (the page's "denoise from here"):
    /// the same spacing over `0..=start`, its first timestep exactly `start`.
    pub fn from_timestep(
        schedule: NoiseSchedule,
        kind: SamplerKind,
        steps: usize,
        start: usize,
    ) -> Result<Self, EmergeError> {
        schedule.check_timestep(start)?;
        let timesteps = match kind.spacing() {
            Spacing::Leading => {
                let ratio = leading_ratio(start + 1, steps)?;
                let offset = start - (steps - 1) * ratio;
                leading_timesteps(start + 1, steps, offset)?
            }
            Spacing::Linspace => linspace_timesteps(start, steps)?,
        };
        Self::with_timesteps(schedule, kind, timesteps)
    }

    /// The most steps a run from timestep `start` can take with `kind` (each step visits a
    /// distinct timestep).
    pub fn max_steps(kind: SamplerKind, start: usize) -> usize {
        match kind.spacing() {
            Spacing::Leading => start + 1,
            Spacing::Linspace => start.max(1),
        }
    }

    fn with_timesteps(
        schedule: NoiseSchedule,
        kind: SamplerKind,
        timesteps: Vec<usize>,
    ) -> Result<Self, EmergeError> {
        kind.validate()?;
        Ok(Self {
            schedule,
            kind,
            timesteps,
        })
    }

    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// ᾱ of the timestep that follows step `index`; 1 after the last step, so that the final
    /// output is x_0 itself (diffusers' `set_alpha_to_one = True`).
    fn alpha_prod_prev(&self, index: usize) -> f64 {
        self.timesteps
            .get(index + 1)
            .map_or(1.0, |&t| self.schedule.alphas_cumprod[t])
    }

    /// q(x_{t−1} | x_t, x_0) = N(c₀ x_0 + c_t x_t, σ² I) from step `index`'s timestep t to the
    /// next one s (DDPM eq. 6–7 with ᾱ_{t−1} → ᾱ_s and β_t → 1 − ᾱ_t/ᾱ_s, so it also holds for
    /// respaced runs; diffusers' `DDPMScheduler._get_variance`). σ² is β̃ (fixed small) or β
    /// (fixed large), DDPM §3.2.
    pub fn ddpm_posterior(&self, index: usize) -> Posterior {
        let timestep = self.timesteps[index];
        let alpha_prod_t = self.schedule.alphas_cumprod[timestep];
        let alpha_prod_t_prev = self.alpha_prod_prev(index);
        let (beta_prod_t, beta_prod_t_prev) = (1.0 - alpha_prod_t, 1.0 - alpha_prod_t_prev);
        let current_alpha_t = alpha_prod_t / alpha_prod_t_prev;
        let current_beta_t = 1.0 - current_alpha_t;
        Posterior {
            // c₀ = √ᾱ_{t−1}·β_t/(1 − ᾱ_t)  (DDPM eq. 7)
            x0_coefficient: alpha_prod_t_prev.sqrt() * current_beta_t / beta_prod_t,
            // c_t = √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t)  (DDPM eq. 7)
            sample_coefficient: current_alpha_t.sqrt() * beta_prod_t_prev / beta_prod_t,
            variance: match self.schedule.config.variance_type {
                // β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t  (DDPM eq. 7)
                crate::schedule::VarianceType::FixedSmall => {
                    beta_prod_t_prev / beta_prod_t * current_beta_t
                }
                crate::schedule::VarianceType::FixedLarge => current_beta_t,
            },
        }
    }

    /// λ_t = ln(α_t/σ_t) = ½ ln(ᾱ_t/(1 − ᾱ_t)), the half log-SNR DPM-Solver steps in.
    fn lambda(alpha_prod: f64) -> f64 {
        0.5 * (alpha_prod / (1.0 - alpha_prod)).ln()
    }

    /// One reverse step from `sample` = x_t at `timesteps[index]`, given the model's
    /// ε_θ(x_t, t) and, for DPM-Solver++(2M), the x̂_0 of the step before (`None` on the first
    /// step). Noise, where the step needs it, is drawn from each image's stream in `noise`.
    pub fn step(
        &self,
        index: usize,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        previous: Option<&Tensor<4>>,
        noise: &mut ImageNoise,
    ) -> Result<StepOutput, EmergeError> {
        let (shape, device) = (sample.dims(), sample.device());
        self.step_with_variance_noise(index, model_output, sample, previous, || {
            image_gaussian(noise, shape, &device)
        })
    }

    /// [`Self::step`] with z supplied by the caller (diffusers' `variance_noise`); it is asked
    /// for only when the step adds noise.
    pub fn step_with_variance_noise(
        &self,
        index: usize,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        previous: Option<&Tensor<4>>,
        variance_noise: impl FnOnce() -> Result<Tensor<4>, EmergeError>,
    ) -> Result<StepOutput, EmergeError> {
        let timestep = self.timestep(index)?;
        let update = self.update(index, previous.is_some())?;
        let row = update.to_tensor(1.0, &sample.device());
        let terms = StepTerms {
            sample,
            noise_prediction: model_output,
            previous_x0: previous.filter(|_| update.previous_x0 != 0.0).cloned(),
            noise: (update.std_dev > 0.0).then(variance_noise).transpose()?,
        };
        let (prev_sample, pred_original_sample) =
            update::apply(&row, terms, self.schedule.config.clip_sample)?;
        Ok(StepOutput {
            timestep,
            prev_sample,
            pred_original_sample,
        })
    }

    /// The timestep of step `index`, or the error that the run has none left.
    fn timestep(&self, index: usize) -> Result<usize, EmergeError> {
        self.timesteps
            .get(index)
            .copied()
            .ok_or(EmergeError::Finished(self.timesteps.len()))
    }

    /// The coefficients of step `index` ([`Update`]); `has_previous`: whether the x̂_0 of the
    /// step before is at hand (DPM-Solver++(2M) is first order without it).
    pub fn update(&self, index: usize, has_previous: bool) -> Result<Update, EmergeError> {
        let timestep = self.timestep(index)?;
        // 1. compute alphas, betas
        let alpha_prod_t = self.schedule.alphas_cumprod[timestep];
        let alpha_prod_t_prev = self.alpha_prod_prev(index);
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let is_last = index + 1 == self.timesteps.len();
        // 2. x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t  (DDPM eq. 15, DDIM eq. 12)
        let none = Update {
            x0_from_sample: 1.0 / alpha_prod_t.sqrt(),
            x0_from_noise: -beta_prod_t.sqrt() / alpha_prod_t.sqrt(),
            sample: 0.0,
            x0: 0.0,
            noise_prediction: 0.0,
            previous_x0: 0.0,
            std_dev: 0.0,
        };
        Ok(match self.kind {
            SamplerKind::Ddpm => {
                let posterior = self.ddpm_posterior(index);
                Update {
                    // 4. μ̃_t = c₀ x̂_0 + c_t x_t  (DDPM eq. 7)
                    x0: posterior.x0_coefficient,
                    sample: posterior.sample_coefficient,
                    // 5. σ_t per the variance type; no noise at the last step
                    std_dev: if is_last {
                        0.0
                    } else {
                        posterior.variance.max(1e-20).sqrt()
                    },
                    ..none
                }
            }
            SamplerKind::Ddim { eta } => {
                // 4. σ_t(η) = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1})  (DDIM eq. 16)
                let variance =
                    beta_prod_t_prev / beta_prod_t * (1.0 - alpha_prod_t / alpha_prod_t_prev);
                let std_dev = eta * variance.max(0.0).sqrt();
                Update {
                    // 5. x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) ε_θ + σ_t z  (DDIM eq. 12)
                    x0: alpha_prod_t_prev.sqrt(),
                    noise_prediction: (1.0 - alpha_prod_t_prev - std_dev * std_dev)
                        .max(0.0)
                        .sqrt(),
                    std_dev,
                    ..none
                }
            }
            SamplerKind::DpmSolver2M | SamplerKind::SdeDpmSolver2M => {
                self.dpm_solver_update(index, has_previous, none)
            }
        })
    }
}

impl Sampler {
    /// DPM-Solver++(2M) from s₀ = `timesteps[index]` to the next timestep t (σ_t = 0 after the
    /// last), in data prediction D = x̂_0, as the coefficients of x_{s₀}, x̂_0(s₀), x̂_0(s₁) and
    /// the noise the SDE variant adds. The first step has no earlier x̂_0 and the last step ends
    /// at σ = 0, so both are first order, as in diffusers (`lower_order_final`).
    fn dpm_solver_update(&self, index: usize, has_previous: bool, x0_only: Update) -> Update {
        let alphas_cumprod = &self.schedule.alphas_cumprod;
        let alpha_prod_s0 = alphas_cumprod[self.timesteps[index]];
        let alpha_prod_t = self.alpha_prod_prev(index);
        // 4. α, σ of the two ends
        let (alpha_s0, sigma_s0) = (alpha_prod_s0.sqrt(), (1.0 - alpha_prod_s0).sqrt());
        let (alpha_t, sigma_t) = (alpha_prod_t.sqrt(), (1.0 - alpha_prod_t).sqrt());
        // e^{−h} with h = λ_t − λ_{s₀}: (σ_t/α_t)/(σ_{s₀}/α_{s₀}), 0 at σ_t = 0 (λ_t = ∞)
        let exp_neg_h = (sigma_t / alpha_t) / (sigma_s0 / alpha_s0);
        let is_last = index + 1 == self.timesteps.len();
        // 6. x_t = carry·x_{s₀} + gain·(D₀ + ½ D₁) + noise·z, where
        //    SDE: carry = (σ_t/σ_{s₀}) e^{−h}, gain = α_t (1 − e^{−2h}), noise = σ_t √(1 − e^{−2h})
        //    (SDE-DPM-Solver++(2M), Lu et al. 2022 §5);
        //    ODE: carry = σ_t/σ_{s₀}, gain = −α_t (e^{−h} − 1), no noise (Algorithm 2)
        let (carry, gain, std_dev) = match self.kind {
            SamplerKind::SdeDpmSolver2M => {
                let decay = 1.0 - exp_neg_h * exp_neg_h;
                (
                    sigma_t / sigma_s0 * exp_neg_h,
                    alpha_t * decay,
                    sigma_t * decay.max(0.0).sqrt(),
                )
            }
            _ => (sigma_t / sigma_s0, -alpha_t * (exp_neg_h - 1.0), 0.0),
        };
        // 5. D₀ = x̂_0(s₀); D₁ = (x̂_0(s₀) − x̂_0(s₁))/r₀ with r₀ = h₀/h, h₀ = λ_{s₀} − λ_{s₁}
        //    (Lu et al. 2022, Algorithm 2, the midpoint form diffusers ships), so
        //    D₀ + ½ D₁ = (1 + 1/(2r₀)) x̂_0(s₀) − x̂_0(s₁)/(2r₀)
        let (x0, previous_x0) = if has_previous && index > 0 && !is_last {
            let lambda_s1 = Self::lambda(alphas_cumprod[self.timesteps[index - 1]]);
            let lambda_s0 = Self::lambda(alpha_prod_s0);
            let h = -exp_neg_h.ln();
            let half_over_r0 = 0.5 * h / (lambda_s0 - lambda_s1);
            (gain * (1.0 + half_over_r0), -gain * half_over_r0)
        } else {
            (gain, 0.0)
        };
        Update {
            sample: carry,
            x0,
            previous_x0,
            std_dev,
            ..x0_only
        }
    }
}

/// ⌊available/steps⌋, the stride of the leading spacing; an error unless 1 ≤ steps ≤ available.
fn leading_ratio(available: usize, steps: usize) -> Result<usize, EmergeError> {
    if steps == 0 || steps > available {
        return Err(EmergeError::InvalidArgument(format!(
            "the number of sampling steps must be between 1 and {available}, got {steps}"
        )));
    }
    Ok(available / steps)
}

/// `steps` timesteps i·⌊available/steps⌋ + offset, descending (diffusers' "leading" spacing).
fn leading_timesteps(
    available: usize,
    steps: usize,
    offset: usize,
) -> Result<Vec<usize>, EmergeError> {
    let ratio = leading_ratio(available, steps)?;
    Ok((0..steps).rev().map(|i| i * ratio + offset).collect())
}

/// `steps` timesteps round(i·top/steps) for i = steps … 1, descending (diffusers' "linspace"
/// spacing without its final 0, where the solver's last step lands at σ = 0; numpy's rounding,
/// half to even).
fn linspace_timesteps(top: usize, steps: usize) -> Result<Vec<usize>, EmergeError> {
    let most = top.max(1);
    if steps == 0 || steps > most {
        return Err(EmergeError::InvalidArgument(format!(
            "the number of DPM-Solver steps from timestep {top} must be between 1 and {most}, got {steps}"
        )));
    }
    Ok((1..=steps)
        .rev()
        .map(|i| (i as f64 * (top as f64 / steps as f64)).round_ties_even() as usize)
        .collect())
}

/// The model seen by a sampler: ε_θ(x_t, t) for a batch that shares one timestep.
pub trait NoisePredictor {
    fn predict_noise(&self, sample: Tensor<4>, timestep: usize) -> Result<Tensor<4>, EmergeError>;
}

/// One sampling run: the current x_t, how far it has come, and its images' noise streams.
/// Same sampler, seed and shape give the same images on every backend, up to float rounding,
/// and an image is the same whatever batch it is drawn in (its noise is its own stream).
#[derive(Debug, Clone)]
pub struct Sampling {
    sampler: Sampler,
    sample: Tensor<4>,
    next_index: usize,
    noise: ImageNoise,
    /// x̂_0 of the last step, DPM-Solver++(2M)'s second point.
    previous_prediction: Option<Tensor<4>>,
}

impl Sampling {
    /// Starts from x_T ~ N(0, I), image b's drawn first from its stream in `noise`.
    pub fn from_noise(
        sampler: Sampler,
        shape: [usize; 4],
        mut noise: ImageNoise,
        device: &Device,
    ) -> Result<Self, EmergeError> {
        let sample = image_gaussian(&mut noise, shape, device)?;
        Ok(Self::from_sample(sampler, sample, noise))
    }

    /// Starts from a given x_t (for example a noised real image); `noise` drives later steps.
    pub fn from_sample(sampler: Sampler, sample: Tensor<4>, noise: ImageNoise) -> Self {
        Self {
            sampler,
            sample,
            next_index: 0,
            noise,
            previous_prediction: None,
        }
    }

    /// SDEdit (Meng et al. 2021): starts from the images `original` noised to the sampler's
    /// first timestep (a sampler [`Sampler::from_timestep`]) with each image's first draw from
    /// its stream in `noise` (for image 0, the x_t the forward view shows for the seed), then
    /// denoises, later noise from the same streams. A low start keeps the image, a high one lets
    /// the model redraw it.
    pub fn from_image(
        sampler: Sampler,
        original: Tensor<4>,
        mut noise: ImageNoise,
    ) -> Result<Self, EmergeError> {
        let start = sampler.timesteps[0];
        let x_t = sampler
            .schedule
            .add_seeded_noise(original, start, &mut noise)?;
        Ok(Self::from_sample(sampler, x_t, noise))
    }

    /// The timestep the next step starts from, or `None` when the run is finished.
    pub fn timestep(&self) -> Option<usize> {
        self.sampler.timesteps.get(self.next_index).copied()
    }

    /// The current x_t (the final image once finished).
    pub fn sample(&self) -> &Tensor<4> {
        &self.sample
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Steps done and steps in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.next_index, self.sampler.timesteps.len())
    }

    pub fn is_finished(&self) -> bool {
        self.next_index >= self.sampler.timesteps.len()
    }

    /// Advances one step given the model's ε_θ for the current x_t and timestep.
    pub fn step(&mut self, model_output: Tensor<4>) -> Result<StepOutput, EmergeError> {
        let output = self.sampler.step(
            self.next_index,
            model_output,
            self.sample.clone(),
            self.previous_prediction.as_ref(),
            &mut self.noise,
        )?;
        self.took(&output);
        Ok(output)
    }

    /// x̂_0 of the last step, which a multistep solver's next step uses.
    pub fn previous(&self) -> Option<&Tensor<4>> {
        self.previous_prediction.as_ref()
    }

    /// The next step's timestep and its fresh noise z (row-major), drawn from the images'
    /// streams exactly where [`Self::step`] draws it, where the step draws some.
    fn next_noise(&mut self) -> Result<(usize, Option<Vec<f32>>), EmergeError> {
        let index = self.next_index;
        let timestep = self.sampler.timestep(index)?;
        let update = self
            .sampler
            .update(index, self.previous_prediction.is_some())?;
        let noise = if update.std_dev > 0.0 {
            Some(image_normals(&mut self.noise, self.sample.dims())?)
        } else {
            None
        };
        Ok((timestep, noise))
    }

    /// Takes the next step while recording the step on the device for the rest of the run
    /// ([`RecordedStep::record`]); the recording, and whether the device made one, come with
    /// the step's output. On an error the run is as it was.
    pub async fn step_recording(
        &mut self,
        unet: &UNet,
        config: &UNetConfig,
        conditioning: &Conditioning,
    ) -> Result<(StepOutput, RecordedStep, Replay), EmergeError> {
        let streams = self.noise.clone();
        let (timestep, noise) = self.next_noise()?;
        let recording = RecordedStep::record(unet, config, conditioning, self, noise).await;
        let (recorded, replay, (prev_sample, pred_original_sample)) = match recording {
            Ok(recording) => recording,
            Err(e) => {
                self.noise = streams;
                return Err(e);
            }
        };
        let output = StepOutput {
            timestep,
            prev_sample,
            pred_original_sample,
        };
        self.took(&output);
        Ok((output, recorded, replay))
    }

    /// Advances one step by replaying `recorded` (made for this run by
    /// [`Self::step_recording`]).
    pub fn step_recorded(
        &mut self,
        recorded: &mut RecordedStep,
        unet: &UNet,
    ) -> Result<StepOutput, EmergeError> {
        let index = self.next_index;
        let (timestep, noise) = self.next_noise()?;
        let (prev_sample, pred_original_sample) = recorded.step(unet, index, noise)?;
        let output = StepOutput {
            timestep,
            prev_sample,
            pred_original_sample,
        };
        self.took(&output);
        Ok(output)
    }

    /// Moves on past the step that produced `output`.
    fn took(&mut self, output: &StepOutput) {
        self.sample = output.prev_sample.clone();
        if self.sampler.kind.is_multistep() {
            self.previous_prediction = Some(output.pred_original_sample.clone());
        }
        self.next_index += 1;
    }

    /// Asks `model` for ε_θ(x_t, t) and advances one step.
    pub fn step_with(&mut self, model: &impl NoisePredictor) -> Result<StepOutput, EmergeError> {
        let timestep = self
            .timestep()
            .ok_or(EmergeError::Finished(self.sampler.timesteps.len()))?;
        let model_output = model.predict_noise(self.sample.clone(), timestep)?;
        self.step(model_output)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::schedule::{ScheduleConfig, VarianceType};

    fn full_ddpm(variance_type: VarianceType) -> Sampler {
        let schedule = NoiseSchedule::new(ScheduleConfig {
            variance_type,
            ..Default::default()
        })
        .unwrap();
        Sampler::new(schedule, SamplerKind::Ddpm, 1000).unwrap()
    }

    /// Index of timestep t in a full 1000-step DDPM run (timesteps run 999, 998, …, 0).
    fn index_of(t: usize) -> usize {
        999 - t
    }

    #[test]
    fn posterior_variance_matches_diffusers_pinned_values() {
        // diffusers' test_scheduler_ddpm pins the fixed_small variance at t = 0, 487, 999.
        let small = full_ddpm(VarianceType::FixedSmall);
        assert_eq!(small.ddpm_posterior(index_of(0)).variance, 0.0);
        assert!((small.ddpm_posterior(index_of(487)).variance - 0.00979).abs() < 1e-5);
        assert!((small.ddpm_posterior(index_of(999)).variance - 0.02).abs() < 1e-5);
        // Fixed large is β_t itself, and β̃_t < β_t.
        let large = full_ddpm(VarianceType::FixedLarge);
        let betas = &large.schedule().betas;
        for t in [1, 300, 999] {
            assert!((large.ddpm_posterior(index_of(t)).variance - betas[t]).abs() < 1e-15);
            assert!(small.ddpm_posterior(index_of(t)).variance < betas[t]);
        }
    }

    #[test]
    fn posterior_mean_takes_a_noiseless_x_t_to_the_previous_noiseless_x() {
        // μ̃(x_t, x_0) with x_t = √ᾱ_t x_0 (no noise) must be √ᾱ_{t−1} x_0  (DDPM eq. 7), for
        // the full run and for a respaced one alike.
        for sampler in [
            full_ddpm(VarianceType::FixedSmall),
            Sampler::new(
                NoiseSchedule::new(ScheduleConfig::default()).unwrap(),
                SamplerKind::Ddpm,
                50,
            )
            .unwrap(),
        ] {
            let a = &sampler.schedule().alphas_cumprod;
            let steps = sampler.timesteps();
            for index in [0, 10, steps.len() - 2] {
                let p = sampler.ddpm_posterior(index);
                let (t, s) = (steps[index], steps[index + 1]);
                let mu = p.x0_coefficient + p.sample_coefficient * a[t].sqrt();
                assert!((mu - a[s].sqrt()).abs() < 1e-12, "t = {t}, s = {s}");
            }
        }
    }

    /// The exact ε-predictor for data x_0 ~ N(μ, s² I): with x_t = √ᾱ x_0 + √(1−ᾱ) ε,
    /// E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ).
    struct GaussianOracle {
        schedule: NoiseSchedule,
        mean: f64,
        std: f64,
    }

    impl NoisePredictor for GaussianOracle {
        fn predict_noise(&self, sample: Tensor<4>, t: usize) -> Result<Tensor<4>, EmergeError> {
            let a = self.schedule.alphas_cumprod[t];
            let scale = (1.0 - a).sqrt() / (a * self.std * self.std + 1.0 - a);
            Ok(sample.sub_scalar(a.sqrt() * self.mean).mul_scalar(scale))
        }
    }

    fn moments(x: Tensor<4>) -> (f64, f64) {
        let v = x.into_data().try_into_vec::<f32>().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (
            mean,
            v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n,
        )
    }

    fn run_to_end(sampler: Sampler, seed: u64, oracle: &GaussianOracle) -> Tensor<4> {
        let noise = ImageNoise::new(seed, 0..8);
        let mut run =
            Sampling::from_noise(sampler, [8, 1, 32, 32], noise, &Device::flex()).unwrap();
        while !run.is_finished() {
            run.step_with(oracle).unwrap();
        }
        run.sample().clone()
    }

    /// The variance a sampler must produce for N(μ, s² I) data, derived independently by
    /// propagating variances through the linear-Gaussian chain the exact predictor makes: with
    /// y = x_t − √ᾱ_t μ, each step maps (y_t, y of the step before) to k₀·y_t + k₁·y_prev plus
    /// fresh noise of variance σ². Few-step samplers shrink the variance below s² (the last step
    /// returns E[x_0 | x_t]), and this says by how much.
    fn predicted_variance(sampler: &Sampler, std: f64) -> f64 {
        let ac = &sampler.schedule().alphas_cumprod;
        let ts = sampler.timesteps();
        // E[x_0 | x_t] − μ = gain·(x_t − √ᾱ μ), with Var(x_t) = ᾱ s² + 1 − ᾱ
        let x0_gain = |a: f64| a.sqrt() * std * std / (a * std * std + 1.0 - a);
        let lambda = |a: f64| 0.5 * (a / (1.0 - a)).ln();
        // Var(y_t), Var(y_prev), Cov(y_t, y_prev)
        let (mut var, mut var_prev, mut cov) = (1.0, 0.0, 0.0);
        for (i, &t) in ts.iter().enumerate() {
            let (a, a_prev) = (ac[t], ts.get(i + 1).map_or(1.0, |&p| ac[p]));
            let v_t = a * std * std + 1.0 - a;
            let eps_gain = (1.0 - a).sqrt() / v_t; // E[ε | x_t] = eps_gain·(x_t − √ᾱ μ)
            let last = i + 1 == ts.len();
            let (k0, k1, noise_var) = match sampler.kind() {
                SamplerKind::Ddpm => {
                    let alpha = a / a_prev;
                    let beta = 1.0 - alpha;
                    let k = a_prev.sqrt() * beta / (1.0 - a) * x0_gain(a)
                        + alpha.sqrt() * (1.0 - a_prev) / (1.0 - a);
                    let noise = match sampler.schedule().config.variance_type {
                        VarianceType::FixedSmall => (1.0 - a_prev) / (1.0 - a) * beta,
                        VarianceType::FixedLarge => beta,
                    };
                    (k, 0.0, if last { 0.0 } else { noise })
                }
                SamplerKind::Ddim { eta } => {
                    let sigma2 = eta * eta * (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev);
                    let k = a_prev.sqrt() * x0_gain(a) + (1.0 - a_prev - sigma2).sqrt() * eps_gain;
                    (k, 0.0, sigma2)
                }
                kind => {
                    let (alpha_s, sigma_s) = (a.sqrt(), (1.0 - a).sqrt());
                    let (alpha_t, sigma_t) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
                    let e = (sigma_t / alpha_t) / (sigma_s / alpha_s); // e^{−h}
                    let sde = kind == SamplerKind::SdeDpmSolver2M;
                    let (carry, gain, noise) = if sde {
                        let g = 1.0 - e * e;
                        (sigma_t / sigma_s * e, alpha_t * g, sigma_t * sigma_t * g)
                    } else {
                        (sigma_t / sigma_s, alpha_t * (1.0 - e), 0.0)
                    };
                    // D₀ + ½ D₁ = (1 + 1/(2r₀)) x̂_0(s₀) − x̂_0(s₁)/(2r₀) on the middle steps
                    let half_over_r0 = if i > 0 && !last {
                        let a_s1 = ac[ts[i - 1]];
                        let h = -e.ln();
                        0.5 * h / (lambda(a) - lambda(a_s1))
                    } else {
                        0.0
                    };
                    let prev_gain = if i > 0 { x0_gain(ac[ts[i - 1]]) } else { 0.0 };
                    (
                        carry + gain * x0_gain(a) * (1.0 + half_over_r0),
                        -gain * half_over_r0 * prev_gain,
                        noise,
                    )
                }
            };
            let new_var = k0 * k0 * var + k1 * k1 * var_prev + 2.0 * k0 * k1 * cov + noise_var;
            (cov, var_prev, var) = (k0 * var + k1 * cov, var, new_var);
        }
        var
    }

    fn check_sampler_recovers_gaussian(config: ScheduleConfig, kind: SamplerKind, steps: usize) {
        let schedule = NoiseSchedule::new(config).unwrap();
        // DPM-Solver's last step jumps from t ≈ T/steps to σ = 0, returning E[x_0 | x_t] there:
        // data narrower than that noise would lose most of its variance, so it gets wider data.
        let (mu, std) = if kind.is_multistep() {
            (0.0, 0.35)
        } else {
            (0.3, 0.2)
        };
        let oracle = GaussianOracle {
            schedule: schedule.clone(),
            mean: mu,
            std,
        };
        let sampler = Sampler::new(schedule, kind, steps).unwrap();
        let expected_var = predicted_variance(&sampler, std);
        // The discretisation may only shrink the variance, and never by more than 40 % here.
        assert!(
            expected_var <= std * std * 1.01 && expected_var > 0.6 * std * std,
            "{expected_var}"
        );
        let (mean, var) = moments(run_to_end(sampler, 11, &oracle));
        // 8192 samples: standard error of the mean 0.0022, of the variance about 1.6 %.
        assert!(
            (mean - mu).abs() < 0.01,
            "{kind:?} {steps} steps: mean {mean}"
        );
        assert!(
            (var / expected_var - 1.0).abs() < 0.06,
            "{kind:?} {steps} steps: variance {var}, expected {expected_var}"
        );
    }

    #[test]
    fn ddpm_1000_steps_recovers_a_gaussian_fixed_small() {
        check_sampler_recovers_gaussian(ScheduleConfig::default(), SamplerKind::Ddpm, 1000);
    }

    #[test]
    fn ddpm_1000_steps_recovers_a_gaussian_fixed_large() {
        let config = ScheduleConfig {
            variance_type: VarianceType::FixedLarge,
            ..Default::default()
        };
        check_sampler_recovers_gaussian(config, SamplerKind::Ddpm, 1000);
    }

    #[test]
    fn ddpm_respaced_to_100_steps_recovers_a_gaussian() {
        check_sampler_recovers_gaussian(ScheduleConfig::default(), SamplerKind::Ddpm, 100);
    }

    #[test]
    fn ddim_50_steps_recovers_a_gaussian_deterministic_and_stochastic() {
        check_sampler_recovers_gaussian(
            ScheduleConfig::default(),
            SamplerKind::Ddim { eta: 0.0 },
            50,
        );
        check_sampler_recovers_gaussian(
            ScheduleConfig::default(),
            SamplerKind::Ddim { eta: 1.0 },
            50,
        );
    }

    #[test]
    fn ddim_recovers_a_gaussian_on_the_cosine_schedule() {
        let config = ScheduleConfig {
            beta_schedule: crate::schedule::BetaSchedule::COSINE,
            ..Default::default()
        };
        check_sampler_recovers_gaussian(config, SamplerKind::Ddim { eta: 0.0 }, 50);
    }

    #[test]
    fn dpm_solver_20_steps_recovers_a_gaussian_ode_and_sde() {
        for kind in [SamplerKind::DpmSolver2M, SamplerKind::SdeDpmSolver2M] {
            check_sampler_recovers_gaussian(ScheduleConfig::default(), kind, 20);
            let cosine = ScheduleConfig {
                beta_schedule: crate::schedule::BetaSchedule::COSINE,
                ..Default::default()
            };
            check_sampler_recovers_gaussian(cosine, kind, 15);
        }
    }

    #[test]
    fn an_image_is_the_same_whatever_its_batch() {
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let oracle = GaussianOracle {
            schedule: schedule.clone(),
            mean: 0.0,
            std: 0.5,
        };
        let device = Device::flex();
        let run = |kind, images: std::ops::Range<usize>| {
            let sampler = Sampler::new(schedule.clone(), kind, 10).unwrap();
            let shape = [images.len(), 1, 4, 4];
            let mut run =
                Sampling::from_noise(sampler, shape, ImageNoise::new(3, images), &device).unwrap();
            while !run.is_finished() {
                run.step_with(&oracle).unwrap();
            }
            run.sample()
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        for kind in [
            SamplerKind::Ddpm,
            SamplerKind::Ddim { eta: 1.0 },
            SamplerKind::SdeDpmSolver2M,
        ] {
            let whole = run(kind, 0..7);
            let mut split = run(kind, 0..1);
            split.extend(run(kind, 1..4));
            split.extend(run(kind, 4..7));
            assert_eq!(whole, split, "{kind:?}");
        }
    }

    #[test]
    fn same_seed_same_images_different_seed_different_images() {
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let oracle = GaussianOracle {
            schedule: schedule.clone(),
            mean: 0.0,
            std: 0.5,
        };
        for kind in [
            SamplerKind::Ddpm,
            SamplerKind::Ddim { eta: 0.5 },
            SamplerKind::SdeDpmSolver2M,
        ] {
            let sampler = Sampler::new(schedule.clone(), kind, 20).unwrap();
            let a = run_to_end(sampler.clone(), 5, &oracle).into_data();
            let b = run_to_end(sampler.clone(), 5, &oracle).into_data();
            let c = run_to_end(sampler, 6, &oracle).into_data();
            assert_eq!(a, b);
            assert_ne!(a, c);
        }
    }

    #[test]
    fn leading_spacing_matches_diffusers() {
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let ddim = Sampler::new(schedule.clone(), SamplerKind::Ddim { eta: 0.0 }, 50).unwrap();
        assert_eq!(ddim.timesteps()[..3], [980, 960, 940]);
        assert_eq!(*ddim.timesteps().last().unwrap(), 0);
        let full = Sampler::new(schedule.clone(), SamplerKind::Ddpm, 1000).unwrap();
        assert_eq!(full.timesteps().len(), 1000);
        assert_eq!((full.timesteps()[0], full.timesteps()[999]), (999, 0));
        let from_here =
            Sampler::from_timestep(schedule.clone(), SamplerKind::Ddim { eta: 0.0 }, 10, 437)
                .unwrap();
        assert_eq!(from_here.timesteps()[0], 437);
        assert_eq!(from_here.timesteps().len(), 10);
        assert!(from_here.timesteps().windows(2).all(|w| w[0] > w[1]));
        // DPM-Solver: diffusers' "linspace", round half to even as numpy does (999/6 = 166.5)
        let dpm = Sampler::new(schedule.clone(), SamplerKind::DpmSolver2M, 20).unwrap();
        assert_eq!(dpm.timesteps()[..3], [999, 949, 899]);
        assert_eq!(*dpm.timesteps().last().unwrap(), 50);
        let six = Sampler::new(schedule.clone(), SamplerKind::DpmSolver2M, 6).unwrap();
        assert_eq!(six.timesteps(), [999, 832, 666, 500, 333, 166]);
        let from_here = Sampler::from_timestep(schedule, SamplerKind::DpmSolver2M, 4, 400).unwrap();
        assert_eq!(from_here.timesteps(), [400, 300, 200, 100]);
    }

    #[test]
    fn step_outputs_x0_prediction_clipped_and_exact() {
        // With ε_θ = the true noise, x̂_0 recovers x_0 exactly (DDPM eq. 15).
        let device = Device::flex();
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        let x0 = Tensor::<4>::from_data(
            TensorData::new(vec![0.5f32, -0.25, 0.9, -0.9], [1, 1, 2, 2]),
            &device,
        );
        let eps = crate::tensor_util::gaussian(
            &mut crate::noise::GaussianNoise::new(1),
            [1, 1, 2, 2],
            &device,
        );
        let sampler = Sampler::new(schedule.clone(), SamplerKind::Ddim { eta: 0.0 }, 50).unwrap();
        let t = sampler.timesteps()[10];
        let x_t = schedule.add_noise(x0.clone(), eps.clone(), &[t]).unwrap();
        let out = sampler
            .step(10, eps, x_t, None, &mut ImageNoise::new(0, 0..1))
            .unwrap();
        let diff = (out.pred_original_sample - x0)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-4, "{diff}");
        // A wildly wrong ε gives an x̂_0 far outside [−1, 1]: it must come back clipped.
        let wild = Tensor::<4>::full([1, 1, 2, 2], 50.0, &device);
        let out = sampler
            .step(
                0,
                wild,
                Tensor::zeros([1, 1, 2, 2], &device),
                None,
                &mut ImageNoise::new(0, 0..1),
            )
            .unwrap();
        let (lo, hi) = (
            out.pred_original_sample.clone().min().into_scalar::<f32>(),
            out.pred_original_sample.max().into_scalar::<f32>(),
        );
        assert!(lo >= -1.0 && hi <= 1.0);
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let schedule = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        assert!(Sampler::new(schedule.clone(), SamplerKind::Ddpm, 0).is_err());
        assert!(
            Sampler::new(schedule.clone(), SamplerKind::Ddpm, 1001)
                .unwrap_err()
                .to_string()
                .contains("1001")
        );
        assert!(
            Sampler::new(schedule.clone(), SamplerKind::Ddim { eta: 2.0 }, 10)
                .unwrap_err()
                .to_string()
                .contains("eta")
        );
        assert!(Sampler::from_timestep(schedule.clone(), SamplerKind::Ddpm, 10, 1000).is_err());
        let sampler = Sampler::new(schedule, SamplerKind::Ddim { eta: 0.0 }, 1).unwrap();
        let device = Device::flex();
        let noise = ImageNoise::new(0, 0..1);
        let mut run = Sampling::from_noise(sampler, [1, 1, 2, 2], noise, &device).unwrap();
        let two_streams = ImageNoise::new(0, 0..2);
        let err = Sampling::from_noise(run.sampler().clone(), [1, 1, 2, 2], two_streams, &device)
            .unwrap_err();
        assert!(
            err.to_string().contains("2 noise streams for a batch of 1"),
            "{err}"
        );
        assert!(
            run.step(Tensor::zeros([1, 1, 3, 3], &device))
                .unwrap_err()
                .to_string()
                .contains("shape")
        );
        run.step(Tensor::zeros([1, 1, 2, 2], &device)).unwrap();
        assert!(matches!(
            run.step(Tensor::zeros([1, 1, 2, 2], &device)),
            Err(EmergeError::Finished(1))
        ));
    }
}
