//! A run's denoising step as a fixed computation on device buffers, recorded once and replayed
//! for every step (burn's graph capture; on wgpu, cubecl resolves pipelines and creates bind
//! groups while recording, so a replay only re-encodes the dispatches).
//!
//! The step reads five buffers that stay put for the whole run: x_t, the step's conditioning
//! vector (computed for every step at the start: it depends only on t and the labels), the
//! step's coefficient row ([`Update::row`], with the guidance scale), the previous x̂_0 and the
//! fresh noise z. Between replays the host writes the next step's vector, row and noise into
//! them (queue writes: no launch, no bind group), and the step itself ends by copying its
//! outputs x_{t−1} and x̂_0 into the x_t and previous x̂_0 it read. Nothing in the step comes
//! from the host, so the same recording serves every step and every sampler.
//!
//! On a device without graph support (Flex) a run steps plainly; the step on stable buffers can
//! still run there without a recording, which is how the tests hold it to the plain step.

use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_backend::{Backend, BackendGraph};
use burn_dispatch::{Dispatch, DispatchDevice};

use crate::error::EmergeError;
use crate::guidance::{Conditioning, guided_noise};
use crate::sampler::Sampling;
use crate::unet::{JointProjection, UNet, UNetConfig};
use crate::update::{self, ROW, StepTerms, coefficient};

/// A step's outputs x_{t−1} and x̂_0.
type StepPair = (Tensor<4>, Tensor<4>);

/// How a run's steps execute after [`crate::Run::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The step was recorded on the device and every step replays it.
    Recorded,
    /// The device cannot record (the reason): the run launches every kernel each step.
    Plain(String),
}

/// How a [`RecordedStep`] computes each step.
enum Execution {
    /// Replaying the recording.
    Replayed(Box<Recording>),
    /// Running the step on the same buffers afresh (a device without graphs).
    Rerun,
}

/// The recorded step, and the buffers x_{t−1} and x̂_0 that every replay writes.
struct Recording {
    graph: BackendGraph<Dispatch>,
    output: StepPair,
}

/// The buffers the step reads, stable for the run.
struct Inputs {
    /// x_t, `[B, C, H, W]`.
    sample: Tensor<4>,
    /// The step's conditioning vector for the UNet batch, `[N, D]` (N = B, or 2B guided).
    embedding: Tensor<2>,
    /// `[w, a, b, c, d, e, f, σ]`.
    row: Tensor<1>,
    previous_x0: Tensor<4>,
    noise: Tensor<4>,
}

/// What the UNet batch of every step is conditioned on.
struct BatchConditioning {
    /// The labels of the UNet batch (`[labels; null]` when guided), or none for a model without
    /// classes.
    labels: Option<Vec<usize>>,
    /// Whether the batch is the doubled [conditional; unconditional] one.
    guided: bool,
}

impl BatchConditioning {
    /// One batch for the whole run: guided where some step's scale w ≠ 1 (a step with w = 1
    /// then gives ε_c, up to rounding, as the plain path's single pass does).
    fn of(
        conditioning: &Conditioning,
        config: &UNetConfig,
        batch: usize,
        timesteps: &[usize],
    ) -> Self {
        let null = config.null_class();
        match (conditioning, null) {
            (_, None) => Self {
                labels: None,
                guided: false,
            },
            (Conditioning::Unconditional, Some(null)) => Self {
                labels: Some(vec![null; batch]),
                guided: false,
            },
            (Conditioning::Classes { labels, guidance }, Some(null)) => {
                let guided = timesteps.iter().any(|&t| guidance.scale_at(t) != 1.0);
                let mut batch_labels = labels.clone();
                if guided {
                    batch_labels.extend(std::iter::repeat_n(null, batch));
                }
                Self {
                    labels: Some(batch_labels),
                    guided,
                }
            }
        }
    }

    fn batch(&self, images: usize) -> usize {
        if self.guided { 2 * images } else { images }
    }
}

/// The guidance scale of the step at `timestep` (1 where the run has none).
fn guidance_at(conditioning: &Conditioning, timestep: usize) -> f64 {
    match conditioning {
        Conditioning::Classes { guidance, .. } => guidance.scale_at(timestep),
        Conditioning::Unconditional => 1.0,
    }
}

/// x_{t−1} and x̂_0 from the stable buffers, left in x_t and the previous x̂_0 (the latter
/// where `multistep`) for the next step: what is recorded.
fn step_in_place(
    unet: &UNet,
    projection: &JointProjection,
    inputs: &mut Inputs,
    settings: StepSettings,
) -> Result<StepPair, EmergeError> {
    let (prev, x0) = denoise_step(unet, projection, inputs, settings)?;
    refresh(&mut inputs.sample, prev.clone());
    if settings.multistep {
        refresh(&mut inputs.previous_x0, x0.clone());
    }
    Ok((prev, x0))
}

