//! Parity with Hugging Face diffusers, the reference implementation: checkpoints that diffusers
//! wrote with random weights must, once imported, give diffusers' outputs; our samplers, fed the
//! same ε and the same noise as diffusers' schedulers, must follow the same trajectories.
//! Fixtures: tools/parity/make_fixtures.py (see tools/parity/README.md).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use emerge::import;
use emerge_core::{NoiseSchedule, Sampler, SamplerKind};
use serde::Deserialize;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers")
}

#[derive(Deserialize)]
struct UNetCase {
    shape: [usize; 4],
    sample: Vec<f32>,
    timesteps: Vec<f32>,
    class_labels: Option<Vec<i64>>,
    output: Vec<f32>,
    parameters: usize,
}

fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Imports the checkpoint in `dir`, runs its recorded batch and returns the largest deviation
/// from diffusers' output.
fn unet_deviation(dir: &Path) -> f32 {
    let device = Device::flex();
    let case: UNetCase =
        serde_json::from_str(&std::fs::read_to_string(dir.join("parity.json")).unwrap()).unwrap();
    let imported = import::import(dir, &device)
        .unwrap_or_else(|e| panic!("importing {}: {e:#}", dir.display()));
    assert_eq!(
        burn::module::Module::num_params(&imported.unet),
        case.parameters,
        "parameter count"
    );
    let batch = case.shape[0];
    let sample = Tensor::<4>::from_data(TensorData::new(case.sample, case.shape), &device);
    let timesteps = Tensor::<1>::from_data(TensorData::new(case.timesteps, [batch]), &device);
    let labels = case
        .class_labels
        .map(|l| Tensor::<1, Int>::from_data(TensorData::new(l, [batch]), &device));
    let output = imported
        .unet
        .forward(sample, timesteps, labels)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let deviation = max_abs_difference(&output, &case.output);
    eprintln!(
        "{}: max |ours − diffusers| = {deviation:.2e}",
        dir.file_name().unwrap().to_string_lossy()
    );
    deviation
}

#[test]
fn tiny_conditional_unet_from_a_pytorch_pickle_matches_diffusers() {
    assert!(unet_deviation(&fixtures().join("tiny-conditional")) <= 1e-4);
}

#[test]
fn cifar10_layout_unet_with_old_attention_names_matches_diffusers() {
    assert!(unet_deviation(&fixtures().join("cifar10-layout")) <= 1e-4);
}

/// The full google/ddpm-cifar10-32 configuration (143 MB of random weights, not committed):
/// `python tools/parity/make_fixtures.py --cifar10 DIR`, then
/// `EMERGE_DDPM_CIFAR10_FIXTURE=DIR/ddpm-cifar10-32-random cargo test --release -p emerge --test parity -- --ignored`.
#[test]
#[ignore = "needs the 143 MB fixture named by EMERGE_DDPM_CIFAR10_FIXTURE"]
fn full_ddpm_cifar10_unet_matches_diffusers() {
    let dir = std::env::var("EMERGE_DDPM_CIFAR10_FIXTURE")
        .expect("set EMERGE_DDPM_CIFAR10_FIXTURE to the fixture directory");
    assert!(unet_deviation(Path::new(&dir)) <= 1e-4);
}

#[derive(Deserialize)]
struct SchedulerCase {
    name: String,
    config: serde_json::Map<String, serde_json::Value>,
    steps: usize,
    eta: Option<f64>,
    /// The sampler, for the cases other than DDPM (no η) and DDIM (η).
    #[serde(default)]
    sampler: Option<SamplerKind>,
    shape: [usize; 4],
    initial: Vec<f32>,
    timesteps: Vec<usize>,
    alphas_cumprod: Vec<f64>,
    trajectory: Vec<SchedulerStep>,
}

/// One step: the recorded inputs, and diffusers' outputs as shipped (float32) and with exact
/// tables and float64 arithmetic.
#[derive(Deserialize)]
struct SchedulerStep {
    model_output: Vec<f32>,
    noise: Vec<f32>,
    prev_sample: Vec<f32>,
    pred_original_sample: Vec<f32>,
    prev_sample_f64: Vec<f32>,
    pred_original_sample_f64: Vec<f32>,
}

