//! Where the CLI computes: Flex on the CPU, or a GPU through wgpu (Vulkan, Metal, DX12) when the
//! binary has the `gpu` feature (on by default) and an adapter exists.
//!
//! The GPU runs the page's configuration: WGSL shaders, fusion, no autotune (`check-devices`
//! holds it to Flex; see README, "On a real GPU").

use anyhow::Result;
use burn::tensor::Device;
use clap::ValueEnum;

/// The `--device` of train, sample and eval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// Flex, burn's CPU backend (every core).
    Cpu,
    /// The first GPU wgpu finds (a clear error when there is none).
    Gpu,
}

/// An opened device and the words that name it in tables and logs.
#[derive(Clone)]
pub struct OpenedDevice {
    pub device: Device,
    pub label: String,
}

impl OpenedDevice {
    pub fn cpu() -> Self {
        Self {
            device: Device::flex(),
            label: "Flex (CPU)".into(),
        }
    }
}

/// The device a command asked for.
pub fn open(choice: DeviceChoice) -> Result<OpenedDevice> {
    match choice {
        DeviceChoice::Cpu => Ok(OpenedDevice::cpu()),
        DeviceChoice::Gpu => gpu::open(),
    }
}

/// Every device this binary can use here (Flex first), and for each one it cannot, the reason.
pub fn available() -> (Vec<OpenedDevice>, Vec<String>) {
    let mut opened = vec![OpenedDevice::cpu()];
    let mut missing = Vec::new();
    match gpu::open() {
        Ok(device) => opened.push(device),
        Err(e) => missing.push(format!("GPU: {e:#}")),
    }
    (opened, missing)
}

#[cfg(feature = "gpu")]
mod gpu {
    use std::sync::OnceLock;

    use anyhow::{Result, anyhow};
    use burn::tensor::Device;
    use burn::tensor::wgpu::wgpu::DeviceType;

    use super::OpenedDevice;

    /// wgpu's runtime can be initialised once per process: keep the outcome.
    static WGPU: OnceLock<Result<OpenedDevice, String>> = OnceLock::new();

    /// What the build's shader path and tuning are, for labels (the check's rows name them).
    fn build_configuration() -> &'static str {
        match (
            cfg!(feature = "spirv"),
            cfg!(feature = "fusion"),
            cfg!(feature = "autotune"),
        ) {
            (false, false, false) => "WGSL",
            (false, true, false) => "WGSL, fusion",
            (false, false, true) => "WGSL, autotune",
            (false, true, true) => "WGSL, fusion, autotune",
            (true, false, false) => "SPIR-V",
            (true, true, false) => "SPIR-V, fusion",
            (true, false, true) => "SPIR-V, autotune",
            (true, true, true) => "SPIR-V, fusion, autotune",
        }
    }

    pub fn open() -> Result<OpenedDevice> {
        WGPU.get_or_init(|| {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .map_err(super::no_adapter)?;
            let info = setup.adapter.get_info();
            let emulated = if info.device_type == DeviceType::Cpu {
                ", a CPU emulation"
            } else {
                ""
            };
            Ok(OpenedDevice {
                device,
                label: format!(
                    "{} ({:?}{emulated}; {})",
                    info.name,
                    info.backend,
                    build_configuration()
                ),
            })
        })
        .clone()
        .map_err(|e| anyhow!(e))
    }
}

/// What a user without a usable GPU reads, with wgpu's own reason.
fn no_adapter(reason: impl std::fmt::Display) -> String {
    format!(
        "no GPU adapter was found ({reason}); use --device cpu, or install a Vulkan, Metal or DX12 \
         driver"
    )
}

#[cfg(not(feature = "gpu"))]
mod gpu {
    use anyhow::{Result, bail};

    use super::OpenedDevice;

    pub fn open() -> Result<OpenedDevice> {
        bail!(
            "this binary was built without GPU support; rebuild it with the default features \
             (`cargo build --release -p emerge`)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_device_computes() {
        let (opened, _) = available();
        assert!(!opened.is_empty());
        for OpenedDevice { device, label } in opened {
            let doubled =
                burn::tensor::Tensor::<1>::from_floats([1.0, -2.5], &device).mul_scalar(2.0);
            let values = doubled.into_data().try_into_vec::<f32>().unwrap();
            assert_eq!(values, vec![2.0, -5.0], "{label}");
        }
    }

    #[test]
    fn a_missing_adapter_is_an_error_that_names_the_way_out() {
        let message = no_adapter("No suitable graphics adapter found");
        assert!(
            message.contains("No suitable graphics adapter found"),
            "{message}"
        );
        assert!(message.contains("use --device cpu"), "{message}");
    }

    #[cfg(not(feature = "gpu"))]
    #[test]
    fn a_build_without_gpu_support_says_how_to_get_it() {
        let message = format!("{:#}", open(DeviceChoice::Gpu).err().unwrap());
        assert!(
            message.contains("cargo build --release -p emerge"),
            "{message}"
        );
    }
}
