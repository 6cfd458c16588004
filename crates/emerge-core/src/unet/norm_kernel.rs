//! GroupNorm (+ SiLU) in one cubecl kernel, for tensors on a cubecl device (wgpu, WebGPU)
//! outside autodiff, optionally of x plus a per-(sample, channel) shift (a res block's time
//! projection), so that the sum is never written out. One workgroup per (sample, group): it sums the group's values, shifted by
//! the group's first value so that the variance keeps its precision, reduces the sums in shared
//! memory, then writes γ (x − μ)/√(σ² + ε) + β, through SiLU where asked, in the input's own
//! memory layout (channels-last after a convolution), so nothing is copied before or after.
//! Under burn's fusion the kernel is an opaque operation of the fusion stream.

use std::marker::PhantomData;

use burn::backend::{Cube, DispatchDevice};
use burn::nn::GroupNorm;
use burn::tensor::Tensor as BurnTensor;
use burn_backend::TensorMetadata;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::untile;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, OperationOutput, ScalarIr, StreamId,
    TensorIr,
};
use burn_fusion::{ExecutionError, Fusion, FusionBackend, FusionRuntime};
use cubecl::prelude::*;

use super::norm::Shift;

/// Threads per workgroup: WebGPU's guaranteed `maxComputeInvocationsPerWorkgroup`, a power of
/// two for the tree reduction.
const THREADS: usize = 256;

/// The operation's name in the fusion stream.
const OPERATION: &str = "emerge::group_norm";

/// A GroupNorm's parameters, on the device of the tensor it normalises.
pub struct GroupNormKernel {
    gamma: BurnTensor<1>,
    beta: BurnTensor<1>,
    groups: usize,
    epsilon: f32,
}

impl GroupNormKernel {
    /// The kernel for `norm` applied to `x`, where it applies: an affine GroupNorm of a float
    /// tensor on a cubecl device (an autodiff device keeps burn's GroupNorm, which has
    /// gradients).
    pub fn for_tensor(norm: &GroupNorm, x: &BurnTensor<4>) -> Option<Self> {
        if !matches!(x.device().as_dispatch(), DispatchDevice::Cube(_)) {
            return None;
        }
        let dtype = x.dtype();
        let (gamma, beta) = (norm.gamma.as_ref()?.val(), norm.beta.as_ref()?.val());
        let same_dtype = |t: BurnTensor<1>| {
            if t.dtype() == dtype { t } else { t.cast(dtype) }
        };
        Some(Self {
            gamma: same_dtype(gamma),
            beta: same_dtype(beta),
            groups: norm.num_groups,
            epsilon: norm.epsilon as f32,
        })
    }

    /// GroupNorm(x + s), s (`[N, C]`, where given) broadcast over the pixels, then SiLU where
    /// `then_silu`.
    pub fn forward(self, x: BurnTensor<4>, shift: Option<Shift>, then_silu: bool) -> BurnTensor<4> {
        let primitive = |t: BurnTensor<1>| {
            t.try_into_primitive::<Cube>()
                .expect("a parameter on the cubecl device of its input")
        };
        let x = x
            .try_into_primitive::<Cube>()
            .expect("checked: a tensor on a cubecl device, outside autodiff");
        let shift_first = shift.as_ref().map_or(0, |s| s.first);
        let shift = shift.map(|s| {
            s.table
                .cast(x.dtype())
                .try_into_primitive::<Cube>()
                .expect("a shift on the cubecl device of its input")
        });
        let y = <Cube as GroupNormOps>::group_norm(
            x,
            primitive(self.gamma),
            primitive(self.beta),
            shift,
            Settings {
                groups: self.groups,
                epsilon: self.epsilon,
                shift_first,
                then_silu,
            },
        );
        BurnTensor::from_primitive::<Cube>(y)
    }
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    groups: usize,
    epsilon: f32,
    /// The shift table's column of channel 0.
    shift_first: usize,
    then_silu: bool,
}

/// The kernel on a backend: launched on cubecl's, queued on fusion's.
trait GroupNormOps: burn_backend::Backend {
    fn group_norm(
        x: Self::FloatTensorPrimitive,
        gamma: Self::FloatTensorPrimitive,
        beta: Self::FloatTensorPrimitive,
        shift: Option<Self::FloatTensorPrimitive>,
        settings: Settings,
    ) -> Self::FloatTensorPrimitive;
}

