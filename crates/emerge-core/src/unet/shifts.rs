//! What each res block adds to its feature maps after its first convolution: the projection
//! time_emb_proj(SiLU(emb)) of the step's conditioning vector emb, one value per sample and
//! channel (Ho et al. 2020, Appendix B: the time embedding is added into each residual block).
//! It depends only on t and the class, so a run can compute it apart from the image's path:
//! [`JointProjection`] gives every block's shift in one matrix product.

use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use super::UNet;
use super::norm::Shift;

/// Each res block's shift `[N, C_block]`, in the order the UNet runs its blocks.
pub struct BlockShifts(std::vec::IntoIter<Shift>);

impl BlockShifts {
    pub(super) fn new(shifts: Vec<Shift>) -> Self {
        Self(shifts.into_iter())
    }

    /// The next block's shift.
    pub(super) fn next_block(&mut self) -> Shift {
        self.0
            .next()
            .expect("one shift per res block of the UNet that made them")
    }
}

/// Every res block's time_emb_proj side by side: W = [W_1 … W_R] `[E, ΣC]`, b = [b_1 … b_R].
#[derive(Debug, Clone)]
pub struct JointProjection {
    weight: Tensor<2>,
    bias: Tensor<1>,
    /// C_r of each block, in the order the UNet runs them.
    widths: Vec<usize>,
}

impl JointProjection {
    pub fn of(unet: &UNet) -> Self {
        let projections: Vec<_> = unet.resnets().map(|r| &r.time_emb_proj).collect();
        let widths: Vec<usize> = projections.iter().map(|p| p.weight.dims()[1]).collect();
        let weight = Tensor::cat(projections.iter().map(|p| p.weight.val()).collect(), 1);
        let device = weight.device();
        let bias = projections
            .iter()
            .zip(&widths)
            .map(|(p, &width)| {
                p.bias
                    .as_ref()
                    .map_or_else(|| Tensor::zeros([width], &device), |b| b.val())
            })
            .collect();
        Self {
            weight,
            bias: Tensor::cat(bias, 0),
            widths,
        }
    }

    /// Every block's shift of conditioning vectors `emb` `[N, E]`: SiLU(emb) W + b `[N, ΣC]`,
    /// each block reading its own columns.
    pub fn shifts(&self, emb: Tensor<2>) -> BlockShifts {
        let joint = silu(emb).matmul(self.weight.clone()) + self.bias.clone().unsqueeze_dim(0);
        let mut start = 0;
        let shifts = self
            .widths
            .iter()
            .map(|&width| {
                let first = start;
                start += width;
                Shift {
                    table: joint.clone(),
                    first,
                }
            })
            .collect();
        BlockShifts::new(shifts)
    }
}
