//! A model as a file describes it: the network's configuration and the schedule it was trained
//! with, so that a weight file alone is enough to sample.

use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::request::SamplingRequest;
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::unet::UNetConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub unet: UNetConfig,
    pub schedule: ScheduleConfig,
    /// The request the model is meant to be sampled with, chosen by measurement (its model
    /// card); absent in files written before models carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<SamplingRequest>,
}

impl ModelConfig {
    /// A preset network with the DDPM paper's schedule.
    pub fn preset(name: &str) -> Result<Self, EmergeError> {
        Ok(Self {
            unet: UNetConfig::preset(name)?,
            schedule: ScheduleConfig::default(),
            recommended: None,
        })
    }

    pub fn noise_schedule(&self) -> Result<NoiseSchedule, EmergeError> {
        NoiseSchedule::new(self.schedule)
    }

    /// Checks every part; the error names the field at fault.
    pub fn validate(&self) -> Result<(), EmergeError> {
        self.unet.validate()?;
        NoiseSchedule::new(self.schedule)?;
        match &self.recommended {
            Some(request) if request.start.is_some() => Err(EmergeError::InvalidConfig(
                "a recommended request starts from noise: it may not carry a start image".into(),
            )),
            Some(request) => request.validate(self),
            None => Ok(()),
        }
    }
}
