//! The native devices `bench` times: Flex (CPU) always, and a GPU through wgpu (Vulkan, Metal,
//! DX12) when the binary is built with the `wgpu` feature and an adapter exists.

use burn::tensor::Device;

/// An opened device and the words that name it in tables and logs.
#[derive(Clone)]
pub struct OpenedDevice {
    pub device: Device,
    pub label: String,
}

/// Every device this binary can use here (Flex first), and for each one it cannot, the reason.
pub fn available() -> (Vec<OpenedDevice>, Vec<String>) {
    let mut opened = vec![OpenedDevice {
        device: Device::flex(),
        label: "Flex (CPU)".into(),
    }];
    let mut missing = Vec::new();
    match gpu::open() {
        Ok(device) => opened.push(device),
        Err(e) => missing.push(format!("wgpu: {e:#}")),
    }
    (opened, missing)
}

#[cfg(feature = "wgpu")]
mod gpu {
    use std::sync::OnceLock;

    use anyhow::{Result, anyhow};
    use burn::tensor::Device;

    use super::OpenedDevice;

    /// wgpu's runtime can be initialised once per process: keep the outcome.
    static WGPU: OnceLock<Result<OpenedDevice, String>> = OnceLock::new();

    pub fn open() -> Result<OpenedDevice> {
        WGPU.get_or_init(|| {
            let (device, setup) = Device::wgpu_options()
                .init_with_setup()
                .map_err(|e| format!("no wgpu adapter: {e}"))?;
            let info = setup.adapter.get_info();
            Ok(OpenedDevice {
                device,
                label: format!("wgpu {:?} ({})", info.backend, info.name),
            })
        })
        .clone()
        .map_err(|e| anyhow!(e))
    }
}

#[cfg(not(feature = "wgpu"))]
mod gpu {
    use anyhow::{Result, bail};

    use super::OpenedDevice;

    pub fn open() -> Result<OpenedDevice> {
        bail!(
            "this binary was built without GPU support; rebuild it with `cargo build --release -p emerge --features wgpu`"
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

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn asking_for_the_gpu_without_the_feature_says_how_to_get_it() {
        let (_, missing) = available();
        let message = missing.first().expect("no GPU support compiled in").clone();
        assert!(message.contains("--features wgpu"), "{message}");
    }
}