/// What a run's steps all share.
#[derive(Debug, Clone, Copy)]
struct StepSettings {
    /// The UNet batch is [conditional; unconditional].
    guided: bool,
    /// x̂_0 is clipped to [−1, 1].
    clip: bool,
    /// The sampler reads the previous x̂_0.
    multistep: bool,
}

/// ε̃ and the step's update from the stable buffers. Every res block's time projection comes
/// from one product with `projection` (the UNet's, joined once per run).
fn denoise_step(
    unet: &UNet,
    projection: &JointProjection,
    inputs: &Inputs,
    StepSettings { guided, clip, .. }: StepSettings,
) -> Result<StepPair, EmergeError> {
    let x = inputs.sample.clone();
    let shifts = projection.shifts(inputs.embedding.clone());
    // one UNet pass over [x; x] with [conditional; unconditional] embeddings where guided
    let batch = if guided {
        Tensor::cat(vec![x.clone(), x.clone()], 0)
    } else {
        x.clone()
    };
    let output = unet.denoise_shifted(batch, shifts);
    #[cfg(feature = "gpu")]
    if let Some(step) = crate::update_kernel::step(
        &inputs.row,
        &x,
        &output,
        &inputs.previous_x0,
        &inputs.noise,
        guided,
        clip,
    ) {
        return Ok(step);
    }
    let noise_prediction = if guided {
        let mut halves = output.chunk(2, 0);
        let eps_uncond = halves.pop().expect("two halves");
        let eps_cond = halves.pop().expect("two halves");
        guided_noise(eps_uncond, eps_cond, coefficient(&inputs.row, 0))
    } else {
        output
    };
    let terms = StepTerms {
        sample: x,
        noise_prediction,
        previous_x0: Some(inputs.previous_x0.clone()),
        noise: Some(inputs.noise.clone()),
    };
    update::apply(&inputs.row, terms, clip)
}

/// Overwrites `target` with `values` in its own buffer (the buffer a recording reads).
fn refresh<const D: usize>(target: &mut Tensor<D>, values: Tensor<D>) {
    let ranges = target.dims().map(|n| 0..n);
    target.inplace(|t| t.slice_assign(ranges, values));
}

/// Overwrites `target` with host `values` (row-major) in its own buffer: one queue write on a
/// GPU, nothing launched; a copy elsewhere.
fn write_values<const D: usize>(target: &mut Tensor<D>, values: &[f32]) {
    #[cfg(feature = "gpu")]
    if crate::cube_op::write(target, values) {
        return;
    }
    let data = TensorData::new(values.to_vec(), target.shape());
    let device = target.device();
    refresh(target, Tensor::from_data(data, &device));
}

/// Writes the step's noise `z` into its buffer, refusing a length that does not fit.
fn write_noise(noise: &mut Tensor<4>, z: &[f32]) -> Result<(), EmergeError> {
    if z.len() != noise.shape().num_elements() {
        return Err(EmergeError::InvalidArgument(format!(
            "{} noise values for x_t of shape {:?}",
            z.len(),
            noise.dims()
        )));
    }
    write_values(noise, z);
    Ok(())
}

fn graph_error(what: &str, error: impl std::fmt::Display) -> EmergeError {
    // burn's errors read "An error happened …\nCaused by:\n  <cause>[\nBacktrace: …]"
    let text = error.to_string();
    let cause = text
        .split_once("Caused by:")
        .map_or(text.as_str(), |(_, c)| c);
    let cause = cause.split("Backtrace").next().unwrap_or_default();
    let cause = cause.split_whitespace().collect::<Vec<_>>().join(" ");
    EmergeError::Device(format!("{what}: {cause}"))
}

/// Waits until the device has run the work behind `output`, without blocking (wasm cannot).
async fn settle(output: &StepPair) -> Result<(), EmergeError> {
    output
        .0
        .to_data_async()
        .await
        .map(drop)
        .map_err(|e| graph_error("waiting for the first step", e))
}

/// A run's step, recorded (or re-run on a device without graphs).
pub struct RecordedStep {
    /// The index of the run's step the recording starts at.
    start: usize,
    inputs: Inputs,
    /// The res blocks' time projections side by side (the recording reads its buffers).
    projection: JointProjection,
    /// Every step's conditioning vectors, `[S, N, D]`, and coefficient rows, `[S, ROW]`, on
    /// the host (row-major), written into the inputs step by step.
    embeddings: Vec<f32>,
    rows: Vec<f32>,
    settings: StepSettings,
    execution: Execution,
}

