//! GroupNorm (+ SiLU) in one cubecl kernel, for tensors on a cubecl device (wgpu, WebGPU)
//! outside autodiff, optionally of x plus a per-(sample, channel) shift (a res block's time
//! projection), so that the sum is never written out. One workgroup per (sample, group): it sums
//! the group's values, shifted by the group's first value so that the variance keeps its
//! precision, reduces the sums in shared memory, then writes γ (x − μ)/√(σ² + ε) + β, through SiLU where asked, in the input's own
//! memory layout (channels-last after a convolution), so nothing is copied before or after.
//! Under burn's fusion the kernel is an opaque operation of the fusion stream (`cube_op`).

use burn::nn::GroupNorm;
use burn::tensor::Tensor as BurnTensor;
use burn_backend::TensorMetadata;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::custom::ScalarIr;
use cubecl::prelude::*;

use super::norm::Shift;
use crate::cube_op::{self, CubeKernel, Inputs, Primitive, in_dtype};

/// Threads per workgroup: WebGPU's guaranteed `maxComputeInvocationsPerWorkgroup`, a power of
/// two for the tree reduction.
const THREADS: usize = 256;

/// A GroupNorm ready to run on its inputs.
pub struct GroupNormKernel {
    /// x, γ, β and the shift's table where there is one.
    inputs: Vec<Primitive>,
    launch: GroupNormLaunch,
}

impl GroupNormKernel {
    /// SiLU (where `then_silu`) of `norm` applied to `x` (+ `shift`), where the kernel applies:
    /// an affine GroupNorm of a float tensor on a cubecl device (an autodiff device keeps
    /// burn's GroupNorm, which has gradients).
    pub fn for_tensor(
        norm: &GroupNorm,
        x: &BurnTensor<4>,
        shift: Option<&Shift>,
        then_silu: bool,
    ) -> Option<Self> {
        let [batch, ..] = x.dims();
        if batch * norm.num_groups > cube_op::MAX_WORKGROUPS {
            return None; // a workgroup per (sample, group) in one launch
        }
        let dtype = x.dtype();
        let mut inputs = vec![
            cube_op::primitive(x)?,
            cube_op::primitive(&in_dtype(norm.gamma.as_ref()?.val(), dtype))?,
            cube_op::primitive(&in_dtype(norm.beta.as_ref()?.val(), dtype))?,
        ];
        if let Some(shift) = shift {
            inputs.push(cube_op::primitive(&in_dtype(shift.table.clone(), dtype))?);
        }
        let launch = GroupNormLaunch {
            groups: norm.num_groups,
            epsilon: norm.epsilon as f32,
            shift_first: shift.map(|s| s.first),
            then_silu,
        };
        Some(Self { inputs, launch })
    }

    /// SiLU(GroupNorm(x + s)), s broadcast over the pixels (SiLU and s where asked).
    pub fn forward(self) -> BurnTensor<4> {
        cube_op::run(self.launch, self.inputs)
    }
}

#[derive(Clone, Copy, Debug)]
struct GroupNormLaunch {
    groups: usize,
    epsilon: f32,
    /// The shift table's column of channel 0, where there is a shift.
    shift_first: Option<usize>,
    then_silu: bool,
}

impl CubeKernel for GroupNormLaunch {
    const NAME: &'static str = "emerge::group_norm";

    fn scalars(&self) -> Vec<ScalarIr> {
        vec![
            ScalarIr::UInt(self.groups as u64),
            ScalarIr::Float(self.epsilon as f64),
            ScalarIr::Bool(self.shift_first.is_some()),
            ScalarIr::UInt(self.shift_first.unwrap_or(0) as u64),
            ScalarIr::Bool(self.then_silu),
        ]
    }

    fn launch(&self, mut inputs: Inputs) -> CubeTensor {
        let (x, gamma, beta) = (inputs.next(), inputs.next(), inputs.next());
        // Without a shift the kernel's shift binding is never read: γ stands in for it.
        let shift = match self.shift_first {
            Some(_) => inputs.next(),
            None => gamma.clone(),
        };
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
        debug_assert_eq!(channels % self.groups, 0);
        group_norm_kernel::launch(
            &client,
            CubeCount::Static((batch * self.groups) as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            x.into_tensor_arg(),
            gamma.into_tensor_arg(),
            beta.into_tensor_arg(),
            shift.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            self.epsilon,
            self.shift_first.unwrap_or(0),
            self.groups,
            THREADS,
            channels_last,
            self.shift_first.is_some(),
            self.then_silu,
            dtype_to_storage_type(dtype),
        );
        output
    }
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
