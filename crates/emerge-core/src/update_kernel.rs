//! A recorded step's end in one cubecl kernel per output, for tensors on a cubecl device (wgpu,
//! WebGPU) outside autodiff: the guidance mix ε̃ = ε_u + w (ε_c − ε_u) (Ho & Salimans 2022) read
//! straight from the halves of the UNet's batch, then x̂_0 and x_{t−1} as [`crate::update`]
//! writes them, with the coefficients read from the step's row in place. burn's path slices
//! each coefficient and each half out (unaligned views are copies) and fuses the arithmetic
//! into a few launches: about twenty launches, here two.

use burn::tensor::Tensor as BurnTensor;
use burn_backend::TensorMetadata;
use burn_backend::cubecl::dtype_to_storage_type;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::custom::ScalarIr;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use crate::cube_op::{self, CubeKernel, Inputs};
use crate::update::ROW;

/// Threads per workgroup.
const THREADS: u32 = 256;

/// x̂_0 and x_{t−1} (in that order) of the step with coefficient row `row` (`[w, a, b, c, d, e,
/// f, σ]`) from x_t `sample` `[B, C, H, W]`, the UNet's output `noise_prediction` (`[2B, …]`,
/// conditional then unconditional, where `guided`; `[B, …]` otherwise), the previous x̂_0 and
/// the step's noise z: x̂_0 = a x + b ε̃ (clipped to [−1, 1] where `clip`), x_{t−1} = c x + d x̂_0
/// + e ε̃ + f x̂_0' + σ z. None where the kernel does not apply (not a cubecl device).
pub fn step(
    row: &BurnTensor<1>,
    sample: &BurnTensor<4>,
    noise_prediction: &BurnTensor<4>,
    previous_x0: &BurnTensor<4>,
    noise: &BurnTensor<4>,
    guided: bool,
    clip: bool,
) -> Option<(BurnTensor<4>, BurnTensor<4>)> {
    if row.dims() != [ROW] {
        return None;
    }
    let inputs = vec![
        cube_op::primitive(sample)?,
        cube_op::primitive(noise_prediction)?,
        cube_op::primitive(row)?,
        cube_op::primitive(previous_x0)?,
        cube_op::primitive(noise)?,
    ];
    let launch = |x0| UpdateLaunch { guided, clip, x0 };
    let x0 = cube_op::run(launch(true), inputs.clone());
    let prev = cube_op::run(launch(false), inputs);
    Some((prev, x0))
}

#[derive(Clone, Copy, Debug)]
struct UpdateLaunch {
    guided: bool,
    clip: bool,
    /// Writes x̂_0 (else x_{t−1}).
    x0: bool,
}

impl CubeKernel for UpdateLaunch {
    const NAME: &'static str = "emerge::update";

    fn scalars(&self) -> Vec<ScalarIr> {
        vec![
            ScalarIr::Bool(self.guided),
            ScalarIr::Bool(self.clip),
            ScalarIr::Bool(self.x0),
        ]
    }

    fn launch(&self, mut inputs: Inputs) -> CubeTensor {
        let (x, eps, row, previous, noise) = (
            inputs.next(),
            inputs.next(),
            inputs.next(),
            inputs.next(),
            inputs.next(),
        );
        let (client, device, dtype) = (x.client.clone(), x.device.clone(), x.dtype);
        let output = empty_device_dtype(client.clone(), device, x.shape(), dtype);
        let elements = x.shape().num_elements();
        let cube_dim = CubeDim::new_1d(THREADS);
        update_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, elements, cube_dim),
            cube_dim,
            x.into_tensor_arg(),
            eps.into_tensor_arg(),
            row.into_tensor_arg(),
            previous.into_tensor_arg(),
            noise.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            self.guided,
            self.clip,
            self.x0,
            dtype_to_storage_type(dtype),
        );
        output
    }
}

/// t[n, c, h, w], whatever the strides, in f32.
#[cube]
fn at<F: Float>(t: &Tensor<F>, n: usize, c: usize, h: usize, w: usize) -> f32 {
    f32::cast_from(t[n * t.stride(0) + c * t.stride(1) + h * t.stride(2) + w * t.stride(3)])
}

/// Coefficient `i` of the step's row.
#[cube]
fn k<F: Float>(row: &Tensor<F>, #[comptime] i: usize) -> f32 {
    f32::cast_from(row[i * row.stride(0)])
}