impl RecordedStep {
    /// Sets up the buffers for `sampling`'s remaining steps, takes the next one on them with
    /// noise `z` (row-major `[B, C, H, W]`, where the step draws some) and records the step for
    /// the ones after it: the first replay is the step after next. Returns that first step's
    /// x_{t−1} and x̂_0 too. `Replay::Plain` when the device cannot record (the step then runs
    /// afresh on the same buffers).
    pub(crate) async fn record(
        unet: &UNet,
        config: &UNetConfig,
        conditioning: &Conditioning,
        sampling: &Sampling,
        z: Option<Vec<f32>>,
    ) -> Result<(Self, Replay, StepPair), EmergeError> {
        let x = sampling.sample().clone();
        let device = x.device();
        let [images, ..] = x.dims();
        let sampler = sampling.sampler();
        let (done, total) = sampling.progress();
        if done >= total {
            return Err(EmergeError::Finished(total));
        }
        let timesteps = &sampler.timesteps()[done..total];
        let batch = BatchConditioning::of(conditioning, config, images, timesteps);
        let embeddings = step_embeddings(unet, &batch, images, timesteps, &device);
        let [steps, n, d] = embeddings.dims();
        let embeddings = embeddings
            .into_data_async()
            .await
            .map_err(|e| graph_error("reading the run's conditioning vectors", e))?
            .try_into_vec::<f32>()
            .map_err(|e| graph_error("reading the run's conditioning vectors", format!("{e:?}")))?;
        let mut rows = Vec::with_capacity(steps * ROW);
        for (i, &t) in timesteps.iter().enumerate() {
            let index = done + i;
            let has_previous = sampling.previous().is_some() || i > 0;
            let update = sampler.update(index, has_previous)?;
            rows.extend(update.row(guidance_at(conditioning, t)));
        }
        let first_embedding = TensorData::new(embeddings[..n * d].to_vec(), [n, d]);
        let mut inputs = Inputs {
            sample: x.clone().add_scalar(0.0), // own buffer: refreshed in place
            embedding: Tensor::from_data(first_embedding, &device),
            row: Tensor::from_data(TensorData::new(rows[..ROW].to_vec(), [ROW]), &device),
            previous_x0: sampling
                .previous()
                .map_or_else(|| x.zeros_like(), |p| p.clone().add_scalar(0.0)),
            noise: x.zeros_like(),
        };
        if let Some(z) = z {
            write_noise(&mut inputs.noise, &z)?;
        }
        let settings = StepSettings {
            guided: batch.guided,
            clip: sampler.schedule().config.clip_sample,
            multistep: sampler.kind().is_multistep(),
        };
        let projection = JointProjection::of(unet);
        let step = || step_in_place(unet, &projection, &mut inputs, settings);
        let (first, recorded) = first_step_and_capture(&device, step).await?;
        let (execution, replay) = match recorded {
            Ok(recording) => (Execution::Replayed(Box::new(recording)), Replay::Recorded),
            Err(reason) => (Execution::Rerun, Replay::Plain(reason.to_string())),
        };
        // the recorded run steps x_t and x̂_0 in place too: they are put back to the first
        // step's, whether the device ran the recording or only recorded it
        refresh(&mut inputs.sample, first.0.clone());
        if settings.multistep {
            refresh(&mut inputs.previous_x0, first.1.clone());
        }
        let recorded = Self {
            start: done,
            inputs,
            projection,
            embeddings,
            rows,
            settings,
            execution,
        };
        Ok((recorded, replay, first))
    }