impl GroupNormOps for CubeBackend {
    fn group_norm(
        x: CubeTensor,
        gamma: CubeTensor,
        beta: CubeTensor,
        shift: Option<CubeTensor>,
        settings: Settings,
    ) -> CubeTensor {
        let x = untile(x);
        let [batch, channels, _, _] = x.shape().dims::<4>();
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        // The output in the input's layout where that layout is a dense permutation.
        let output = if x.is_contiguous_buffer() && x.is_nonoverlapping() {
            let bytes = x.shape().num_elements() * dtype.size();
            CubeTensor::new(
                client.clone(),
                client.empty(bytes),
                (*x.meta).clone(),
                device,
                dtype,
            )
        } else {
            empty_device_dtype(client.clone(), device, x.shape(), dtype)
        };
        let strides = x.meta.strides();
        let channels_last = strides[1] < strides[3];
        debug_assert_eq!(channels % settings.groups, 0);
        let gamma = untile(gamma);
        let shifted = shift.is_some();
        // Without a shift the kernel's shift binding is never read: γ stands in for it.
        let shift = shift.map_or_else(|| gamma.clone(), untile);
        group_norm_kernel::launch(
            &client,
            CubeCount::Static((batch * settings.groups) as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            untile(beta).into_tensor_arg(),
            shift.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            settings.epsilon,
            settings.shift_first,
            settings.groups,
            THREADS,
            channels_last,
            shifted,
            settings.then_silu,
            dtype_to_storage_type(dtype),
        );
        output
    }
}

/// The kernel as one operation of burn's fusion stream (fusion runs the operations around it).
#[derive(Debug)]
struct QueuedGroupNorm<B> {
    description: CustomOpIr,
    settings: Settings,
    backend: PhantomData<fn() -> B>,
}

impl<B: FusionBackend + GroupNormOps> Operation<B::FusionRuntime> for QueuedGroupNorm<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) -> Result<(), ExecutionError> {
        // [x, γ, β] or [x, γ, β, shift]
        let mut inputs = self
            .description
            .inputs
            .iter()
            .map(|t| handles.get_float_tensor::<B>(t))
            .collect::<Vec<_>>()
            .into_iter();
        let mut next = || {
            inputs
                .next()
                .ok_or_else(|| missing_input(&self.description))
        };
        let (x, gamma, beta) = (next()?, next()?, next()?);
        let y = B::group_norm(x, gamma, beta, inputs.next(), self.settings);
        let [output] = &self.description.outputs[..] else {
            return Err(missing_input(&self.description));
        };
        handles.register_float_tensor::<B>(&output.id, y);
        Ok(())
    }
}

impl<B: FusionBackend + GroupNormOps> GroupNormOps for Fusion<B> {
    fn group_norm(
        x: Self::FloatTensorPrimitive,
        gamma: Self::FloatTensorPrimitive,
        beta: Self::FloatTensorPrimitive,
        shift: Option<Self::FloatTensorPrimitive>,
        settings: Settings,
    ) -> Self::FloatTensorPrimitive {
        let client = x.client.clone();
        let output = TensorIr::uninit(client.create_empty_handle(), x.shape.clone(), x.dtype);
        let mut inputs = vec![x.into_ir(), gamma.into_ir(), beta.into_ir()];
        inputs.extend(shift.map(|s| s.into_ir()));
        let description = CustomOpIr::with_scalars(
            OPERATION,
            &inputs,
            &[output],
            vec![
                ScalarIr::UInt(settings.groups as u64),
                ScalarIr::Float(settings.epsilon as f64),
                ScalarIr::UInt(settings.shift_first as u64),
                ScalarIr::Bool(settings.then_silu),
            ],
        );
        client
            .register(
                StreamId::current(),
                OperationIr::Custom(description.clone()),
                QueuedGroupNorm::<B> {
                    description,
                    settings,
                    backend: PhantomData,
                },
            )
            .output()
    }
}

/// A queued GroupNorm whose description lacks an input or output it was registered with.
fn missing_input(description: &CustomOpIr) -> ExecutionError {
    ExecutionError::with_context(format!(
        "{OPERATION}: {} inputs and {} outputs, expected [x, γ, β(, shift)] and one output",
        description.inputs.len(),
        description.outputs.len()
    ))
}

/// The channel of element `i` of the group starting at channel `c0`. A group is walked
/// channel-fastest when the memory is channels-last, pixel-fastest otherwise, so that
/// neighbouring threads read neighbouring memory.
#[cube]
fn channel_of(
    i: usize,
    c0: usize,
    group_channels: usize,
    pixels: usize,
    #[comptime] channels_last: bool,
) -> usize {
    if channels_last {
        c0 + i % group_channels
    } else {
        c0 + i / pixels
    }
}