/// One thread per element of x_t, written at its row-major index.
#[cube(launch)]
fn update_kernel<F: Float>(
    x: &Tensor<F>,
    eps: &Tensor<F>,
    row: &Tensor<F>,
    previous: &Tensor<F>,
    noise: &Tensor<F>,
    output: &mut Tensor<F>,
    #[comptime] guided: bool,
    #[comptime] clip: bool,
    #[comptime] x0_out: bool,
    #[define(F)] _dtype: ElemType,
) {
    let index = ABSOLUTE_POS;
    if index >= output.len() {
        terminate!();
    }
    let (channels, height, width) = (x.shape(1), x.shape(2), x.shape(3));
    let w = index % width;
    let h = (index / width) % height;
    let c = (index / (width * height)) % channels;
    let n = index / (width * height * channels);
    let sample = at(x, n, c, h, w);
    // ε̃ = ε_u + w (ε_c − ε_u)
    let mut e = at(eps, n, c, h, w);
    if guided {
        let unconditional = at(eps, n + x.shape(0), c, h, w);
        e = unconditional + k(row, 0usize) * (e - unconditional);
    }
    // x̂_0 = a x + b ε̃
    let mut x0 = k(row, 1usize) * sample + k(row, 2usize) * e;
    if clip {
        x0 = x0.clamp(-1.0f32, 1.0f32);
    }
    if x0_out {
        output[index] = F::cast_from(x0);
    } else {
        // x_{t−1} = c x + d x̂_0 + e ε̃ + f x̂_0' + σ z
        let prev = k(row, 3usize) * sample
            + k(row, 4usize) * x0
            + k(row, 5usize) * e
            + k(row, 6usize) * at(previous, n, c, h, w)
            + k(row, 7usize) * at(noise, n, c, h, w);
        output[index] = F::cast_from(prev);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

    use super::*;
    use crate::guidance::guided_noise;
    use crate::update::{self, StepTerms, coefficient};

    /// The kernel's x̂_0 and x_{t−1} on the GPU equal burn's guidance mix and update on the CPU,
    /// guided or not, clipped or not, with the UNet's output laid out channels-last (as a
    /// convolution leaves it).
    #[test]
    fn kernel_matches_the_update_on_the_cpu() {
        let Some(gpu) = crate::cube_op::test_device("update") else {
            return;
        };
        let cpu = Device::flex();
        let shape = [3, 2, 5, 4];
        let normal =
            |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.5), &cpu);
        let row = Tensor::<1>::from_data(
            TensorData::new(vec![1.7f32, 1.3, -0.6, 0.4, 0.5, -0.2, 0.3, 0.25], [ROW]),
            &cpu,
        );
        let (x, previous, noise) = (normal(shape), normal(shape), normal(shape));
        for (guided, clip) in [(true, true), (true, false), (false, true)] {
            let images = if guided { 6 } else { 3 };
            // [N, H, W, C] in memory, [N, C, H, W] as a tensor
            let channels_last = Tensor::<4>::random([images, 5, 4, 2], Distribution::Default, &cpu);
            let output = channels_last.clone().permute([0, 3, 1, 2]);
            let eps = if guided {
                let mut halves = output.clone().chunk(2, 0);
                let unconditional = halves.pop().unwrap();
                let conditional = halves.pop().unwrap();
                guided_noise(unconditional, conditional, coefficient(&row, 0))
            } else {
                output.clone()
            };
            let terms = StepTerms {
                sample: x.clone(),
                noise_prediction: eps,
                previous_x0: Some(previous.clone()),
                noise: Some(noise.clone()),
            };
            let (want_prev, want_x0) = update::apply(&row, terms, clip).unwrap();
            let on_gpu = |t: &Tensor<4>| Tensor::<4>::from_data(t.clone().into_data(), &gpu);
            let output_first = on_gpu(&output);
            let output_last = on_gpu(&channels_last).permute([0, 3, 1, 2]);
            for output in [output_first, output_last] {
                let (prev, x0) = step(
                    &row.clone().to_device(&gpu),
                    &on_gpu(&x),
                    &output,
                    &on_gpu(&previous),
                    &on_gpu(&noise),
                    guided,
                    clip,
                )
                .expect("a wgpu device takes the kernel");
                let tolerance = Tolerance::absolute(1e-5);
                x0.into_data()
                    .assert_approx_eq::<f32>(&want_x0.clone().into_data(), tolerance);
                prev.into_data()
                    .assert_approx_eq::<f32>(&want_prev.clone().into_data(), tolerance);
            }
        }
    }
}