    /// Step `index` of the run with noise `z` (row-major `[B, C, H, W]`) where the step draws
    /// some: x_{t−1} and x̂_0, in buffers the next step overwrites. Steps go in order from the
    /// one after the step [`Self::record`] took. `unet` is the one recorded, unchanged since.
    pub fn step(
        &mut self,
        unet: &UNet,
        index: usize,
        z: Option<Vec<f32>>,
    ) -> Result<StepPair, EmergeError> {
        let steps = self.steps();
        let i = index
            .checked_sub(self.start)
            .filter(|&i| (1..steps).contains(&i))
            .ok_or_else(|| {
                EmergeError::InvalidArgument(format!(
                    "step {index} is not one of the recorded run's steps {}..{}",
                    self.start + 1,
                    self.start + steps
                ))
            })?;
        let width = self.embeddings.len() / steps;
        let embedding = &self.embeddings[i * width..(i + 1) * width];
        write_values(&mut self.inputs.embedding, embedding);
        write_values(&mut self.inputs.row, &self.rows[i * ROW..(i + 1) * ROW]);
        if let Some(z) = z {
            write_noise(&mut self.inputs.noise, &z)?;
        }
        match &self.execution {
            Execution::Replayed(recording) => {
                let device = self.inputs.sample.device();
                // Safety: every buffer the recording touched is owned by `self` (inputs,
                // outputs) or by the UNet the caller keeps alive and unchanged for the run, and
                // the page's engine and the CLI drive one device from one thread.
                unsafe { Dispatch::graph_replay(device.as_dispatch(), &recording.graph) }
                    .map_err(|e| graph_error("replaying the recorded step", e))?;
                Ok(recording.output.clone())
            }
            Execution::Rerun => {
                step_in_place(unet, &self.projection, &mut self.inputs, self.settings)
            }
        }
    }
}

impl RecordedStep {
    /// How many of the run's steps the recording covers.
    fn steps(&self) -> usize {
        self.rows.len() / ROW
    }
}

impl std::fmt::Debug for RecordedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedStep")
            .field("start", &self.start)
            .field("steps", &self.steps())
            .field("guided", &self.settings.guided)
            .field(
                "recorded",
                &matches!(self.execution, Execution::Replayed(_)),
            )
            .finish_non_exhaustive()
    }
}

/// The conditioning vectors of every step, `[S, N, D]`, in one UNet embedding pass.
fn step_embeddings(
    unet: &UNet,
    batch: &BatchConditioning,
    images: usize,
    timesteps: &[usize],
    device: &Device,
) -> Tensor<3> {
    let n = batch.batch(images);
    let steps = timesteps.len();
    let times: Vec<f32> = timesteps
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t as f32, n))
        .collect();
    let times = Tensor::<1>::from_data(TensorData::new(times, [steps * n]), device);
    let labels = batch.labels.as_ref().map(|labels| {
        let values: Vec<i64> = (0..steps)
            .flat_map(|_| labels.iter().map(|&l| l as i64))
            .collect();
        Tensor::<1, Int>::from_data(TensorData::new(values, [steps * n]), device)
    });
    let embedding = unet.embed(times, labels);
    let [_, d] = embedding.dims();
    embedding.reshape([steps, n, d])
}

/// Takes the run's next step with `step` (awaited without blocking) as the recording's warm-up:
/// it builds the kernels (and fusion's plans) and leaves in the pools the buffers the recording
/// takes (one is enough for the page's configuration, fusion without autotune). Then records
/// `step` once more on `device`. Returns the first step's outputs, and the recording or why
/// there is none (the device has no graphs, or the recording failed: the device is left as it
/// was, out of capture). An error is the first step's own.
async fn first_step_and_capture(
    device: &Device,
    mut step: impl FnMut() -> Result<StepPair, EmergeError>,
) -> Result<(StepPair, Result<Recording, EmergeError>), EmergeError> {
    let dispatch = device.as_dispatch();
    let prepared =
        Dispatch::graph_prepare(dispatch).map_err(|e| graph_error("preparing the recording", e));
    let first = match step() {
        Ok(output) => settle(&output).await.map(|()| output),
        Err(e) => Err(e),
    };
    let first = match first {
        Ok(first) => first,
        Err(e) => {
            let _ = Dispatch::graph_stop_capture(dispatch);
            return Err(e);
        }
    };
    let recorded = match prepared {
        Ok(()) => capture(dispatch, step),
        Err(e) => Err(e),
    };
    Ok((first, recorded))
}

