//! The `#[wasm_bindgen]` surface the worker uses: `Engine.create(backend, tasks_per_submit?)`,
//! `device`, `loadModel(bytes)`, `prepare(batch)` (the kernels built at load), `limits`,
//! `start(request, first?, count?)` (a whole request, or one worker's slice of its images),
//! `step(count)`, `noised(...)`, the learning view's `lesson(...)` and `lossCurve(...)`, the
//! training timeline's `loadCheckpoint(bytes)` and `sample(request, checkpoint)`, `schedule`
//! and `encodeGif(...)`.
//!
//! One encoding both ways: a request is an `emerge_core::SamplingRequest` as a plain object (its
//! start image's pixels a `Uint8Array`), and every answer is a plain object made by serde from
//! the Rust struct it documents, with the struct's field names (snake_case) and pixels as
//! `Uint8Array`s. A new field is one edit, in that struct.

use burn::tensor::Device;
#[cfg(feature = "webgpu")]
use emerge_core::Replay;
use emerge_core::image::{first_cell, gif_bytes};
use emerge_core::{EmergeError, Model, Run, SamplingRequest, StepOutput};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

use crate::device::{self, DeviceInfo};
use crate::layout::channels_last_kernels;
use crate::lesson::LessonInput;
use crate::options::{Limits, MAX_BATCH, ScheduleCurves, page_request};
use crate::session::{Frame, GRID_GAP};

/// WebGPU kernel launches per submitted command buffer when the page names none: more than a
/// recorded step's (about 240), so that a step goes to the GPU in one submit (cubecl's own
/// default, 32, splits it into eight).
pub const TASKS_PER_SUBMIT: usize = 512;

pub(crate) fn js_error(e: EmergeError) -> JsError {
    JsError::new(&e.to_string())
}

/// `value` as a plain JS object (maps as objects, bytes as `Uint8Array`s).
pub(crate) fn to_js(value: &impl Serialize) -> Result<JsValue, JsError> {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value
        .serialize(&serializer)
        .map_err(|e| JsError::new(&e.to_string()))
}

/// The page's sampling request from its plain object, held to the page's limits.
fn request_from(value: JsValue) -> Result<SamplingRequest, JsError> {
    page_request(from_js_strictly(value, "sampling request")?).map_err(js_error)
}

/// `T` from its plain object, `what` naming it in errors. A key `T` does not know is refused, as
/// the JSON form refuses it (a key holding null or undefined counts as absent, as an absent
/// optional field does).
pub(crate) fn from_js_strictly<T: DeserializeOwned + Serialize>(
    value: JsValue,
    what: &str,
) -> Result<T, JsError> {
    let refused = |e: &dyn std::fmt::Display| JsError::new(&format!("{what}: {e}"));
    let parsed: T = serde_wasm_bindgen::from_value(value.clone()).map_err(|e| refused(&e))?;
    let known = serde_json::to_value(&parsed).map_err(|e| refused(&e))?;
    if let Some(key) = unknown_key(&value, &known, "") {
        return Err(refused(&format!("unknown field `{key}`")));
    }
    Ok(parsed)
}

/// The first key of the object tree `given` (with its path) that `known`, the same value as
/// serde writes it, lacks: one serde skipped. Keys holding null or undefined are absent ones.
fn unknown_key(given: &JsValue, known: &serde_json::Value, path: &str) -> Option<String> {
    let serde_json::Value::Object(fields) = known else {
        return None;
    };
    let object = given.dyn_ref::<js_sys::Object>()?;
    js_sys::Object::keys(object).iter().find_map(|key| {
        let name = key.as_string()?;
        let value = js_sys::Reflect::get(given, &key).ok()?;
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        match fields.get(&name) {
            Some(inner) => unknown_key(&value, inner, &here),
            None if value.is_null() || value.is_undefined() => None,
            None => Some(here),
        }
    })
}

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    /// The module's static constructors, synthesised by wasm-ld (cubecl's IR registers its
    /// operations through `inventory`, which runs as a constructor).
    fn __wasm_call_ctors();
}

/// Runs the static constructors once, then installs the panic hook and the log bridge, so that
/// wgpu's and burn's messages (shader validation errors among them) reach the console.
///
/// The explicit call matters for speed: a module that never calls `__wasm_call_ctors` is linked
/// as a "command" and wasm-ld wraps every export (wasm-bindgen's externref table helpers among
/// them, called for each WebGPU object) in a fresh run of all constructors, which cost about 2 s
/// per denoising step on a real GPU.
#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: the constructors only register static items; this is the module's first call.
    #[cfg(target_arch = "wasm32")]
    unsafe {
        __wasm_call_ctors()
    };
    console_error_panic_hook::set_once();
    let _ = console_log::init_with_level(log::Level::Warn);
}

