//! Scaled dot-product attention, softmax((q + b_q)(k + b_k)ᵀ/√d)(v + b_v) per head (Vaswani et
//! al. 2017), in one cubecl kernel for tensors on a cubecl device (wgpu, WebGPU) outside
//! autodiff. One workgroup per (sample, head, query): it keeps the query row and its scores
//! against every key in shared memory, reduces their maximum and the exponentials' sum there,
//! and writes its row of the output. q, k and v are read through their strides (views of the
//! projections need no copy) and the projections' biases are added as they are read: burn's
//! path takes about fifteen launches per attention block (copies into matmul layouts, two
//! matmuls, softmax's five, bias additions) where this takes one.

use burn::tensor::Tensor as BurnTensor;
use burn_backend::TensorMetadata;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::custom::ScalarIr;
use cubecl::prelude::*;

use crate::cube_op::{self, CubeKernel, Inputs, in_dtype};

/// Threads per workgroup, a power of two for the tree reductions.
const THREADS: usize = 64;

/// f32 values a workgroup may keep in shared memory: WebGPU's guaranteed
/// `maxComputeWorkgroupStorageSize` (16 KiB).
const SHARED_VALUES: usize = 16 * 1024 / 4;

/// Whether the kernel can take a `heads`-head attention over `x` `[B, T, C]`: on a cubecl device
/// outside autodiff, with a head's scores and query within a workgroup's shared memory and a
/// workgroup per (sample, head, query) within one launch.
pub fn applies(x: &BurnTensor<3>, heads: usize) -> bool {
    let [batch, tokens, channels] = x.dims();
    tokens + channels / heads + THREADS <= SHARED_VALUES
        && batch * heads * tokens <= cube_op::MAX_WORKGROUPS
        && cube_op::on_cube_device(x)
}

/// softmax((q + b_q)(k + b_k)ᵀ/√d)(v + b_v) per head for `q`, `k`, `v` `[B, T, C]` (any
/// strides) and biases `[C]` where given: `[B, T, C]`. None where the kernel does not apply.
pub fn attention(
    [q, k, v]: [&BurnTensor<3>; 3],
    biases: Option<[BurnTensor<1>; 3]>,
    heads: usize,
) -> Option<BurnTensor<3>> {
    let dtype = q.dtype();
    let mut inputs = vec![
        cube_op::primitive(q)?,
        cube_op::primitive(k)?,
        cube_op::primitive(v)?,
    ];
    let biased = biases.is_some();
    for bias in biases.into_iter().flatten() {
        inputs.push(cube_op::primitive(&in_dtype(bias, dtype))?);
    }
    let [_, _, channels] = q.dims();
    let launch = AttentionLaunch {
        heads,
        scale: 1.0 / ((channels / heads) as f32).sqrt(),
        biased,
    };
    Some(cube_op::run(launch, inputs))
}

#[derive(Clone, Copy, Debug)]
struct AttentionLaunch {
    heads: usize,
    /// 1/√d.
    scale: f32,
    biased: bool,
}

impl CubeKernel for AttentionLaunch {
    const NAME: &'static str = "emerge::attention";

    fn scalars(&self) -> Vec<ScalarIr> {
        vec![
            ScalarIr::UInt(self.heads as u64),
            ScalarIr::Float(self.scale as f64),
            ScalarIr::Bool(self.biased),
        ]
    }

