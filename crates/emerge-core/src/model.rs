//! A model as a file describes it: the network's configuration and the schedule it was trained
//! with, so that a weight file alone is enough to sample.

use serde::{Deserialize, Serialize};

use crate::error::EmergeError;
use crate::schedule::{NoiseSchedule, ScheduleConfig};
use crate::unet::UNetConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub unet: UNetConfig,
    pub schedule: ScheduleConfig,
}

impl ModelConfig {
    /// A preset network with the DDPM paper's schedule.
    pub fn preset(name: &str) -> Result<Self, EmergeError> {
        Ok(Self {
            unet: UNetConfig::preset(name)?,
            schedule: ScheduleConfig::default(),
        })
    }

    pub fn noise_schedule(&self) -> Result<NoiseSchedule, EmergeError> {
        NoiseSchedule::new(self.schedule)
    }

    /// Checks both parts; the error names the field at fault.
    pub fn validate(&self) -> Result<(), EmergeError> {
        self.unet.validate()?;
        NoiseSchedule::new(self.schedule).map(|_| ())
    }
}