/// An engine answer with the milliseconds its work took (steps, lesson, readback).
#[derive(Serialize)]
struct Timed<T> {
    #[serde(flatten)]
    answer: T,
    millis: f64,
}

impl<T: Serialize> Timed<T> {
    /// `answer`, timed from `started` (ms), as a plain object.
    fn since(answer: T, started: f64) -> Result<JsValue, JsError> {
        to_js(&Timed {
            answer,
            millis: js_sys::Date::now() - started,
        })
    }
}

/// Reads `run`'s step `output` (x_{t−1} and x̂_0) back as a [`Frame`] object; `started` is when
/// the work began (ms).
async fn step_frame(
    output: StepOutput,
    run: &Run,
    model: &Model,
    started: f64,
) -> Result<JsValue, JsError> {
    let (images, of) = run.images();
    let frame = Frame::read(
        output.prev_sample,
        Some(output.pred_original_sample),
        output.timestep,
        run.progress(),
        Some((images.start, of)),
        &model.schedule,
    )
    .await
    .map_err(js_error)?;
    Timed::since(frame, started)
}

/// A whole run of `request` (a `SamplingRequest` object) with `model` from noise, read back once
/// at the end: a [`Frame`] object and `millis`.
pub(crate) async fn whole_run(
    model: &Model,
    request: JsValue,
    device: &Device,
) -> Result<JsValue, JsError> {
    let started = js_sys::Date::now();
    let request = request_from(request)?;
    let mut run = model
        .start(&request, 0..request.images, device)
        .map_err(js_error)?;
    let total = run.progress().1;
    let output = run.advance(model, total).map_err(js_error)?;
    step_frame(output, &run, model, started).await
}

/// How an engine's runs step: on WebGPU or the CPU, recording their step or not.
#[derive(Clone, Copy)]
struct Stepper {
    webgpu: bool,
    record: bool,
}

impl Stepper {
    /// Runs up to `count` steps of `run`; the run's first step records the step for the rest
    /// where the engine records, and `stepping` then says how the run steps ([`Engine::stepping`]).
    async fn advance(
        &self,
        run: &mut Run,
        model: &Model,
        count: usize,
        stepping: &mut Option<String>,
    ) -> Result<StepOutput, JsError> {
        let first = match stepping {
            Some(_) => None,
            None => {
                let (how, first) = match (self.webgpu, self.record) {
                    // (only the WebGPU module carries the recording code)
                    #[cfg(feature = "webgpu")]
                    (true, true) => match run.record(model).await {
                        Ok((Replay::Recorded, output)) => ("recorded".into(), Some(output)),
                        Ok((Replay::Plain(reason), output)) => {
                            (format!("plain: {reason}"), Some(output))
                        }
                        Err(e) => (format!("plain: {e}"), None),
                    },
                    (true, _) => ("plain: recording is off".into(), None),
                    (false, _) => ("plain: the CPU launches no kernels to record".into(), None),
                };
                *stepping = Some(how);
                first
            }
        };
        match first {
            Some(first) if count <= 1 || run.is_finished() => Ok(first),
            Some(_) => run.advance(model, count - 1),
            None => run.advance(model, count),
        }
        .map_err(js_error)
    }
}

/// The model, its device and the current run.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    info: DeviceInfo,
    model: Option<Model>,
    /// Earlier weights of the model's training run (the timeline), by index.
    checkpoints: Vec<Model>,
    run: Option<Run>,
    /// Whether runs on WebGPU record their step and replay it.
    record: bool,
    /// How the current run steps, once its first step has run ([`Engine::stepping`]).
    stepping: Option<String>,
}

#[wasm_bindgen]
impl Engine {
    /// `backend`: `"webgpu"` or `"cpu"`, either an error where this module or the browser lacks
    /// it (the worker chooses, and falls back). `tasks_per_submit`: WebGPU kernel launches per
    /// submitted command buffer ([`TASKS_PER_SUBMIT`] when absent; the Dawn harness varies it).
    /// `record`: whether a run on WebGPU records its step once and replays it (the default), or
    /// launches every kernel afresh each step (for comparison).
    pub async fn create(
        backend: String,
        tasks_per_submit: Option<usize>,
        record: Option<bool>,
    ) -> Result<Engine, JsError> {
        let tasks_per_submit = tasks_per_submit.unwrap_or(TASKS_PER_SUBMIT);
        let (device, info) = device::named(&backend, Some(tasks_per_submit))
            .await
            .map_err(|e| JsError::new(&e))?;
        Ok(Engine {
            device,
            info,
            model: None,
            checkpoints: Vec::new(),
            run: None,
            record: record.unwrap_or(true),
            stepping: None,
        })
    }