/// The pixel (row-major over H × W) of element `i` of a group, walked as in [`channel_of`].
#[cube]
fn pixel_of(
    i: usize,
    group_channels: usize,
    pixels: usize,
    #[comptime] channels_last: bool,
) -> usize {
    if channels_last {
        i / group_channels
    } else {
        i % pixels
    }
}

/// Where `t[sample, channel, pixel / W, pixel % W]` lives, whatever the strides.
#[cube]
fn offset<F: Float>(t: &Tensor<F>, sample: usize, channel: usize, pixel: usize) -> usize {
    let width = t.shape(3);
    sample * t.stride(0)
        + channel * t.stride(1)
        + (pixel / width) * t.stride(2)
        + (pixel % width) * t.stride(3)
}

/// x[sample, channel, pixel] (+ shift[sample, shift_first + channel] where `shifted`), in f32.
#[cube]
fn value<F: Float>(
    input: &Tensor<F>,
    shift: &Tensor<F>,
    shift_first: usize,
    sample: usize,
    channel: usize,
    pixel: usize,
    #[comptime] shifted: bool,
) -> f32 {
    let x = f32::cast_from(input[offset(input, sample, channel, pixel)]);
    if shifted {
        let column = shift_first + channel;
        x + f32::cast_from(shift[sample * shift.stride(0) + column * shift.stride(1)])
    } else {
        x
    }
}

/// One workgroup per (sample, group) of `threads` threads.
#[cube(launch)]
fn group_norm_kernel<F: Float>(
    input: &Tensor<F>,
    gamma: &Tensor<F>,
    beta: &Tensor<F>,
    shift: &Tensor<F>,
    output: &mut Tensor<F>,
    epsilon: f32,
    shift_first: usize,
    #[comptime] groups: usize,
    #[comptime] threads: usize,
    #[comptime] channels_last: bool,
    #[comptime] shifted: bool,
    #[comptime] then_silu: bool,
    #[define(F)] _dtype: ElemType,
) {
    let thread = UNIT_POS_X as usize;
    let sample = CUBE_POS_X as usize / groups;
    let group_channels = input.shape(1) / groups;
    let c0 = (CUBE_POS_X as usize % groups) * group_channels;
    let pixels = input.shape(2) * input.shape(3);
    let count = group_channels * pixels;

    // Σ(x − k) and Σ(x − k)², k the group's first value: Var = E[(x−k)²] − E[x−k]².
    let k = value(input, shift, shift_first, sample, c0, 0, shifted);
    let mut sum = 0.0f32.runtime();
    let mut sum_squares = 0.0f32.runtime();
    let mut i = thread;
    while i < count {
        let c = channel_of(i, c0, group_channels, pixels, channels_last);
        let p = pixel_of(i, group_channels, pixels, channels_last);
        let d = value(input, shift, shift_first, sample, c, p, shifted) - k;
        sum += d;
        sum_squares += d * d;
        i += threads;
    }
    // Tree reduction of both sums in shared memory; every thread passes every barrier.
    let mut sums = Shared::<[f32]>::new_slice(threads);
    let mut squares = Shared::<[f32]>::new_slice(threads);
    sums[thread] = sum;
    squares[thread] = sum_squares;
    sync_cube();
    let mut half = (threads / 2).runtime();
    while half > 0 {
        if thread < half {
            sums[thread] += sums[thread + half];
            squares[thread] += squares[thread + half];
        }
        sync_cube();
        half /= 2;
    }
    let n = f32::cast_from(count as u32);
    let mean_shifted = sums[0] / n;
    let mut variance = squares[0] / n - mean_shifted * mean_shifted;
    if variance < 0.0f32 {
        variance = 0.0f32; // rounding, for a group of equal values
    }
    let mean = mean_shifted + k;
    let inverse_std = (variance + epsilon).inverse_sqrt();

    // y = γ_c (x − μ)/√(σ² + ε) + β_c, then SiLU(y) = y / (1 + e^(−y)) where asked.
    let mut i = thread;
    while i < count {
        let c = channel_of(i, c0, group_channels, pixels, channels_last);
        let p = pixel_of(i, group_channels, pixels, channels_last);
        let x = value(input, shift, shift_first, sample, c, p, shifted);
        let mut y = (x - mean) * inverse_std * f32::cast_from(gamma[c * gamma.stride(0)])
            + f32::cast_from(beta[c * beta.stride(0)]);
        if then_silu {
            y /= 1.0f32 + (0.0f32 - y).exp();
        }
        let width = input.shape(3);
        let out_at = sample * output.stride(0)
            + c * output.stride(1)
            + (p / width) * output.stride(2)
            + (p % width) * output.stride(3);
        output[out_at] = F::cast_from(y);
        i += threads;
    }
}
