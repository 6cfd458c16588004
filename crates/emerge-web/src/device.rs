//! Choosing where the model runs: WebGPU through burn's wgpu backend when the browser offers an
//! adapter, Flex on the CPU otherwise, with the reason kept for the page to show.

#[cfg(target_arch = "wasm32")]
use burn::tensor::Device;
use serde::Serialize;

/// What the page shows about the device in use.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// `"webgpu"` or `"cpu"`.
    pub backend: String,
    /// The adapter's name and driver (WebGPU), or the CPU backend's name.
    pub adapter: String,
    /// Why the CPU is used, when WebGPU was wanted but is unavailable.
    pub fallback_reason: Option<String>,
}

impl DeviceInfo {
    pub fn cpu(fallback_reason: Option<String>) -> Self {
        Self {
            backend: "cpu".into(),
            adapter: "Flex (WebAssembly, CPU)".into(),
            fallback_reason,
        }
    }
}

/// The CPU device.
#[cfg(target_arch = "wasm32")]
pub fn cpu(fallback_reason: Option<String>) -> (Device, DeviceInfo) {
    (Device::flex(), DeviceInfo::cpu(fallback_reason))
}

/// The WebGPU device, or the reason it cannot be had. wgpu's runtime can be initialised once
/// per page: callers keep the device.
#[cfg(target_arch = "wasm32")]
pub async fn webgpu() -> Result<(Device, DeviceInfo), String> {
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| e.to_string())?;
    let adapter = setup.adapter.get_info();
    let description = [
        adapter.name.as_str(),
        adapter.driver.as_str(),
        adapter.driver_info.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" · ");
    let description = if description.is_empty() {
        format!("{:?} adapter", adapter.backend)
    } else {
        description
    };
    Ok((
        device,
        DeviceInfo {
            backend: "webgpu".into(),
            adapter: description,
            fallback_reason: None,
        },
    ))
}
