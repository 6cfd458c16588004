//! The `#[wasm_bindgen]` surface the worker uses: `Engine.create(backend)`, `loadModel(bytes)`,
//! `start(request, first?, count?)` / `startFromImage(pixels, t, request, first?, count?)` (a
//! whole request, or one worker's slice of its images), `step(count)`, `noised(...)`, the
//! learning view's `lesson(...)` and `lossCurve(...)`, the training timeline's
//! `loadCheckpoint(bytes)` and `sample(request, checkpoint)`, `schedule` and `encodeGif(...)`.
//! A request is the JSON of `emerge_core::SamplingRequest`.

use burn::tensor::Device;
use emerge_core::{EmergeError, Model, Run, SamplingRequest, StartImage};
use wasm_bindgen::prelude::*;

use crate::device::{self, DeviceInfo};
use crate::lesson::{LessonFrame, LessonInput};

use crate::options::page_request;
use crate::session::{Frame, GRID_GAP};
use emerge_core::image::{first_cell, gif_bytes};

fn js_error(e: EmergeError) -> JsError {
    JsError::new(&e.to_string())
}

fn to_json(value: &impl serde::Serialize) -> Result<String, JsError> {
    serde_json::to_string(value).map_err(|e| JsError::new(&e.to_string()))
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

/// One step's pixels and numbers, for the page.
#[wasm_bindgen]
pub struct StepFrame {
    frame: Frame,
    /// Milliseconds the steps and the readback took.
    millis: f64,
}

#[wasm_bindgen]
impl StepFrame {
    #[wasm_bindgen(getter)]
    pub fn timestep(&self) -> usize {
        self.frame.timestep
    }
    #[wasm_bindgen(getter)]
    pub fn step(&self) -> usize {
        self.frame.step
    }
    #[wasm_bindgen(getter)]
    pub fn total(&self) -> usize {
        self.frame.total
    }
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.frame.width
    }
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.frame.height
    }
    /// x_t as RGBA bytes (width × height × 4).
    #[wasm_bindgen(getter)]
    pub fn sample(&self) -> Vec<u8> {
        self.frame.sample.clone()
    }
    /// The predicted x_0 as RGBA bytes (empty for a noised-image preview).
    #[wasm_bindgen(getter)]
    pub fn prediction(&self) -> Vec<u8> {
        self.frame.prediction.clone()
    }
    #[wasm_bindgen(getter, js_name = alphaBar)]
    pub fn alpha_bar(&self) -> f64 {
        self.frame.alpha_bar
    }
    #[wasm_bindgen(getter)]
    pub fn snr(&self) -> f64 {
        self.frame.snr
    }
    #[wasm_bindgen(getter)]
    pub fn millis(&self) -> f64 {
        self.millis
    }
}

impl StepFrame {
    /// Reads `run`'s step `output` (x_{t−1} and x̂_0) back; `started` is when the work began
    /// (ms).
    async fn read(
        output: emerge_core::StepOutput,
        run: &Run,
        model: &Model,
        started: f64,
    ) -> Result<StepFrame, JsError> {
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
        Ok(StepFrame {
            frame,
            millis: js_sys::Date::now() - started,
        })
    }
}

/// One training step of the learning view: five images and two numbers.
#[wasm_bindgen]
pub struct LearnFrame {
    frame: LessonFrame,
    millis: f64,
}

#[wasm_bindgen]
impl LearnFrame {
    #[wasm_bindgen(getter)]
    pub fn timestep(&self) -> usize {
        self.frame.timestep
    }
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.frame.width
    }
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.frame.height
    }
    /// x_0 as RGBA bytes.
    #[wasm_bindgen(getter)]
    pub fn original(&self) -> Vec<u8> {
        self.frame.original.clone()
    }
    /// ε as RGBA bytes, at half scale.
    #[wasm_bindgen(getter)]
    pub fn noise(&self) -> Vec<u8> {
        self.frame.noise.clone()
    }
    /// x_t as RGBA bytes.
    #[wasm_bindgen(getter)]
    pub fn noisy(&self) -> Vec<u8> {
        self.frame.noisy.clone()
    }
    /// ε_θ(x_t, t) as RGBA bytes, at half scale.
    #[wasm_bindgen(getter, js_name = predictedNoise)]
    pub fn predicted_noise(&self) -> Vec<u8> {
        self.frame.predicted_noise.clone()
    }
    /// x̂_0 as RGBA bytes.
    #[wasm_bindgen(getter)]
    pub fn prediction(&self) -> Vec<u8> {
        self.frame.prediction.clone()
    }
    /// ‖ε − ε_θ‖² averaged over pixels (L_simple).
    #[wasm_bindgen(getter, js_name = noiseLoss)]
    pub fn noise_loss(&self) -> f64 {
        self.frame.noise_loss
    }
    /// ‖x_0 − x̂_0‖² averaged over pixels.
    #[wasm_bindgen(getter, js_name = imageError)]
    pub fn image_error(&self) -> f64 {
        self.frame.image_error
    }
    #[wasm_bindgen(getter, js_name = alphaBar)]
    pub fn alpha_bar(&self) -> f64 {
        self.frame.alpha_bar
    }
    #[wasm_bindgen(getter)]
    pub fn snr(&self) -> f64 {
        self.frame.snr
    }
    #[wasm_bindgen(getter)]
    pub fn millis(&self) -> f64 {
        self.millis
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
}