    fn launch(&self, mut inputs: Inputs) -> CubeTensor {
        let (q, k, v) = (inputs.next(), inputs.next(), inputs.next());
        // Without biases the kernel's bias bindings are never read: q stands in for them.
        let [bq, bk, bv] = if self.biased {
            [inputs.next(), inputs.next(), inputs.next()]
        } else {
            [q.clone(), q.clone(), q.clone()]
        };
        let [batch, tokens, channels] = q.shape().dims::<3>();
        let (client, device, dtype) = (q.client.clone(), q.device.clone(), q.dtype);
        let output = empty_device_dtype(client.clone(), device, q.shape(), dtype);
        attention_kernel::launch(
            &client,
            CubeCount::Static((batch * self.heads * tokens) as u32, 1, 1),
            CubeDim::new_1d(THREADS as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            bq.into_tensor_arg(),
            bk.into_tensor_arg(),
            bv.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            self.scale,
            self.heads,
            channels / self.heads,
            tokens,
            THREADS,
            self.biased,
            dtype_to_storage_type(dtype),
        );
        output
    }
}

/// t[sample, token, channel] (+ bias[channel] where `biased`), in f32.
#[cube]
fn read<F: Float>(
    t: &Tensor<F>,
    bias: &Tensor<F>,
    sample: usize,
    token: usize,
    channel: usize,
    #[comptime] biased: bool,
) -> f32 {
    let x = f32::cast_from(t[sample * t.stride(0) + token * t.stride(1) + channel * t.stride(2)]);
    if biased {
        x + f32::cast_from(bias[channel * bias.stride(0)])
    } else {
        x
    }
}

/// Tree reduction of `values[0..threads]` into `values[0]`, by sum or by maximum; every thread
/// passes every barrier.
#[cube]
fn reduce(
    values: &mut Shared<[f32]>,
    thread: usize,
    #[comptime] threads: usize,
    #[comptime] maximum: bool,
) {
    sync_cube();
    let mut half = (threads / 2).runtime();
    while half > 0 {
        if thread < half {
            let other = values[thread + half];
            if maximum {
                if other > values[thread] {
                    values[thread] = other;
                }
            } else {
                values[thread] += other;
            }
        }
        sync_cube();
        half /= 2;
    }
}

/// One workgroup of `threads` per (sample, head, query token).
#[cube(launch)]
fn attention_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    bq: &Tensor<F>,
    bk: &Tensor<F>,
    bv: &Tensor<F>,
    output: &mut Tensor<F>,
    scale: f32,
    #[comptime] heads: usize,
    #[comptime] head_dim: usize,
    #[comptime] tokens: usize,
    #[comptime] threads: usize,
    #[comptime] biased: bool,
    #[define(F)] _dtype: ElemType,
) {
    let thread = UNIT_POS_X as usize;
    let cube = CUBE_POS_X as usize;
    let query = cube % tokens;
    let head = (cube / tokens) % heads;
    let sample = cube / (tokens * heads);
    let c0 = head * head_dim;

    // (q_i + b_q)/√d
    let mut q_row = Shared::<[f32]>::new_slice(head_dim);
    let mut c = thread;
    while c < head_dim {
        q_row[c] = read(q, bq, sample, query, c0 + c, biased) * scale;
        c += threads;
    }
    sync_cube();

    // s_j = (q_i + b_q)·(k_j + b_k)/√d, and their maximum
    let mut scores = Shared::<[f32]>::new_slice(tokens);
    let mut partial = Shared::<[f32]>::new_slice(threads);
    let mut largest = (0.0f32 - 3.0e38f32).runtime();
    let mut j = thread;
    while j < tokens {
        let mut s = 0.0f32.runtime();
        let mut c = 0usize.runtime();
        while c < head_dim {
            s += q_row[c] * read(k, bk, sample, j, c0 + c, biased);
            c += 1;
        }
        scores[j] = s;
        if s > largest {
            largest = s;
        }
        j += threads;
    }
    partial[thread] = largest;
    reduce(&mut partial, thread, threads, true);
    let largest = partial[0];
    sync_cube(); // every thread has read the maximum before the sums overwrite it

    // p_j = e^(s_j − max s), and Σ p_j
    let mut total = 0.0f32.runtime();
    let mut j = thread;
    while j < tokens {
        let p = (scores[j] - largest).exp();
        scores[j] = p;
        total += p;
        j += threads;
    }
    partial[thread] = total;
    reduce(&mut partial, thread, threads, false);
    let total = partial[0];

    // out_ic = Σ_j p_j v_jc / Σ_j p_j + b_v,c  (the p_j sum to one after the division)
    let mut c = thread;
    while c < head_dim {
        let mut acc = 0.0f32.runtime();
        let mut j = 0usize.runtime();
        while j < tokens {
            acc += scores[j] * read(v, bv, sample, j, c0 + c, false);
            j += 1;
        }
        let mut y = acc / total;
        if biased {
            y += f32::cast_from(bv[(c0 + c) * bv.stride(0)]);
        }
        let at = sample * output.stride(0) + query * output.stride(1) + (c0 + c) * output.stride(2);
        output[at] = F::cast_from(y);
        c += threads;
    }
}
