//! The page's trainer (`pkg/emerge_train.js`, a module of its own so that sampling visitors do
//! not download autodiff): `Training.create(recipe, images, labels)` with a `TrainingConfig`
//! object (what `emerge train` writes to `config.json`) and the digits as bytes, `train(count)`
//! for optimisation steps and their losses, `sample(request)` for a grid drawn with the EMA
//! weights as they are, `exportModel()` for a model file of the EMA weights
//! that `emerge sample --model` and the page's model list accept.

use burn::tensor::{Device, Transaction};
use emerge_core::Model;
use emerge_core::training::{Digits, Trainer, TrainingConfig};
use emerge_core::weights::{self, Precision};
use serde::Serialize;
use wasm_bindgen::prelude::*;

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
}

#[wasm_bindgen]
impl Training {
    /// `recipe`: a `TrainingConfig` object (unknown keys refused); `images`: N greyscale images
    /// of the recipe's size, one byte per pixel, one after another; `labels`: their N classes.
    /// Trains on the CPU (Flex).
    pub fn create(recipe: JsValue, images: Vec<u8>, labels: Vec<u8>) -> Result<Training, JsError> {
        let recipe: TrainingConfig = from_js_strictly(recipe, "training recipe")?;
        let size = recipe.model.unet.sample_size;
        let digits = Digits::new(&images, labels, size).map_err(js_error)?;
        let trainer = Trainer::new(recipe, &Device::flex()).map_err(js_error)?;
        Ok(Training { trainer, digits })
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
        whole_run(&model, request, &Device::flex()).await
    }

    /// A model file (f16) of the EMA weights, with the recipe's network and schedule.
    #[wasm_bindgen(js_name = exportModel)]
    pub fn export_model(&self) -> Result<Vec<u8>, JsError> {
        let config = &self.trainer.config().model;
        weights::to_bytes(self.trainer.ema(), config, Precision::F16).map_err(js_error)
    }
}