    /// How the current run's steps execute, known after its first step: `"recorded"` (recorded
    /// on the device once, replayed every step), or `"plain"` with the reason after a colon
    /// (the CPU, recording turned off, or the device's refusal); `undefined` before.
    #[wasm_bindgen(getter)]
    pub fn stepping(&self) -> Option<String> {
        self.stepping.clone()
    }

    /// The device in use: a [`DeviceInfo`].
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> Result<JsValue, JsError> {
        to_js(&self.info)
    }

    /// Loads a model file's bytes in place of the loaded model (which stays where the file is
    /// refused); returns its `emerge_core::ModelConfig`.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&mut self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let model = self.loaded(bytes)?;
        let config = to_js(&model.config)?;
        self.run = None;
        self.checkpoints.clear();
        self.model = Some(model);
        Ok(config)
    }

    /// Loads one checkpoint of the loaded model's training run (same network, earlier weights);
    /// returns its index for `lesson`, `lossCurve` and `sample`.
    #[wasm_bindgen(js_name = loadCheckpoint)]
    pub fn load_checkpoint(&mut self, bytes: Vec<u8>) -> Result<usize, JsError> {
        let checkpoint = self.loaded(bytes)?;
        let loaded = &self.model()?.config;
        if (&checkpoint.config.unet, &checkpoint.config.schedule)
            != (&loaded.unet, &loaded.schedule)
        {
            return Err(JsError::new(
                "this checkpoint is of a different network or schedule than the loaded model",
            ));
        }
        self.checkpoints.push(checkpoint);
        Ok(self.checkpoints.len() - 1)
    }

    /// A model file's weights on this engine's device, laid out for its backend.
    fn loaded(&self, bytes: Vec<u8>) -> Result<Model, JsError> {
        let mut model = Model::from_bytes(bytes, &self.device).map_err(js_error)?;
        if self.info.backend == "webgpu" {
            model.unet = channels_last_kernels(model.unet);
        }
        Ok(model)
    }

    fn stepper(&self) -> Stepper {
        Stepper {
            webgpu: self.info.backend == "webgpu",
            record: self.record,
        }
    }

    /// The loaded model, or checkpoint `index` of its training run.
    fn weights(&self, checkpoint: Option<usize>) -> Result<&Model, JsError> {
        match checkpoint {
            None => self.model(),
            Some(i) => self.checkpoints.get(i).ok_or_else(|| {
                JsError::new(&format!(
                    "there is no checkpoint {i} ({} loaded)",
                    self.checkpoints.len()
                ))
            }),
        }
    }

    /// The model's noise schedule over t = 0..T: [`ScheduleCurves`].
    #[wasm_bindgen(getter)]
    pub fn schedule(&self) -> Result<JsValue, JsError> {
        to_js(&ScheduleCurves::of(self.model()?))
    }

    /// What the loaded model and the engine accept: [`Limits`].
    #[wasm_bindgen(getter)]
    pub fn limits(&self) -> Result<JsValue, JsError> {
        to_js(&Limits::of(&self.model()?.config))
    }

    fn model(&self) -> Result<&Model, JsError> {
        self.model
            .as_ref()
            .ok_or_else(|| JsError::new("no model is loaded"))
    }

    /// Makes `request` (a `SamplingRequest` object; with `start: {pixels, timestep}` it begins
    /// from that image noised to t) the current run; returns its number of steps. With `first`
    /// and `count`, the run draws only images `first..first + count` of the request (one
    /// worker's slice: each image is the one the whole request draws).
    pub fn start(
        &mut self,
        request: JsValue,
        first: Option<usize>,
        count: Option<usize>,
    ) -> Result<usize, JsError> {
        let request = request_from(request)?;
        let first = first.unwrap_or(0);
        let images = first..count.map_or(request.images, |n| first.saturating_add(n));
        let run = self
            .model()?
            .start(&request, images, &self.device)
            .map_err(js_error)?;
        let total = run.progress().1;
        self.run = Some(run);
        self.stepping = None;
        Ok(total)
    }

    /// Whether the current run has produced its final image.
    #[wasm_bindgen(getter)]
    pub fn finished(&self) -> bool {
        self.run.as_ref().is_none_or(Run::is_finished)
    }

    /// Runs up to `count` steps and reads the last one back: a [`Frame`] and `millis`.
    pub async fn step(&mut self, count: usize) -> Result<JsValue, JsError> {
        let started = js_sys::Date::now();
        let stepper = self.stepper();
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| JsError::new("no model is loaded"))?;
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| JsError::new("no run is started"))?;
        let output = stepper
            .advance(run, model, count, &mut self.stepping)
            .await?;
        step_frame(output, run, model, started).await
    }

    /// Builds the kernels that runs of `batch` images of the loaded model take, so that the
    /// first visible step is not spent compiling them (WebGPU compiles every kernel on first
    /// use): the first step of the model's recommended request, taken (recorded where runs are)
    /// and read back as the page's steps are. Leaves the current run alone; nothing to build on
    /// the CPU. Returns the milliseconds it took.
    pub async fn prepare(&self, batch: usize) -> Result<f64, JsError> {
        let started = js_sys::Date::now();
        if self.info.backend != "webgpu" {
            return Ok(0.0);
        }
        let model = self.model()?;
        // (a product's kernel depends on its size: the run's own batch builds the run's kernels)
        let images = batch.clamp(1, MAX_BATCH);
        let request = SamplingRequest {
            images,
            ..model.recommended()
        };
        let mut run = model
            .start(&request, 0..images, &self.device)
            .map_err(js_error)?;
        let output = self
            .stepper()
            .advance(&mut run, model, 1, &mut None)
            .await?;
        step_frame(output, &run, model, started).await?;
        Ok(js_sys::Date::now() - started)
    }

    /// A whole run from noise with checkpoint `checkpoint` (the loaded model when absent),
    /// read back once at the end: the training timeline's samples. Leaves the current run alone.
    pub async fn sample(
        &self,
        request: JsValue,
        checkpoint: Option<usize>,
    ) -> Result<JsValue, JsError> {
        whole_run(self.weights(checkpoint)?, request, &self.device).await
    }

    /// One training step seen by the network: the digit `pixels` (class `label`), noise ε from
    /// `seed`, timestep `t`, with checkpoint `checkpoint` (the loaded model when absent): a
    /// `LessonFrame` and `millis`.
    pub async fn lesson(
        &self,
        pixels: Vec<u8>,
        label: Option<usize>,
        t: usize,
        seed: u64,
        checkpoint: Option<usize>,
    ) -> Result<JsValue, JsError> {
        let started = js_sys::Date::now();
        let input = LessonInput {
            model: self.weights(checkpoint)?,
            pixels: &pixels,
            label,
            seed,
        };
        let frame = input.frame(t, &self.device).await.map_err(js_error)?;
        Timed::since(frame, started)
    }

    /// The lesson's two losses at `points` timesteps spread over 0..T, same digit and ε: a
    /// `LossCurve`.
    #[wasm_bindgen(js_name = lossCurve)]
    pub async fn loss_curve(
        &self,
        pixels: Vec<u8>,
        label: Option<usize>,
        seed: u64,
        points: usize,
        checkpoint: Option<usize>,
    ) -> Result<JsValue, JsError> {
        let input = LessonInput {
            model: self.weights(checkpoint)?,
            pixels: &pixels,
            label,
            seed,
        };
        to_js(&input.curve(points, &self.device).await.map_err(js_error)?)
    }

    /// An animated GIF of image 0 of a run: `grids` are frames' `sample` grids as `step`
    /// returned them (`width` × `height` RGBA each, one after another), `delay_ms` apart, the
    /// last held for two seconds.
    #[wasm_bindgen(js_name = encodeGif)]
    pub fn encode_gif(
        &self,
        grids: Vec<u8>,
        width: usize,
        height: usize,
        delay_ms: u16,
    ) -> Result<Vec<u8>, JsError> {
        let bytes = width * height * 4;
        if bytes == 0 || !grids.len().is_multiple_of(bytes) {
            return Err(JsError::new(&format!(
                "{} bytes are not whole {width}×{height} RGBA grids",
                grids.len()
            )));
        }
        let size = self.model()?.config.unet.sample_size;
        let frames = grids
            .chunks(bytes)
            .map(|grid| first_cell(grid, width, [size, size], GRID_GAP))
            .collect::<Result<Vec<_>, _>>()
            .map_err(js_error)?;
        gif_bytes(&frames, size, size, delay_ms).map_err(js_error)
    }

    /// The forward process: `pixels` noised to timestep `t` (q(x_t | x_0), noise from `seed`): a
    /// [`Frame`] without prediction, and `millis`.
    pub async fn noised(&self, pixels: Vec<u8>, t: usize, seed: u64) -> Result<JsValue, JsError> {
        let started = js_sys::Date::now();
        let model = self.model()?;
        let x_t = model
            .noise_image(&pixels, t, seed, &self.device)
            .map_err(js_error)?;
        let frame = Frame::read(x_t, None, t, (0, 0), None, &model.schedule)
            .await
            .map_err(js_error)?;
        Timed::since(frame, started)
    }
}
