//! GroupNorm (Wu & He 2018), alone or followed by SiLU, as every block of the UNet applies it.
//! On a GPU outside autodiff it is one kernel of this crate's (`norm_kernel`, feature `gpu`):
//! burn's GroupNorm is about nine launches (a reshape copy, two reductions, the arithmetic
//! between) and SiLU one more, on each of a step's 27 norms. Elsewhere (the CPU, training) it is
//! burn's `GroupNorm` and `silu`.

use burn::nn::GroupNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

/// y = γ (x − μ_g) / √(σ²_g + ε) + β, per sample over each group g of channels.
pub fn forward(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    normalized(norm, x, None, false)
}

/// SiLU(GroupNorm(x)), SiLU(y) = y σ(y) (Elfwing et al. 2018).
pub fn forward_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    normalized(norm, x, None, true)
}

/// A value per (sample, channel), s[n, c] = table[n, first + c]: a res block's columns of a
/// matrix that may hold other blocks' too (read in place: a column slice would be a copy).
#[derive(Debug, Clone)]
pub struct Shift {
    pub table: Tensor<2>,
    pub first: usize,
}

impl Shift {
    /// s = `table`, `[N, C]`.
    pub fn whole(table: Tensor<2>) -> Self {
        Self { table, first: 0 }
    }

    /// The `[N, C]` matrix itself.
    fn columns(self, channels: usize) -> Tensor<2> {
        let [_, width] = self.table.dims();
        if self.first == 0 && width == channels {
            self.table
        } else {
            self.table.narrow(1, self.first, channels)
        }
    }
}

/// SiLU(GroupNorm(x + s)), s `[N, C]` added to every pixel of its sample and channel (a res
/// block's time projection). On a GPU the sum is never written out.
pub fn forward_silu_shifted(norm: &GroupNorm, x: Tensor<4>, shift: Shift) -> Tensor<4> {
    normalized(norm, x, Some(shift), true)
}

fn normalized(norm: &GroupNorm, x: Tensor<4>, shift: Option<Shift>, then_silu: bool) -> Tensor<4> {
    #[cfg(feature = "gpu")]
    if let Some(kernel) =
        super::norm_kernel::GroupNormKernel::for_tensor(norm, &x, shift.as_ref(), then_silu)
    {
        return kernel.forward();
    }
    let x = match shift {
        Some(s) => {
            let channels = x.dims()[1];
            x + s.columns(channels).unsqueeze_dims::<4>(&[2, 3]) // [N, C, 1, 1]
        }
        None => x,
    };
    let y = norm.forward(x);
    if then_silu { silu(y) } else { y }
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::GroupNormConfig;
    use burn::tensor::{Device, Distribution, Tolerance};

    /// The kernel on the GPU equals burn's GroupNorm (+ SiLU, of x + a shift) on the CPU, for
    /// inputs laid out channels-first and channels-last (a convolution's output on the GPU),
    /// and for the group sizes of the shipped network.
    #[test]
    fn kernel_matches_burn_on_the_cpu() {
        let Some(gpu) = crate::cube_op::test_device("GroupNorm") else {
            return;
        };
        let cpu = Device::flex();
        for (batch, channels, size) in [(2, 32, 28), (3, 64, 7), (1, 96, 14)] {
            let norm_cpu = GroupNormConfig::new(8, channels).init(&cpu);
            let gamma = Tensor::<1>::random([channels], Distribution::Normal(1.0, 0.3), &cpu);
            let beta = Tensor::<1>::random([channels], Distribution::Normal(0.0, 0.5), &cpu);
            let norm_cpu = GroupNorm {
                gamma: norm_cpu.gamma.map(|p| p.map(|_| gamma.clone())),
                beta: norm_cpu.beta.map(|p| p.map(|_| beta.clone())),
                ..norm_cpu
            };
            let norm_gpu = norm_cpu.clone().to_device(&gpu);
            // An offset mean and a spread like a convolution's output.
            let x = Tensor::<4>::random(
                [batch, size, size, channels],
                Distribution::Normal(3.0, 2.0),
                &cpu,
            );
            let nchw_cpu = x.clone().permute([0, 3, 1, 2]);
            let channels_last = x.to_device(&gpu).permute([0, 3, 1, 2]);
            let channels_first = Tensor::<4>::from_data(nchw_cpu.clone().into_data(), &gpu);
            // A shift read from some columns of a wider matrix, as a res block's is.
            let wide = Tensor::<2>::random([batch, channels + 5], Distribution::Default, &cpu);
            let shift_cpu = Shift::whole(wide.clone().narrow(1, 3, channels));
            let shift_gpu = Shift {
                table: wide.to_device(&gpu),
                first: 3,
            };
            let cases = [
                (None, false),
                (None, true),
                (Some((shift_cpu, shift_gpu)), true),
            ];
            for (shift, then_silu) in cases {
                let (shift_cpu, shift_gpu) = shift.unzip();
                let want = normalized(&norm_cpu, nchw_cpu.clone(), shift_cpu, then_silu);
                let want = want.into_data();
                for input in [channels_last.clone(), channels_first.clone()] {
                    normalized(&norm_gpu, input, shift_gpu.clone(), then_silu)
                        .into_data()
                        .assert_approx_eq::<f32>(&want, Tolerance::absolute(1e-4));
                }
            }
        }
    }
}
