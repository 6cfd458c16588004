//! Convolution kernels stored channels-last for the GPU. burn's cubecl convolution views its
//! weight `[O, I, kh, kw]` as `[O, kh, kw, I]` and copies it into that order at every call unless
//! it is already stored so: storing each kernel that way once, at load, saves one copy kernel per
//! convolution per step. Values and logical shapes do not change.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use emerge_core::UNet;

/// Re-stores every 4-D parameter (the convolution kernels) channels-last.
struct ChannelsLast;

impl ModuleMapper for ChannelsLast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 4 {
            return param;
        }
        param.map(|weight| {
            let dims = weight.dims();
            let [out, inp, kh, kw] = [dims[0], dims[1], dims[2], dims[3]];
            let axes = |order: [usize; 4]| -> [usize; D] { std::array::from_fn(|k| order[k]) };
            let channels_last: [usize; D] = std::array::from_fn(|k| [out, kh, kw, inp][k]);
            weight
                .permute(axes([0, 2, 3, 1])) // [O, kh, kw, I], a view
                .reshape([out, kh * kw * inp]) // copied into that order
                .reshape(channels_last)
                .permute(axes([0, 3, 1, 2])) // [O, I, kh, kw] again, stored channels-last
        })
    }
}

/// `unet` with its convolution kernels stored channels-last (for burn's GPU backends; on the
/// CPU it would only add a copy).
pub fn channels_last_kernels(unet: UNet) -> UNet {
    unet.map(&mut ChannelsLast)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};
    use emerge_core::UNetConfig;

    use super::*;

    #[test]
    fn the_network_computes_the_same() {
        let device = Device::flex();
        let config = UNetConfig::preset("tiny").unwrap();
        let unet = UNet::new(&config, &device).unwrap();
        let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([10.0, 500.0], &device);
        let labels = || Some(Tensor::from_ints([1, 10], &device));
        let expected = unet.forward(x.clone(), t.clone(), labels()).into_data();
        let restored = channels_last_kernels(unet);
        restored
            .forward(x, t, labels())
            .into_data()
            .assert_eq(&expected, true);
    }
}
