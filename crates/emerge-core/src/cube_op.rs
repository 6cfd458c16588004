//! What this crate's own cubecl kernels (`norm_kernel`, `attention_kernel`) share: a kernel takes
//! float tensors of a cubecl device (wgpu, WebGPU) outside autodiff and gives one shaped like its
//! first input; it is launched on cubecl's backend, or queued as one opaque operation of burn's
//! fusion stream (fusion runs the operations around it), whichever the device uses.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::{Cube, DispatchDevice};
use burn::tensor::{DType, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::untile;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, OperationOutput, ScalarIr, StreamId,
    TensorIr,
};
use burn_fusion::{ExecutionError, Fusion, FusionBackend, FusionRuntime};
use cubecl::bytes::Bytes;

/// Workgroups a launch may ask for along one dimension: WebGPU's guaranteed
/// `maxComputeWorkgroupsPerDimension`.
pub const MAX_WORKGROUPS: usize = 65_535;

/// A float tensor of the cubecl device, as a kernel takes it.
pub type Primitive = <Cube as burn_backend::BackendTypes>::FloatTensorPrimitive;

/// One of this crate's kernels with its settings.
pub trait CubeKernel: Debug + Clone + Send + Sync + 'static {
    /// Its name in the fusion stream.
    const NAME: &'static str;
    /// Its settings, as the fusion stream records them.
    fn scalars(&self) -> Vec<ScalarIr>;
    /// Launches it on cubecl's backend, the output shaped like the first input.
    fn launch(&self, inputs: Inputs) -> CubeTensor;
}

/// A kernel's inputs, in the order its constructor gave them.
pub struct Inputs(std::vec::IntoIter<CubeTensor>);

impl Inputs {
    /// The next input, untiled.
    pub fn next(&mut self) -> CubeTensor {
        untile(
            self.0
                .next()
                .expect("a kernel reads the inputs its constructor gave it"),
        )
    }
}

/// The wgpu device the kernels' tests run on (SwiftShader in `./build.sh test`), or None,
/// saying so, on a machine without an adapter.
#[cfg(test)]
pub fn test_device(kernel: &str) -> Option<burn::tensor::Device> {
    let device = burn::tensor::Device::wgpu_options().init().ok();
    if device.is_none() {
        eprintln!("no wgpu adapter: the {kernel} kernel is not checked here");
    }
    device
}

/// Whether `tensor` is on a cubecl device outside autodiff.
pub fn on_cube_device<const D: usize>(tensor: &Tensor<D>) -> bool {
    matches!(tensor.device().as_dispatch(), DispatchDevice::Cube(_))
}

/// `tensor` as a kernel's input, where it is a float tensor of a cubecl device outside autodiff.
pub fn primitive<const D: usize>(tensor: &Tensor<D>) -> Option<Primitive> {
    if !on_cube_device(tensor) {
        return None;
    }
    tensor.clone().try_into_primitive::<Cube>().ok()
}

/// `tensor` in `dtype` (itself where it is already).
pub fn in_dtype<const D: usize>(tensor: Tensor<D>, dtype: DType) -> Tensor<D> {
    if tensor.dtype() == dtype {
        tensor
    } else {
        tensor.cast(dtype)
    }
}

/// Writes `values` into `tensor`'s own buffer with one queue write (no launch), where `tensor`
/// is a contiguous f32 tensor of a cubecl device outside autodiff with as many elements.
/// False, writing nothing, elsewhere.
pub fn write<const D: usize>(tensor: &Tensor<D>, values: &[f32]) -> bool {
    if tensor.dtype() != DType::F32 || tensor.shape().num_elements() != values.len() {
        return false;
    }
    let Some(primitive) = primitive(tensor) else {
        return false;
    };
    let resolved = <Cube as KernelBackend>::resolve(primitive);
    // a handle's size is its allocation's, rounded up: the values fill its start
    if !resolved.is_contiguous() || resolved.handle.size_in_used() < (values.len() * 4) as u64 {
        return false;
    }
    let bytes = Bytes::from_elems(values.to_vec());
    resolved.client.write(&resolved.handle, bytes);
    true
}

/// Runs `kernel` on `inputs` (at least one) on the device's backend.
pub fn run<K: CubeKernel, const D: usize>(kernel: K, inputs: Vec<Primitive>) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(<Cube as KernelBackend>::run(kernel, inputs))
}

/// A backend that runs this crate's kernels: cubecl's launches them, fusion's queues them.
trait KernelBackend: burn_backend::Backend {
    fn run<K: CubeKernel>(
        kernel: K,
        inputs: Vec<Self::FloatTensorPrimitive>,
    ) -> Self::FloatTensorPrimitive;

    /// The cubecl tensor behind `tensor`, its pending work queued first.
    fn resolve(tensor: Self::FloatTensorPrimitive) -> CubeTensor;
}

impl KernelBackend for CubeBackend {
    fn run<K: CubeKernel>(kernel: K, inputs: Vec<CubeTensor>) -> CubeTensor {
        kernel.launch(Inputs(inputs.into_iter()))
    }

    fn resolve(tensor: CubeTensor) -> CubeTensor {
        tensor
    }
}

impl<B: FusionBackend + KernelBackend> KernelBackend for Fusion<B> {
    fn run<K: CubeKernel>(
        kernel: K,
        inputs: Vec<Self::FloatTensorPrimitive>,
    ) -> Self::FloatTensorPrimitive {
        let first = &inputs[0];
        let client = first.client.clone();
        let output = TensorIr::uninit(
            client.create_empty_handle(),
            first.shape.clone(),
            first.dtype,
        );
        let inputs: Vec<_> = inputs.into_iter().map(|t| t.into_ir()).collect();
        let description = CustomOpIr::with_scalars(K::NAME, &inputs, &[output], kernel.scalars());
        client
            .register(
                StreamId::current(),
                OperationIr::Custom(description.clone()),
                Queued::<B, K> {
                    description,
                    kernel,
                    backend: PhantomData,
                },
            )
            .output()
    }

    fn resolve(tensor: Self::FloatTensorPrimitive) -> CubeTensor {
        let client = tensor.client.clone();
        B::resolve(client.resolve_tensor_float::<B>(tensor))
    }
}

/// A kernel in the fusion stream.
#[derive(Debug)]
struct Queued<B, K> {
    description: CustomOpIr,
    kernel: K,
    backend: PhantomData<fn() -> B>,
}

impl<B: FusionBackend + KernelBackend, K: CubeKernel> Operation<B::FusionRuntime> for Queued<B, K> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) -> Result<(), ExecutionError> {
        let [output] = &self.description.outputs[..] else {
            return Err(ExecutionError::with_context(format!(
                "{}: {} outputs, expected one",
                K::NAME,
                self.description.outputs.len()
            )));
        };
        let inputs = self
            .description
            .inputs
            .iter()
            .map(|t| handles.get_float_tensor::<B>(t))
            .collect();
        let y = B::run(self.kernel.clone(), inputs);
        handles.register_float_tensor::<B>(&output.id, y);
        Ok(())
    }
}
