//! The page's trainer (`pkg/emerge_train.js` on the CPU, `pkg/emerge_train_gpu.js` on WebGPU:
//! modules of their own so that sampling visitors do not download autodiff):
//! `Training.create(recipe, images, labels, backend)` with a `TrainingConfig` object (what
//! `emerge train` writes to `config.json`) and the digits as bytes, `train(count)` for
//! optimisation steps and their losses, `sample(request)` for a grid drawn with the EMA weights as
//! they are, `reset()` to start over, `exportModel()` for a model file of the EMA weights that
//! `emerge sample --model` and the page's model list accept.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use emerge_core::Model;
use emerge_core::training::{Digits, Trainer, TrainingConfig};
use emerge_core::unet::UNet;
use emerge_core::weights::{self, Precision, parameters};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::device::{self, DeviceInfo};
use crate::readback::read_values;
use crate::web::{from_js_strictly, js_error, to_js, whole_run};

/// What a call to `train` did.
#[derive(Debug, Clone, Serialize)]
pub struct Trained {
    /// The loss of each step, in order.
    pub losses: Vec<f32>,
    /// Optimisation steps done in all.
    pub step: usize,
    /// Images seen in all (steps × batch size).
    pub images_seen: usize,
}

/// A network learning from the digits it was given.
#[wasm_bindgen]
pub struct Training {
    trainer: Trainer,
    digits: Digits,
    device: Device,
    info: DeviceInfo,
}

#[wasm_bindgen]
impl Training {
    /// `recipe`: a `TrainingConfig` object (unknown keys refused); `images`: N greyscale images
    /// of the recipe's size, one byte per pixel, one after another; `labels`: their N classes;
    /// `backend`: `"cpu"` (Flex, the default) or `"webgpu"`, an error where this module or the
    /// browser lacks it.
    pub async fn create(
        recipe: JsValue,
        images: Vec<u8>,
        labels: Vec<u8>,
        backend: Option<String>,
    ) -> Result<Training, JsError> {
        let recipe: TrainingConfig = from_js_strictly(recipe, "training recipe")?;
        let size = recipe.model.unet.sample_size;
        let digits = Digits::new(&images, labels, size).map_err(js_error)?;
        let (device, info) = device::named(backend.as_deref().unwrap_or("cpu"), None)
            .await
            .map_err(|e| JsError::new(&e))?;
        let trainer = Trainer::new(recipe, &device).map_err(js_error)?;
        Ok(Training {
            trainer,
            digits,
            device,
            info,
        })
    }

    /// The device it trains on: a [`DeviceInfo`].
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> Result<JsValue, JsError> {
        to_js(&self.info)
    }

    /// Starts over: weights drawn afresh from the recipe's seed (the same start as before), a new
    /// optimizer and EMA, step 0, on the same device.
    pub fn reset(&mut self) -> Result<(), JsError> {
        self.trainer =
            Trainer::new(self.trainer.config().clone(), &self.device).map_err(js_error)?;
        Ok(())
    }

    /// The network's parameter count.
    #[wasm_bindgen(getter)]
    pub fn parameters(&self) -> usize {
        self.trainer.model().num_params()
    }

    /// Runs `count` optimisation steps (at least one) and reads their losses back once: a
    /// [`Trained`].
    pub async fn train(&mut self, count: usize) -> Result<JsValue, JsError> {
        let mut losses = Transaction::default();
        for _ in 0..count.max(1) {
            losses = losses.register(self.trainer.step(&self.digits).map_err(js_error)?);
        }
        let data = losses
            .execute_async()
            .await
            .map_err(|e| JsError::new(&format!("reading the losses failed: {e:?}")))?;
        let losses = data
            .into_iter()
            .map(|d| {
                d.try_to_vec::<f32>()
                    .map(|v| v.first().copied().unwrap_or(f32::NAN))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JsError::new(&format!("unexpected loss data: {e:?}")))?;
        let step = self.trainer.state().step;
        to_js(&Trained {
            losses,
            step,
            images_seen: step * self.trainer.config().batch_size,
        })
    }

    /// A whole sampling run (a `SamplingRequest` object) with the EMA weights as they are now,
    /// read back once: a `Frame` object and `millis`, as the sampling engine's `sample` answers.
    pub async fn sample(&self, request: JsValue) -> Result<JsValue, JsError> {
        let config = self.trainer.config().model.clone();
        let model = Model::new(config, self.trainer.ema().clone()).map_err(js_error)?;
        whole_run(&model, request, &self.device).await
    }

    /// A model file (f16) of the EMA weights, with the recipe's network and schedule. The
    /// weights are read back asynchronously into a copy on the CPU first (a synchronous read
    /// panics on WebGPU).
    #[wasm_bindgen(js_name = exportModel)]
    pub async fn export_model(&self) -> Result<Vec<u8>, JsError> {
        let config = &self.trainer.config().model;
        let values = read_values(parameters::flattened(self.trainer.ema()))
            .await
            .map_err(js_error)?;
        let cpu = Device::flex();
        let tensors = values
            .into_iter()
            .map(|v| {
                let count = v.len();
                Tensor::from_data(TensorData::new(v, [count]), &cpu)
            })
            .collect();
        let on_cpu = UNet::new(&config.unet, &cpu)
            .and_then(|unet| parameters::replaced(unet, tensors))
            .map_err(js_error)?;
        weights::to_bytes(&on_cpu, config, Precision::F16).map_err(js_error)
    }
}