/// Largest deviation from diffusers' (x_{t−1}, x̂_0) over a trajectory: (a) each step started
/// from diffusers' own x_t, (b) along our own trajectory from the same x_T.
struct Deviation {
    per_step: f32,
    free_running: f32,
}

fn deviation(
    case: &SchedulerCase,
    sampler: &Sampler,
    reference: impl Fn(&SchedulerStep) -> (&Vec<f32>, &Vec<f32>),
) -> Deviation {
    let device = Device::flex();
    let tensor = |values: &Vec<f32>| {
        Tensor::<4>::from_data(TensorData::new(values.clone(), case.shape), &device)
    };
    let read = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    let mut d = Deviation {
        per_step: 0.0,
        free_running: 0.0,
    };
    let mut ours = tensor(&case.initial);
    // x̂_0 of the step before (DPM-Solver++(2M)'s second point): diffusers' and ours
    let mut ours_x0: Option<Tensor<4>> = None;
    for (index, step) in case.trajectory.iter().enumerate() {
        let (prev, pred_x0) = reference(step);
        let (theirs_before, theirs_x0) = match index {
            0 => (&case.initial, None),
            _ => {
                let before = reference(&case.trajectory[index - 1]);
                (before.0, Some(tensor(before.1)))
            }
        };
        let out = sampler
            .step_with_variance_noise(
                index,
                tensor(&step.model_output),
                tensor(theirs_before),
                theirs_x0.as_ref(),
                || Ok(tensor(&step.noise)),
            )
            .unwrap();
        d.per_step = d
            .per_step
            .max(max_abs_difference(&read(out.prev_sample), prev))
            .max(max_abs_difference(&read(out.pred_original_sample), pred_x0));
        let out = sampler
            .step_with_variance_noise(
                index,
                tensor(&step.model_output),
                ours,
                ours_x0.as_ref(),
                || Ok(tensor(&step.noise)),
            )
            .unwrap();
        d.free_running = d
            .free_running
            .max(max_abs_difference(&read(out.prev_sample.clone()), prev));
        ours = out.prev_sample;
        ours_x0 = Some(out.pred_original_sample);
    }
    d
}

#[test]
fn samplers_follow_diffusers_trajectories() {
    let text = std::fs::read_to_string(fixtures().join("schedulers.json")).unwrap();
    let cases: Vec<SchedulerCase> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let config = import::schedule_config(&case.config, &mut Vec::new()).unwrap();
        let schedule = NoiseSchedule::new(config).unwrap();
        // diffusers keeps ᾱ_t in float32, ours is float64: equal to float32 precision
        let table_error = schedule
            .alphas_cumprod
            .iter()
            .zip(&case.alphas_cumprod)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            table_error < 1e-6,
            "{}: ᾱ_t differs by {table_error:.1e}",
            case.name
        );
        let kind = case.sampler.unwrap_or(
            case.eta
                .map_or(SamplerKind::Ddpm, |eta| SamplerKind::Ddim { eta }),
        );
        let sampler = Sampler::new(schedule, kind, case.steps).unwrap();
        assert_eq!(
            sampler.timesteps(),
            case.timesteps.as_slice(),
            "{}: timesteps",
            case.name
        );

        let exact = deviation(&case, &sampler, |s| {
            (&s.prev_sample_f64, &s.pred_original_sample_f64)
        });
        let shipped = deviation(&case, &sampler, |s| {
            (&s.prev_sample, &s.pred_original_sample)
        });
        eprintln!(
            "{}: {} steps; max |ours − diffusers| per step / along our trajectory: float64 {:.1e} / {:.1e}, float32 {:.1e} / {:.1e}",
            case.name,
            case.trajectory.len(),
            exact.per_step,
            exact.free_running,
            shipped.per_step,
            shipped.free_running
        );
        assert!(
            exact.per_step <= 1e-5 && exact.free_running <= 1e-5,
            "{}: deviates from diffusers' float64 run",
            case.name
        );
        // diffusers' float32 tables lose digits where β_t = 1 − ᾱ_t/ᾱ_{t−1} is tiny (the last
        // steps of a 1000-step run); the respaced samplers stay within 1e-5 of it too
        let bound = if case.trajectory.len() <= 50 {
            1e-5
        } else {
            1e-3
        };
        assert!(
            shipped.per_step <= bound && shipped.free_running <= bound,
            "{}: deviates from diffusers' float32 run",
            case.name
        );
    }
}