#[wasm_bindgen]
impl Engine {
    /// `backend`: `"webgpu"` or `"cpu"`, either an error where this module or the browser lacks
    /// it (the worker chooses, and falls back).
    pub async fn create(backend: String) -> Result<Engine, JsError> {
        let (device, info) = match backend.as_str() {
            "cpu" => device::cpu(),
            "webgpu" => device::webgpu()
                .await
                .map_err(|e| format!("WebGPU is unavailable: {e}")),
            other => Err(format!("unknown backend '{other}' (webgpu or cpu)")),
        }
        .map_err(|e| JsError::new(&e))?;
        Ok(Engine {
            device,
            info,
            model: None,
            checkpoints: Vec::new(),
            run: None,
        })
    }

    /// The device in use, as JSON: `{backend, adapter}`.
    #[wasm_bindgen(getter, js_name = deviceInfo)]
    pub fn device_info(&self) -> String {
        serde_json::to_string(&self.info).unwrap_or_default()
    }

    /// Loads a model file's bytes; returns its configuration as JSON.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&mut self, bytes: Vec<u8>) -> Result<String, JsError> {
        self.run = None;
        self.model = None;
        self.checkpoints.clear();
        let model = Model::from_bytes(bytes, &self.device).map_err(js_error)?;
        let json = to_json(&model.config)?;
        self.model = Some(model);
        Ok(json)
    }

    /// Loads one checkpoint of the loaded model's training run (same network, earlier weights);
    /// returns its index for `lesson`, `lossCurve` and `sample`.
    #[wasm_bindgen(js_name = loadCheckpoint)]
    pub fn load_checkpoint(&mut self, bytes: Vec<u8>) -> Result<usize, JsError> {
        let checkpoint = Model::from_bytes(bytes, &self.device).map_err(js_error)?;
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

    /// The model's noise schedule over t = 0..T as JSON: `{beta_schedule, betas, alphas_cumprod,
    /// log_snr}` (`beta_schedule` as the model file names it, e.g. `{"kind": "cosine", "s":
    /// 0.008}`; log SNR(t) = ln(ᾱ_t/(1 − ᾱ_t))).
    #[wasm_bindgen(getter)]
    pub fn schedule(&self) -> Result<String, JsError> {
        let model = self.model()?;
        let schedule = &model.schedule;
        let log_snr: Vec<f64> = (0..schedule.num_train_timesteps())
            .map(|t| schedule.snr(t).ln())
            .collect();
        to_json(&serde_json::json!({
            "beta_schedule": model.config.schedule.beta_schedule,
            "betas": schedule.betas,
            "alphas_cumprod": schedule.alphas_cumprod,
            "log_snr": log_snr,
        }))
    }

    /// What the loaded model and the engine accept, as JSON:
    /// `{timesteps, max_batch, max_guidance, classes}`.
    #[wasm_bindgen(getter)]
    pub fn limits(&self) -> Result<String, JsError> {
        to_json(&crate::options::Limits::of(&self.model()?.config))
    }

    fn model(&self) -> Result<&Model, JsError> {
        self.model
            .as_ref()
            .ok_or_else(|| JsError::new("no model is loaded"))
    }

    /// Starts a run of `request` (JSON, `emerge_core::SamplingRequest`); returns its number of
    /// steps. With `first` and `count`, the run draws only images `first..first + count` of the
    /// request (one worker's slice: each image is the one the whole request draws).
    pub fn start(
        &mut self,
        request: String,
        first: Option<usize>,
        count: Option<usize>,
    ) -> Result<usize, JsError> {
        self.begin(page_request(&request).map_err(js_error)?, first, count)
    }

    /// [`Self::start`] from `pixels` (one u8 image) noised to timestep `t`: the request's start
    /// image, passed as bytes rather than JSON.
    #[wasm_bindgen(js_name = startFromImage)]
    pub fn start_from_image(
        &mut self,
        pixels: Vec<u8>,
        t: usize,
        request: String,
        first: Option<usize>,
        count: Option<usize>,
    ) -> Result<usize, JsError> {
        let mut request = page_request(&request).map_err(js_error)?;
        request.start = Some(StartImage {
            pixels,
            timestep: t,
        });
        self.begin(request, first, count)
    }

    /// Makes `request` (images `first..first + count` of it, all by default) the current run;
    /// returns its number of steps.
    fn begin(
        &mut self,
        request: SamplingRequest,
        first: Option<usize>,
        count: Option<usize>,
    ) -> Result<usize, JsError> {
        let first = first.unwrap_or(0);
        let images = first..count.map_or(request.images, |n| first.saturating_add(n));
        let run = self
            .model()?
            .start(&request, images, &self.device)
            .map_err(js_error)?;
        let total = run.progress().1;
        self.run = Some(run);
        Ok(total)
    }

    /// Whether the current run has produced its final image.
    #[wasm_bindgen(getter)]
    pub fn finished(&self) -> bool {
        self.run.as_ref().is_none_or(Run::is_finished)
    }

    /// Runs up to `count` steps and reads the last one back.
    pub async fn step(&mut self, count: usize) -> Result<StepFrame, JsError> {
        let started = js_sys::Date::now();
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| JsError::new("no model is loaded"))?;
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| JsError::new("no run is started"))?;
        let output = run.advance(model, count).map_err(js_error)?;
        StepFrame::read(output, run, model, started).await
    }

    /// A whole run from noise with checkpoint `checkpoint` (the loaded model when absent),
    /// read back once at the end: the training timeline's samples. Leaves the current run alone.
    pub async fn sample(
        &self,
        request: String,
        checkpoint: Option<usize>,
    ) -> Result<StepFrame, JsError> {
        let started = js_sys::Date::now();
        let model = self.weights(checkpoint)?;
        let request = page_request(&request).map_err(js_error)?;
        let mut run = model
            .start(&request, 0..request.images, &self.device)
            .map_err(js_error)?;
        let total = run.progress().1;
        let output = run.advance(model, total).map_err(js_error)?;
        StepFrame::read(output, &run, model, started).await
    }

    /// One training step seen by the network: the digit `pixels` (class `label`), noise ε from
    /// `seed`, timestep `t`, with checkpoint `checkpoint` (the loaded model when absent).
    pub async fn lesson(
        &self,
        pixels: Vec<u8>,
        label: Option<usize>,
        t: usize,
        seed: u64,
        checkpoint: Option<usize>,
    ) -> Result<LearnFrame, JsError> {
        let started = js_sys::Date::now();
        let input = LessonInput {
            model: self.weights(checkpoint)?,
            pixels: &pixels,
            label,
            seed,
        };
        let frame = input.frame(t, &self.device).await.map_err(js_error)?;
        Ok(LearnFrame {
            frame,
            millis: js_sys::Date::now() - started,
        })
    }

    /// The lesson's two losses at `points` timesteps spread over 0..T, same digit and ε, as
    /// JSON: `{timesteps, noise_loss, image_error}`.
    #[wasm_bindgen(js_name = lossCurve)]
    pub async fn loss_curve(
        &self,
        pixels: Vec<u8>,
        label: Option<usize>,
        seed: u64,
        points: usize,
        checkpoint: Option<usize>,
    ) -> Result<String, JsError> {
        let input = LessonInput {
            model: self.weights(checkpoint)?,
            pixels: &pixels,
            label,
            seed,
        };
        to_json(&input.curve(points, &self.device).await.map_err(js_error)?)
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

    /// The forward process: `pixels` noised to timestep `t` (q(x_t | x_0), noise from `seed`).
    pub async fn noised(&self, pixels: Vec<u8>, t: usize, seed: u64) -> Result<StepFrame, JsError> {
        let started = js_sys::Date::now();
        let model = self.model()?;
        let x_t = model
            .noise_image(&pixels, t, seed, &self.device)
            .map_err(js_error)?;
        let frame = Frame::read(x_t, None, t, (0, 0), None, &model.schedule)
            .await
            .map_err(js_error)?;
        Ok(StepFrame {
            frame,
            millis: js_sys::Date::now() - started,
        })
    }
}
