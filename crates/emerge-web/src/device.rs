//! The two places the model can run: WebGPU through burn's wgpu backend, and Flex on the CPU.
//! Each is a feature of this crate, so that the page's two modules each carry one; a module built
//! without a backend says so instead of running it. Which one to use is the worker's choice.

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
}

/// The device `backend` names, `"webgpu"` or `"cpu"`, or why this module or the browser cannot
/// give it (the worker chooses, and falls back).
#[cfg(target_arch = "wasm32")]
pub async fn named(
    backend: &str,
    tasks_per_submit: Option<usize>,
) -> Result<(Device, DeviceInfo), String> {
    match backend {
        "cpu" => cpu(),
        "webgpu" => webgpu(tasks_per_submit)
            .await
            .map_err(|e| format!("WebGPU is unavailable: {e}")),
        other => Err(format!("unknown backend '{other}' (webgpu or cpu)")),
    }
}

/// The CPU device.
#[cfg(all(target_arch = "wasm32", feature = "cpu"))]
pub fn cpu() -> Result<(Device, DeviceInfo), String> {
    let info = DeviceInfo {
        backend: "cpu".into(),
        adapter: "Flex (WebAssembly, CPU)".into(),
    };
    Ok((Device::flex(), info))
}

#[cfg(all(target_arch = "wasm32", not(feature = "cpu")))]
pub fn cpu() -> Result<(Device, DeviceInfo), String> {
    Err("this module was built without the CPU backend".into())
}

#[cfg(all(target_arch = "wasm32", not(feature = "gpu")))]
pub async fn webgpu(_tasks_per_submit: Option<usize>) -> Result<(Device, DeviceInfo), String> {
    Err("this module was built without WebGPU".into())
}

/// The WebGPU device, or the reason it cannot be had. wgpu's runtime can be initialised once
/// per page: callers keep the device. `tasks_per_submit`: kernel launches gathered into one
/// submitted command buffer (cubecl's default, 32, when absent).
#[cfg(all(target_arch = "wasm32", feature = "gpu"))]
pub async fn webgpu(tasks_per_submit: Option<usize>) -> Result<(Device, DeviceInfo), String> {
    let mut options = Device::wgpu_options();
    if let Some(tasks) = tasks_per_submit {
        if tasks == 0 {
            return Err("tasks per submit must be at least 1".into());
        }
        options = options.tasks_max(tasks);
    }
    let (device, setup) = options
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
    let info = DeviceInfo {
        backend: "webgpu".into(),
        adapter: description,
    };
    Ok((device, info))
}