/// One run of `step` recorded on the device `dispatch` (prepared for it).
fn capture(
    dispatch: &DispatchDevice,
    step: impl FnOnce() -> Result<StepPair, EmergeError>,
) -> Result<Recording, EmergeError> {
    if let Err(e) = Dispatch::graph_start_capture(dispatch) {
        let _ = Dispatch::graph_stop_capture(dispatch);
        return Err(graph_error("starting the recording", e));
    }
    let output = step();
    let graph = Dispatch::graph_stop_capture(dispatch)
        .map_err(|e| graph_error("ending the recording", e))?;
    Ok(Recording {
        graph,
        output: output?,
    })
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::Guidance;
    use crate::guidance::Denoiser;
    use crate::noise::ImageNoise;
    use crate::request::tests::tiny;
    use crate::request::{Classes, SamplingRequest};
    use crate::sampler::{SamplerKind, StepOutput};

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Every sampler, guided on part of the run (both kinds of step in one recording), plain
    /// class-conditional and unconditional: the step on stable buffers, taken and recorded after
    /// two plain steps, gives the plain run's x_{t−1} and x̂_0 at every step.
    #[test]
    fn the_step_on_stable_buffers_draws_the_plain_runs_images() {
        let device = Device::flex();
        let model = tiny();
        let guidances = [
            (
                Classes::EachInTurn,
                Guidance {
                    scale: 2.5,
                    interval: Some((300, 800)),
                },
            ),
            (Classes::Class(1), Guidance::everywhere(1.0)),
            (Classes::Unconditional, Guidance::everywhere(3.0)),
        ];
        let samplers = [
            SamplerKind::Ddpm,
            SamplerKind::Ddim { eta: 0.5 },
            SamplerKind::DpmSolver2M,
            SamplerKind::SdeDpmSolver2M,
        ];
        for (classes, guidance) in guidances {
            for sampler in samplers {
                let request = SamplingRequest {
                    sampler,
                    steps: 6,
                    seed: 11,
                    images: 3,
                    classes: classes.clone(),
                    guidance,
                    start: None,
                };
                let sampling = || {
                    let sampler = request.sampler(&model.schedule).unwrap();
                    let noise = ImageNoise::new(request.seed, 0..3);
                    Sampling::from_noise(sampler, [3, 1, 8, 8], noise, &device).unwrap()
                };
                let conditioning = request.conditioning(0..3, &model.config);
                let (unet, config) = (&model.unet, &model.config.unet);
                let denoiser = Denoiser::new(unet, config, conditioning.clone()).unwrap();
                let (mut plain, mut replayed) = (sampling(), sampling());
                for _ in 0..2 {
                    plain.step_with(&denoiser).unwrap();
                    replayed.step_with(&denoiser).unwrap();
                }
                let same = |a: StepOutput, b: StepOutput| {
                    let at = format!("{sampler} {classes:?} t = {}", a.timestep);
                    assert_eq!(a.timestep, b.timestep, "{at}");
                    let x0 = max_abs_diff(a.pred_original_sample, b.pred_original_sample);
                    let x = max_abs_diff(a.prev_sample, b.prev_sample);
                    assert!(x0 < 1e-4 && x < 1e-4, "{at}: x̂_0 off by {x0}, x_t by {x}");
                };
                let record = replayed.step_recording(unet, config, &conditioning);
                let (first, mut step, replay) = pollster::block_on(record).unwrap();
                assert!(
                    matches!(&replay, Replay::Plain(reason) if reason.contains("not supported")),
                    "Flex has no graphs: {replay:?}"
                );
                same(plain.step_with(&denoiser).unwrap(), first);
                while !plain.is_finished() {
                    let a = plain.step_with(&denoiser).unwrap();
                    same(a, replayed.step_recorded(&mut step, unet).unwrap());
                }
                assert!(
                    replayed.step_recorded(&mut step, unet).is_err(),
                    "a finished run has no step"
                );
                let again = replayed.step_recording(unet, config, &conditioning);
                let again = pollster::block_on(again).err().unwrap();
                assert!(again.to_string().contains("finished"), "{again}");
            }
        }
    }

    /// Where the device cannot record, a run says why and goes on stepping plainly.
    #[test]
    fn a_run_on_a_device_without_graphs_steps_plainly() {
        let device = Device::flex();
        let model = tiny();
        let request = SamplingRequest {
            sampler: SamplerKind::Ddim { eta: 1.0 },
            steps: 3,
            seed: 2,
            images: 2,
            classes: Classes::EachInTurn,
            guidance: Guidance::everywhere(2.0),
            start: None,
        };
        let mut plain = model.start(&request, 0..2, &device).unwrap();
        let mut run = model.start(&request, 0..2, &device).unwrap();
        let (replay, first) = pollster::block_on(run.record(&model)).unwrap();
        assert!(matches!(replay, Replay::Plain(_)), "{replay:?}");
        assert_eq!(run.progress(), (1, 3), "recording took the first step");
        let a = plain.advance(&model, 1).unwrap();
        assert!(max_abs_diff(a.prev_sample, first.prev_sample) < 1e-5);
        let (a, b) = (
            plain.advance(&model, 2).unwrap(),
            run.advance(&model, 2).unwrap(),
        );
        assert!(max_abs_diff(a.prev_sample, b.prev_sample) < 1e-5);
        assert!(run.is_finished());
    }
}
