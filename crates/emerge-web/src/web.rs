//! The `#[wasm_bindgen]` surface the worker uses: `Engine.create(backend)`, `loadModel(bytes)`,
//! `start(options)` / `startFromImage(pixels, t, options)`, `step(count)` and `noised(...)`.

use burn::tensor::Device;
use emerge_core::EmergeError;
use wasm_bindgen::prelude::*;

use crate::device::{self, DeviceInfo};
use crate::options::SamplingOptions;
use crate::session::{Frame, Model, Session};

fn js_error(e: EmergeError) -> JsError {
    JsError::new(&e.to_string())
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

/// The model, its device and the current run.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    info: DeviceInfo,
    model: Option<Model>,
    session: Option<Session>,
}

#[wasm_bindgen]
impl Engine {
    /// `backend`: `"auto"` (WebGPU when available, else the CPU), `"webgpu"` (an error without
    /// it) or `"cpu"`.
    pub async fn create(backend: String) -> Result<Engine, JsError> {
        let (device, info) = match backend.as_str() {
            "cpu" => device::cpu(None),
            "webgpu" => device::webgpu()
                .await
                .map_err(|e| JsError::new(&format!("WebGPU is unavailable: {e}")))?,
            "auto" => match device::webgpu().await {
                Ok(found) => found,
                Err(reason) => device::cpu(Some(reason)),
            },
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend '{other}' (auto, webgpu or cpu)"
                )));
            }
        };
        Ok(Engine {
            device,
            info,
            model: None,
            session: None,
        })
    }

    /// The device in use, as JSON: `{backend, adapter, fallback_reason}`.
    #[wasm_bindgen(getter, js_name = deviceInfo)]
    pub fn device_info(&self) -> String {
        serde_json::to_string(&self.info).unwrap_or_default()
    }

    /// Loads a model file's bytes; returns its configuration as JSON.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&mut self, bytes: Vec<u8>) -> Result<String, JsError> {
        self.session = None;
        self.model = None;
        let model = Model::from_bytes(bytes, &self.device).map_err(js_error)?;
        let json =
            serde_json::to_string(&model.config).map_err(|e| JsError::new(&e.to_string()))?;
        self.model = Some(model);
        Ok(json)
    }

    /// What the loaded model and the engine accept, as JSON:
    /// `{timesteps, max_batch, max_guidance, classes}`.
    #[wasm_bindgen(getter)]
    pub fn limits(&self) -> Result<String, JsError> {
        let limits = crate::options::Limits::of(&self.model()?.config);
        serde_json::to_string(&limits).map_err(|e| JsError::new(&e.to_string()))
    }

    fn model(&self) -> Result<&Model, JsError> {
        self.model
            .as_ref()
            .ok_or_else(|| JsError::new("no model is loaded"))
    }

    /// Starts a run from noise; returns its number of steps.
    pub fn start(&mut self, options: String) -> Result<usize, JsError> {
        let options = SamplingOptions::from_json(&options).map_err(js_error)?;
        let session = Session::start(self.model()?, &options, &self.device).map_err(js_error)?;
        let total = session.progress().1;
        self.session = Some(session);
        Ok(total)
    }

    /// Starts a run from `pixels` (one u8 image) noised to timestep `t` with the options' seed.
    #[wasm_bindgen(js_name = startFromImage)]
    pub fn start_from_image(
        &mut self,
        pixels: Vec<u8>,
        t: usize,
        options: String,
    ) -> Result<usize, JsError> {
        let options = SamplingOptions::from_json(&options).map_err(js_error)?;
        let session = Session::from_image(self.model()?, &pixels, t, &options, &self.device)
            .map_err(js_error)?;
        let total = session.progress().1;
        self.session = Some(session);
        Ok(total)
    }

    /// Whether the current run has produced its final image.
    #[wasm_bindgen(getter)]
    pub fn finished(&self) -> bool {
        self.session.as_ref().is_none_or(Session::is_finished)
    }

    /// Runs up to `count` steps and reads the last one back.
    pub async fn step(&mut self, count: usize) -> Result<StepFrame, JsError> {
        let started = js_sys::Date::now();
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| JsError::new("no model is loaded"))?;
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| JsError::new("no run is started"))?;
        let output = session.advance(model, count).map_err(js_error)?;
        let progress = session.progress();
        let frame = Frame::read(
            output.prev_sample,
            Some(output.pred_original_sample),
            output.timestep,
            progress,
            &model.schedule,
        )
        .await
        .map_err(js_error)?;
        Ok(StepFrame {
            frame,
            millis: js_sys::Date::now() - started,
        })
    }

    /// The forward process: `pixels` noised to timestep `t` (q(x_t | x_0), noise from `seed`).
    pub async fn noised(&self, pixels: Vec<u8>, t: usize, seed: u64) -> Result<StepFrame, JsError> {
        let started = js_sys::Date::now();
        let model = self.model()?;
        model.schedule.check_timestep(t).map_err(js_error)?;
        let x_t = model
            .noise_image(&pixels, t, seed, &self.device)
            .map_err(js_error)?;
        let frame = Frame::read(x_t, None, t, (0, 0), &model.schedule)
            .await
            .map_err(js_error)?;
        Ok(StepFrame {
            frame,
            millis: js_sys::Date::now() - started,
        })
    }
}
